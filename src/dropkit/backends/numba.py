"""The numba backend: fused multi-threaded CPU kernels, bit-identical to the reference.

Launch and allocation only; the kernels live in :mod:`dropkit.kernels.numba_dropout`.
Inputs of at least ``2 * min_part`` elements are cut into ``torch.get_num_threads()`` parts
(at multiples of the kernel's chunk) and run by the ``prange`` kernels; smaller ones, and
every call in a forked child of a process that already ran a parallel kernel (GNU OpenMP
cannot be used across ``fork``), run the serial kernel. Every element's result depends only
on its index, so the split never changes a bit.

Threading layer: unless you chose one (``NUMBA_THREADING_LAYER`` or
``NUMBA_THREADING_LAYER_PRIORITY``), dropkit asks numba to try its OpenMP layer first. On a
small machine it starts in a few microseconds even while torch's own OpenMP workers still
spin after a matrix product; a pool of Python helper threads measured up to 2x slower there
(see docs/kernels.md).

float32 and float64 run in the fused kernel directly (in place when ``out is x``), and so
does bfloat16: its kernel widens the raw bits exactly, multiplies in float32 and rounds to
nearest even as torch's CPU conversion does (NaN becomes 0xFFFF, as there). float16
(numba has no 16-bit float) is widened to float32 by torch, scaled in place by the float32
kernel, and narrowed back by torch's rounding: exactly the reference's path, so
bit-identical either way.
numba is imported when the backend is first used, never at ``import dropkit``; compiled
kernels are cached on disk (``cache=True``), so only the very first call on a machine pays
the compile cost (see docs/kernels.md).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Iterator
from types import ModuleType

import numpy as np
import torch

from dropkit import rng

__all__ = ["NumbaBackend", "load"]

_SERVED = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_MISSING = "numba is not installed; install it with `pip install dropkit[cpu]`"
_ZERO = np.uint64(0)
_HALF64, _MASK64 = 1 << 63, (1 << 64) - 1
# The float kernels' numpy types; the dtypes whose small scale calls go by address, and
# their weights' numpy type (bfloat16 scales in float32).
_FLOATS = {torch.float32: np.float32, torch.float64: np.float64}
_BY_ADDRESS = {**_FLOATS, torch.bfloat16: np.float32}
_PARALLEL_IDS = 4096  # ids per part of a parallel key derivation (measured: 8192 ids break even)
# Without AVX-512, rows of whole counters from this length on take the flat walk of blocks
# (measured on AVX2, over the scalar-key kernel: rows of 256 1.08x flat against 1.25x with
# per-lane keys, rows of 128 1.19-1.30x against 1.24-1.35x, rows of 64 1.60x against 1.36x).
_FLAT_ROWS = 128


_failed: list[ImportError] = []  # remembered, so a missing numba costs one import attempt
# The process that started numba's parallel (OpenMP) pool: process-wide, like the pool.
_parallel_pid: int | None = None


_LAYER_VARS = ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY")


def _prefer_openmp() -> None:
    """Put numba's OpenMP threading layer first, unless the user chose a layer."""
    import numba

    if any(var in os.environ for var in _LAYER_VARS):
        return
    if numba.config.THREADING_LAYER != "default":
        return
    order = list(numba.config.THREADING_LAYER_PRIORITY)
    if "omp" in order:
        numba.config.THREADING_LAYER_PRIORITY = ["omp", *(x for x in order if x != "omp")]


def _cython_blas_present() -> bool:
    """Whether scipy ships ``scipy.linalg.cython_blas``, found on disk (nothing imported)."""
    spec = importlib.util.find_spec("scipy")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        linalg = os.path.join(folder, "linalg")
        if os.path.isdir(linalg) and any(
            f.startswith("cython_blas.") for f in os.listdir(linalg)
        ):
            return True
    return False


def _probe_blas_without_scipy_linalg() -> None:
    """Let numba's import-time BLAS probe look for scipy's module instead of importing it.

    numba's CPU target, on first use, imports ``numba.np.arraymath``, which sets
    ``_HAVE_BLAS`` by importing ``scipy.linalg.cython_blas``: all of ``scipy.linalg``, about
    0.2 s of a fresh process's first dropout call (docs/kernels.md; dropkit's kernels use
    no BLAS). While that module is imported, numba's ``ensure_blas`` is replaced by a probe
    that finds the file on disk (the same answer where scipy is installed and sound); it is
    restored right after, so wherever a jitted function uses BLAS, numba's own check still
    imports scipy and checks its integer width. Nothing changes if numba's layout differs.
    """
    if "numba.np.arraymath" in sys.modules:
        return
    try:
        from numba.np import linalg
    except ImportError:
        return
    real = getattr(linalg, "ensure_blas", None)
    if real is None:
        return

    def probe() -> None:
        if not _cython_blas_present():
            raise ImportError("scipy 0.16+ is required for linear algebra")

    linalg.ensure_blas = probe
    try:
        arraymath = importlib.import_module("numba.np.arraymath")
    finally:
        linalg.ensure_blas = real
    if getattr(arraymath, "ensure_blas", None) is probe:
        arraymath.ensure_blas = real


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block, then as it was.

    Importing numba and building its registries allocates some hundred thousand objects;
    each collection they trigger walks every object alive, torch's included. Paused, the
    first dropout call of a process costs about 0.1-0.15 s less (benchmarks/step.py, table
    3); nothing is leaked: the next collection after the block sees whatever was freed.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build_registries() -> None:
    """Build numba's lazily made typing and target registries now (the first kernel call,
    even one served from the disk cache, would build them), under the same pause."""
    try:
        from numba.core.registry import cpu_target

        cpu_target.typing_context.refresh()
        cpu_target.target_context.refresh()
    except (ImportError, AttributeError):  # (numba's layout changed: the first call builds)
        pass


def load() -> NumbaBackend:
    """Import numba and the kernels; ImportError naming the extra when numba is missing."""
    if _failed:
        raise ImportError(_MISSING) from _failed[0]
    try:
        with _collector_paused():
            kernels = importlib.import_module("dropkit.kernels.numba_dropout")
            _prefer_openmp()
            _probe_blas_without_scipy_linalg()
            _build_registries()
    except ImportError as err:
        if err.name is not None and err.name.split(".")[0] != "numba":
            raise
        _failed.append(err)
        raise ImportError(_MISSING) from err
    return NumbaBackend(kernels)


def _wide_vectors() -> bool:
    """Whether the CPU numba compiles for has AVX-512: the feature string numba's own CPU
    codegen uses (``NUMBA_CPU_FEATURES`` if set, else the host's, less AVX when
    ``NUMBA_ENABLE_AVX=0``)."""
    from numba.core import codegen, config

    features = config.CPU_FEATURES
    if features is None:
        try:
            features = codegen.get_host_cpu_features()
        except Exception:  # (numba's layout changed: take the kernels that suit both)
            return False
    return "+avx512f" in str(features).split(",")


_SCALARS: dict[tuple[int, float, float, type], tuple[np.uint64, np.floating, np.floating]] = {}


def _scalars(
    thresh: int, w_keep: float, w_drop: float, ftype: type
) -> tuple[np.uint64, np.floating, np.floating]:
    """A call's threshold and weights as the kernels' numpy scalars, made once per value
    (the same few per model: about 2 us a call saved, of a dropout's 20-50 at 1024
    elements)."""
    # (-0.0 == 0.0 as a dict key: a negative zero is never cached, nor served one)
    signed = (not w_keep and math.copysign(1.0, w_keep) < 0) or (
        not w_drop and math.copysign(1.0, w_drop) < 0
    )
    key = (thresh, w_keep, w_drop, ftype)
    found = None if signed else _SCALARS.get(key)
    if found is None:
        found = (np.uint64(thresh), ftype(w_keep), ftype(w_drop))
        if not signed:
            if len(_SCALARS) > 1024:  # (a schedule sweeping p: keep the cache small)
                _SCALARS.clear()
            _SCALARS[key] = found
    return found


def _signed64(seed: int) -> int:
    """The int64 with ``seed``'s low 64 bits (two's complement): what the kernels take."""
    return ((seed + _HALF64) & _MASK64) - _HALF64


def _key(seed: int, thresh: int) -> tuple[np.uint64, np.uint64, np.uint64]:
    k0, k1 = rng.seed_key(seed)
    return np.uint64(k0), np.uint64(k1), np.uint64(thresh)


def _row_keys(seed: torch.Tensor, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The Philox key halves ``(lo32, hi32)`` of each row, as uint64 arrays ``[rows]``."""
    if seed.dim() == 0:  # one key for every row: two tiny arrays, no tensor round trip
        k0, k1 = rng.seed_key(int(seed))
        if rows == 1:  # np.array of a tuple: a third of np.full's cost
            return np.array((k0,), dtype=np.uint64), np.array((k1,), dtype=np.uint64)
        return np.full(rows, k0, dtype=np.uint64), np.full(rows, k1, dtype=np.uint64)
    keys = seed.detach().contiguous().numpy().view(np.uint64)
    return keys & np.uint64(rng.MASK32), keys >> np.uint64(32)


def _packed_keys(seed: torch.Tensor, rows: int) -> np.ndarray:
    """Each row's 64-bit key as a uint64 array ``[rows]`` (the form the row kernels take)."""
    if seed.dim() == 0:
        return np.full(rows, int(seed) % (1 << 64), dtype=np.uint64)
    return seed.detach().contiguous().numpy().view(np.uint64)


def _flat(t: torch.Tensor) -> np.ndarray:
    """The flat numpy view of a contiguous CPU tensor (shares memory)."""
    return (t.detach() if t.requires_grad else t).numpy().reshape(-1)


def _flat_bits(t: torch.Tensor) -> np.ndarray:
    """The flat uint16 view of a contiguous bfloat16 CPU tensor's bits (shares memory)."""
    return t.detach().view(torch.int16).numpy().reshape(-1).view(np.uint16)


class NumbaBackend:
    """CPU float16/bfloat16/float32/float64: Philox drawn inside one fused parallel loop."""

    name = "numba"

    def __init__(self, kernels: ModuleType) -> None:
        self._k = kernels
        self._noise_kernels: ModuleType | None = None
        self._packed_kernels: ModuleType | None = None
        # Elements per part below which a parallel launch costs more than it saves.
        self._min_part = 4 * kernels.CHUNK
        # Whether numba compiles for 512-bit vectors. It picks the kernel for rows of 128 to
        # 508 elements (docs/kernels.md): with AVX-512, eight counters at a time with the
        # row's key broadcast (``scale_rows_by_eight``); with AVX2, where that kernel runs
        # 1.3x slower than per-lane keys, the flat walk of blocks (``scale_rows_flat``, one
        # key per run of a row). The same bits either way; the tests run both settings.
        self.wide_vectors = _wide_vectors()

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
            step = self._step(numel)
            if step:
                self._k.keep_mask_parallel(oa, step, *_key(seed, thresh))
            else:
                self._k.keep_mask_serial(oa, _ZERO, *_key(seed, thresh))
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
        if n < 2 * self._min_part and x.dtype in _BY_ADDRESS:
            # Serial, by address: no numpy views (the fixed cost of a small call).
            _, wk, wd = _scalars(thresh, w_keep, w_drop, _BY_ADDRESS[x.dtype])
            kernel = self._k.scale_bf16_at_address if x.dtype == torch.bfloat16 else (
                self._k.scale_at_address)
            kernel(x.data_ptr(), out.data_ptr(), n, _signed64(seed), thresh, wk, wd)
            return
        if x.dtype == torch.bfloat16:  # fused: the kernel widens and rounds the raw bits
            xa = _flat_bits(x)
            self._launch(xa, xa if out is x else _flat_bits(out), n, seed, thresh, w_keep, w_drop)
            return
        if x.dtype == torch.float16:
            wide = x.detach().float()
            wa = _flat(wide)
            self._launch(wa, wa, n, seed, thresh, w_keep, w_drop)
            out.detach().copy_(wide)
            return
        xa = _flat(x)
        self._launch(xa, xa if out is x else _flat(out), n, seed, thresh, w_keep, w_drop)

    # Keyed primitives (dropkit.backends.keyed): per-row keys and any offset.
    def keep_mask_keys(
        self,
        seed: torch.Tensor,
        offset: int,
        rows: int,
        row_len: int,
        thresh: int,
        device: torch.device,
    ) -> torch.Tensor:
        out = torch.empty(rows * row_len, dtype=torch.bool, device=device)
        if rows * row_len:
            keys0, keys1 = _row_keys(seed, rows)
            self._k.keep_mask_rows(
                out.numpy(), row_len, keys0, keys1, np.uint64(offset), np.uint64(thresh)
            )
        return out

    def bits_keys(
        self, seed: torch.Tensor, offset: int, rows: int, row_len: int, device: torch.device
    ) -> torch.Tensor:
        out = np.empty(rows * row_len, dtype=np.uint32)
        if rows * row_len:
            keys0, keys1 = _row_keys(seed, rows)
            self._k.bits_rows(out, row_len, keys0, keys1, np.uint64(offset))
        return torch.from_numpy(out.astype(np.float64))  # exact: every uint32 fits

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
        n = x.numel()
        if n == 0:
            return
        keys = _packed_keys(seed, rows)
        if x.dtype in (torch.float16, torch.bfloat16):
            # Widen exactly, scale in float32, narrow with torch's rounding: the
            # reference's own path, so bit-identical (NaN bits included).
            wide = x.detach().float()
            wa = _flat(wide)
            self._rows(wa, wa, row_len, keys, offset, thresh, w_keep, w_drop)
            out.detach().copy_(wide)
            return
        xa = _flat(x)
        oa = xa if out is x else _flat(out)
        self._rows(xa, oa, row_len, keys, offset, thresh, w_keep, w_drop)

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
        """``out = x * w (+ b)``, a mask ``[outer, inner]`` over ``x`` as ``[outer, mid, inner]``;
        False to decline.

        Serial: it declines inputs large enough for the parallel kernels (the caller then
        multiplies by a broadcast weight tensor, in torch's threads).
        """
        n = x.numel()
        if n >= 2 * self._min_part:
            return False
        if n == 0:
            return True
        w_keep, w_drop, b_keep, b_drop = weights
        f = _FLOATS.get(x.dtype)
        if f is not None and rows == 1 and seed.dim() == 0:  # by address (see scale)
            self._k.scale_groups_at_address(
                x.data_ptr(), out.data_ptr(), n, mid, inner, int(seed), offset, thresh,
                f(w_keep), f(w_drop), f(b_keep), f(b_drop), b_keep != 0.0 or b_drop != 0.0,
            )
            return True
        keys0, keys1 = _row_keys(seed, rows)
        wide = x.detach().float() if x.dtype in (torch.float16, torch.bfloat16) else None
        xa = _flat(x if wide is None else wide)
        oa = xa if (out is x or wide is not None) else _flat(out)
        f = xa.dtype.type
        self._k.scale_groups(
            xa, oa, mid, inner, row_len, keys0, keys1, np.uint64(offset), np.uint64(thresh),
            f(w_keep), f(w_drop), f(b_keep), f(b_drop), b_keep != 0.0 or b_drop != 0.0,
        )
        if wide is not None:  # narrowed with torch's rounding, as the reference
            out.detach().copy_(wide)
        return True

    def normal_keys(
        self, seed: torch.Tensor, offset: int, rows: int, row_len: int, device: torch.device
    ) -> torch.Tensor:
        return self._noise_rows("normal_rows", seed, offset, rows, row_len)

    def logistic_keys(
        self, seed: torch.Tensor, offset: int, rows: int, row_len: int, device: torch.device
    ) -> torch.Tensor:
        return self._noise_rows("logistic_rows", seed, offset, rows, row_len)

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
        """Concrete dropout's ``(w, dw / d logit)`` in one pass (``numba_noise.concrete_rows``)."""
        n = rows * row_len
        if rows == 1 and seed.dim() == 0 and n:  # by address (see scale)
            w_t = torch.empty(n, dtype=dtype)
            dw_t = torch.empty(n if grad else 0, dtype=dtype)
            self._noise().concrete_at_address(
                w_t.data_ptr(), w_t.data_ptr() if not grad else dw_t.data_ptr(), n, int(seed),
                offset, float(logit), temperature, grad, _FLOATS[dtype](0),
            )
            return w_t, (dw_t if grad else None)
        kind = np.float32 if dtype == torch.float32 else np.float64
        w, dw = np.empty(n, kind), np.empty(n if grad else 0, kind)
        if n:
            keys0, keys1 = _row_keys(seed, rows)
            self._noise().concrete_rows(
                w, dw, row_len, keys0, keys1, np.uint64(offset), float(logit), temperature, grad
            )
        return torch.from_numpy(w), (torch.from_numpy(dw) if grad else None)

    def _noise_rows(
        self, kernel: str, seed: torch.Tensor, offset: int, rows: int, row_len: int
    ) -> torch.Tensor:
        """Float64 noise ``[rows * row_len]`` from one of the row kernels of ``numba_noise``."""
        out = np.empty(rows * row_len, dtype=np.float64)
        if rows * row_len:
            keys0, keys1 = _row_keys(seed, rows)
            getattr(self._noise(), kernel)(out, row_len, keys0, keys1, np.uint64(offset))
        return torch.from_numpy(out)

    def gaussian_keys(
        self,
        x: torch.Tensor,
        out: torch.Tensor,
        seed: torch.Tensor,
        offset: int,
        rows: int,
        row_len: int,
        std: float,
    ) -> bool:
        """Gaussian dropout in one pass (float32/float64, serial); False to decline."""
        if x.dtype not in (torch.float32, torch.float64) or x.numel() >= 2 * self._min_part:
            return False
        if rows == 1 and seed.dim() == 0:  # by address (see scale)
            self._noise().gaussian_at_address(
                x.data_ptr(), out.data_ptr(), x.numel(), int(seed), offset, std,
                _FLOATS[x.dtype](0),
            )
            return True
        keys0, keys1 = _row_keys(seed, rows)
        xa = _flat(x)
        oa = xa if out is x else _flat(out)
        self._noise().gaussian_rows(xa, oa, row_len, keys0, keys1, np.uint64(offset), std)
        return True

    def _noise(self) -> ModuleType:
        """The noise kernels, imported on first use (their compile is paid only then)."""
        if self._noise_kernels is None:
            self._noise_kernels = importlib.import_module("dropkit.kernels.numba_noise")
        return self._noise_kernels

    def drop_block_keys(
        self,
        x: torch.Tensor,
        out: torch.Tensor,
        seed: torch.Tensor,
        offset: int,
        thresh: int,
        block: int,
    ) -> bool:
        """DropBlock in one pass (float32/float64, serial); False to decline (half types,
        inputs large enough for torch's threads)."""
        if x.dtype not in (torch.float32, torch.float64) or x.numel() >= 2 * self._min_part:
            return False
        if seed.dim() == 0:  # by address (see scale)
            n, c, h, w = x.shape
            self._k.drop_block_at_address(
                x.data_ptr(), out.data_ptr(), n, c, h, w, block, int(seed), offset, thresh,
                _FLOATS[x.dtype](0),
            )
            return True
        keys0, keys1 = _row_keys(seed, seed.shape[0])
        shape = np.array(x.shape, dtype=np.int64)
        xa = _flat(x)
        oa = xa if out is x else _flat(out)
        self._k.drop_block_rows(
            xa, oa, shape, block, keys0, keys1, np.uint64(offset), np.uint64(thresh)
        )
        return True

    def select_pair(
        self,
        numel: int,
        seed: int,
        thresh: int,
        weights: tuple[float, float, float, float],
        dtype: torch.dtype,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(w, b)`` ``[numel]`` of an affine multiplier in one serial pass, scalar key from
        element 0; None to decline (other dtypes, or large enough for parallel passes)."""
        if dtype not in (torch.float32, torch.float64) or numel >= 2 * self._min_part:
            return None
        w, b = torch.empty(numel, dtype=dtype), torch.empty(numel, dtype=dtype)
        if numel:
            f = _FLOATS[dtype]
            self._k.select_pair_at_address(
                w.data_ptr(), b.data_ptr(), numel, _signed64(seed), thresh,
                *(f(v) for v in weights),
            )
        return w, b

    def select_at_keys(
        self,
        seed: torch.Tensor,
        offset: int,
        indices: torch.Tensor,
        thresh: int,
        w_keep: float,
        w_drop: float,
        dtype: torch.dtype,
    ) -> torch.Tensor | None:
        """``w_keep``/``w_drop`` per entry of ``indices`` (CPU int64); None to decline."""
        f = _FLOATS.get(dtype)
        if f is None or type(indices) is not torch.Tensor:
            return None
        if not indices.is_cpu or torch._C._are_functorch_transforms_active():
            return None  # (under torch.func the reference's torch ops serve)
        out = torch.empty(indices.shape, dtype=dtype)  # (cheaper than from_numpy + view)
        if out.numel():
            if indices.dtype != torch.int64 or not indices.is_contiguous():
                indices = indices.to(torch.int64).contiguous()
            self._k.select_at_address(
                out.data_ptr(), indices.data_ptr(), out.numel(), offset, int(seed), thresh,
                f(w_keep), f(w_drop),
            )
        return out

    def derive_keys(
        self, seed: int, c0: torch.Tensor, c1: torch.Tensor, call: int, domain: int
    ) -> torch.Tensor | None:
        """Derived keys (``rng.derive_keys``) of CPU counter words, in one kernel pass."""
        if c0.device.type != "cpu" or type(c0) is not torch.Tensor or type(c1) is not torch.Tensor:
            return None
        if torch._C._are_functorch_transforms_active():
            return None
        a = c0.to(torch.int64).contiguous().numpy().reshape(-1).view(np.uint64)
        b = c1.to(torch.int64).contiguous().numpy().reshape(-1).view(np.uint64)
        out = np.empty(a.shape[0], dtype=np.uint64)
        k0, k1 = rng.seed_key(seed)
        self._k.derive_keys(
            out, a, b, np.uint64(k0), np.uint64(k1), np.uint64(call), np.uint64(domain)
        )
        return torch.from_numpy(out.view(np.int64)).view(c0.shape)

    def id_deriver(
        self, seed: int, ids: torch.Tensor, domain: int
    ) -> Callable[[int], torch.Tensor] | None:
        """``call -> keys`` for fixed ``(seed, ids, domain)``: one kernel pass per call, which
        splits the ids' words itself. None to decline."""
        if ids.device.type != "cpu" or type(ids) is not torch.Tensor:
            return None
        if torch._C._are_functorch_transforms_active():
            return None
        if ids.dtype != torch.int64 or not ids.is_contiguous():
            ids = ids.to(torch.int64).contiguous()
        v = ids.numpy().reshape(-1).view(np.uint64)
        k0, k1 = (np.uint64(k) for k in rng.seed_key(seed))
        dom, shape = np.uint64(domain), ids.shape
        kernel = self._k.derive_id_keys
        parts = self._parts(v.shape[0], _PARALLEL_IDS)
        if parts > 1:  # (decided once per block: the thread count is read here only)
            step, pid = -(-v.shape[0] // parts), os.getpid()
            parallel = self._k.derive_id_keys_parallel

            def derive(call: int) -> torch.Tensor:
                out = torch.empty(shape, dtype=torch.int64)
                if os.getpid() != pid:  # a block carried into a forked child: serially
                    kernel(out.numpy().view(np.uint64), v, k0, k1, np.uint64(call), dom)
                else:
                    parallel(out.numpy().view(np.uint64), v, k0, k1, np.uint64(call), dom, step)
                return out

            return derive

        def derive(call: int) -> torch.Tensor:
            out = torch.empty(shape, dtype=torch.int64)  # (cheaper than from_numpy)
            kernel(out.numpy().view(np.uint64), v, k0, k1, np.uint64(call), dom)
            return out

        return derive

    def _rows(
        self,
        xa: np.ndarray,
        oa: np.ndarray,
        row_len: int,
        keys: np.ndarray,
        offset: int,
        thresh: int,
        w_keep: float,
        w_drop: float,
    ) -> None:
        k = self._k
        ftype = xa.dtype.type
        args = (np.uint64(offset), *_scalars(thresh, w_keep, w_drop, ftype))
        step = self._step(xa.shape[0])
        whole = row_len % 4 == 0 and offset % 4 == 0  # rows of whole Philox counters
        wide = self.wide_vectors
        if whole and row_len >= (k.SHORT_ROW if wide else _FLAT_ROWS):  # one flat walk of
            if step:  # blocks, split anywhere
                k.scale_rows_flat_parallel(xa, oa, row_len, keys, *args, step >> 2)
            else:
                k.scale_rows_flat(xa, oa, row_len, keys, *args)
        elif step and keys.shape[0] > 1:  # parts of whole rows, about ``step`` elements each
            k.scale_rows_parallel(xa, oa, row_len, keys, *args, max(1, step // max(row_len, 1)),
                                  wide)
        elif wide and k.eight_rows_ok(row_len, args[0]):
            k.scale_rows_by_eight(xa, oa, row_len, keys, *args)
        elif whole and row_len >= 4:
            k.scale_short_rows(xa, oa, row_len, keys, *args)
        else:
            k.scale_rows_serial(xa, oa, row_len, keys, *args)

    def scale_pack(
        self,
        x: torch.Tensor,
        out: torch.Tensor,
        packed: torch.Tensor,
        seed: int,
        thresh: int,
        w_keep: float,
        w_drop: float,
    ) -> bool:
        """``scale`` that also packs the keep decisions into ``packed`` (uint8, one bit per
        element); float32/float64 only (False to decline)."""
        if x.dtype not in (torch.float32, torch.float64):
            return False
        n = x.numel()
        if n == 0:
            return True
        xa = _flat(x)
        oa, pa = (xa if out is x else _flat(out)), packed.numpy()
        f = xa.dtype.type
        args = (*_key(seed, thresh), f(w_keep), f(w_drop))
        step = self._step(n)
        if step:
            self._packed().scale_pack_parallel(xa, oa, pa, step, *args)
        else:
            self._packed().scale_pack_serial(xa, oa, pa, _ZERO, *args)
        return True

    def unpack_scale(
        self, g: torch.Tensor, out: torch.Tensor, packed: torch.Tensor, w_keep: float,
        w_drop: float,
    ) -> bool:
        """``out = g * (w_keep if bit else w_drop)`` from a packed mask; float32/float64 only."""
        if g.dtype not in (torch.float32, torch.float64):
            return False
        n = g.numel()
        if n == 0:
            return True
        ga = _flat(g)
        oa, pa = _flat(out), packed.numpy()
        f = ga.dtype.type
        step = self._step(n)
        if step:
            self._packed().unpack_scale_parallel(ga, oa, pa, step, f(w_keep), f(w_drop))
        else:
            self._packed().unpack_scale_serial(ga, oa, pa, f(w_keep), f(w_drop))
        return True

    def _packed(self) -> ModuleType:
        """The packed-mask kernels, imported on first use."""
        if self._packed_kernels is None:
            self._packed_kernels = importlib.import_module("dropkit.kernels.numba_packed")
        return self._packed_kernels

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
        k = self._k
        bf16 = xa.dtype == np.uint16  # bfloat16 bits: float32 weights, the bfloat16 kernels
        ftype = np.float32 if bf16 else xa.dtype.type
        k0, k1 = rng.seed_key(seed)
        args = (np.uint64(k0), np.uint64(k1), *_scalars(thresh, w_keep, w_drop, ftype))
        if n < 2 * self._min_part or not (step := self._step(n)):  # (small: no thread count)
            (k.scale_bf16_serial if bf16 else k.scale_serial)(xa, oa, _ZERO, *args)
        else:
            (k.scale_bf16_parallel if bf16 else k.scale_parallel)(xa, oa, step, *args)

    def _step(self, n: int) -> int:
        """Elements per parallel part (a multiple of the chunk), or 0 to run serially."""
        parts = self._parts(n, self._min_part)
        if parts <= 1:
            return 0
        chunk = self._k.CHUNK
        return -(-n // (parts * chunk)) * chunk

    def _parts(self, n: int, min_part: int) -> int:
        """How many parallel parts of at least ``min_part`` items ``n`` items run in (1:
        serially; always 1 in a forked child, whose parent's OpenMP runtime is unusable)."""
        if n < 2 * min_part:  # (the common small call: no thread count to read)
            return 1
        parts = min(torch.get_num_threads(), n // min_part)
        if parts <= 1:
            return 1
        global _parallel_pid
        pid = os.getpid()
        if _parallel_pid is None:
            _parallel_pid = pid
        elif _parallel_pid != pid:
            return 1
        return parts
