"""Mode safety for dropout layers: convert torch's, guard against a forgotten eval(), MC mode.

Dropout layers are ``dropkit.nn.StochasticModule`` subclasses (dropkit's) and
``torch.nn.modules.dropout._DropoutNd`` subclasses (torch's). A layer *would drop right now*
when it is in training mode and its ``p`` is above 0 (a layer without ``p`` counts as
dropping whenever it is in training mode).

Papers: Gal & Ghahramani 2016, "Dropout as a Bayesian approximation: representing model
uncertainty in deep learning" (MC dropout, :func:`mc_mode`).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import warnings
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd as _TorchDropoutNd

from dropkit import nn as dnn

__all__ = [
    "ActiveDropoutWarning",
    "Conversion",
    "GuardHandle",
    "active_dropout",
    "convert",
    "dropout_layers",
    "guard",
    "mc_mode",
]

# torch.nn class -> dropkit twin. Exact classes only: a user subclass may override forward.
_TWINS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Dropout: dnn.Dropout,
    nn.Dropout1d: dnn.Dropout1d,
    nn.Dropout2d: dnn.Dropout2d,
    nn.Dropout3d: dnn.Dropout3d,
    nn.AlphaDropout: dnn.AlphaDropout,
    nn.FeatureAlphaDropout: dnn.FeatureAlphaDropout,
}

# Depth of open mc_mode blocks in this context: guard stays silent inside them.
_mc_depth: contextvars.ContextVar[int] = contextvars.ContextVar("dropkit_mc_mode", default=0)

# Open mc_mode blocks per module, in every thread: id(module) -> (open blocks, its flag
# before the first). The first entry saves the flag, the last exit restores it, so
# overlapping blocks (nested, or mc_predict from two threads) never restore each other's MC
# flags. Each open block holds its modules, so an id here cannot be reused meanwhile.
_mc_lock = threading.Lock()
_mc_open: dict[int, tuple[int, bool]] = {}


class ActiveDropoutWarning(UserWarning):
    """A dropout layer sampled while autograd was off: probably a forgotten ``model.eval()``."""


class Conversion(NamedTuple):
    """One module replaced by :func:`convert`: qualified name, old class, new class."""

    name: str
    old: type[nn.Module]
    new: type[nn.Module]


def _is_dropout(module: nn.Module) -> bool:
    return isinstance(module, (dnn.StochasticModule, _TorchDropoutNd))


def _drops(module: nn.Module) -> bool:
    return module.training and float(getattr(module, "p", 1.0)) > 0.0


def dropout_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every dropout layer of ``model`` (dropkit's and torch's), as ``(qualified name, module)``.

    Example:
        >>> import torch, dropkit
        >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2), dropkit.nn.Dropout(0.1))
        >>> [name for name, _ in dropkit.modes.dropout_layers(m)]
        ['1']
    """
    return [(name, m) for name, m in model.named_modules() if _is_dropout(m)]


def active_dropout(model: nn.Module) -> list[str]:
    """Qualified names of the dropout layers that would drop right now (training and ``p > 0``).

    Example:
        >>> import torch, dropkit
        >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
        >>> dropkit.active_dropout(m)
        ['1']
        >>> dropkit.active_dropout(m.eval())
        []
    """
    return [name for name, m in dropout_layers(model) if _drops(m)]


def convert(model: nn.Module) -> list[Conversion]:
    """Replace every torch.nn dropout module by its dropkit twin, in place.

    ``p``, ``inplace`` and the train/eval flag carry over, so outputs in eval mode and the
    ``state_dict`` (dropout layers hold no tensors) are unchanged. Classes handled:
    Dropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout (exact classes; subclasses
    are left alone, as their forward may differ). A module shared at several places is
    replaced by one shared twin. Hooks registered on the old modules are not carried over.

    Args:
        model: a module containing dropout layers (not a dropout layer itself).

    Returns:
        One :class:`Conversion` ``(name, old class, new class)`` per replaced slot (a
        module shared by two slots gives two, under the first name reaching each slot).
        Warns ("No layer was modified") when the list is empty.

    Example:
        >>> import torch, dropkit
        >>> m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.2))
        >>> [(c.name, c.new.__name__) for c in dropkit.convert(m)]
        [('1', 'Dropout')]
        >>> type(m[1]) is dropkit.nn.Dropout, m[1].p
        (True, 0.2)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert expects a torch.nn.Module, but got {type(model).__name__}")
    if type(model) in _TWINS:
        raise ValueError(
            f"convert replaces dropout layers inside a model, but got a bare {model!r}; "
            f"use dropkit.nn.{type(model).__name__}(p={model.p}) instead"
        )
    twins: dict[int, nn.Module] = {}
    changes: list[Conversion] = []
    # Every slot of every parent: named_children() and named_modules() deduplicate, so a
    # module shared by two slots of one parent would keep torch's class in the second.
    # remove_duplicate=False lists a parent once per path to it; a slot already replaced
    # (a shared parent met again) holds a twin by then and is skipped.
    for parent_name, parent in list(model.named_modules(remove_duplicate=False)):
        for child_name, child in list(parent._modules.items()):
            cls = type(child)
            if child is None or cls not in _TWINS:
                continue
            if id(child) not in twins:
                twin = _TWINS[cls](p=child.p, inplace=child.inplace)
                twins[id(child)] = twin.train(child.training)
            setattr(parent, child_name, twins[id(child)])
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            changes.append(Conversion(name, cls, _TWINS[cls]))
    if not changes:
        warnings.warn(
            "dropkit.convert: No layer was modified (the model has no torch.nn dropout "
            "layer to replace)",
            UserWarning,
            stacklevel=2,
        )
    return changes


class GuardHandle:
    """What :func:`guard` returns: ``remove()`` the hooks, or use it as a context manager."""

    def __init__(self, handles: list[torch.utils.hooks.RemovableHandle]) -> None:
        self._handles = handles

    @property
    def layers(self) -> int:
        """How many dropout layers carry a guard hook."""
        return len(self._handles)

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> GuardHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def guard(model: nn.Module, *, strict: bool = False) -> GuardHandle:
    """Warn (or raise) when a dropout layer samples while autograd is off.

    Training mode under ``torch.no_grad()`` / ``torch.inference_mode()`` is the signature of
    a forgotten ``model.eval()``: predictions come out randomly thinned. ``guard`` puts a
    forward pre-hook on every dropout layer present now (dropkit's and torch's); the hook
    checks ``module.training and p > 0 and not torch.is_grad_enabled()``. It stays silent
    inside :func:`mc_mode` (and so inside ``mc_predict``), where sampling is intended.

    Args:
        model: the module to watch.
        strict: raise RuntimeError instead of warning.

    Returns:
        A :class:`GuardHandle`: ``handle.remove()`` takes the hooks off; ``with
        dropkit.guard(model): ...`` does it on exit. Without strict, each layer warns once
        (an :class:`ActiveDropoutWarning`, a UserWarning) per handle.

    Example:
        >>> import warnings, torch, dropkit
        >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2), dropkit.nn.Dropout(0.5))
        >>> with dropkit.guard(m, strict=True), torch.no_grad():
        ...     _ = m.eval()(torch.ones(1, 2))  # eval(): silent
    """
    warned: weakref.WeakSet[nn.Module] = weakref.WeakSet()
    names = {id(m): name for name, m in dropout_layers(model)}

    def hook(module: nn.Module, args: tuple) -> None:
        if torch.is_grad_enabled() or not _drops(module) or _mc_depth.get() > 0:
            return
        message = (
            f"dropout layer {names.get(id(module), '?')!r} ({module!r}) is in training mode "
            "while autograd is off (torch.no_grad / inference_mode): it drops units at "
            "inference. Did you forget model.eval()? For intended Monte-Carlo dropout use "
            "dropkit.mc_mode(model) or dropkit.mc.mc_predict"
        )
        if strict:
            raise RuntimeError(message)
        if module not in warned:
            warned.add(module)
            warnings.warn(message, ActiveDropoutWarning, stacklevel=2)

    handles = [m.register_forward_pre_hook(hook) for _, m in dropout_layers(model)]
    return GuardHandle(handles)


@contextlib.contextmanager
def mc_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: only dropout layers sample; everything else (BatchNorm...) in eval.

    On entry every module goes to eval mode and each dropout layer (dropkit's and torch's)
    to training (each module's own flag is set, non-recursively: ``train()`` overrides are
    not called). On exit, exceptions included, every module gets back the flag it had
    before. :func:`guard` is silent inside.

    Overlapping blocks on one model, nested or from several threads (two ``mc_predict``
    calls at once), are counted per module: the first entry saves the flags, the last exit
    restores them, whatever order the blocks close in. Every entry (re)applies MC mode.

    Args:
        model: the module to put in MC-dropout mode.

    Yields:
        ``model`` itself.

    Example:
        >>> import torch, dropkit
        >>> m = torch.nn.Sequential(torch.nn.BatchNorm1d(3), dropkit.nn.Dropout(0.5))
        >>> with dropkit.mc_mode(m):
        ...     m[0].training, m[1].training
        (False, True)
        >>> m[0].training, m[1].training
        (True, True)

    Paper: Gal & Ghahramani 2016, "Dropout as a Bayesian approximation".
    """
    modules = list(model.modules())  # deduplicated: a shared module counts once per block
    with _mc_lock:
        for module in modules:
            count, flag = _mc_open.get(id(module), (0, module.training))
            _mc_open[id(module)] = (count + 1, flag)
        try:
            for module in modules:
                want = _is_dropout(module)
                if module.training != want:
                    module.training = want
        except BaseException:
            _mc_release(modules)
            raise
    token = _mc_depth.set(_mc_depth.get() + 1)
    try:
        yield model
    finally:
        _mc_depth.reset(token)
        with _mc_lock:
            _mc_release(modules)


def _mc_release(modules: list[nn.Module]) -> None:
    """Count one block's exit (hold _mc_lock); modules it was the last on get their flag."""
    restore = []
    for module in modules:  # every count first: a failing restore below leaves none behind
        count, flag = _mc_open.pop(id(module))
        if count > 1:
            _mc_open[id(module)] = (count - 1, flag)
        else:
            restore.append((module, flag))
    for module, flag in restore:
        module.training = flag
