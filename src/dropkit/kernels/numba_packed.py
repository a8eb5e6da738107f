"""Packed-mask kernels (numba): dropout that keeps one bit per element for backward.

``scale_pack_*`` is ``scale_*`` of :mod:`dropkit.kernels.numba_dropout` that also writes the
keep decisions, eight to a byte (bit ``i & 7`` of byte ``i >> 3`` is ``keep(i)``, as
``numpy.packbits(..., bitorder="little")``); ``unpack_scale_*`` is backward's
``out[i] = g[i] * (w_keep if bit i else w_drop)``: a memory-bound pass with no Philox.
Flat float32/float64 arrays; parts of the parallel kernels start on multiples of ``CHUNK``
elements (whole bytes).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from dropkit.kernels.numba_dropout import _NB, _philox_block

__all__ = ["scale_pack_parallel", "scale_pack_serial", "unpack_scale_parallel",
           "unpack_scale_serial"]

_OPTS = {"cache": True, "fastmath": False, "nogil": True, "error_model": "numpy"}


# Eight 0/1 bytes (a uint64, byte k = element k) to one byte (bit k): the multiply moves
# byte k's bit to bit 56 + k with no two partial products on one bit (so no carries).
_GATHER = np.uint64(0x0102040810204080)
_S56 = np.uint64(56)
# One byte (bit k) to eight 0/1 bytes: a table of the 256 patterns.
_SPREAD = np.array(
    [sum(((v >> k) & 1) << (8 * k) for k in range(8)) for v in range(256)], dtype=np.uint64
)


@njit(**_OPTS)
def scale_pack_serial(
    x: np.ndarray,
    out: np.ndarray,
    packed: np.ndarray,
    ctr_base: np.uint64,
    key0: np.uint64,
    key1: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
) -> None:
    """``out[i] = x[i] * (w_keep if keep(i) else w_drop)`` and ``keep`` packed into ``packed``
    (``ceil(n / 8)`` uint8). Element ``i`` uses counter ``ctr_base + (i >> 2)``; ``out`` may
    be ``x``."""
    bits = np.empty(_NB, np.uint32)
    keep = np.zeros(_NB, np.uint8)  # 0/1 per element of the block; 8 of them per uint64
    keep64 = keep.view(np.uint64)
    th = np.uint32(thresh)
    for start in range(0, x.shape[0], _NB):
        n = min(_NB, x.shape[0] - start)
        _philox_block(ctr_base + np.uint64(start >> 2), (n + 3) >> 2, key0, key1, bits)
        xs = x[start : start + n]
        os = out[start : start + n]
        for t in range(n):
            os[t] = xs[t] * (w_keep if bits[t] >= th else w_drop)
        for t in range(n):
            keep[t] = np.uint8(bits[t] >= th)
        for t in range(n, (n + 7) & ~7):
            keep[t] = np.uint8(0)  # a partial last byte: its high bits are 0
        ps = packed[start >> 3 : (start + n + 7) >> 3]
        for b in range(ps.shape[0]):
            ps[b] = np.uint8((keep64[b] * _GATHER) >> _S56)


@njit(parallel=True, **_OPTS)
def scale_pack_parallel(
    x: np.ndarray,
    out: np.ndarray,
    packed: np.ndarray,
    step: int,
    key0: np.uint64,
    key1: np.uint64,
    thresh: np.uint64,
    w_keep: np.floating,
    w_drop: np.floating,
) -> None:
    """``scale_pack_serial`` from counter 0 in parts of ``step`` elements (a multiple of 8
    counters' worth: the caller passes a multiple of ``CHUNK``), run in parallel."""
    n = x.shape[0]
    for part in prange((n + step - 1) // step):
        lo = part * step
        hi = min(n, lo + step)
        scale_pack_serial(x[lo:hi], out[lo:hi], packed[lo >> 3 : (hi + 7) >> 3],
                          np.uint64(lo >> 2), key0, key1, thresh, w_keep, w_drop)


@njit(**_OPTS)
def unpack_scale_serial(
    g: np.ndarray, out: np.ndarray, packed: np.ndarray, w_keep: np.floating, w_drop: np.floating
) -> None:
    """``out[i] = g[i] * (w_keep if bit i of packed else w_drop)`` (``out`` may be ``g``)."""
    keep = np.empty(_NB, np.uint8)
    keep64 = keep.view(np.uint64)
    for start in range(0, g.shape[0], _NB):
        n = min(_NB, g.shape[0] - start)
        ps = packed[start >> 3 : (start + n + 7) >> 3]
        for b in range(ps.shape[0]):
            keep64[b] = _SPREAD[ps[b]]
        gs = g[start : start + n]
        os = out[start : start + n]
        for t in range(n):
            os[t] = gs[t] * (w_keep if keep[t] != 0 else w_drop)


@njit(parallel=True, **_OPTS)
def unpack_scale_parallel(
    g: np.ndarray,
    out: np.ndarray,
    packed: np.ndarray,
    step: int,
    w_keep: np.floating,
    w_drop: np.floating,
) -> None:
    """``unpack_scale_serial`` in parts of ``step`` elements (a multiple of 8), in parallel."""
    n = g.shape[0]
    for part in prange((n + step - 1) // step):
        lo = part * step
        hi = min(n, lo + step)
        unpack_scale_serial(g[lo:hi], out[lo:hi], packed[lo >> 3 : (hi + 7) >> 3], w_keep,
                            w_drop)
