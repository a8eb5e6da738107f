"""Argument checks shared by every dropkit function and module: one message per mistake."""

from __future__ import annotations

import numbers

import torch

from dropkit.errors import DtypeError

__all__ = [
    "SCALINGS",
    "check_dtype",
    "check_input",
    "check_p",
    "check_scaling",
    "check_training",
    "check_writable",
    "zeros_like_product",
]

SCALINGS = ("inverted", "classic")


def check_p(p: object, what: str = "dropout probability") -> float:
    """``p`` as a float in [0, 1]; TypeError for non-numbers, ValueError for NaN or range.

    A 0-d real tensor is read as its value, as torch's dropout reads it (a bool tensor is
    refused, as a bool is); other tensors raise what torch raises (RuntimeError for several
    values, the range's ValueError, then TypeError for one value that is not 0-d).
    """
    tensor = isinstance(p, torch.Tensor) and p.dtype != torch.bool and not p.is_complex()
    if tensor:
        if p.numel() != 1:  # (torch: "Boolean value of Tensor ... is ambiguous")
            raise RuntimeError(
                f"{what} p must be one number, but got a tensor of shape {tuple(p.shape)}"
            )
    elif isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(
            f"{what} p must be a real number (float), but got {type(p).__name__} {p!r}"
        )
    value = float(p)
    # (not math.isnan: torch.compile may trace p as a symbolic float, e.g. after a second
    # model with another p recompiles nn.Sequential.forward, and cannot trace isnan of one)
    if value != value:
        raise ValueError(f"{what} p is NaN; pass a number between 0 and 1")
    if value < 0.0 or value > 1.0:
        raise ValueError(f"{what} has to be between 0 and 1, but got {p}")
    if tensor and p.dim() != 0:
        raise TypeError(f"{what} p must be a float or a 0-d tensor, but got shape {tuple(p.shape)}")
    return value


def check_scaling(scaling: object) -> str:
    """``scaling`` if it is "inverted" or "classic", else a ValueError naming both."""
    if scaling not in SCALINGS:
        raise ValueError(
            f"unknown scaling {scaling!r}; use 'inverted' (PyTorch's: scale kept units by "
            "1/(1-p) in training) or 'classic' (the paper's: multiply by (1-p) at test time)"
        )
    return scaling  # type: ignore[return-value]


def check_training(training: object, name: str) -> bool:
    """``training`` if it is a bool, else torch's TypeError (torch accepts nothing else)."""
    if not isinstance(training, bool):
        raise TypeError(
            f"{name}(): argument 'training' must be bool, not {type(training).__name__} "
            f"({training!r}); modules pass self.training"
        )
    return training


def check_input(input: object, inplace: bool, name: str) -> torch.Tensor:
    """A tensor (any dtype, any flags: see :func:`check_dtype` and :func:`check_writable`).

    Torch returns its input untouched when nothing is dropped, whatever its dtype and even
    for ``inplace=True`` on a leaf that requires grad; the other checks run only once a call
    is known to compute something.
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{name} expects a torch.Tensor, but got {type(input).__name__}")
    return input


def check_writable(input: torch.Tensor, inplace: bool, name: str) -> torch.Tensor:
    """Not a leaf that requires grad when ``inplace`` (autograd forbids writing one)."""
    if inplace and input.requires_grad and input.is_leaf and torch.is_grad_enabled():
        raise RuntimeError(
            f"{name}(inplace=True) cannot modify a leaf tensor that requires grad; "
            "use inplace=False, or apply it to a computed (non-leaf) tensor"
        )
    return input


def check_dtype(input: torch.Tensor, name: str) -> torch.Tensor:
    """A dense floating-point tensor: :class:`dropkit.errors.DtypeError` (torch's error
    types) for another dtype, NotImplementedError (torch's, for sparse) for another layout."""
    if input.layout != torch.strided or input.is_nested:
        kind = "nested" if input.is_nested else str(input.layout).replace("torch.", "")
        raise NotImplementedError(
            f"{name} drops units of dense (strided) tensors, but got a {kind} tensor; drop "
            "its values instead (e.g. for sparse COO: torch.sparse_coo_tensor(x.indices(), "
            f"{name}(x.values(), ...), x.shape); for a jagged nested tensor: "
            "torch.nested.nested_tensor_from_jagged(dropout(x.values(), ...), x.offsets()))"
        )
    if not input.is_floating_point():
        raise DtypeError(
            f"{name} needs a floating-point tensor to drop units of, but got dtype "
            f"{input.dtype}; convert it first, e.g. input.float()"
        )
    return input


def zeros_like_product(input: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``input * 0`` in ``input``'s own dtype (``p == 1``): torch's result for every dtype.

    Zeros for finite input, NaN where the input is NaN or infinite (a product, not a fill).
    """
    zero = torch.zeros((), dtype=input.dtype, device=input.device)
    return input.mul_(zero) if inplace else input * zero
