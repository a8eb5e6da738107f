"""Continuous noise from the mask spec's Philox stream: open uniforms and Box-Muller normals.

Element ``i`` of a call with seed ``s`` reads the same uint32 draw ``r_i`` that decides
``keep(i)`` in dropout (``dropkit.rng.random_bits``), so a variant's noise is as
reproducible as its masks: a pure function of ``(seed, i)`` on every device.

- uniform: ``u_i = (r_i + 0.5) / 2**32``, in the open interval (0, 1).
- normal (Box-Muller on pairs): for ``j = i // 2``, ``a = u_{2j}``, ``b = u_{2j+1}``,
  ``z_{2j} = sqrt(-2 ln a) cos(2 pi b)`` and ``z_{2j+1} = sqrt(-2 ln a) sin(2 pi b)``.

Both are computed in float64 (exact from the uint32 draws up to the last bit of the
transcendental functions) and handed back in float64; callers round once to their dtype.

Paper: Box & Muller 1958, "A note on the generation of random normal deviates".
"""

from __future__ import annotations

import math

import torch

from dropkit import rng

__all__ = ["normal", "uniform"]

_TWO32 = 4294967296.0


def uniform(numel: int, seed: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``[numel]`` float64 uniforms ``(r_i + 0.5) / 2**32`` in (0, 1) from the Philox stream.

    Example:
        >>> u = uniform(1000, seed=0)
        >>> bool((u > 0).all() and (u < 1).all())
        True
    """
    bits = rng.random_bits(numel, seed, device=device)
    return (bits.to(torch.float64) + 0.5) / _TWO32


def normal(numel: int, seed: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``[numel]`` float64 standard normals by Box-Muller on consecutive pairs of draws.

    Example:
        >>> z = normal(10001, seed=0)
        >>> abs(float(z.mean())) < 6 / 100
        True
    """
    pairs = (numel + 1) // 2
    u = uniform(2 * pairs, seed, device).view(pairs, 2)
    radius = torch.sqrt(-2.0 * torch.log(u[:, 0]))
    angle = (2.0 * math.pi) * u[:, 1]
    z = torch.stack((radius * torch.cos(angle), radius * torch.sin(angle)), dim=1)
    return z.reshape(-1)[:numel]
