"""The reference backend: the mask spec in plain torch integer ops, on any device.

Slow (it materialises the random bits), readable, and the oracle every backend matches.
"""

from __future__ import annotations

import torch

from dropkit import rng
from dropkit.backends.base import opmath_dtype

__all__ = ["ReferenceBackend"]


class ReferenceBackend:
    """Serves every floating dtype on every device, from ``dropkit.rng`` directly."""

    name = "reference"

    def unavailable(self, x: torch.Tensor) -> str | None:
        return None

    def keep_mask(
        self, numel: int, seed: int, thresh: int, device: torch.device
    ) -> torch.Tensor:
        return rng.keep_bits(numel, seed, thresh, device=device)

    def scale(
        self,
        x: torch.Tensor,
        out: torch.Tensor,
        seed: int,
        thresh: int,
        w_keep: float,
        w_drop: float,
    ) -> None:
        keep = self.keep_mask(x.numel(), seed, thresh, x.device).view(x.shape)
        dtype = opmath_dtype(x.dtype)
        weight = torch.where(
            keep,
            torch.tensor(w_keep, dtype=dtype, device=x.device),
            torch.tensor(w_drop, dtype=dtype, device=x.device),
        )
        out.copy_(x.to(dtype) * weight)
