"""The numba backend: fused multi-threaded CPU kernels, bit-identical to the reference.

Launch and allocation only; the kernels live in :mod:`dropkit.kernels.numba_dropout`.
float32 and float64 run in the fused kernel directly (in place when ``out is x``).
float16 and bfloat16 are widened to float32 by torch, scaled in place by the same kernel,
and narrowed back by torch's rounding (exactly the reference's path, so bit-identical).
numba is imported when the backend is first used, never at ``import dropkit``; compiled
kernels are cached on disk (``cache=True``), so only the very first call on a machine pays
the compile cost (see docs/kernels.md).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import torch

from dropkit import rng

__all__ = ["NumbaBackend", "load"]

_SERVED = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_HALF = (torch.float16, torch.bfloat16)
_MISSING = "numba is not installed; install it with `pip install dropkit[cpu]`"
_ZERO = np.uint64(0)


_failed: list[ImportError] = []  # remembered, so a missing numba costs one import attempt


def load() -> NumbaBackend:
    """Import numba and the kernels; ImportError naming the extra when numba is missing."""
    if _failed:
        raise ImportError(_MISSING) from _failed[0]
    try:
        kernels = importlib.import_module("dropkit.kernels.numba_dropout")
    except ImportError as err:
        if err.name is not None and err.name.split(".")[0] != "numba":
            raise
        _failed.append(err)
        raise ImportError(_MISSING) from err
    return NumbaBackend(kernels)


def _key(seed: int, thresh: int) -> tuple[np.uint64, np.uint64, np.uint64]:
    k0, k1 = rng.seed_key(seed)
    return np.uint64(k0), np.uint64(k1), np.uint64(thresh)


def _flat(t: torch.Tensor) -> np.ndarray:
    """The flat numpy view of a contiguous CPU tensor (shares memory)."""
    return (t.detach() if t.requires_grad else t).numpy().reshape(-1)


class NumbaBackend:
    """CPU float16/bfloat16/float32/float64: Philox drawn inside one fused parallel loop."""

    name = "numba"

    def __init__(self, kernels: ModuleType) -> None:
        self._k = kernels
        # Below two chunks, waking the thread pool costs more than it saves.
        self._parallel_from = 2 * kernels.CHUNK

    def unavailable(self, x: torch.Tensor) -> str | None:
        if x.device.type != "cpu":
            return f"it runs on CPU only, but the tensor is on {x.device}"
        if x.dtype not in _SERVED:
            return f"it serves float16/bfloat16/float32/float64, not {x.dtype}"
        return None

    def keep_mask(
        self, numel: int, seed: int, thresh: int, device: torch.device
    ) -> torch.Tensor:
        out = torch.empty(numel, dtype=torch.bool, device=device)
        if numel:
            self._k.keep_mask(out.numpy(), _ZERO, *_key(seed, thresh))
        return out

    def scale(
        self,
        x: torch.Tensor,
        out: torch.Tensor,
        seed: int,
        thresh: int,
        w_keep: float,
        w_drop: float,
    ) -> None:
        n = x.numel()
        if n == 0:
            return
        if x.dtype in _HALF:
            wide = x.detach().float()
            wa = _flat(wide)
            self._launch(wa, wa, n, seed, thresh, w_keep, w_drop)
            out.detach().copy_(wide)
            return
        xa = _flat(x)
        self._launch(xa, xa if out is x else _flat(out), n, seed, thresh, w_keep, w_drop)

    def _launch(
        self,
        xa: np.ndarray,
        oa: np.ndarray,
        n: int,
        seed: int,
        thresh: int,
        w_keep: float,
        w_drop: float,
    ) -> None:
        kernel = self._k.scale if n >= self._parallel_from else self._k.scale_serial
        ftype = xa.dtype.type
        kernel(xa, oa, _ZERO, *_key(seed, thresh), ftype(w_keep), ftype(w_drop))
