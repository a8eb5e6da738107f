"""``keep_mask``: the mask spec as a public function, served by the current backend."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from dropkit import rng
from dropkit._checks import check_p
from dropkit.backends import resolve
from dropkit.keys import scalar_seed

__all__ = ["keep_mask"]


def _check_shape(shape: object) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints (a torch.Size, a tuple or a list of ints)."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        raise TypeError(
            f"keep_mask: shape must be a sequence of ints such as (2, 3) or x.shape, but got "
            f"{type(shape).__name__} {shape!r}"
        )
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(
                f"keep_mask: shape entries must be ints, but got {type(s).__name__} {s!r} in "
                f"{tuple(shape)!r}"
            )
        if s < 0:
            raise ValueError(f"keep_mask: shape entries must be >= 0, but got {tuple(shape)}")
    return tuple(int(s) for s in shape)


def keep_mask(
    shape: Sequence[int] | torch.Size,
    p: float,
    seed: int,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""The keep mask that dropkit draws for a call with this ``shape``, ``p`` and ``seed``.

    .. math:: m_i = [\,\mathrm{Philox4x32\text{-}10}(seed, \lfloor i/4 \rfloor)_{i \bmod 4}
              \ge \mathrm{round}(p\,2^{32})\,]

    with ``i`` the row-major index. ``dropout(x, p, seed=s)`` equals
    ``x * keep_mask(x.shape, p, s) / (1 - p)`` (inverted scaling), on every device.

    Args:
        shape: the shape of the mask.
        p: drop probability in [0, 1] (``p == 1`` gives all False).
        seed: the 64-bit key, an int in [0, 2**64).
        device: where the mask lives (default: CPU).

    Shape: output ``shape``, dtype ``torch.bool``.

    Example:
        >>> import dropkit
        >>> m = dropkit.keep_mask((2, 3), 0.5, seed=0)
        >>> m.shape, m.dtype
        (torch.Size([2, 3]), torch.bool)
    """
    p = check_p(p)
    if seed is None:
        raise TypeError("keep_mask needs an explicit int seed")
    key = int(scalar_seed(seed, None))
    shape = _check_shape(shape)
    dev = torch.device("cpu" if device is None else device)
    if p == 1.0:
        return torch.zeros(shape, dtype=torch.bool, device=dev)
    probe = torch.empty(0, device=dev)
    numel = math.prod(shape)
    return resolve(probe).keep_mask(numel, key, rng.threshold(p), dev).view(shape)
