"""The Triton backend: grids, allocation and launches for ``dropkit.kernels.triton_dropout``.

Serves CUDA tensors of dtype float16, bfloat16, float32 and float64. With
``TRITON_INTERPRET=1`` set before Triton is first imported it also serves CPU tensors
through Triton's interpreter (slow; it exists so that CI and machines without a GPU can
check the kernels bit for bit). Triton itself is imported on first use only, so
``import dropkit`` never pays for it.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import struct
from collections.abc import Callable
from types import ModuleType

import torch

from dropkit.backends import get_backend
from dropkit.backends.base import opmath_dtype

__all__ = [
    "BLOCK_SIZE",
    "TritonBackend",
    "launch_derive_keys",
    "launch_keep_mask",
    "launch_scale",
    "launch_scale_rows",
]

BLOCK_SIZE = 512  # Philox counters per program: 2048 elements
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_UINT64 = (1 << 64) - 1


def _interpret_requested() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for Triton's CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


@functools.cache
def _kernels() -> ModuleType:
    """The kernel module, imported on first use; ImportError names the extra to install."""
    try:
        from dropkit.kernels import triton_dropout
    except ImportError as err:
        raise ImportError(
            f"the triton backend needs Triton ({err}); install it with `pip install dropkit[gpu]`"
        ) from err
    return triton_dropout


def _interpreted(kernels: ModuleType) -> bool:
    """Whether the kernels were built for Triton's interpreter (env var set before import)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(kernels.scale_kernel, InterpretedFunction)


def _bits(value: float, wide: bool) -> int:
    """The IEEE bit pattern of ``value`` rounded (to nearest even) to float64 or float32.

    Same rounding as ``torch.tensor(value, dtype=float32)``, the reference's conversion.
    """
    if wide:
        return struct.unpack("<Q", struct.pack("<d", value))[0]
    try:
        return struct.unpack("<I", struct.pack("<f", value))[0]
    except OverflowError:  # finite double beyond float32's range: torch gives +-inf
        return struct.unpack("<I", struct.pack("<f", math.copysign(math.inf, value)))[0]


def _grid(numel: int) -> tuple[int]:
    return ((numel + 4 * BLOCK_SIZE - 1) // (4 * BLOCK_SIZE),)


def _on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """Make ``device`` current for the launch (Triton launches on the current CUDA device).

    A no-op when it already is: switching costs microseconds on every launch.
    """
    if device.type == "cuda" and device.index != torch.cuda.current_device():
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def launch_scale(
    x: torch.Tensor,
    out: torch.Tensor,
    seed: int,
    thresh: int,
    w_keep: float,
    w_drop: float,
    counter_base: int = 0,
) -> None:
    """``out[e] = x[e] * (w_keep if keep(4 * counter_base + e) else w_drop)``.

    ``x`` and ``out``: contiguous, same shape and dtype (out may be x). ``counter_base``
    shifts the stream (0 for a whole call; tests use it to reach counters past ``2**32``).
    """
    numel = x.numel()
    if numel == 0:
        return
    wide = opmath_dtype(x.dtype) == torch.float64
    with _on_device(x.device):
        _kernels().scale_kernel[_grid(numel)](
            x,
            out,
            numel,
            seed & _UINT64,
            thresh,
            _bits(w_keep, wide),
            _bits(w_drop, wide),
            counter_base,
            BLOCK_SIZE=BLOCK_SIZE,
        )


def launch_keep_mask(
    numel: int, seed: int, thresh: int, device: torch.device, counter_base: int = 0
) -> torch.Tensor:
    """Bool ``[numel]``: element ``e`` kept iff the draw of spec element ``4 * counter_base + e``
    is >= ``thresh``."""
    out = torch.empty(numel, dtype=torch.bool, device=device)
    if numel == 0:
        return out
    with _on_device(out.device):
        _kernels().keep_mask_kernel[_grid(numel)](
            out.view(torch.uint8),
            numel,
            seed & _UINT64,
            thresh,
            counter_base,
            BLOCK_SIZE=BLOCK_SIZE,
        )
    return out


def launch_scale_rows(
    x: torch.Tensor,
    out: torch.Tensor,
    keys: torch.Tensor,
    start: int,
    row_len: int,
    thresh: int,
    w_keep: float,
    w_drop: float,
) -> None:
    """Per-row keys: ``out[r, j] = x[r, j] * (w_keep if keep_{keys[r]}(start + j) else w_drop)``.

    ``x``/``out``: contiguous ``[rows * row_len]`` (out may be x); ``keys``: ``[rows]`` int64.
    """
    rows = keys.shape[0]
    if rows == 0 or row_len == 0:
        return
    wide = opmath_dtype(x.dtype) == torch.float64
    per_row = ((start & 3) + row_len + 4 * BLOCK_SIZE - 1) // (4 * BLOCK_SIZE)
    keys = keys.to(device=x.device, dtype=torch.int64).contiguous()
    with _on_device(x.device):
        _kernels().scale_rows_kernel[(rows, per_row)](
            x, out, keys, row_len, thresh, _bits(w_keep, wide), _bits(w_drop, wide), start,
            BLOCK_SIZE=BLOCK_SIZE,
        )


def launch_derive_keys(ids: torch.Tensor, seed: int, call: int, domain: int) -> torch.Tensor:
    """Derived keys ``[*ids.shape]`` int64 of non-negative int64 ``ids`` (one Philox each)."""
    flat = ids.to(torch.int64).contiguous().view(-1)
    out = torch.empty_like(flat)
    if flat.numel():
        with _on_device(flat.device):
            _kernels().derive_keys_kernel[(triton_cdiv(flat.numel(), _DERIVE_BLOCK),)](
                flat, out, flat.numel(), seed & _UINT64, call, domain, BLOCK=_DERIVE_BLOCK
            )
    return out.view(ids.shape)


def triton_cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


_DERIVE_BLOCK = 256


class TritonBackend:
    """CUDA tensors (and CPU tensors under ``TRITON_INTERPRET=1``) through Triton kernels."""

    name = "triton"

    def unavailable(self, x: torch.Tensor) -> str | None:
        kind = x.device.type
        if kind == "cpu" and not _interpret_requested():
            return (
                "the triton backend serves CUDA tensors; for CPU tensors set "
                "TRITON_INTERPRET=1 before importing triton (Triton's slow interpreter)"
            )
        if kind not in ("cpu", "cuda"):
            return f"the triton backend serves CUDA tensors, not {kind} tensors"
        if x.dtype not in _DTYPES:
            return (
                f"the triton backend serves float16, bfloat16, float32 and float64, "
                f"not {x.dtype}"
            )
        if kind == "cpu" and get_backend() == "auto":
            # The interpreter is a checking tool, thousands of times slower than the
            # reference: it serves CPU tensors only when asked for by name.
            return "auto never picks Triton's interpreter for CPU tensors; name it: 'triton'"
        try:
            kernels = _kernels()
        except ImportError as err:
            return str(err)
        if kind == "cpu" and not _interpreted(kernels):
            return (
                "TRITON_INTERPRET=1 was set after dropkit's Triton kernels were built; "
                "set it before the first import of triton"
            )
        return None

    def keep_mask(
        self, numel: int, seed: int, thresh: int, device: torch.device
    ) -> torch.Tensor:
        return launch_keep_mask(numel, seed, thresh, torch.device(device))

    def scale(
        self,
        x: torch.Tensor,
        out: torch.Tensor,
        seed: int,
        thresh: int,
        w_keep: float,
        w_drop: float,
    ) -> None:
        launch_scale(x, out, seed, thresh, w_keep, w_drop)

    # Keyed primitives (dropkit.backends.keyed): per-row keys, any offset, derived keys.
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
        keys = seed.reshape(1) if seed.dim() == 0 else seed
        launch_scale_rows(x, out, keys, offset, row_len, thresh, w_keep, w_drop)

    def id_deriver(
        self, seed: int, ids: torch.Tensor, domain: int
    ) -> Callable[[int], torch.Tensor] | None:
        if type(ids) is not torch.Tensor or torch._C._are_functorch_transforms_active():
            return None
        return lambda call: launch_derive_keys(ids, seed, call, domain)
