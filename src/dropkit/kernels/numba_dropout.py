"""Fused CPU dropout kernels (numba): Philox keep decisions drawn inside the output loop.

The serial kernels run on the calling thread over a flat element range; the parallel ones
cut the range into parts of ``step`` elements (a multiple of ``CHUNK``) and run the parts
under ``prange``. Every element's draw depends on its index alone, so any split computes
the same thing. Inside a part, the kernels work in blocks of ``BLOCK`` Philox counters. A
block runs the ten Philox4x32 rounds on arrays of counters (32x32->64 bit products in
uint64, which LLVM turns into ``vpmuludq``), then one vectorised pass writes
``out[i] = x[i] * (w_keep if r_i >= thresh else w_drop)``. No mask is stored. Element ``i``
(counted from ``4 * ctr_base``) takes lane ``i & 3`` of
``Philox(counter = ctr_base + (i >> 2), key = (key0, key1))``: the spec of
:mod:`dropkit.rng`, bit for bit.

Philox runs on uint64 holding uint32 values (numba promotes mixed uint/int arithmetic to
float64, so every constant is a ``np.uint64``); the draws are stored as uint32, so the
compare runs eight lanes wide. ``fastmath`` stays off: the product is one IEEE multiply in
the array's dtype.

Paper: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC 2011).
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, prange, types
from numba.extending import intrinsic

from dropkit.rng import (
    MASK32,
    PHILOX_KEY_A,
    PHILOX_KEY_B,
    PHILOX_ROUND_A,
    PHILOX_ROUND_B,
    PHILOX_ROUNDS,
)

__all__ = [
    "BLOCK",
    "CHUNK",
    "SHORT_ROW",
    "bits_at",
    "bits_rows",
    "derive_id_keys",
    "derive_id_keys_parallel",
    "derive_keys",
    "drop_block_at_address",
    "drop_block_rows",
    "eight_rows_ok",
    "keep_mask_at",
    "keep_mask_parallel",
    "keep_mask_rows",
    "keep_mask_serial",
    "pointer",
    "scalar_keys",
    "scale_at",
    "scale_at_address",
    "scale_bf16_at_address",
    "scale_bf16_parallel",
    "scale_bf16_serial",
    "scale_groups",
    "scale_groups_at_address",
    "scale_parallel",
    "scale_rows_by_eight",
    "scale_rows_flat",
    "scale_rows_flat_parallel",
    "scale_rows_parallel",
    "scale_rows_serial",
    "scale_serial",
    "scale_short_rows",
    "select_at",
    "select_at_address",
    "select_pair_at_address",
    "select_pair_serial",
    "short_rows_ok",
]

BLOCK = 128  # Philox counters per vector block (512 elements); even (see _philox_block)
SHORT_ROW = 4 * BLOCK  # rows shorter than a block (512 elements) draw across row boundaries
CHUNK = 16 * 4 * BLOCK  # split granularity for parts: 8192 elements, a multiple of 4 * BLOCK

_M = np.uint64(MASK32)
_A = np.uint64(PHILOX_ROUND_A)
_B = np.uint64(PHILOX_ROUND_B)
_KA = np.uint64(PHILOX_KEY_A)
_KB = np.uint64(PHILOX_KEY_B)
_S32 = np.uint64(32)
_NB = 4 * BLOCK
assert BLOCK % 2 == 0, "two counter chains fill the block: an odd BLOCK would write past it"
_OPTS = {"cache": True, "fastmath": False, "nogil": True, "error_model": "numpy"}


@njit(**_OPTS)
def _philox_block(
    ctr0: np.uint64, n_ctr: int, key0: np.uint64, key1: np.uint64, bits: np.ndarray
) -> None:
    """Draws of counters ``ctr0 .. ctr0 + n_ctr - 1`` into ``bits[4 * j + lane]``.

    Each iteration runs two independent counters, ``j`` and ``j + h`` (``h`` = half the
    block, rounded up), so the vectorised loop carries two multiply chains: measured
    15-18% faster than one. With ``n_ctr`` odd one counter past the block is drawn too,
    into ``bits[4 * n_ctr ..]``; ``bits`` holds ``4 * BLOCK`` entries, always enough.
    """
    h = (n_ctr + 1) >> 1
    k0i = key0 & _M  # the mask tells LLVM these fit in 32 bits: vpmuludq, not a 64x64 mul
    k1i = key1 & _M
    for j in range(h):
        ctr = ctr0 + np.uint64(j)
        ctr_b = ctr + np.uint64(h)
        c0 = ctr & _M
        c1 = ctr >> _S32
        c2 = np.uint64(0)
        c3 = np.uint64(0)
        d0 = ctr_b & _M
        d1 = ctr_b >> _S32
        d2 = np.uint64(0)
        d3 = np.uint64(0)
        k0 = k0i
        k1 = k1i
        for _ in range(PHILOX_ROUNDS):
            pb = _B * c2
            pa = _A * c0
            qb = _B * d2
            qa = _A * d0
            c0 = (pb >> _S32) ^ c1 ^ k0
            c1 = pb & _M
            c2 = (pa >> _S32) ^ c3 ^ k1
            c3 = pa & _M
            d0 = (qb >> _S32) ^ d1 ^ k0
            d1 = qb & _M
            d2 = (qa >> _S32) ^ d3 ^ k1
            d3 = qa & _M
            k0 = (k0 + _KA) & _M
            k1 = (k1 + _KB) & _M
        bits[4 * j] = np.uint32(c0)
        bits[4 * j + 1] = np.uint32(c1)
        bits[4 * j + 2] = np.uint32(c2)
        bits[4 * j + 3] = np.uint32(c3)
        m = 4 * (j + h)
        bits[m] = np.uint32(d0)
        bits[m + 1] = np.uint32(d1)
        bits[m + 2] = np.uint32(d2)
        bits[m + 3] = np.uint32(d3)


@njit(inline="always", **_OPTS)
def _scale_pass(
    x: np.ndarray,
    out: np.ndarray,
    lo: int,
    n: int,
    bits: np.ndarray,
    th: np.uint32,
    w_keep: np.floating,
    w_drop: np.floating,
    inplace: bool,
) -> None:
    """``out[lo + t] = x[lo + t] * (w_keep if bits[t] >= th else w_drop)`` for ``t < n``.

    Slices indexed from 0: with a provably non-negative index numba drops its negative-index
    wraparound, and LLVM vectorises the pass. In place it reads and writes one array: LLVM's
    runtime overlap check between two arrays fails for the very same array and would fall
    back to a scalar loop.
    """
    xs = x[lo : lo + n]
    if inplace:
        for t in range(n):
            xs[t] = xs[t] * (w_keep if bits[t] >= th else w_drop)
    else:
        os = out[lo : lo + n]
        for t in range(n):
            os[t] = xs[t] * (w_keep if bits[t] >= th else w_drop)


@njit(**_OPTS)
def _scale_run(
    x: np.ndarray,
    out: np.ndarray,
    ctr_base: np.uint64,
    key0: np.uint64,
    key1: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
    bits: np.ndarray,
) -> None:
    """``scale_serial`` with the caller's scratch block ``bits`` (``4 * BLOCK`` uint32)."""
    th = np.uint32(thresh)  # uint32 lanes: eight compares per AVX2 instruction
    inplace = x.ctypes.data == out.ctypes.data
    for start in range(0, x.shape[0], _NB):
        n = min(_NB, x.shape[0] - start)
        _philox_block(ctr_base + np.uint64(start >> 2), (n + 3) >> 2, key0, key1, bits)
        _scale_pass(x, out, start, n, bits, th, w_keep, w_drop, inplace)


@njit(**_OPTS)
def scale_serial(
    x: np.ndarray,
    out: np.ndarray,
    ctr_base: np.uint64,
    key0: np.uint64,
    key1: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
) -> None:
    """``out[i] = x[i] * (w_keep if keep(i) else w_drop)`` for flat float32/float64 arrays.

    Element ``i`` uses counter ``ctr_base + (i >> 2)``. ``out`` may be ``x``.
    ``w_keep``/``w_drop`` must have ``x``'s dtype; the integers are ``np.uint64``.
    In place the pass reads and writes one array: LLVM's runtime overlap check between two
    arrays fails for the very same array and would fall back to a scalar loop.
    """
    bits = np.empty(_NB, np.uint32)
    _scale_run(x, out, ctr_base, key0, key1, thresh, w_keep, w_drop, bits)


@njit(parallel=True, **_OPTS)
def scale_parallel(
    x: np.ndarray,
    out: np.ndarray,
    step: int,
    key0: np.uint64,
    key1: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
) -> None:
    """``scale_serial`` from counter 0, in parts of ``step`` elements run in parallel.

    ``step`` must be a positive multiple of ``CHUNK`` (so every part starts on a counter).
    Each part calls the serial kernel on its slices, with its own scratch block.
    """
    n = x.shape[0]
    for part in prange((n + step - 1) // step):
        lo = part * step
        hi = min(n, lo + step)
        ctr = np.uint64(lo >> 2)
        scale_serial(x[lo:hi], out[lo:hi], ctr, key0, key1, thresh, w_keep, w_drop)


# bfloat16, as raw uint16 bits (numba has no 16-bit float type). The widening is exact (the
# 16 bits become the high half of a float32); the narrowing rounds to nearest even and maps
# every NaN to 0xFFFF, as torch's CPU conversion does (its CUDA conversion gives 0x7FC0:
# NaN bits differ between torch's own devices, and each backend matches torch on its own).
# The float32 multiply between them is the one the reference performs, so the bits match.
_U16 = np.uint32(16)
_BF16_BIAS = np.uint32(0x7FFF)
_BF16_NAN = np.uint16(0xFFFF)
_ABS32 = np.uint32(0x7FFFFFFF)
_INF32 = np.uint32(0x7F800000)
_ONE32 = np.uint32(1)


@njit(**_OPTS)
def scale_bf16_serial(
    x: np.ndarray,
    out: np.ndarray,
    ctr_base: np.uint64,
    key0: np.uint64,
    key1: np.uint64,
    thresh: np.uint64,
    w_keep: np.float32,
    w_drop: np.float32,
) -> None:
    """``scale_serial`` for bfloat16 held as uint16 bits: widen, multiply in float32, round.

    ``x`` and ``out`` are flat uint16 arrays (``out`` may be ``x``); the weights float32.
    """
    bits = np.empty(_NB, np.uint32)
    wide = np.empty(_NB, np.float32)
    wide_bits = wide.view(np.uint32)  # the same scratch block, as raw float32 bits
    th = np.uint32(thresh)
    for start in range(0, x.shape[0], _NB):
        n = min(_NB, x.shape[0] - start)
        _philox_block(ctr_base + np.uint64(start >> 2), (n + 3) >> 2, key0, key1, bits)
        xs = x[start : start + n]  # block slices indexed from 0 (see scale_serial)
        for t in range(n):
            wide_bits[t] = np.uint32(xs[t]) << _U16
        for t in range(n):
            wide[t] = wide[t] * (w_keep if bits[t] >= th else w_drop)
        os = out[start : start + n]
        for t in range(n):
            b = wide_bits[t]
            rounded = np.uint16((b + _BF16_BIAS + ((b >> _U16) & _ONE32)) >> _U16)
            os[t] = _BF16_NAN if (b & _ABS32) > _INF32 else rounded


@njit(parallel=True, **_OPTS)
def scale_bf16_parallel(
    x: np.ndarray,
    out: np.ndarray,
    step: int,
    key0: np.uint64,
    key1: np.uint64,
    thresh: np.uint64,
    w_keep: np.float32,
    w_drop: np.float32,
) -> None:
    """``scale_bf16_serial`` from counter 0, in parts of ``step`` elements (a multiple of
    ``CHUNK``) run in parallel."""
    n = x.shape[0]
    for part in prange((n + step - 1) // step):
        lo = part * step
        hi = min(n, lo + step)
        ctr = np.uint64(lo >> 2)
        scale_bf16_serial(x[lo:hi], out[lo:hi], ctr, key0, key1, thresh, w_keep, w_drop)


# Serial kernels by address: the caller passes a contiguous tensor's ``data_ptr()`` and its
# length instead of numpy views of it, and the seed and threshold as Python ints, so that
# a small call skips two ``Tensor.numpy()`` views, their array unboxing and the key split
# (about a third of a 1024-element dropout's host time; docs/kernels.md).
@intrinsic
def pointer(typingctx, addr, like):  # type: ignore[no-untyped-def]
    """The int64 address ``addr`` as a pointer to values of ``like``'s type (a cast)."""
    ptr = types.CPointer(like)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.inttoptr(args[0], context.get_value_type(ptr))

    return ptr(types.int64, like), codegen


_BF16_LIKE = np.uint16(0)
_I64_LIKE = np.int64(0)


@njit(inline="always", **_OPTS)
def scalar_keys(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The row-key arrays ``(lo32, hi32)`` ``[1]`` of one int64 seed (its 64 bits)."""
    key = np.uint64(seed)
    return np.full(1, key & _M, np.uint64), np.full(1, key >> _S32, np.uint64)


@njit(**_OPTS)
def scale_at_address(
    x_addr: int,
    out_addr: int,
    n: int,
    seed: int,
    thresh: int,
    w_keep: np.floating,
    w_drop: np.floating,
) -> None:
    """``scale_serial`` from counter 0 on ``n`` contiguous values at ``x_addr`` / ``out_addr``
    (the same address in place), of ``w_keep``'s dtype; ``seed`` the int64 key (its
    two's-complement bits), ``thresh`` the threshold."""
    x = carray(pointer(x_addr, w_keep), n)
    out = carray(pointer(out_addr, w_keep), n)
    key = np.uint64(seed)
    scale_serial(x, out, np.uint64(0), key & _M, key >> _S32, np.uint64(thresh), w_keep, w_drop)


@njit(**_OPTS)
def scale_bf16_at_address(
    x_addr: int,
    out_addr: int,
    n: int,
    seed: int,
    thresh: int,
    w_keep: np.float32,
    w_drop: np.float32,
) -> None:
    """``scale_at_address`` for bfloat16 (``scale_bf16_serial`` on the raw uint16 bits)."""
    x = carray(pointer(x_addr, _BF16_LIKE), n)
    out = carray(pointer(out_addr, _BF16_LIKE), n)
    key = np.uint64(seed)
    scale_bf16_serial(
        x, out, np.uint64(0), key & _M, key >> _S32, np.uint64(thresh), w_keep, w_drop
    )


@njit(**_OPTS)
def keep_mask_serial(
    out: np.ndarray, ctr_base: np.uint64, key0: np.uint64, key1: np.uint64, thresh: np.uint64
) -> None:
    """``out[i] = r_i >= thresh`` for a flat bool array (True = kept), from ``ctr_base``."""
    bits = np.empty(_NB, np.uint32)
    th = np.uint32(thresh)
    for start in range(0, out.shape[0], _NB):
        m = min(_NB, out.shape[0] - start)
        _philox_block(ctr_base + np.uint64(start >> 2), (m + 3) >> 2, key0, key1, bits)
        os = out[start : start + m]  # block slice indexed from 0 (see scale_serial)
        for t in range(m):
            os[t] = bits[t] >= th


@njit(**_OPTS)
def select_pair_serial(
    w: np.ndarray,
    b: np.ndarray,
    key0: np.uint64,
    key1: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
    b_keep: np.floating,
    b_drop: np.floating,
) -> None:
    """Both halves of an affine multiplier from one draw, from counter 0: ``w[i], b[i] =
    (w_keep, b_keep)`` where element ``i`` is kept, else ``(w_drop, b_drop)`` (flat arrays
    of the weights' dtype; the values are what ``scale_serial`` of ones gives)."""
    bits = np.empty(_NB, np.uint32)
    th = np.uint32(thresh)
    for start in range(0, w.shape[0], _NB):
        m = min(_NB, w.shape[0] - start)
        _philox_block(np.uint64(start >> 2), (m + 3) >> 2, key0, key1, bits)
        ws = w[start : start + m]
        bs = b[start : start + m]
        for t in range(m):
            keep = bits[t] >= th
            ws[t] = w_keep if keep else w_drop
            bs[t] = b_keep if keep else b_drop


@njit(**_OPTS)
def select_pair_at_address(
    w_addr: int,
    b_addr: int,
    n: int,
    seed: int,
    thresh: int,
    w_keep: np.floating,
    w_drop: np.floating,
    b_keep: np.floating,
    b_drop: np.floating,
) -> None:
    """``select_pair_serial`` into ``n`` contiguous values at ``w_addr`` / ``b_addr``, with the
    int64 key ``seed`` (see ``scale_at_address``)."""
    w = carray(pointer(w_addr, w_keep), n)
    b = carray(pointer(b_addr, w_keep), n)
    key = np.uint64(seed)
    select_pair_serial(w, b, key & _M, key >> _S32, np.uint64(thresh), w_keep, w_drop, b_keep,
                       b_drop)


@njit(parallel=True, **_OPTS)
def keep_mask_parallel(
    out: np.ndarray, step: int, key0: np.uint64, key1: np.uint64, thresh: np.uint64
) -> None:
    """``keep_mask_serial`` from counter 0, in parts of ``step`` elements (a multiple of
    ``CHUNK``) run in parallel."""
    n = out.shape[0]
    for part in prange((n + step - 1) // step):
        lo = part * step
        hi = min(n, lo + step)
        keep_mask_serial(out[lo:hi], np.uint64(lo >> 2), key0, key1, thresh)


# ---------------------------------------------------------------- keyed kernels
# The kernels above start on a Philox counter boundary with one key. The ``*_at`` kernels
# start at any element index ``start`` of the stream (a misaligned head of up to three
# elements reads lanes ``start & 3 ..`` of one counter, the rest runs the aligned kernel),
# and the ``*_rows`` kernels give each row of a ``[rows, row_len]`` array its own key
# (``keys0[r]``, ``keys1[r]``; the ``scale_rows*`` kernels take the 64-bit ``keys[r]``):
# element ``j`` of row ``r`` is element ``start + j`` of the
# stream keyed by row ``r``'s key (docs/mask-spec.md, "Keys").


@njit(**_OPTS)
def _scale_at_run(
    x: np.ndarray,
    out: np.ndarray,
    start: np.uint64,
    key0: np.uint64,
    key1: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
    bits: np.ndarray,
) -> None:
    """``scale_at`` with the caller's scratch block ``bits`` (``4 * BLOCK`` uint32)."""
    n = x.shape[0]
    lead = np.int64(start & np.uint64(3))
    h = 0
    if lead:
        _philox_block(start >> np.uint64(2), 1, key0, key1, bits)  # (8 lanes written)
        h = min(4 - lead, n)
        th = np.uint32(thresh)
        for t in range(h):
            out[t] = x[t] * (w_keep if bits[lead + t] >= th else w_drop)
    if n > h:
        ctr = (start + np.uint64(h)) >> np.uint64(2)
        _scale_run(x[h:], out[h:], ctr, key0, key1, thresh, w_keep, w_drop, bits)


@njit(**_OPTS)
def scale_at(
    x: np.ndarray,
    out: np.ndarray,
    start: np.uint64,
    key0: np.uint64,
    key1: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
) -> None:
    """``scale_serial`` for stream elements ``start .. start + n - 1`` (any ``start``)."""
    bits = np.empty(_NB, np.uint32)
    _scale_at_run(x, out, start, key0, key1, thresh, w_keep, w_drop, bits)


@njit(**_OPTS)
def keep_mask_at(
    out: np.ndarray, start: np.uint64, key0: np.uint64, key1: np.uint64, thresh: np.uint64
) -> None:
    """``keep_mask_serial`` for stream elements ``start .. start + n - 1`` (any ``start``)."""
    n = out.shape[0]
    lead = np.int64(start & np.uint64(3))
    h = 0
    if lead:
        bits = np.empty(8, np.uint32)
        _philox_block(start >> np.uint64(2), 1, key0, key1, bits)
        h = min(4 - lead, n)
        th = np.uint32(thresh)
        for t in range(h):
            out[t] = bits[lead + t] >= th
    if n > h:
        keep_mask_serial(out[h:], (start + np.uint64(h)) >> np.uint64(2), key0, key1, thresh)


@njit(**_OPTS)
def bits_at(out: np.ndarray, start: np.uint64, key0: np.uint64, key1: np.uint64) -> None:
    """The raw uint32 draws of stream elements ``start .. start + n - 1`` into ``out``."""
    n = out.shape[0]
    bits = np.empty(_NB, np.uint32)
    first = start >> np.uint64(2)  # the counter of element ``start``
    lead = np.int64(start - (first << np.uint64(2)))  # lanes of that counter before ``start``
    total = lead + n  # lanes from the start of counter ``first``
    for block in range(0, total, _NB):
        m = min(_NB, total - block)
        _philox_block(first + np.uint64(block >> 2), (m + 3) >> 2, key0, key1, bits)
        lo = max(block, lead)  # first lane of this block that belongs to ``out``
        os = out[lo - lead : block + m - lead]
        for t in range(block + m - lo):
            os[t] = bits[lo - block + t]


@njit(**_OPTS)
def scale_rows_serial(
    x: np.ndarray,
    out: np.ndarray,
    row_len: int,
    keys: np.ndarray,
    start: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
) -> None:
    """``scale_at`` on each row of flat ``[rows * row_len]`` arrays, row ``r`` keyed by
    ``keys[r]`` (the 64-bit key, uint64: Philox key ``(lo32, hi32)``); one scratch block
    for all rows. The ``scale_rows*`` kernels all take keys so (no split in Python)."""
    bits = np.empty(_NB, np.uint32)
    for r in range(keys.shape[0]):
        lo = r * row_len
        hi = lo + row_len
        k = keys[r]
        _scale_at_run(x[lo:hi], out[lo:hi], start, k & _M, k >> _S32, thresh, w_keep,
                      w_drop, bits)


@njit(parallel=True, **_OPTS)
def scale_rows_parallel(
    x: np.ndarray,
    out: np.ndarray,
    row_len: int,
    keys: np.ndarray,
    start: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
    rows_per_part: int,
    by_eight: bool,
) -> None:
    """``scale_rows_serial`` in parts of ``rows_per_part`` rows run in parallel (one scratch
    block per part, so short rows cost no allocation each). ``by_eight``: whether rows that
    ``eight_rows_ok`` takes run ``scale_rows_by_eight`` (else ``scale_short_rows``)."""
    rows = keys.shape[0]
    for part in prange((rows + rows_per_part - 1) // rows_per_part):
        r0 = part * rows_per_part
        r1 = min(rows, r0 + rows_per_part)
        lo = r0 * row_len
        hi = r1 * row_len
        if by_eight and eight_rows_ok(row_len, start):
            scale_rows_by_eight(x[lo:hi], out[lo:hi], row_len, keys[r0:r1], start, thresh,
                                w_keep, w_drop)
        elif short_rows_ok(row_len, start):
            scale_short_rows(x[lo:hi], out[lo:hi], row_len, keys[r0:r1], start, thresh,
                             w_keep, w_drop)
        else:
            scale_rows_serial(x[lo:hi], out[lo:hi], row_len, keys[r0:r1], start, thresh,
                              w_keep, w_drop)


@njit(**_OPTS)
def _scale_flat_run(
    x: np.ndarray,
    out: np.ndarray,
    c_lo: int,
    c_hi: int,
    per_row: int,
    keys: np.ndarray,
    first: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
    bits: np.ndarray,
) -> None:
    """Counters ``c_lo .. c_hi - 1`` of the flat counter space of ``[rows, per_row]``
    counters (``c_lo`` a multiple of ``BLOCK``): counter ``g`` is counter
    ``first + g % per_row`` of row ``g // per_row``'s stream. Each block of ``BLOCK``
    counters draws its rows' runs (one ``_philox_block`` per run, the key uniform in it),
    then one vector pass scales the block's elements. ``bits`` holds ``4 * BLOCK + 8``
    entries (a run of odd length draws one counter past itself)."""
    th = np.uint32(thresh)
    inplace = x.ctypes.data == out.ctypes.data
    r = c_lo // per_row
    c = c_lo - r * per_row
    for b0 in range(c_lo, c_hi, BLOCK):
        end = min(b0 + BLOCK, c_hi)
        g = b0
        while g < end:
            m = min(end - g, per_row - c)
            k0 = keys[r] & _M
            k1 = keys[r] >> _S32
            if g == b0:
                _philox_block(first + np.uint64(c), m, k0, k1, bits)
            else:
                _philox_block(first + np.uint64(c), m, k0, k1, bits[4 * (g - b0) :])
            g += m
            c += m
            if c == per_row:
                c = 0
                r += 1
        _scale_pass(x, out, 4 * b0, 4 * (end - b0), bits, th, w_keep, w_drop, inplace)


@njit(**_OPTS)
def scale_rows_flat(
    x: np.ndarray,
    out: np.ndarray,
    row_len: int,
    keys: np.ndarray,
    start: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
) -> None:
    """``scale_rows_serial`` for rows of whole counters (``row_len`` and ``start``
    multiples of 4): the rows are walked as one flat run of blocks, so a row costs no call
    and no slice of its own. Any row length of whole counters; the backend takes it from
    ``SHORT_ROW`` elements on (shorter rows cut every block into many runs) and, without
    AVX-512, from 128 (where it beats per-lane keys)."""
    bits = np.empty(_NB + 8, np.uint32)
    per_row = row_len >> 2
    _scale_flat_run(x, out, 0, keys.shape[0] * per_row, per_row, keys, start >> np.uint64(2),
                    thresh, w_keep, w_drop, bits)


@njit(parallel=True, **_OPTS)
def scale_rows_flat_parallel(
    x: np.ndarray,
    out: np.ndarray,
    row_len: int,
    keys: np.ndarray,
    start: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
    step: int,
) -> None:
    """``scale_rows_flat`` in parts of ``step`` counters (a multiple of ``BLOCK``) run in
    parallel; a part may start and end inside a row."""
    per_row = row_len >> 2
    total = keys.shape[0] * per_row
    first = start >> np.uint64(2)
    for part in prange((total + step - 1) // step):
        bits = np.empty(_NB + 8, np.uint32)
        lo = part * step
        _scale_flat_run(x, out, lo, min(total, lo + step), per_row, keys, first, thresh,
                        w_keep, w_drop, bits)


@njit(inline="always", **_OPTS)
def _rounds(
    c0: np.uint64, c1: np.uint64, c2: np.uint64, c3: np.uint64, k0: np.uint64, k1: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    """The ten Philox4x32 rounds on one counter (uint32 values in uint64)."""
    for _ in range(PHILOX_ROUNDS):
        pb = _B * c2
        pa = _A * c0
        c0 = (pb >> _S32) ^ c1 ^ k0
        c1 = pb & _M
        c2 = (pa >> _S32) ^ c3 ^ k1
        c3 = pa & _M
        k0 = (k0 + _KA) & _M
        k1 = (k1 + _KB) & _M
    return c0, c1, c2, c3


@njit(**_OPTS)
def _philox_lanes(ctrs: np.ndarray, keys: np.ndarray, n: int, bits: np.ndarray) -> None:
    """Draws of ``n`` (counter, key) pairs: pair ``j`` is counter ``ctrs[j]`` under the 64-bit
    key ``keys[j]``, into ``bits[4 * j + lane]``. One vectorised loop over pairs, so many
    short rows cost what one long row does (one key array: each key's halves are split in
    the loop, cheaper than filling and loading two)."""
    zero = np.uint64(0)
    for j in range(n):
        ctr = ctrs[j]
        k = keys[j]
        c0, c1, c2, c3 = _rounds(ctr & _M, ctr >> _S32, zero, zero, k & _M, k >> _S32)
        bits[4 * j] = np.uint32(c0)
        bits[4 * j + 1] = np.uint32(c1)
        bits[4 * j + 2] = np.uint32(c2)
        bits[4 * j + 3] = np.uint32(c3)


@njit(**_OPTS)
def short_rows_ok(row_len: int, start: np.uint64) -> bool:
    """Whether ``scale_short_rows`` serves rows of ``row_len`` from stream index ``start``."""
    return 4 <= row_len < SHORT_ROW and row_len % 4 == 0 and (start & np.uint64(3)) == 0


@njit(**_OPTS)
def scale_short_rows(
    x: np.ndarray,
    out: np.ndarray,
    row_len: int,
    keys: np.ndarray,
    start: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
) -> None:
    """``scale_rows_serial`` for short rows: the (row, counter) pairs of all rows are drawn
    ``BLOCK`` at a time across row boundaries (``_philox_lanes``), so many short rows cost
    what one long row does. The same draws, so the same result, bit for bit. Rows must be
    whole counters: ``start`` and ``row_len`` multiples of 4, ``row_len >= 4``
    (``short_rows_ok``).
    """
    rows = keys.shape[0]
    first = start >> np.uint64(2)
    per_row = row_len >> 2  # counters of one row; pair g covers elements 4g .. 4g + 3
    # (no early return for per_row == 0 here: callers pass row_len >= 4, and the branch
    # alone made LLVM compile the loops below 30% slower)
    span = max(1, BLOCK // per_row)  # whole rows per block: no row straddles two blocks
    ctrs = np.empty(span * per_row, np.uint64)  # the same for every block: filled once
    for rr in range(span):
        for c in range(per_row):
            ctrs[rr * per_row + c] = first + np.uint64(c)
    ks = np.empty(span * per_row, np.uint64)
    bits = np.empty(4 * span * per_row, np.uint32)
    th = np.uint32(thresh)
    inplace = x.ctypes.data == out.ctypes.data
    for r0 in range(0, rows, span):
        nr = min(span, rows - r0)
        for rr in range(nr):  # the block's pairs: row rr, counters first .. first + per_row
            k = keys[r0 + rr]
            kr = ks[rr * per_row : rr * per_row + per_row]
            for c in range(per_row):
                kr[c] = k
        n = nr * per_row
        _philox_lanes(ctrs, ks, n, bits)
        _scale_pass(x, out, r0 * row_len, 4 * n, bits, th, w_keep, w_drop, inplace)


@njit(**_OPTS)
def _philox_eight(ctr0: np.uint64, k0i: np.uint64, k1i: np.uint64, bits: np.ndarray) -> None:
    """Draws of counters ``ctr0 .. ctr0 + 7`` under one key into ``bits[0 : 32]``: the
    trip count is a constant, so LLVM makes it one vector of eight with the key broadcast
    (no per-lane key, as ``_philox_lanes`` carries). Callers pass ``bits`` as a slice:
    an index offset by an argument would keep numba's wraparound and the loop scalar."""
    for u in range(8):
        ctr = ctr0 + np.uint64(u)
        c0, c1, c2, c3 = _rounds(ctr & _M, ctr >> _S32, np.uint64(0), np.uint64(0), k0i, k1i)
        bits[4 * u] = np.uint32(c0)
        bits[4 * u + 1] = np.uint32(c1)
        bits[4 * u + 2] = np.uint32(c2)
        bits[4 * u + 3] = np.uint32(c3)


@njit(**_OPTS)
def eight_rows_ok(row_len: int, start: np.uint64) -> bool:
    """Whether ``scale_rows_by_eight`` serves rows of ``row_len`` from stream index
    ``start``: rows of 128 to 508 elements of whole groups of eight counters (measured with
    512-bit vectors: at 64 elements per row the lanes of ``scale_short_rows`` are as fast,
    at 32 faster; with 256-bit vectors (AVX2) this kernel runs 1.3x slower than the lanes,
    so the backend takes it only where the CPU has AVX-512)."""
    return 128 <= row_len < SHORT_ROW and row_len % 32 == 0 and (start & np.uint64(3)) == 0


@njit(**_OPTS)
def scale_rows_by_eight(
    x: np.ndarray,
    out: np.ndarray,
    row_len: int,
    keys: np.ndarray,
    start: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
) -> None:
    """``scale_short_rows`` for rows of whole groups of eight counters
    (``eight_rows_ok``): each row draws its counters eight at a time with its key
    broadcast (``_philox_eight``), whole rows filling a block, then one vector pass
    scales the block. The same draws, so the same result, bit for bit."""
    rows = keys.shape[0]
    first = start >> np.uint64(2)
    per_row = row_len >> 2
    span = max(1, BLOCK // per_row)  # whole rows per block
    bits = np.empty(4 * span * per_row, np.uint32)
    th = np.uint32(thresh)
    inplace = x.ctypes.data == out.ctypes.data
    for r0 in range(0, rows, span):
        nr = min(span, rows - r0)
        for rr in range(nr):
            k = keys[r0 + rr]
            k0 = k & _M
            k1 = k >> _S32
            base = rr * per_row
            for c in range(0, per_row, 8):
                _philox_eight(first + np.uint64(c), k0, k1, bits[4 * (base + c) :])
        _scale_pass(x, out, r0 * row_len, 4 * nr * per_row, bits, th, w_keep, w_drop, inplace)


@njit(**_OPTS)
def keep_mask_rows(
    out: np.ndarray,
    row_len: int,
    keys0: np.ndarray,
    keys1: np.ndarray,
    start: np.uint64,
    thresh: np.uint64,
) -> None:
    """``keep_mask_at`` on each row of a flat ``[rows * row_len]`` bool array."""
    for r in range(keys0.shape[0]):
        lo = r * row_len
        keep_mask_at(out[lo : lo + row_len], start, keys0[r], keys1[r], thresh)


@njit(**_OPTS)
def bits_rows(
    out: np.ndarray, row_len: int, keys0: np.ndarray, keys1: np.ndarray, start: np.uint64
) -> None:
    """``bits_at`` on each row of a flat ``[rows * row_len]`` uint32 array."""
    for r in range(keys0.shape[0]):
        lo = r * row_len
        bits_at(out[lo : lo + row_len], start, keys0[r], keys1[r])


@njit(**_OPTS)
def scale_groups(
    x: np.ndarray,
    out: np.ndarray,
    mid: int,
    inner: int,
    row_len: int,
    keys0: np.ndarray,
    keys1: np.ndarray,
    start: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
    b_keep: np.floating,
    b_drop: np.floating,
    has_bias: bool,
) -> None:
    """A mask ``[outer, inner]`` broadcast over the middle of ``x`` as ``[outer, mid, inner]``.

    ``x`` and ``out`` are flat (``out`` may be ``x``). This covers the masks of channel
    dropout and drop path (``[N, C, 1, ..., 1]``: ``inner == 1``), LockedDropout
    (``[N, 1, F]``), and a full mask (``mid == 1``) with alpha dropout's bias. The mask has
    ``rows * row_len`` decisions (``rows = len(keys0)``): decision ``j`` of row ``r`` is
    element ``start + j`` of row ``r``'s stream. Each element gets ``x * (w_keep or w_drop)``,
    plus ``(b_keep or b_drop)`` when ``has_bias`` (a separate add: no fused multiply-add, as
    the reference).
    """
    bits = np.empty(row_len, np.uint32)
    th = np.uint32(thresh)
    outer_per_row = row_len // inner
    for r in range(keys0.shape[0]):
        bits_at(bits, start, keys0[r], keys1[r])
        for oo in range(outer_per_row):
            o = r * outer_per_row + oo
            if inner == 1:  # one decision per run of ``mid`` elements: a vector loop over it
                keep = bits[oo] >= th
                w = w_keep if keep else w_drop
                b = b_keep if keep else b_drop
                xs = x[o * mid : (o + 1) * mid]
                os = out[o * mid : (o + 1) * mid]
                if has_bias:
                    for t in range(mid):
                        os[t] = xs[t] * w + b
                else:
                    for t in range(mid):
                        os[t] = xs[t] * w
                continue
            ms = bits[oo * inner : (oo + 1) * inner]
            for t in range(mid):  # a vector loop over ``inner`` decisions
                lo = (o * mid + t) * inner
                xs = x[lo : lo + inner]
                os = out[lo : lo + inner]
                if has_bias:
                    for f in range(inner):
                        keep = ms[f] >= th
                        os[f] = xs[f] * (w_keep if keep else w_drop) + (b_keep if keep else b_drop)
                else:
                    for f in range(inner):
                        os[f] = xs[f] * (w_keep if ms[f] >= th else w_drop)


@njit(**_OPTS)
def scale_groups_at_address(
    x_addr: int,
    out_addr: int,
    n: int,
    mid: int,
    inner: int,
    seed: int,
    start: int,
    thresh: int,
    w_keep: np.floating,
    w_drop: np.floating,
    b_keep: np.floating,
    b_drop: np.floating,
    has_bias: bool,
) -> None:
    """``scale_groups`` with one scalar key ``seed`` (int64 bits) over ``n`` contiguous values
    at ``x_addr`` / ``out_addr`` (see ``scale_at_address``)."""
    x = carray(pointer(x_addr, w_keep), n)
    out = carray(pointer(out_addr, w_keep), n)
    keys0, keys1 = scalar_keys(seed)
    scale_groups(x, out, mid, inner, n // mid, keys0, keys1, np.uint64(start), np.uint64(thresh),
                 w_keep, w_drop, b_keep, b_drop, has_bias)


@njit(**_OPTS)
def drop_block_rows(
    x: np.ndarray,
    out: np.ndarray,
    shape: np.ndarray,
    block: int,
    keys0: np.ndarray,
    keys1: np.ndarray,
    start: np.uint64,
    thresh: np.uint64,
) -> None:
    """DropBlock on flat ``(N, C, H, W)`` float arrays, as ``dropkit.layers.drop_block``.

    ``shape`` is ``[N, C, H, W]``. With ``R = len(keys0)`` keys (``R == 1`` or ``R == N``)
    the draws are ``R`` rows of the stream, ``N*C*H*W / R`` each: a corner ``(n, c, i, j)``
    with ``i <= H - b`` and ``j <= W - b`` seeds a ``b x b`` block iff its draw is *below*
    ``thresh``. Sample ``n``'s kept units are scaled by ``C*H*W / kept(n)`` (float64,
    rounded once to the array's dtype; ``inf`` when it keeps none, then every unit is
    dropped), dropped units multiplied by 0. ``out`` may be ``x``.
    """
    n_, c_, h_, w_ = shape[0], shape[1], shape[2], shape[3]
    per_sample = c_ * h_ * w_
    row_len = (n_ * per_sample) // keys0.shape[0]
    bits = np.empty(row_len, np.uint32)
    dropped = np.zeros(n_ * per_sample, np.uint8)
    th = np.uint32(thresh)
    b = block
    for r in range(keys0.shape[0]):
        bits_at(bits, start, keys0[r], keys1[r])
        base = r * row_len
        for t in range(row_len):
            if bits[t] < th:
                e = base + t
                j = e % w_
                i = (e // w_) % h_
                if i <= h_ - b and j <= w_ - b:
                    plane = e - i * w_ - j
                    for di in range(b):
                        row = plane + (i + di) * w_ + j
                        for dj in range(b):
                            dropped[row + dj] = 1
    zero = x.dtype.type(0.0)
    for s in range(n_):
        lo = s * per_sample
        kept = 0
        for t in range(per_sample):
            kept += 1 - dropped[lo + t]
        scale = x.dtype.type(np.float64(per_sample) / np.float64(kept))
        for t in range(per_sample):
            out[lo + t] = x[lo + t] * (zero if dropped[lo + t] else scale)


@njit(**_OPTS)
def drop_block_at_address(
    x_addr: int,
    out_addr: int,
    n: int,
    c: int,
    h: int,
    w: int,
    block: int,
    seed: int,
    start: int,
    thresh: int,
    like: np.floating,
) -> None:
    """``drop_block_rows`` with one scalar key ``seed`` (int64 bits) on contiguous
    ``(n, c, h, w)`` values of ``like``'s dtype at ``x_addr`` / ``out_addr`` (see
    ``scale_at_address``)."""
    size = n * c * h * w
    x = carray(pointer(x_addr, like), size)
    out = carray(pointer(out_addr, like), size)
    shape = np.empty(4, np.int64)
    shape[0], shape[1], shape[2], shape[3] = n, c, h, w
    keys0, keys1 = scalar_keys(seed)
    drop_block_rows(x, out, shape, block, keys0, keys1, np.uint64(start), np.uint64(thresh))


@njit(**_OPTS)
def select_at(
    out: np.ndarray,
    indices: np.ndarray,
    start: np.int64,
    key0: np.uint64,
    key1: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
) -> None:
    """``out[m] = w_keep if keep(start + indices[m]) else w_drop``: draws at chosen indices.

    One Philox counter per entry (embedding dropout's decision for each looked-up token);
    ``indices`` is a flat int64 array of non-negative stream indices.
    """
    bits = np.empty(8, np.uint32)  # one counter (two chains: 8 lanes written)
    th = np.uint32(thresh)
    for m in range(indices.shape[0]):
        i = np.uint64(indices[m] + start)
        _philox_block(i >> np.uint64(2), 1, key0, key1, bits)
        out[m] = w_keep if bits[np.int64(i & np.uint64(3))] >= th else w_drop


@njit(**_OPTS)
def select_at_address(
    out_addr: int,
    indices_addr: int,
    n: int,
    start: int,
    seed: int,
    thresh: int,
    w_keep: np.floating,
    w_drop: np.floating,
) -> None:
    """``select_at`` on ``n`` contiguous values at ``out_addr`` (``w_keep``'s dtype) and ``n``
    int64 indices at ``indices_addr``, with the int64 key ``seed`` (see ``scale_at_address``)."""
    out = carray(pointer(out_addr, w_keep), n)
    indices = carray(pointer(indices_addr, _I64_LIKE), n)
    key = np.uint64(seed)
    select_at(out, indices, np.int64(start), key & _M, key >> _S32, np.uint64(thresh), w_keep,
              w_drop)


@njit(**_OPTS)
def derive_keys(
    out: np.ndarray,
    c0: np.ndarray,
    c1: np.ndarray,
    key0: np.uint64,
    key1: np.uint64,
    call: np.uint64,
    domain: np.uint64,
) -> None:
    """Derived keys: ``out[i] = w0 | w1 << 32`` of ``Philox(counter=(c0[i], c1[i], call,
    domain), key=(key0, key1))`` (uint64 out; uint32 values in the uint64 ``c0``/``c1``)."""
    for i in range(out.shape[0]):
        w0, w1, _, _ = _rounds(c0[i] & _M, c1[i] & _M, call & _M, domain & _M, key0 & _M,
                               key1 & _M)
        out[i] = w0 | (w1 << _S32)


@njit(**_OPTS)
def derive_id_keys(
    out: np.ndarray,
    ids: np.ndarray,
    key0: np.uint64,
    key1: np.uint64,
    call: np.uint64,
    domain: np.uint64,
) -> None:
    """``derive_keys`` with the counter words ``(lo32(id), hi32(id))`` of uint64 ``ids``
    split here (so a sample-keyed call splits nothing in Python)."""
    for i in range(out.shape[0]):
        v = ids[i]
        w0, w1, _, _ = _rounds(v & _M, v >> _S32, call & _M, domain & _M, key0 & _M,
                               key1 & _M)
        out[i] = w0 | (w1 << _S32)


@njit(parallel=True, **_OPTS)
def derive_id_keys_parallel(
    out: np.ndarray,
    ids: np.ndarray,
    key0: np.uint64,
    key1: np.uint64,
    call: np.uint64,
    domain: np.uint64,
    step: int,
) -> None:
    """``derive_id_keys`` in parts of ``step`` ids run in parallel (measured: 20 -> 15 us
    for 16384 ids on two cores, 77 -> 43 us for 65536; slower below about 8192)."""
    n = out.shape[0]
    for part in prange((n + step - 1) // step):
        lo = part * step
        hi = min(n, lo + step)
        derive_id_keys(out[lo:hi], ids[lo:hi], key0, key1, call, domain)
