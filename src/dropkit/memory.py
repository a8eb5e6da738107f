"""What each dropout layer of a model keeps for backward, per training step.

:func:`backward_bytes` runs one forward of the model and counts, with torch's
``saved_tensors_hooks``, the bytes of the tensors autograd saves while each dropkit layer
runs (not while a layer it wraps runs: ``ConcreteDropout``'s inner ``Linear`` keeps its own
input, as it would without dropout). Keys held by value (a seed) are not tensors saved for
backward and count nothing: ``backward="seed"`` keeps 0 bytes, ``"bits"`` one bit per
element of the mask (docs/design.md, "Backward").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dropkit.layers.base import StochasticModule

__all__ = ["LayerBytes", "backward_bytes"]

# dropkit's layers, and torch's own dropout modules for comparison (torch keeps a bool mask).
_LAYERS = (StochasticModule, nn.modules.dropout._DropoutNd)


@dataclass(frozen=True)
class LayerBytes:
    """What one layer kept: ``bytes`` of saved tensors for ``elements`` output elements."""

    bytes: int
    elements: int

    @property
    def per_element(self) -> float:
        """Bytes kept per output element (0 for an empty output)."""
        return self.bytes / self.elements if self.elements else 0.0


def backward_bytes(model: nn.Module, *args: Any, **kwargs: Any) -> dict[str, LayerBytes]:
    """Bytes each dropkit layer of ``model`` keeps for backward in one forward on ``args``.

    The forward runs in the model's current mode (call ``model.train()`` first to measure
    a training step) with grad enabled; its graph is dropped. Tensors saved twice (one
    storage) count once per layer.

    Args:
        model: any module holding dropkit layers (their qualified names are the keys).
        args, kwargs: the model's inputs.

    Returns:
        ``{qualified name: LayerBytes}`` for every dropkit layer that ran, and every
        ``torch.nn`` dropout module (for comparison).

    Example:
        >>> import torch
        >>> import dropkit
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 4096), dropkit.nn.Dropout(0.5,
        ...                           backward="bits")).train()
        >>> kept = dropkit.backward_bytes(net, torch.randn(16, 8))
        >>> kept["1"].bytes, kept["1"].per_element
        (8192, 0.125)
    """
    names = {id(m): n for n, m in model.named_modules()}
    stack: list[nn.Module] = []
    counted: dict[str, dict[tuple[int, int], int]] = {}
    elements: dict[str, int] = {}
    handles = []

    def enter(module: nn.Module, _: Any) -> None:
        stack.append(module)

    def leave(module: nn.Module, _: Any, output: Any) -> None:
        stack.pop()
        if isinstance(module, _LAYERS) and isinstance(output, torch.Tensor):
            name = names[id(module)]
            elements[name] = elements.get(name, 0) + output.numel()
            counted.setdefault(name, {})

    def pack(t: torch.Tensor) -> torch.Tensor:
        if stack and isinstance(stack[-1], _LAYERS):
            name = names[id(stack[-1])]
            storage = t.untyped_storage()
            counted.setdefault(name, {})[(storage.data_ptr(), storage.nbytes())] = (
                storage.nbytes()
            )
        return t

    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "backward_bytes runs the model with grad enabled to see what autograd saves; "
            "under torch.inference_mode() nothing is saved (it would report 0 bytes): call "
            "it outside inference mode"
        )
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return {
        name: LayerBytes(sum(seen.values()), elements.get(name, 0))
        for name, seen in counted.items()
    }
