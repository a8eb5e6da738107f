"""Continuous noise from the mask spec's Philox stream: open uniforms, normals, logistics.

Element ``i`` of a call reads the same uint32 draw ``r_i`` that decides ``keep(i)`` in
dropout for the same keys, so a variant's noise is as reproducible as its masks: a pure
function of the keys and ``i``. For per-row keys, ``i`` counts within the row; an offset
shifts it (docs/mask-spec.md, "Keys").

- uniform: ``u_i = (r_i + 0.5) / 2**32``, in the open interval (0, 1) (exact in float64).
- normal (Box-Muller on pairs of stream indices): for ``j = i // 2``, ``a = u_{2j}``,
  ``b = u_{2j+1}``, ``z_{2j} = sqrt(-2 ln a) cos(2 pi b)`` and
  ``z_{2j+1} = sqrt(-2 ln a) sin(2 pi b)``.
- logistic: ``ln(1 - u_i) - ln u_i``.

``ln``, ``sin`` and ``cos`` are the noise spec's exactly specified versions
(:func:`dropkit.rng.log_unit`, :func:`dropkit.rng.sincos_2pi`: IEEE-exact operations in a
fixed order, within a few ulp of the true functions), so every backend computes the same
float64 bits: numba's kernels and the reference's torch ops alike. Callers round once to
their dtype.

Paper: Box & Muller 1958, "A note on the generation of random normal deviates".
"""

from __future__ import annotations

import torch

from dropkit.backends import keyed

__all__ = ["logistic_keys", "normal", "normal_keys", "uniform", "uniform_keys"]

_TWO32 = 4294967296.0


def _scalar(seed: int) -> torch.Tensor:
    seed &= (1 << 64) - 1
    return torch.tensor(seed - (1 << 64) if seed >= 1 << 63 else seed, dtype=torch.int64)


def _device(device: torch.device | str | None) -> torch.device:
    return torch.device("cpu" if device is None else device)


def uniform_keys(
    seed: torch.Tensor, offset: int, numel: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """``[numel]`` float64 uniforms ``(r_i + 0.5) / 2**32`` keyed by ``(seed, offset)``."""
    dev = _device(device)
    return (keyed.bits(seed, offset, numel, dev).to(dev) + 0.5) / _TWO32


def normal_keys(
    seed: torch.Tensor, offset: int, numel: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """``[numel]`` float64 standard normals (Box-Muller on pairs) keyed by ``(seed, offset)``."""
    return keyed.normal(seed, offset, numel, _device(device))


def logistic_keys(
    seed: torch.Tensor, offset: int, numel: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """``[numel]`` float64 logistic variates ``ln(1 - u) - ln u`` keyed by ``(seed, offset)``."""
    return keyed.logistic(seed, offset, numel, _device(device))


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
