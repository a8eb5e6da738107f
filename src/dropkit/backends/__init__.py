"""Backend registry and the one dispatch point.

``"auto"`` picks the fastest backend that can serve a tensor (by device and dtype) and
falls back to the reference otherwise; since every backend computes the same function, a
fallback never changes a result. A backend named explicitly either serves or raises.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import torch

from dropkit.backends.base import Backend
from dropkit.backends.reference import ReferenceBackend

__all__ = [
    "available_backends",
    "backend_names",
    "get_backend",
    "resolve",
    "set_backend",
    "use_backend",
]

_FACTORIES: dict[str, Callable[[], Backend]] = {"reference": ReferenceBackend}
_INSTANCES: dict[str, Backend] = {}
_AUTO_ORDER: tuple[str, ...] = ()
_AUTO_CHOICE: dict[tuple[str, torch.dtype], Backend] = {}  # "auto"'s pick per (device, dtype)
_current: contextvars.ContextVar[str] = contextvars.ContextVar("dropkit_backend", default="auto")


def register(name: str, factory: Callable[[], Backend], *, auto: bool = True) -> None:
    """Add a backend under ``name``; ``auto`` puts it ahead of the reference for "auto"."""
    global _AUTO_ORDER
    _AUTO_CHOICE.clear()
    _FACTORIES[name] = factory
    if auto and name not in _AUTO_ORDER:
        _AUTO_ORDER = (*_AUTO_ORDER, name)


def _numba_factory() -> Backend:
    from dropkit.backends.numba import load  # imports numba only when first used

    return load()


register("numba", _numba_factory)


def backend_names() -> tuple[str, ...]:
    """Every name ``set_backend`` accepts."""
    return ("auto", *_FACTORIES)


def _instance(name: str) -> Backend:
    if name not in _INSTANCES:
        _INSTANCES[name] = _FACTORIES[name]()
    return _INSTANCES[name]


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a str, but got {type(name).__name__}")
    if name not in backend_names():
        raise ValueError(
            f"unknown dropkit backend {name!r}; choose one of {', '.join(backend_names())}"
        )
    return name


def set_backend(name: str) -> None:
    """Choose the backend for every later dropkit call in this context ("auto" by default).

    Example:
        >>> import dropkit
        >>> dropkit.set_backend("reference"); dropkit.get_backend()
        'reference'
        >>> dropkit.set_backend("auto")
    """
    _current.set(_check_name(name))


def get_backend() -> str:
    """The backend name in force ("auto" unless changed)."""
    return _current.get()


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: use backend ``name`` inside the block, restore the previous one after.

    Example:
        >>> import torch, dropkit
        >>> with dropkit.use_backend("reference"):
        ...     y = dropkit.functional.dropout(torch.ones(4), 0.5, seed=0)
    """
    token = _current.set(_check_name(name))
    try:
        yield
    finally:
        _current.reset(token)


def _reason(name: str, x: torch.Tensor) -> str | None:
    try:
        backend = _instance(name)
    except ImportError as err:
        return str(err)
    return backend.unavailable(x)


def resolve(x: torch.Tensor) -> Backend:
    """The backend that serves ``x`` now; raises RuntimeError if a named one cannot."""
    name = _current.get()
    if name != "auto":
        reason = _reason(name, x)
        if reason is not None:
            raise RuntimeError(f"dropkit backend {name!r} cannot serve this input: {reason}")
        return _instance(name)
    # "auto" depends on the device type and dtype alone (what ``unavailable`` reads): the
    # choice is remembered per pair, and forgotten when a backend is registered.
    pair = ("cpu" if x.is_cpu else x.device.type, x.dtype)  # (is_cpu: no device object)
    chosen = _AUTO_CHOICE.get(pair)
    if chosen is None:
        chosen = next(
            (_instance(c) for c in _AUTO_ORDER if _reason(c, x) is None), None
        ) or _instance("reference")
        _AUTO_CHOICE[pair] = chosen
    return chosen


def available_backends(x: torch.Tensor | None = None) -> dict[str, str | None]:
    """For each backend, None if it can serve ``x`` (default: a CPU float32 tensor), else why."""
    probe = torch.empty(0) if x is None else x
    return {name: _reason(name, probe) for name in _FACTORIES}


# Optional backends, built lazily (their dependency is imported on first use only).
# "auto" tries them in registration order: numba (CPU), then triton (CUDA).
def _triton_backend() -> Backend:
    from dropkit.backends.triton import TritonBackend  # imports triton itself only when used

    return TritonBackend()


register("triton", _triton_backend)
