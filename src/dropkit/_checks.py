"""Argument checks shared by every dropkit function and module: one message per mistake."""

from __future__ import annotations

import numbers

import torch

from dropkit.backends.ops import fresh_seed

__all__ = ["SCALINGS", "check_input", "check_p", "check_scaling", "seed_tensor"]

SCALINGS = ("inverted", "classic")
_UINT64 = 1 << 64


def check_p(p: object, what: str = "dropout probability") -> float:
    """``p`` as a float in [0, 1]; TypeError for non-numbers, ValueError for NaN or range."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
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
    return value


def check_scaling(scaling: object) -> str:
    """``scaling`` if it is "inverted" or "classic", else a ValueError naming both."""
    if scaling not in SCALINGS:
        raise ValueError(
            f"unknown scaling {scaling!r}; use 'inverted' (PyTorch's: scale kept units by "
            "1/(1-p) in training) or 'classic' (the paper's: multiply by (1-p) at test time)"
        )
    return scaling  # type: ignore[return-value]


def check_input(input: object, inplace: bool, name: str) -> torch.Tensor:
    """A floating-point tensor, and not a leaf that requires grad when ``inplace``."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{name} expects a torch.Tensor, but got {type(input).__name__}")
    if not input.is_floating_point():
        raise TypeError(
            f"{name} needs a floating-point tensor, but got dtype {input.dtype}; "
            "convert it first, e.g. input.float()"
        )
    if inplace and input.requires_grad and input.is_leaf and torch.is_grad_enabled():
        raise RuntimeError(
            f"{name}(inplace=True) cannot modify a leaf tensor that requires grad; "
            "use inplace=False, or apply it to a computed (non-leaf) tensor"
        )
    return input


def seed_tensor(seed: object, generator: object) -> torch.Tensor:
    """The call's 64-bit seed as a 0-d int64 CPU tensor (two's complement for >= 2**63).

    ``seed`` given: that seed. Else a fresh one from ``generator``, or from torch's default
    CPU generator through the opaque ``dropkit::draw_seed`` op (so torch.manual_seed,
    checkpoint replay and torch.compile all see the same draw).
    """
    if seed is not None:
        if generator is not None:
            raise ValueError("pass either seed or generator, not both")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            if isinstance(seed, torch.Tensor) and seed.dim() == 0 and not seed.is_floating_point():
                return seed.to(device="cpu", dtype=torch.int64)
            raise TypeError(f"seed must be an int, but got {type(seed).__name__} {seed!r}")
        value = int(seed)
        if not 0 <= value < _UINT64:
            raise ValueError(f"seed must be in [0, 2**64), but got {value}")
        return torch.tensor(value - _UINT64 if value >= 1 << 63 else value, dtype=torch.int64)
    if generator is None:
        return fresh_seed()
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator, but got {type(generator).__name__}"
        )
    return torch.empty((), dtype=torch.int64, device=generator.device).random_(
        generator=generator
    ).cpu()
