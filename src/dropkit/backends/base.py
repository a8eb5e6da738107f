"""What a backend is: two primitives over the mask spec (docs/mask-spec.md).

Every backend computes the same function; they differ only in speed and in which tensors
they can serve. A backend works on a contiguous tensor in logical (row-major) order, so the
element index ``i`` of the spec is the flat index into ``x.view(-1)``.
"""

from __future__ import annotations

from typing import Protocol

import torch

__all__ = ["Backend", "opmath_dtype"]


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the arithmetic runs in: float32 for half types, the dtype itself otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class Backend(Protocol):
    """The two primitives a backend implements, bit-identical to ``dropkit.rng``."""

    name: str

    def unavailable(self, x: torch.Tensor) -> str | None:
        """Why this backend cannot serve ``x`` (a sentence), or None if it can."""

    def keep_mask(
        self, numel: int, seed: int, thresh: int, device: torch.device
    ) -> torch.Tensor:
        """Bool tensor ``[numel]``: element ``i`` kept iff its Philox draw >= ``thresh``."""

    def scale(
        self,
        x: torch.Tensor,
        out: torch.Tensor,
        seed: int,
        thresh: int,
        w_keep: float,
        w_drop: float,
    ) -> None:
        """``out[i] = x[i] * (w_keep if keep(i) else w_drop)`` in ``opmath_dtype``.

        ``x`` and ``out`` are contiguous with the same shape and dtype; ``out`` may be ``x``.
        The product is one IEEE multiply in the opmath dtype, rounded once to ``x.dtype``.
        """
