"""Triton kernels for the mask spec: the fused scale and the keep mask (kernels only).

Each program owns ``BLOCK_SIZE`` Philox counters, that is ``4 * BLOCK_SIZE`` consecutive
elements: counter ``c`` gives, through ``tl.randint4x(seed, c)``, the four uint32 draws of
elements ``4c .. 4c + 3`` (lane ``i & 3`` for element ``i``), exactly as ``dropkit.rng``.
The four lanes are interleaved back into element order (``tl.join`` + ``tl.reshape``), so
loads and stores stay contiguous. Every offset is int64, so tensors past ``2**31`` elements
do not overflow. The draw is compared as uint32 with the integer threshold; no float ``rand``.

Scalars that must keep every bit (the seed, the threshold, the weights as IEEE bit
patterns) are passed as unsigned Python ints and reinterpreted inside the kernel.
Launching, allocation and the choice of arguments live in ``dropkit.backends.triton``.

Papers: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC 2011);
Tillet et al., "Triton: an intermediate language and compiler for tiled neural network
computations" (MAPL 2019).
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["keep_mask_kernel", "scale_kernel"]

_SCALARS = ["seed", "thresh", "w_keep_bits", "w_drop_bits", "counter_base"]


@triton.jit
def _draws(pid, seed, counter_base, BLOCK_SIZE: tl.constexpr):
    """The uint32 draws of this program's ``4 * BLOCK_SIZE`` elements, in element order."""
    counter = counter_base.to(tl.int64) + pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    r0, r1, r2, r3 = tl.randint4x(seed, counter)
    # join(join(r0, r2), join(r1, r3))[i, k, j] is lane 2k + j of counter i: row-major
    # flattening puts it at 4i + 2k + j, its element position.
    pairs = tl.join(tl.join(r0, r2), tl.join(r1, r3))
    return tl.reshape(pairs, [4 * BLOCK_SIZE])


@triton.jit(do_not_specialize=_SCALARS)
def scale_kernel(
    x_ptr,  # *Pointer* to the input, [n_elements] contiguous, float16/bfloat16/float32/float64
    out_ptr,  # *Pointer* to the output, [n_elements], dtype of x (may be x_ptr itself)
    n_elements,  # Number of elements to process
    seed,  # The 64-bit Philox key as an unsigned int in [0, 2**64)
    thresh,  # Drop iff the uint32 draw < thresh, an int in [0, 2**32 - 1]
    w_keep_bits,  # IEEE bits of the weight of kept elements in the opmath dtype (unsigned)
    w_drop_bits,  # IEEE bits of the weight of dropped elements in the opmath dtype (unsigned)
    counter_base,  # First Philox counter: element e of x is spec element 4 * counter_base + e
    WIDE: tl.constexpr,  # True: opmath is float64 (x is float64); False: float32
    BLOCK_SIZE: tl.constexpr,  # Philox counters per program (4 * BLOCK_SIZE elements)
):
    """``out[e] = x[e] * (w_keep if keep(e) else w_drop)``: one multiply in opmath, one rounding.

    Pointers: ``x_ptr`` and ``out_ptr`` are ``[n_elements]`` contiguous of one dtype
    (float16, bfloat16, float32 or float64). The multiply is a lone ``mul`` (no add nearby),
    so no FMA contraction can change its rounding.
    """
    pid = tl.program_id(axis=0).to(tl.int64)
    keep = _draws(pid, seed, counter_base, BLOCK_SIZE) >= thresh.to(tl.uint32)
    offsets = pid * (4 * BLOCK_SIZE) + tl.arange(0, 4 * BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask)
    if WIDE:
        w_keep = w_keep_bits.to(tl.uint64).to(tl.float64, bitcast=True)
        w_drop = w_drop_bits.to(tl.uint64).to(tl.float64, bitcast=True)
        y = x.to(tl.float64) * tl.where(keep, w_keep, w_drop)
    else:
        w_keep = w_keep_bits.to(tl.uint32).to(tl.float32, bitcast=True)
        w_drop = w_drop_bits.to(tl.uint32).to(tl.float32, bitcast=True)
        y = x.to(tl.float32) * tl.where(keep, w_keep, w_drop)
    tl.store(out_ptr + offsets, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=_SCALARS)
def keep_mask_kernel(
    out_ptr,  # *Pointer* to the mask, [n_elements] uint8 (a torch.bool tensor viewed as uint8)
    n_elements,  # Number of elements to process
    seed,  # The 64-bit Philox key as an unsigned int in [0, 2**64)
    thresh,  # Drop iff the uint32 draw < thresh, an int in [0, 2**32 - 1]
    counter_base,  # First Philox counter: element e is spec element 4 * counter_base + e
    BLOCK_SIZE: tl.constexpr,  # Philox counters per program (4 * BLOCK_SIZE elements)
):
    """``out[e] = 1 if the draw of element e >= thresh else 0``.

    Pointers: ``out_ptr`` is ``[n_elements]`` uint8 (1 = kept).
    """
    pid = tl.program_id(axis=0).to(tl.int64)
    keep = _draws(pid, seed, counter_base, BLOCK_SIZE) >= thresh.to(tl.uint32)
    offsets = pid * (4 * BLOCK_SIZE) + tl.arange(0, 4 * BLOCK_SIZE)
    tl.store(out_ptr + offsets, keep.to(tl.uint8), mask=offsets < n_elements)
