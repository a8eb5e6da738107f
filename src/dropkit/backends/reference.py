"""The reference backend: the mask spec in plain torch integer ops, on any device.

Slow (it materialises the random bits), readable, and the oracle every backend matches.
"""

from __future__ import annotations

import torch

from dropkit import rng
from dropkit.backends.base import opmath_dtype

__all__ = ["ReferenceBackend"]

_TWO32 = 4294967296.0


def _row_keys(seed: torch.Tensor, rows: int) -> torch.Tensor:
    """``[rows]`` int64 keys: a scalar seed serves its single row."""
    return seed.reshape(-1) if seed.dim() else seed.reshape(1).expand(rows)


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
        self._select(x, out, keep, w_keep, w_drop)

    # Keyed primitives (dropkit.backends.keyed): per-row keys and offsets.
    def bits_keys(
        self, seed: torch.Tensor, offset: int, rows: int, row_len: int, device: torch.device
    ) -> torch.Tensor:
        keys = _row_keys(seed, rows)
        return rng.row_bits(keys, row_len, offset, device).reshape(-1).to(torch.float64)

    def normal_keys(
        self, seed: torch.Tensor, offset: int, rows: int, row_len: int, device: torch.device
    ) -> torch.Tensor:
        """Standard normals ``[rows * row_len]`` (float64) by Box-Muller on pairs of stream
        indices ``(2i, 2i + 1)``, in the noise spec's exact arithmetic (``dropkit.rng``)."""
        start = offset - (offset & 1)  # pairs start on even stream indices
        lead = offset - start
        count = lead + row_len
        count += count & 1  # [rows, count]: whole pairs around every row
        bits = self.bits_keys(seed, start, rows, count, device).view(rows, count // 2, 2)
        u = (bits + 0.5) / _TWO32
        radius = rng.sqrt_pos(rng.log_unit(u[..., 0]) * -2.0)  # sqrt(-2 ln a)
        sin_a, cos_a = rng.sincos_2pi(u[..., 1])  # of 2 pi b
        z = torch.stack((radius * cos_a, radius * sin_a), dim=-1).view(rows, count)
        return z[:, lead : lead + row_len].reshape(-1)

    def logistic_keys(
        self, seed: torch.Tensor, offset: int, rows: int, row_len: int, device: torch.device
    ) -> torch.Tensor:
        """``ln(1 - u) - ln u`` ``[rows * row_len]`` (float64), in the spec's arithmetic."""
        u = (self.bits_keys(seed, offset, rows, row_len, device) + 0.5) / _TWO32
        return rng.log_unit(1.0 - u) - rng.log_unit(u)  # 1 - u is exact

    def concrete_keys(
        self,
        seed: torch.Tensor,
        offset: int,
        rows: int,
        row_len: int,
        logit: torch.Tensor,
        temperature: float,
        dtype: torch.dtype,
        grad: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Concrete dropout's ``(w, dw / d logit)`` ``[rows * row_len]`` in ``dtype``: the
        spec's ``relaxed_keep`` of the logistic noise (``dw`` None without ``grad``)."""
        noise = self.logistic_keys(seed, offset, rows, row_len, logit.device)
        w, dw = rng.relaxed_keep(noise, logit.to(torch.float64), temperature)
        return w.to(dtype), (dw.to(dtype) if grad else None)

    def keep_mask_keys(
        self,
        seed: torch.Tensor,
        offset: int,
        rows: int,
        row_len: int,
        thresh: int,
        device: torch.device,
    ) -> torch.Tensor:
        keys = _row_keys(seed, rows)
        return (rng.row_bits(keys, row_len, offset, device) >= thresh).reshape(-1)

    def scale_keys(
        self,
        x: torch.Tensor,
        out: torch.Tensor,
        seed: torch.Tensor,
        offset: int,
        rows: int,
        row_len: int,
        thresh: int,
        w_keep: float,
        w_drop: float,
    ) -> None:
        keep = self.keep_mask_keys(seed, offset, rows, row_len, thresh, x.device)
        self._select(x, out, keep.view(x.shape), w_keep, w_drop)

    def scale_groups_keys(
        self,
        x: torch.Tensor,
        out: torch.Tensor,
        seed: torch.Tensor,
        offset: int,
        rows: int,
        row_len: int,
        mid: int,
        inner: int,
        thresh: int,
        weights: tuple[float, float, float, float],
    ) -> bool:
        keep = self.keep_mask_keys(seed, offset, rows, row_len, thresh, x.device)
        keep = keep.view(-1, 1, inner)  # [outer, 1, inner], broadcast over ``mid``
        dtype = opmath_dtype(x.dtype)
        w_keep, w_drop, b_keep, b_drop = weights

        def select(a: float, b: float) -> torch.Tensor:
            first = torch.tensor(a, dtype=dtype, device=x.device)
            return torch.where(keep, first, torch.tensor(b, dtype=dtype, device=x.device))

        y = x.reshape(-1, mid, inner).to(dtype) * select(w_keep, w_drop)  # [outer, mid, inner]
        if b_keep != 0.0 or b_drop != 0.0:
            y = y + select(b_keep, b_drop)
        out.copy_(y.view(x.shape))
        return True

    def select_at_keys(
        self,
        seed: torch.Tensor,
        offset: int,
        indices: torch.Tensor,
        thresh: int,
        w_keep: float,
        w_drop: float,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        keep = rng.bits_at(indices + offset, int(seed)) >= thresh
        first = torch.tensor(w_keep, dtype=dtype, device=indices.device)
        return torch.where(keep, first, torch.tensor(w_drop, dtype=dtype, device=indices.device))

    @staticmethod
    def _select(
        x: torch.Tensor, out: torch.Tensor, keep: torch.Tensor, w_keep: float, w_drop: float
    ) -> None:
        dtype = opmath_dtype(x.dtype)
        weight = torch.where(
            keep,
            torch.tensor(w_keep, dtype=dtype, device=x.device),
            torch.tensor(w_drop, dtype=dtype, device=x.device),
        )
        out.copy_(x.to(dtype) * weight)
