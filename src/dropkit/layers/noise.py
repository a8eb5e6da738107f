"""Continuous noise from the mask spec's Philox stream: open uniforms and Box-Muller normals.

Element ``i`` of a call reads the same uint32 draw ``r_i`` that decides ``keep(i)`` in
dropout for the same keys, so a variant's noise is as reproducible as its masks: a pure
function of the keys and ``i`` on every device. For per-row keys, ``i`` counts within the
row; an offset shifts it (docs/mask-spec.md, "Keys").

- uniform: ``u_i = (r_i + 0.5) / 2**32``, in the open interval (0, 1).
- normal (Box-Muller on pairs of stream indices): for ``j = i // 2``, ``a = u_{2j}``,
  ``b = u_{2j+1}``, ``z_{2j} = sqrt(-2 ln a) cos(2 pi b)`` and
  ``z_{2j+1} = sqrt(-2 ln a) sin(2 pi b)``.

Both are computed in float64 (exact from the uint32 draws up to the last bit of the
transcendental functions, which run in torch on every backend) and handed back in float64;
callers round once to their dtype. The raw draws come from the backend that serves the
device (numba's kernels on the CPU).

Paper: Box & Muller 1958, "A note on the generation of random normal deviates".
"""

from __future__ import annotations

import math

import torch

from dropkit.backends import keyed

__all__ = ["normal", "normal_keys", "uniform", "uniform_keys"]

_TWO32 = 4294967296.0


def _scalar(seed: int) -> torch.Tensor:
    seed &= (1 << 64) - 1
    return torch.tensor(seed - (1 << 64) if seed >= 1 << 63 else seed, dtype=torch.int64)


def uniform_keys(
    seed: torch.Tensor, offset: int, numel: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """``[numel]`` float64 uniforms ``(r_i + 0.5) / 2**32`` keyed by ``(seed, offset)``."""
    dev = torch.device("cpu" if device is None else device)
    bits = keyed.bits(seed, offset, numel, dev).to(dev)
    return (bits + 0.5) / _TWO32


def normal_keys(
    seed: torch.Tensor, offset: int, numel: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """``[numel]`` float64 standard normals (Box-Muller on pairs) keyed by ``(seed, offset)``."""
    rows, row_len = keyed.rows_of(seed, numel)
    start = offset - (offset & 1)  # pairs start on even stream indices
    lead = offset - start
    count = lead + row_len
    count += count & 1  # [rows, count]: whole pairs around every row
    u = uniform_keys(seed, start, rows * count, device).view(rows, count // 2, 2)
    # In place where a fresh tensor is at hand (the same IEEE operations, fewer tensors):
    radius = torch.log(u[..., 0]).mul_(-2.0).sqrt_()  # sqrt(-2 ln a)
    angle = u[..., 1].mul(2.0 * math.pi)  # 2 pi b
    z = torch.empty_like(u)  # [rows, count / 2, 2]: (cos, sin) pairs in element order
    torch.mul(radius, torch.cos(angle), out=z[..., 0])
    torch.mul(radius, angle.sin_(), out=z[..., 1])
    z = z.view(rows, count)
    if lead == 0 and count == row_len:
        return z.view(-1)
    return z[:, lead : lead + row_len].reshape(-1)


def uniform(numel: int, seed: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``[numel]`` float64 uniforms in (0, 1) from the stream of the int ``seed``.

    Example:
        >>> u = uniform(1000, seed=0)
        >>> bool((u > 0).all() and (u < 1).all())
        True
    """
    return uniform_keys(_scalar(seed), 0, numel, device)


def normal(numel: int, seed: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``[numel]`` float64 standard normals from the stream of the int ``seed``.

    Example:
        >>> z = normal(10001, seed=0)
        >>> abs(float(z.mean())) < 6 / 100
        True
    """
    return normal_keys(_scalar(seed), 0, numel, device)
