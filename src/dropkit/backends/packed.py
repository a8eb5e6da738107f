"""What backward keeps: the ``backward=`` policy, and the 1-bit packed-mask graph node.

Three policies for a Bernoulli mask in eager autograd (docs/design.md, "Backward"):

- ``"seed"``: keep the keys only (0 bytes per element); backward regenerates the mask.
- ``"bits"``: keep the keep decisions packed eight to a byte (0.125 bytes per element of
  the mask); backward unpacks and multiplies, with no Philox.
- ``"auto"`` (the default): a multiplier of at most ``seeded.KEEP_BYTES`` is kept by
  torch's own autograd (the cheapest call), anything larger regenerates, as ``"seed"``.

All three give the same bits, forward and backward. The policy is about eager autograd
only: forward-mode AD, ``torch.func`` and compiled graphs regenerate from the keys.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from dropkit.backends import keyed, resolve
from dropkit.backends.base import opmath_dtype
from dropkit.backends.seeded import _set_version, _version

__all__ = ["POLICIES", "check_backward", "mask_affine_bits", "pack", "unpack"]

POLICIES = ("auto", "seed", "bits")
_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)
_SHIFTS = torch.tensor(list(range(8)), dtype=torch.uint8)  # (no kernel at import)


def check_backward(backward: object) -> str:
    """``backward`` as one of :data:`POLICIES`; TypeError or ValueError otherwise."""
    if not isinstance(backward, str):
        raise TypeError(f"backward must be a str, one of {POLICIES}, but got {backward!r}")
    if backward not in POLICIES:
        raise ValueError(
            f"backward must be one of {POLICIES} ('seed': keep nothing, regenerate; 'bits': "
            f"keep a 1-bit mask), but got {backward!r}"
        )
    return backward


def pack(keep: torch.Tensor) -> torch.Tensor:
    """Bool ``[n]`` -> uint8 ``[ceil(n / 8)]``, bit ``i & 7`` of byte ``i >> 3`` = ``keep[i]``.

    Example:
        >>> import torch
        >>> pack(torch.tensor([True, False, True, True, False, False, False, False, True]))
        tensor([13,  1], dtype=torch.uint8)
    """
    n = keep.numel()
    padded = torch.zeros(-(-n // 8) * 8, dtype=torch.uint8, device=keep.device)
    padded[:n] = keep.reshape(-1)
    return (padded.view(-1, 8) * _WEIGHTS.to(keep.device)).sum(1, dtype=torch.uint8)


def unpack(packed: torch.Tensor, n: int) -> torch.Tensor:
    """The inverse of :func:`pack`: bool ``[n]``.

    Example:
        >>> import torch
        >>> unpack(torch.tensor([13, 1], dtype=torch.uint8), 9).tolist()
        [True, False, True, True, False, False, False, False, True]
    """
    bits = (packed.unsqueeze(1) >> _SHIFTS.to(packed.device)) & 1
    return bits.reshape(-1)[:n].bool()


def _forward(
    x: torch.Tensor,
    op: Any,
    seed: torch.Tensor,
    offset: int,
    ints: list[int],
    floats: list[float],
    bias: bool,
    inplace: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, packed)`` with grad mode off: draw, scale and pack in one backend pass where it
    can (a scalar key at offset 0, a per-element mask, no bias, contiguous), else the op and
    the spec's keep mask, packed."""
    thresh, mask_shape = int(ints[0]), [int(m) for m in ints[1:]]
    numel = math.prod(mask_shape)
    biased = bias and (floats[2] != 0.0 or floats[3] != 0.0)
    one_pass = getattr(resolve(x), "scale_pack", None)
    if (one_pass is not None and seed.dim() == 0 and offset == 0 and not biased
            and mask_shape == list(x.shape) and x.is_contiguous()):
        out = x if inplace else torch.empty_like(x)
        packed = torch.empty(-(-numel // 8), dtype=torch.uint8, device=x.device)
        if one_pass(x, out, packed, int(seed), thresh, floats[0], floats[1]):
            return out, packed
    y = op.compute(x, seed, offset, ints, floats, bias, x if inplace else None, 0)
    return y, pack(keyed.keep_mask(seed, offset, numel, thresh, x.device))


def _grad(grad: torch.Tensor, packed: torch.Tensor, mask_shape: list[int], w_keep: float,
          w_drop: float) -> torch.Tensor:
    """``grad * w`` with ``w`` unpacked from the bits: the bits of the regenerating node."""
    if not torch.is_grad_enabled() and mask_shape == list(grad.shape) and grad.is_contiguous():
        backend = resolve(grad)
        method = getattr(backend, "unpack_scale", None)
        out = torch.empty_like(grad)
        if method is not None and method(grad, out, packed, w_keep, w_drop):
            return out
    dtype = opmath_dtype(grad.dtype)
    keep = unpack(packed, math.prod(mask_shape)).view(mask_shape)
    w = torch.where(keep, torch.tensor(w_keep, dtype=dtype, device=grad.device),
                    torch.tensor(w_drop, dtype=dtype, device=grad.device))
    return (grad.to(dtype) * w).to(grad.dtype)


class _Packed(torch.autograd.Function):
    """The eager graph node that keeps a 1-bit mask (``backward="bits"``)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        op: Any,
        seed: torch.Tensor,
        offset: int,
        ints: list[int],
        floats: list[float],
        bias: bool,
        inplace: bool,
    ) -> torch.Tensor:
        before = _version(x)
        y, packed = _forward(x, op, seed, offset, ints, floats, bias, inplace)
        if inplace:
            _set_version(x, before)  # mark_dirty counts the write (once)
            ctx.mark_dirty(x)
        ctx.save_for_backward(packed)
        ctx.args = ([int(m) for m in ints[1:]], floats[0], floats[1])
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:  # type: ignore[override]
        (packed,) = ctx.saved_tensors
        mask_shape, w_keep, w_drop = ctx.args
        return _grad(grad, packed, mask_shape, w_keep, w_drop), *([None] * 7)


def mask_affine_bits(
    x: torch.Tensor,
    op: Any,
    seed: torch.Tensor,
    offset: int,
    ints: Sequence[int],
    floats: Sequence[float],
    bias: bool,
    inplace: bool,
) -> torch.Tensor:
    """``dropkit::mask_affine`` in eager autograd, keeping the mask as bits for backward."""
    return _Packed.apply(x, op, seed, offset, list(ints), list(floats), bias, inplace)
