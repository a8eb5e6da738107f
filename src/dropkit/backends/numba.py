"""The numba backend: fused multi-threaded CPU kernels, bit-identical to the reference.

Launch and allocation only; the kernels live in :mod:`dropkit.kernels.numba_dropout`.
Large inputs are split into ``torch.get_num_threads()`` slices at multiples of the kernel's
chunk and run by the serial (``nogil``) kernel on a small pool of Python threads that sleep
when idle. Numba's own ``prange`` pool (an OpenMP runtime next to torch's) spin-waits
against torch's threads on small machines and made a training step measurably slower, so it
is not used here. Every element's result depends only on its index, so the split never
changes a bit.
float32 and float64 run in the fused kernel directly (in place when ``out is x``).
float16 and bfloat16 are widened to float32 by torch, scaled in place by the same kernel,
and narrowed back by torch's rounding (exactly the reference's path, so bit-identical).
numba is imported when the backend is first used, never at ``import dropkit``; compiled
kernels are cached on disk (``cache=True``), so only the very first call on a machine pays
the compile cost (see docs/kernels.md).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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
        # Elements per thread below which waking a helper thread costs more than it saves.
        self._min_part = 8 * kernels.CHUNK
        self._pool: ThreadPoolExecutor | None = None
        self._pool_key = (0, 0)  # (pid, workers): a forked child or a new thread count rebuilds

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
            oa = out.numpy()
            self._split(numel, lambda s, e, c: self._k.keep_mask_serial(
                oa[s:e], c, *_key(seed, thresh)))
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
        ftype = xa.dtype.type
        args = (*_key(seed, thresh), ftype(w_keep), ftype(w_drop))
        kernel = self._k.scale_serial
        self._split(n, lambda s, e, c: kernel(xa[s:e], oa[s:e], c, *args))

    def _split(self, n: int, run: Callable[[int, int, np.uint64], None]) -> None:
        """``run(start, stop, counter_base)`` over slices of ``range(n)``, one per thread."""
        parts = min(torch.get_num_threads(), n // self._min_part)
        if parts <= 1:
            run(0, n, _ZERO)
            return
        chunk = self._k.CHUNK  # slice edges at chunk multiples: multiples of 4 elements
        step = -(-n // (parts * chunk)) * chunk
        pool = self._workers(parts - 1)
        futures: list[Future] = [
            pool.submit(run, s, min(s + step, n), np.uint64(s >> 2))
            for s in range(step, n, step)
        ]
        run(0, step, _ZERO)
        for future in futures:
            future.result()

    def _workers(self, count: int) -> ThreadPoolExecutor:
        key = (os.getpid(), count)
        if self._pool is None or self._pool_key != key:
            if self._pool is not None and self._pool_key[0] == key[0]:
                self._pool.shutdown(wait=False)
            self._pool = ThreadPoolExecutor(count, thread_name_prefix="dropkit-numba")
            self._pool_key = key
        return self._pool
