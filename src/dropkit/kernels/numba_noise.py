"""Noise kernels (numba): the noise spec of :mod:`dropkit.rng`, operation for operation.

``log_unit``, ``sqrt_pos`` and ``sincos_2pi`` of ``dropkit.rng`` are repeated here with
the same IEEE-exact pieces in the same order (frexp as exponent bits, compares, selects,
+, -, *, /; no fused multiply-add: ``fastmath`` stays off), so the noise is bit-identical
to the reference. Each runs as a pass over a block of scratch arrays, branch-free, so LLVM
vectorises it; the block's uniforms come from ``bits_at``.

The row kernels write, per element of each row: a standard normal (Box-Muller on the pair
of stream indices ``2j, 2j + 1``), a logistic variate ``ln(1 - u) - ln u``, Gaussian
dropout's product ``x * (1 + std z)``, or concrete dropout's multiplier and its derivative
(``relaxed_keep``, with ``exp_clamped``).

Paper: Box & Muller 1958, "A note on the generation of random normal deviates".
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit

from dropkit.kernels.numba_dropout import bits_at, pointer, scalar_keys
from dropkit.rng import (
    COS_COEFFS,
    EXP_COEFFS,
    EXP_MAX,
    EXP_MIN,
    INV_LN2,
    LN2,
    LN2_HI,
    LN2_LO,
    LOG_COEFFS,
    PI_4,
    SIN_COEFFS,
    SQRT_HALF,
    SQRT_STEPS,
)

__all__ = [
    "concrete_at_address",
    "concrete_rows",
    "gaussian_at_address",
    "gaussian_rows",
    "logistic_rows",
    "normal_rows",
]

_OPTS = {"cache": True, "fastmath": False, "nogil": True, "error_model": "numpy"}
_LOG = np.array(LOG_COEFFS, dtype=np.float64)
_SIN = np.array(SIN_COEFFS, dtype=np.float64)
_COS = np.array(COS_COEFFS, dtype=np.float64)
_EXP = np.array(EXP_COEFFS, dtype=np.float64)
_INV_TWO32 = 1.0 / 4294967296.0  # a power of two: multiplying by it is exact
_BLOCK = 1024  # values per pass
_MANT = np.int64(0x000FFFFFFFFFFFFF)
_HALF_EXP = np.int64(1022 << 52)  # the exponent field of [0.5, 1)
_S52 = np.int64(52)
_EXP_MASK = np.int64(0x7FF)


@njit(**_OPTS)
def _frexp_block(v: np.ndarray, m: np.ndarray, e: np.ndarray, n: int) -> None:
    """``v = m 2^e`` with ``m`` in [0.5, 1) for positive normal ``v`` (exact, as frexp)."""
    vb = v.view(np.int64)
    mb = m.view(np.int64)
    for i in range(n):
        b = vb[i]
        e[i] = ((b >> _S52) & _EXP_MASK) - 1022
        mb[i] = (b & _MANT) | _HALF_EXP


@njit(**_OPTS)
def _log_block(v: np.ndarray, out: np.ndarray, m: np.ndarray, e: np.ndarray, n: int) -> None:
    """``out = log_unit(v)`` over ``n`` values (``m``, ``e``: scratch)."""
    _frexp_block(v, m, e, n)
    for i in range(n):
        mi = m[i]
        small = mi < SQRT_HALF
        mi = mi * 2.0 if small else mi
        ef = float(e[i] - (1 if small else 0))
        s = (mi - 1.0) / (mi + 1.0)
        z = s * s
        p = _LOG[0]
        for k in range(1, _LOG.shape[0]):
            p = p * z + _LOG[k]
        out[i] = ef * LN2 + (2.0 * s) * p


@njit(**_OPTS)
def _sqrt_block(v: np.ndarray, out: np.ndarray, m: np.ndarray, e: np.ndarray, n: int) -> None:
    """``out = sqrt_pos(v)`` over ``n`` values (``m``, ``e``: scratch; ``out`` may be ``v``)."""
    _frexp_block(v, m, e, n)
    ob = out.view(np.int64)
    for i in range(n):
        odd = (e[i] & 1) == 1
        mi = m[i] * 2.0 if odd else m[i]
        half = (e[i] - (1 if odd else 0)) // 2
        s = (mi + 1.0) * 0.5
        for _ in range(SQRT_STEPS):
            s = (s + mi / s) * 0.5
        m[i] = s
        e[i] = (half + 1023) << _S52  # the bits of 2^half
    for i in range(n):
        ob[i] = e[i]
    for i in range(n):
        out[i] = m[i] * out[i]


@njit(**_OPTS)
def _exp_block(v: np.ndarray, out: np.ndarray, m: np.ndarray, e: np.ndarray, n: int) -> None:
    """``out = exp_clamped(v)`` over ``n`` values (``m``, ``e``: scratch; ``out`` may be ``v``)."""
    ob = out.view(np.int64)
    for i in range(n):
        y = v[i]
        y = EXP_MIN if y < EXP_MIN else y  # a NaN stays NaN, as in torch.clamp
        y = EXP_MAX if y > EXP_MAX else y
        k = np.floor(y * INV_LN2 + 0.5)
        r = (y - k * LN2_HI) - k * LN2_LO
        p = _EXP[0]
        for c in range(1, _EXP.shape[0]):
            p = p * r + _EXP[c]
        m[i] = p
        e[i] = (np.int64(k) + 1023) << _S52  # the bits of 2^k
    for i in range(n):
        ob[i] = e[i]
    for i in range(n):
        out[i] = m[i] * out[i]


@njit(**_OPTS)
def _sincos_block(b: np.ndarray, sin_out: np.ndarray, cos_out: np.ndarray, n: int) -> None:
    """``(sin_out, cos_out) = sincos_2pi(b)`` over ``n`` values."""
    for i in range(n):
        t = b[i] * 8.0
        q = np.floor(t)
        f = t - q
        octant = np.int64(q)
        x = ((1.0 - f) if (octant & 1) == 1 else f) * PI_4
        x2 = x * x
        ps = _SIN[0]
        for k in range(1, _SIN.shape[0]):
            ps = ps * x2 + _SIN[k]
        pc = _COS[0]
        for k in range(1, _COS.shape[0]):
            pc = pc * x2 + _COS[k]
        sin_x = x * ps
        swap = octant == 1 or octant == 2 or octant == 5 or octant == 6
        sin_a = pc if swap else sin_x
        cos_a = sin_x if swap else pc
        sin_out[i] = -sin_a if octant >= 4 else sin_a
        cos_out[i] = -cos_a if (octant >= 2 and octant <= 5) else cos_a


@njit(**_OPTS)
def _uniform_block(bits: np.ndarray, u: np.ndarray, n: int, stride: int, first: int) -> None:
    """``u[i] = (bits[first + stride i] + 0.5) / 2^32`` (exact)."""
    for i in range(n):
        u[i] = (float(bits[first + stride * i]) + 0.5) * _INV_TWO32


@njit(**_OPTS)
def normal_rows(
    out: np.ndarray, row_len: int, keys0: np.ndarray, keys1: np.ndarray, start: np.uint64
) -> None:
    """Standard normals ``[rows * row_len]`` (float64): element ``j`` of row ``r`` is the
    normal of stream index ``start + j`` of row ``r``'s key, paired as ``(2i, 2i + 1)``."""
    lead = np.int64(start & np.uint64(1))
    first = start - np.uint64(lead)  # pairs start on even stream indices
    count = lead + row_len
    count += count & 1
    pairs = count // 2
    bits = np.empty(2 * _BLOCK, np.uint32)
    a = np.empty(_BLOCK, np.float64)
    b = np.empty(_BLOCK, np.float64)
    m = np.empty(_BLOCK, np.float64)
    e = np.empty(_BLOCK, np.int64)
    sin_b = np.empty(_BLOCK, np.float64)
    cos_b = np.empty(_BLOCK, np.float64)
    for r in range(keys0.shape[0]):
        base = r * row_len - lead  # out index of stream element ``first`` of this row
        for p0 in range(0, pairs, _BLOCK):
            n = min(_BLOCK, pairs - p0)
            bits_at(bits[: 2 * n], first + np.uint64(2 * p0), keys0[r], keys1[r])
            _uniform_block(bits, a, n, 2, 0)
            _uniform_block(bits, b, n, 2, 1)
            _log_block(a, a, m, e, n)
            for i in range(n):
                a[i] = a[i] * -2.0
            _sqrt_block(a, a, m, e, n)  # the radius sqrt(-2 ln a)
            _sincos_block(b, sin_b, cos_b, n)
            for i in range(n):
                k = 2 * (p0 + i)  # stream element of the pair's first value, from ``first``
                if lead <= k < lead + row_len:
                    out[base + k] = a[i] * cos_b[i]
                if lead <= k + 1 < lead + row_len:
                    out[base + k + 1] = a[i] * sin_b[i]


@njit(**_OPTS)
def _logistic_block(
    bits: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    m: np.ndarray,
    e: np.ndarray,
    n: int,
    start: np.uint64,
    key0: np.uint64,
    key1: np.uint64,
) -> None:
    """``u[i] = ln(1 - u_i) - ln u_i`` for stream indices ``start .. start + n - 1`` of the
    key (``bits``, ``v``, ``m``, ``e``: scratch; ``1 - u`` is exact)."""
    bits_at(bits[:n], start, key0, key1)
    _uniform_block(bits, u, n, 1, 0)
    for i in range(n):
        v[i] = 1.0 - u[i]
    _log_block(v, v, m, e, n)
    _log_block(u, u, m, e, n)
    for i in range(n):
        u[i] = v[i] - u[i]


@njit(**_OPTS)
def logistic_rows(
    out: np.ndarray, row_len: int, keys0: np.ndarray, keys1: np.ndarray, start: np.uint64
) -> None:
    """Logistic variates ``ln(1 - u) - ln u`` ``[rows * row_len]`` (float64), ``u`` the
    uniform of stream index ``start + j`` of row ``r``'s key."""
    bits = np.empty(_BLOCK, np.uint32)
    u = np.empty(_BLOCK, np.float64)
    v = np.empty(_BLOCK, np.float64)
    m = np.empty(_BLOCK, np.float64)
    e = np.empty(_BLOCK, np.int64)
    for r in range(keys0.shape[0]):
        for j0 in range(0, row_len, _BLOCK):
            n = min(_BLOCK, row_len - j0)
            _logistic_block(bits, u, v, m, e, n, start + np.uint64(j0), keys0[r], keys1[r])
            lo = r * row_len + j0
            for i in range(n):
                out[lo + i] = u[i]


@njit(**_OPTS)
def gaussian_rows(
    x: np.ndarray,
    out: np.ndarray,
    row_len: int,
    keys0: np.ndarray,
    keys1: np.ndarray,
    start: np.uint64,
    std: float,
) -> None:
    """Gaussian dropout: ``out = x * w``, ``w = (z * std + 1)`` rounded to ``x``'s dtype, ``z``
    the normals of ``normal_rows``. ``x`` and ``out`` flat float32/float64 (may alias)."""
    z = np.empty(x.shape[0], np.float64)
    normal_rows(z, row_len, keys0, keys1, start)
    for i in range(x.shape[0]):
        w = x.dtype.type(z[i] * std + 1.0)
        out[i] = x[i] * w


@njit(**_OPTS)
def gaussian_at_address(
    x_addr: int, out_addr: int, n: int, seed: int, start: int, std: float, like: np.floating
) -> None:
    """``gaussian_rows`` with one scalar key ``seed`` (int64 bits) over ``n`` contiguous
    values of ``like``'s dtype at ``x_addr`` / ``out_addr`` (see
    ``numba_dropout.scale_at_address``)."""
    x = carray(pointer(x_addr, like), n)
    out = carray(pointer(out_addr, like), n)
    keys0, keys1 = scalar_keys(seed)
    gaussian_rows(x, out, n, keys0, keys1, np.uint64(start), std)


@njit(**_OPTS)
def concrete_at_address(
    w_addr: int,
    dw_addr: int,
    n: int,
    seed: int,
    start: int,
    logit: float,
    temperature: float,
    grad: bool,
    like: np.floating,
) -> None:
    """``concrete_rows`` with one scalar key ``seed`` (int64 bits) into ``n`` contiguous
    values of ``like``'s dtype at ``w_addr`` (and at ``dw_addr`` if ``grad``)."""
    w = carray(pointer(w_addr, like), n)
    dw = carray(pointer(dw_addr, like), n if grad else 0)
    keys0, keys1 = scalar_keys(seed)
    concrete_rows(w, dw, n, keys0, keys1, np.uint64(start), logit, temperature, grad)


@njit(**_OPTS)
def concrete_rows(
    w_out: np.ndarray,
    dw_out: np.ndarray,
    row_len: int,
    keys0: np.ndarray,
    keys1: np.ndarray,
    start: np.uint64,
    logit: float,
    temperature: float,
    grad: bool,
) -> None:
    """Concrete dropout's multiplier ``w`` (and, if ``grad``, ``dw / d logit``) per element,
    as ``dropkit.rng.relaxed_keep`` of the logistic noise of ``logistic_rows``, rounded to
    the outputs' dtype (float32 or float64; ``dw_out`` unused without ``grad``)."""
    bits = np.empty(_BLOCK, np.uint32)
    u = np.empty(_BLOCK, np.float64)
    v = np.empty(_BLOCK, np.float64)
    m = np.empty(_BLOCK, np.float64)
    e = np.empty(_BLOCK, np.int64)
    v[0] = logit
    _exp_block(v, v, m, e, 1)
    q = 1.0 / (1.0 + v[0])  # 1 - p
    for r in range(keys0.shape[0]):
        for j0 in range(0, row_len, _BLOCK):
            n = min(_BLOCK, row_len - j0)
            _logistic_block(bits, u, v, m, e, n, start + np.uint64(j0), keys0[r], keys1[r])
            for i in range(n):
                u[i] = -((logit + u[i]) / temperature)
            _exp_block(u, u, m, e, n)  # e = exp(-z)
            lo = r * row_len + j0
            for i in range(n):
                w = (u[i] / (1.0 + u[i])) / q
                w_out[lo + i] = w
                if grad:
                    d = 1.0 / (1.0 + u[i])
                    dw_out[lo + i] = w * ((1.0 - q) - d / temperature)
