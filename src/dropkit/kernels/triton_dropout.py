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

__all__ = ["derive_keys_kernel", "keep_mask_kernel", "scale_kernel", "scale_rows_kernel"]

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


# bfloat16 <-> float32 by hand, in integer ops. Triton's interpreter emulates these two
# conversions with numpy and gets them wrong (it truncates, and flushes subnormals to zero);
# by hand, the CI run under the interpreter checks the very arithmetic the GPU performs.


@triton.jit
def _bfloat16_to_float32(x):
    """bfloat16 -> float32, exact (subnormals included): the 16 bits become the high half."""
    bits = x.to(tl.uint16, bitcast=True).to(tl.uint32) << 16
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _float32_to_bfloat16(y):
    """float32 -> bfloat16, to nearest even (subnormals, overflow to inf), NaN -> 0x7FC0.

    The same result as the GPU's ``cvt.rn.bf16.f32`` and torch's conversion.
    """
    bits = y.to(tl.uint32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    half = tl.where(y != y, 0x7FC0, rounded).to(tl.uint16)
    return half.to(tl.bfloat16, bitcast=True)


@triton.jit
def _scale_store(x_ptr, out_ptr, offsets, mask, keep, w_keep_bits, w_drop_bits):
    """``out = x * (w_keep if keep else w_drop)`` at ``offsets``: the weights decoded from
    their IEEE bits in the opmath dtype, one multiply in it, one rounding."""
    if x_ptr.dtype.element_ty == tl.float64:  # opmath float64
        w_keep = w_keep_bits.to(tl.uint64).to(tl.float64, bitcast=True)
        w_drop = w_drop_bits.to(tl.uint64).to(tl.float64, bitcast=True)
    else:  # opmath float32
        w_keep = w_keep_bits.to(tl.uint32).to(tl.float32, bitcast=True)
        w_drop = w_drop_bits.to(tl.uint32).to(tl.float32, bitcast=True)
    weight = tl.where(keep, w_keep, w_drop)
    x = tl.load(x_ptr + offsets, mask=mask)
    if x_ptr.dtype.element_ty == tl.bfloat16:
        y = _float32_to_bfloat16(_bfloat16_to_float32(x) * weight)
    else:
        y = (x.to(weight.dtype) * weight).to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + offsets, y, mask=mask)


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
    _scale_store(x_ptr, out_ptr, offsets, offsets < n_elements, keep, w_keep_bits, w_drop_bits)


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


@triton.jit(do_not_specialize=["seed", "call", "domain"])
def derive_keys_kernel(
    ids_ptr,  # *Pointer* to the ids, [n] int64 (non-negative)
    out_ptr,  # *Pointer* to the derived keys, [n] int64 (two's complement of the uint64)
    n,  # Number of ids
    seed,  # The base 64-bit Philox key as an unsigned int
    call,  # Third counter word (the call index), a uint32
    domain,  # Fourth counter word (the derivation's domain), a uint32
    BLOCK: tl.constexpr,  # ids per program
):
    """``out[i] = w0 | w1 << 32`` of ``Philox4x32-10((lo(id), hi(id), call, domain), seed)``:
    the derived keys of ``dropkit.rng.derive_keys``, one id per lane."""
    offs = tl.program_id(axis=0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    ids = tl.load(ids_ptr + offs, mask=mask, other=0).to(tl.uint64)
    c0 = (ids & 0xFFFFFFFF).to(tl.uint32)
    c1 = (ids >> 32).to(tl.uint32)
    c2 = tl.zeros_like(c0) + call.to(tl.uint32)
    c3 = tl.zeros_like(c0) + domain.to(tl.uint32)
    w0, w1, _, _ = tl.philox(seed, c0, c1, c2, c3)
    key = w0.to(tl.uint64) | (w1.to(tl.uint64) << 32)
    tl.store(out_ptr + offs, key.to(tl.int64, bitcast=True), mask=mask)


@triton.jit(do_not_specialize=["thresh", "w_keep_bits", "w_drop_bits", "start"])
def scale_rows_kernel(
    x_ptr,  # *Pointer* to the input, [rows * row_len] contiguous, float16/32/64 or bfloat16
    out_ptr,  # *Pointer* to the output, same shape and dtype (may be x_ptr)
    keys_ptr,  # *Pointer* to the row keys, [rows] int64 (two's complement of the uint64 key)
    row_len,  # Elements per row
    thresh,  # Drop iff the uint32 draw < thresh
    w_keep_bits,  # IEEE bits of the kept weight in the opmath dtype (unsigned)
    w_drop_bits,  # IEEE bits of the dropped weight in the opmath dtype (unsigned)
    start,  # Stream index of each row's first element (the keys' offset)
    BLOCK_SIZE: tl.constexpr,  # Philox counters per program
):
    """Per-row keys: element ``j`` of row ``r`` is stream element ``start + j`` of key
    ``keys[r]``. Grid ``(rows, programs per row)``; a program owns ``4 * BLOCK_SIZE``
    consecutive stream indices of its row, from the counter of ``start`` on."""
    row = tl.program_id(axis=0).to(tl.int64)
    pid = tl.program_id(axis=1).to(tl.int64)
    key = tl.load(keys_ptr + row).to(tl.uint64, bitcast=True)
    first = start.to(tl.int64) >> 2  # the counter of the row's first element
    lead = start.to(tl.int64) & 3
    draws = _draws(pid, key, first, BLOCK_SIZE)  # stream indices 4 * (first + pid * B) + k
    keep = draws >= thresh.to(tl.uint32)
    j = pid * (4 * BLOCK_SIZE) + tl.arange(0, 4 * BLOCK_SIZE) - lead  # element of the row
    mask = (j >= 0) & (j < row_len)
    _scale_store(x_ptr, out_ptr, row * row_len + j, mask, keep, w_keep_bits, w_drop_bits)
