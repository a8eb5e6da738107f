"""The mask spec: where every dropkit keep decision comes from (see docs/mask-spec.md).

The keep decision for element ``i`` of a call is a pure function of ``(seed, i, p)``:

    r        = Philox4x32-10(counter=(lo32(i >> 2), hi32(i >> 2), 0, 0),
                              key=(lo32(seed), hi32(seed)))[i & 3]
    keep(i)  = r >= threshold(p)
    threshold(p) = min(round(p * 2**32), 2**32 - 1)      for 0 <= p < 1

This is exactly what Triton's ``tl.randint4x(seed, i >> 2)`` returns in lane ``i & 3``, so
a GPU kernel reproduces it bit for bit. This module holds the one readable reference
implementation (plain torch integer ops, every intermediate < 2**63, so nothing relies on
integer overflow). It is the oracle that every faster backend must match.

A call may also carry **per-row keys** (one 64-bit key per row of dim 0 of the masked
shape) and an **offset** added to every element index: see :func:`row_bits` and the "Keys"
section of docs/mask-spec.md.

Papers: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC 2011).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "COS_COEFFS",
    "EXP_COEFFS",
    "EXP_MAX",
    "EXP_MIN",
    "INV_LN2",
    "LN2",
    "LN2_HI",
    "LN2_LO",
    "LOG_COEFFS",
    "MASK32",
    "PHILOX_KEY_A",
    "PHILOX_KEY_B",
    "PHILOX_ROUNDS",
    "PHILOX_ROUND_A",
    "PHILOX_ROUND_B",
    "PI_4",
    "SIN_COEFFS",
    "SQRT_HALF",
    "bits_at",
    "derive_keys",
    "exp_clamped",
    "horner",
    "keep_bits",
    "log_unit",
    "philox4x32",
    "random_bits",
    "relaxed_keep",
    "row_bits",
    "seed_key",
    "sincos_2pi",
    "sqrt_pos",
    "threshold",
]

PHILOX_ROUND_A = 0xD2511F53
PHILOX_ROUND_B = 0xCD9E8D57
PHILOX_KEY_A = 0x9E3779B9
PHILOX_KEY_B = 0xBB67AE85
PHILOX_ROUNDS = 10
MASK32 = 0xFFFFFFFF
_TWO32 = 4294967296.0


def threshold(p: float) -> int:
    """The integer drop threshold for probability ``p``: drop iff the uint32 draw is below it.

    ``threshold(p) = min(round(p * 2**32), 2**32 - 1)``. The effective drop probability is
    ``threshold(p) / 2**32``, within ``2**-33`` of ``p``. ``p == 1`` never reaches a kernel
    (every dropkit function returns ``x * 0`` first), hence the clamp.

    Example:
        >>> threshold(0.5)
        2147483648
        >>> threshold(0.0)
        0
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"threshold(p) needs 0 <= p < 1, but got {p}")
    return min(math.floor(p * _TWO32 + 0.5), MASK32)


def seed_key(seed: int) -> tuple[int, int]:
    """Split a 64-bit seed into the Philox key ``(lo32(seed), hi32(seed))``.

    Negative seeds are read as their two's-complement 64-bit pattern, so a seed stored in an
    int64 tensor gives the same key as the unsigned integer it stands for.
    """
    seed &= (1 << 64) - 1
    return seed & MASK32, (seed >> 32) & MASK32


def _mul_hi_lo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of ``a * b`` for a uint32 constant ``a`` and uint32 values ``b``.

    Done in 16-bit halves so that no intermediate reaches 2**63 (no int64 overflow).
    """
    a_hi, a_lo = a >> 16, a & 0xFFFF
    big = b * a_hi  # < 2**48
    small = b * a_lo  # < 2**48
    hi = (big + (small >> 16)) >> 16
    lo = (((big & 0xFFFF) << 16) + small) & MASK32
    return hi, lo


def philox4x32(
    c0: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor, k0: int, k1: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox4x32-10 on int64 tensors holding uint32 values; returns the four output words.

    Same round structure and constants as Random123 and ``triton.language.random.philox_impl``.
    """
    for _ in range(PHILOX_ROUNDS):
        hi_b, lo_b = _mul_hi_lo(PHILOX_ROUND_B, c2)
        hi_a, lo_a = _mul_hi_lo(PHILOX_ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0 = (k0 + PHILOX_KEY_A) & MASK32
        k1 = (k1 + PHILOX_KEY_B) & MASK32
    return c0, c1, c2, c3


def random_bits(
    numel: int, seed: int, device: torch.device | str | None = None, start: int = 0
) -> torch.Tensor:
    """The uint32 draws (as int64) for elements ``start .. start + numel - 1`` of a call.

    Shape: ``[numel]``. Element ``i`` takes lane ``i & 3`` of ``Philox(counter = i >> 2)``.
    """
    if numel == 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    k0, k1 = seed_key(seed)
    first, last = start >> 2, (start + numel - 1) >> 2
    counter = torch.arange(first, last + 1, dtype=torch.int64, device=device)  # [G]
    zero = torch.zeros_like(counter)
    lanes = philox4x32(counter & MASK32, counter >> 32, zero, zero, k0, k1)
    bits = torch.stack(lanes, dim=1).reshape(-1)  # [4G], element order
    offset = start - (first << 2)
    return bits[offset : offset + numel]


def keep_bits(
    numel: int, seed: int, thresh: int, device: torch.device | str | None = None, start: int = 0
) -> torch.Tensor:
    """The reference keep decisions for ``thresh = threshold(p)``: bool ``[numel]``, True = kept."""
    return random_bits(numel, seed, device, start) >= thresh


def row_bits(
    keys: torch.Tensor, row_len: int, start: int = 0, device: torch.device | str | None = None
) -> torch.Tensor:
    """The uint32 draws (as int64) of ``[rows, row_len]`` elements, row ``r`` keyed by ``keys[r]``.

    Element ``j`` of row ``r`` is element ``start + j`` of the stream keyed by ``keys[r]``
    (a 64-bit key stored as two's complement in an int64 tensor ``[rows]``): exactly
    ``random_bits(row_len, keys[r], start=start)``, for all rows at once.

    Shape: ``keys`` ``[R]``; output ``[R, row_len]``.

    Example:
        >>> import torch
        >>> k = torch.tensor([5, -1])
        >>> b = row_bits(k, 6, start=3)
        >>> torch.equal(b[1], random_bits(6, 2**64 - 1, start=3))
        True
    """
    keys = keys.to(device=device, dtype=torch.int64).reshape(-1, 1)  # [R, 1]
    rows = keys.shape[0]
    if rows == 0 or row_len == 0:
        return torch.empty(rows, row_len, dtype=torch.int64, device=keys.device)
    k0, k1 = keys & MASK32, (keys >> 32) & MASK32
    first, last = start >> 2, (start + row_len - 1) >> 2
    counter = torch.arange(first, last + 1, dtype=torch.int64, device=keys.device)  # [G]
    counter = counter.expand(rows, -1)  # [R, G]
    zero = torch.zeros_like(counter)
    lanes = philox4x32(counter & MASK32, counter >> 32, zero, zero, k0, k1)  # type: ignore[arg-type]
    bits = torch.stack(lanes, dim=2).reshape(rows, -1)  # [R, 4G], element order
    offset = start - (first << 2)
    return bits[:, offset : offset + row_len]


def bits_at(indices: torch.Tensor, seed: int) -> torch.Tensor:
    """The uint32 draws (as int64) of the stream elements ``indices`` (any shape, int64).

    Element ``i`` is lane ``i & 3`` of ``Philox(counter = i >> 2)``: ``random_bits`` read at
    chosen indices, without drawing the ones in between (embedding dropout reads one draw
    per looked-up token, not one per row of the table).

    Example:
        >>> import torch
        >>> idx = torch.tensor([[7, 0], [7, 13]])
        >>> torch.equal(bits_at(idx, 5), random_bits(14, 5)[idx])
        True
    """
    k0, k1 = seed_key(seed)
    i = indices.to(torch.int64)
    counter = i >> 2
    zero = torch.zeros_like(counter)
    lanes = philox4x32(counter & MASK32, counter >> 32, zero, zero, k0, k1)
    words = torch.stack(lanes, dim=-1)  # [*indices.shape, 4]
    return words.gather(-1, (i & 3).unsqueeze(-1)).squeeze(-1)



# ---------------------------------------------------------------- the noise spec
# Gaussian and concrete dropout turn the draws into noise with log, sin and cos. Libraries
# round those differently (torch's vectorised SLEEF, glibc, numba's LLVM), so the spec
# defines them with IEEE-exact pieces only: frexp, ldexp, floor, comparisons, +, -, * and /,
# each correctly rounded in float64, in a fixed order. Not even sqrt: torch's CPU float64
# sqrt (through MKL's vector library) is not correctly rounded, so sqrt is a fixed Newton
# iteration too. Every backend (torch ops here, the numba
# kernels, one day Triton) evaluates the same sequence and gets the same bits. Accuracy:
# within a few ulp of the true functions (tests/test_noise_spec.py).
LN2 = 0.6931471805599453  # ln 2, rounded to float64
SQRT_HALF = 0.7071067811865476  # sqrt(1/2), rounded
PI_4 = 0.7853981633974483  # pi / 4, rounded
# log(m) = 2 s (1 + s^2/3 + s^4/5 + ...), s = (m-1)/(m+1): Horner over s^2, highest first.
LOG_COEFFS = tuple(1.0 / (2 * k + 1) for k in range(9, -1, -1))  # 1/19 .. 1/1
# sin x = x (1 - x^2/3! + ...), cos x = 1 - x^2/2! + ..., |x| <= pi/4: Horner over x^2.
SIN_COEFFS = tuple((-1) ** k / math.factorial(2 * k + 1) for k in range(8, -1, -1))
COS_COEFFS = tuple((-1) ** k / math.factorial(2 * k) for k in range(9, -1, -1))


def horner(coeffs: tuple[float, ...], z: torch.Tensor) -> torch.Tensor:
    """``((c0 z + c1) z + c2) ...``: one multiply then one add per step (no fused multiply-add)."""
    p = torch.full_like(z, coeffs[0])
    for c in coeffs[1:]:
        p = p * z + c
    return p


def log_unit(u: torch.Tensor) -> torch.Tensor:
    """``ln u`` for float64 ``u`` in (0, 1], in the spec's exact arithmetic.

    ``u = m 2^e`` (frexp, exact), ``m`` moved into ``[sqrt(1/2), sqrt(2))``, then
    ``ln u = e ln 2 + 2 s P(s^2)`` with ``s = (m - 1) / (m + 1)``.

    Example:
        >>> import math, torch
        >>> abs(float(log_unit(torch.tensor([0.3], dtype=torch.float64))) - math.log(0.3)) < 1e-15
        True
    """
    m, e = torch.frexp(u)  # m in [0.5, 1)
    small = m < SQRT_HALF
    m = torch.where(small, m * 2.0, m)
    e = (e - small.to(e.dtype)).to(torch.float64)
    s = (m - 1.0) / (m + 1.0)
    return e * LN2 + (2.0 * s) * horner(LOG_COEFFS, s * s)


def sincos_2pi(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sin 2 pi b, cos 2 pi b)`` for float64 ``b`` in [0, 1), in the spec's exact arithmetic.

    The octant ``q = floor(8 b)`` and the fraction ``f = 8 b - q`` are exact; the reduced
    angle is ``x = f pi/4`` (even octants) or ``(1 - f) pi/4`` (odd ones), whose sine and
    cosine come from Taylor polynomials; the octant then picks, swaps and signs them.

    Example:
        >>> import math, torch
        >>> s, c = sincos_2pi(torch.tensor([0.3], dtype=torch.float64))
        >>> angle = 0.6 * math.pi
        >>> abs(float(s) - math.sin(angle)) < 1e-15, abs(float(c) - math.cos(angle)) < 1e-15
        (True, True)
    """
    t = b * 8.0
    q = torch.floor(t)
    f = t - q
    octant = q.to(torch.int64)
    odd = (octant & 1) == 1
    x = torch.where(odd, 1.0 - f, f) * PI_4
    x2 = x * x
    sin_x = x * horner(SIN_COEFFS, x2)
    cos_x = horner(COS_COEFFS, x2)
    swap = (octant == 1) | (octant == 2) | (octant == 5) | (octant == 6)
    sin_a = torch.where(swap, cos_x, sin_x)
    cos_a = torch.where(swap, sin_x, cos_x)
    sin_a = torch.where(octant >= 4, -sin_a, sin_a)
    cos_a = torch.where((octant >= 2) & (octant <= 5), -cos_a, cos_a)
    return sin_a, cos_a


SQRT_STEPS = 4  # Newton steps: from a start 6% off, the error goes 2e-3, 2e-6, 1e-12, 1e-24


def sqrt_pos(y: torch.Tensor) -> torch.Tensor:
    """``sqrt y`` for float64 ``y > 0``, in the spec's exact arithmetic.

    ``y = m 4^k`` (frexp, ``m`` in [0.5, 2)), then ``SQRT_STEPS`` Newton steps
    ``s <- (s + m / s) * 0.5`` from ``s = (m + 1) * 0.5``, and ``sqrt y = s 2^k`` (a
    multiply by a power of two built from its bits: exact). Within an ulp of the correctly
    rounded root.

    Example:
        >>> import torch
        >>> abs(float(sqrt_pos(torch.tensor([2.0], dtype=torch.float64))) - 2**0.5) <= 2**-52
        True
    """
    m, e = torch.frexp(y)  # m in [0.5, 1)
    odd = (e & 1) == 1
    m = torch.where(odd, m * 2.0, m)  # m in [0.5, 2), the exponent made even
    half = (e - odd.to(e.dtype)) // 2
    s = (m + 1.0) * 0.5
    for _ in range(SQRT_STEPS):
        s = (s + m / s) * 0.5
    scale = ((half.to(torch.int64) + 1023) << 52).view(torch.float64)  # 2^k, exactly
    return s * scale


# exp y = 2^k e^r, k = floor(y / ln 2 + 1/2), r = y - k ln 2 in two pieces (Cody & Waite:
# k * LN2_HI is exact, LN2_HI having 32 significant bits), e^r by its Taylor series to r^13
# (|r| <= 0.35: the truncation is below 1e-17) and 2^k from its bits. The argument is
# clamped to [EXP_MIN, EXP_MAX] first, so 2^k and the result are normal floats.
INV_LN2 = 1.4426950408889634  # 1 / ln 2, rounded
LN2_HI = 6.93147180369123816490e-01  # ln 2, its first 32 bits (fdlibm's ln2_hi)
LN2_LO = 1.90821492927058770002e-10  # ln 2 - LN2_HI, rounded (fdlibm's ln2_lo)
EXP_MIN, EXP_MAX = -708.0, 709.0
EXP_COEFFS = tuple(1.0 / math.factorial(k) for k in range(13, -1, -1))  # 1/13! .. 1/0!


def exp_clamped(y: torch.Tensor) -> torch.Tensor:
    """``exp(clamp(y, EXP_MIN, EXP_MAX))`` for float64 ``y``, in the spec's exact arithmetic.

    ``k = floor(y / ln 2 + 1/2)``, ``r = (y - k LN2_HI) - k LN2_LO``, then ``P(r) 2^k`` with
    ``P`` the Taylor polynomial of ``e^r`` to degree 13 by Horner and ``2^k`` built from its
    bits (the multiply is exact). Within a few ulp of ``math.exp``.

    Example:
        >>> import math, torch
        >>> y = exp_clamped(torch.tensor([-3.7, 0.5], dtype=torch.float64))
        >>> [abs(float(a) / math.exp(b) - 1) < 1e-15 for a, b in zip(y, (-3.7, 0.5))]
        [True, True]
    """
    y = torch.clamp(y, EXP_MIN, EXP_MAX)
    k = torch.floor(y * INV_LN2 + 0.5)
    r = (y - k * LN2_HI) - k * LN2_LO
    scale = ((k.to(torch.int64) + 1023) << 52).view(torch.float64)  # 2^k, exactly
    return horner(EXP_COEFFS, r) * scale


def relaxed_keep(
    logistic: torch.Tensor, logit: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concrete dropout's multiplier ``w`` and its derivative ``dw / d logit`` (float64).

    With ``l`` the logistic noise, ``z = (logit + l) / t`` and ``e = exp(-z)``
    (:func:`exp_clamped`): the relaxed drop ``d = 1 / (1 + e)``, the keep rate
    ``q = 1 / (1 + exp(logit))`` (``1 - p``), ``w = (e / (1 + e)) / q`` (that is
    ``(1 - d) / q``) and ``dw = w ((1 - q) - d / t)``, each step one IEEE operation in this
    order. ``logit`` is a float64 tensor broadcastable against ``logistic``.

    Example:
        >>> import torch
        >>> w, dw = relaxed_keep(torch.tensor([-50.0, 50.0], dtype=torch.float64),
        ...                      torch.tensor(0.0, dtype=torch.float64), 0.1)
        >>> [round(float(v), 6) for v in w]  # kept (scaled by 1/(1-p)), dropped
        [2.0, 0.0]
    """
    e = exp_clamped(-((logit + logistic) / temperature))
    d = 1.0 / (1.0 + e)
    q = 1.0 / (1.0 + exp_clamped(logit))
    w = (e / (1.0 + e)) / q
    return w, w * ((1.0 - q) - d / temperature)


def derive_keys(
    seed: int | torch.Tensor, c0: torch.Tensor, c1: torch.Tensor, call: int, domain: int
) -> torch.Tensor:
    """Derived keys ``Philox4x32-10(counter=(c0, c1, call, domain), key=seed)[0:2]`` (int64).

    The reference of every key derivation (MC row and call keys, sample keys): words 0 and
    1 of the block make the 64-bit key ``w0 | w1 << 32``, held as two's complement in
    int64. ``c0``/``c1`` are int64 tensors of uint32 values (any shape); ``seed`` an int or
    a 0-d int64 tensor holding it (two's complement), which a compiled graph keeps as input.

    Example:
        >>> import torch
        >>> k = derive_keys(7, torch.tensor([0, 1]), torch.tensor([0, 0]), 0, 1)
        >>> k.dtype, bool(k[0] != k[1])
        (torch.int64, True)
    """
    if isinstance(seed, torch.Tensor):  # int64 bits: >> is arithmetic, & MASK32 fixes it
        k0, k1 = seed & MASK32, (seed >> 32) & MASK32
    else:
        k0, k1 = seed_key(seed)
    w0, w1, _, _ = philox4x32(
        c0, c1, torch.full_like(c0, call), torch.full_like(c0, domain), k0, k1  # type: ignore[arg-type]
    )
    # w1 read as a signed 32-bit int, times 2**32, is the high half of the int64 that holds
    # the unsigned key (two's complement); no intermediate leaves the int64 range.
    high = (w1 - ((w1 >> 31) << 32)) * (1 << 32)
    return high | w0
