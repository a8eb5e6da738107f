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
    "MASK32",
    "PHILOX_KEY_A",
    "PHILOX_KEY_B",
    "PHILOX_ROUNDS",
    "PHILOX_ROUND_A",
    "PHILOX_ROUND_B",
    "bits_at",
    "keep_bits",
    "philox4x32",
    "random_bits",
    "row_bits",
    "seed_key",
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
