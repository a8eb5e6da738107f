"""The torch.library custom ops: where masks meet autograd and torch.compile.

Two ops carry every dropkit variant:

- ``dropkit::draw_seed() -> Tensor``: a fresh 64-bit seed (0-d int64, CPU) from torch's
  default CPU generator. Opaque to the compiler, so a compiled model draws exactly the seeds
  its eager twin draws under the same ``torch.manual_seed``.
- ``dropkit::mask_affine(x, seed, thresh, mask_shape, w_keep, w_drop, b_keep, b_drop)``:
  ``y = x * w + b`` with ``(w, b) = (w_keep, b_keep)`` where the mask keeps and
  ``(w_drop, b_drop)`` where it drops. The mask has ``mask_shape`` (``x.shape`` with some
  dimensions set to 1, broadcast along them) and follows the spec of ``dropkit.rng``.
  Backward regenerates the mask from the seed: ``grad_x = grad_y * w``. Nothing per element
  is saved.
- ``dropkit::draw_seed_ordered(token)``: ``draw_seed`` as used inside compiled graphs (see
  ``fresh_seed``: it keeps two draws in one graph apart and in eager order).

Eager calls take a shortcut with the same math: an autograd Function (or, without a graph
to record, a direct call) instead of the op dispatcher, which costs tens of microseconds a
call; ``torch.compile`` traces the custom ops. The in-place form goes through an autograd
Function (custom ops may not return an alias).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dropkit import _mc_context
from dropkit.backends import resolve
from dropkit.backends.base import opmath_dtype

__all__ = ["apply_mask_affine", "draw_seed", "draw_seed_ordered", "fresh_seed", "mask_affine"]


@torch.library.custom_op(
    "dropkit::draw_seed", mutates_args=(), tags=(torch.Tag.nondeterministic_seeded,)
)
def draw_seed() -> torch.Tensor:
    """A fresh seed from torch's default CPU generator (advances it by one draw)."""
    return _draw()


def _draw() -> torch.Tensor:
    """The draw itself, shared by eager calls and both seed ops (the same RNG consumption)."""
    return torch.empty((), dtype=torch.int64).random_()


@draw_seed.register_fake
def _draw_seed_fake() -> torch.Tensor:
    return torch.empty((), dtype=torch.int64)


# torch.compile: AOT autograd's CSE pass merges identical calls of a functional op (it
# spares only a fixed list of aten random ops, not ops tagged nondeterministic_seeded), so
# two dropouts in one compiled training graph would share one draw_seed() and one mask.
# Inside a compiled graph the draw goes through draw_seed_ordered instead: it declares that
# it writes a token tensor (it never does), which chains the draws (no merging, eager
# order kept) at the cost of a 0-d copy per draw in the compiled graph only.
_ORDER_TOKEN = torch.zeros(1, dtype=torch.int64)


@torch.library.custom_op(
    "dropkit::draw_seed_ordered",
    mutates_args=("token",),
    tags=(torch.Tag.nondeterministic_seeded,),
)
def draw_seed_ordered(token: torch.Tensor) -> torch.Tensor:
    """``draw_seed()`` for compiled graphs; ``token`` orders the draws and is left unchanged."""
    return _draw()


@draw_seed_ordered.register_fake
def _draw_seed_ordered_fake(token: torch.Tensor) -> torch.Tensor:
    return torch.empty((), dtype=torch.int64)


def fresh_seed() -> torch.Tensor:
    """A fresh seed from torch's default CPU generator: ``draw_seed``, ordered when compiling.

    Eager calls skip the op dispatcher (tens of microseconds) and make the same draw.
    """
    if torch.compiler.is_compiling():
        return draw_seed_ordered(_ORDER_TOKEN)
    return _draw()


def _compute(
    x: torch.Tensor,
    seed: int,
    thresh: int,
    mask_shape: Sequence[int],
    w_keep: float,
    w_drop: float,
    b_keep: float,
    b_drop: float,
    out: torch.Tensor | None,
) -> torch.Tensor:
    """Evaluate the op into ``out`` (a fresh tensor like ``x`` when None; may be ``x``)."""
    backend = resolve(x)
    has_bias = b_keep != 0.0 or b_drop != 0.0
    if tuple(mask_shape) == tuple(x.shape) and not has_bias:
        # Fused path: the backend draws and scales in one pass, no mask in memory.
        if x.is_contiguous() and (out is None or out is x):
            target = torch.empty_like(x) if out is None else x
            backend.scale(x, target, seed, thresh, w_keep, w_drop)
            return target
        xc = x.contiguous()  # logical order: element i of the spec is xc.view(-1)[i]
        res = torch.empty_like(xc)
        backend.scale(xc, res, seed, thresh, w_keep, w_drop)
        return (torch.empty_like(x) if out is None else out).copy_(res)
    # Broadcast path: the mask is small ([N, C, 1, ...] or similar), the rest is torch math.
    numel = math.prod(mask_shape)
    keep = backend.keep_mask(numel, seed, thresh, x.device).view(tuple(mask_shape))
    dtype = opmath_dtype(x.dtype)
    weight = torch.where(keep, _scalar(w_keep, dtype, x), _scalar(w_drop, dtype, x))
    bias = torch.where(keep, _scalar(b_keep, dtype, x), _scalar(b_drop, dtype, x))
    if out is x:
        x.mul_(weight)
        return x.add_(bias) if has_bias else x
    y = x.to(dtype) * weight
    if has_bias:
        y = y + bias
    target = torch.empty_like(x) if out is None else out
    return target.copy_(y)


def _scalar(value: float, dtype: torch.dtype, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(value, dtype=dtype, device=like.device)


@torch.library.custom_op("dropkit::mask_affine", mutates_args=())
def mask_affine(
    x: torch.Tensor,
    seed: torch.Tensor,
    thresh: int,
    mask_shape: list[int],
    w_keep: float,
    w_drop: float,
    b_keep: float,
    b_drop: float,
) -> torch.Tensor:
    """``y = x * w + b`` with ``(w, b)`` chosen per element by the seeded keep mask."""
    return _compute(
        x, int(seed), thresh, mask_shape, w_keep, w_drop, b_keep, b_drop, out=None
    )


@mask_affine.register_fake
def _mask_affine_fake(
    x: torch.Tensor,
    seed: torch.Tensor,
    thresh: int,
    mask_shape: list[int],
    w_keep: float,
    w_drop: float,
    b_keep: float,
    b_drop: float,
) -> torch.Tensor:
    return torch.empty_like(x)


def _setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: object) -> None:
    _, seed, thresh, mask_shape, w_keep, w_drop, _, _ = inputs
    # The seed and four numbers: nothing per element is kept for backward.
    ctx.mask_args = (seed, thresh, list(mask_shape), w_keep, w_drop)


def _backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple:
    seed, thresh, mask_shape, w_keep, w_drop = ctx.mask_args
    grad_x = mask_affine(grad, seed, thresh, mask_shape, w_keep, w_drop, 0.0, 0.0)
    return grad_x, None, None, None, None, None, None, None


mask_affine.register_autograd(_backward, setup_context=_setup_context)


class _MaskAffineEager(torch.autograd.Function):
    """``mask_affine`` for eager autograd, out of place or in place (``x.mul_(w).add_(b)``),
    without the custom-op dispatcher; ``torch.compile`` sees the custom op (see ``_apply``).
    Backward regenerates the mask from the seed, as the op's registered autograd does."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        seed: torch.Tensor,
        thresh: int,
        mask_shape: list[int],
        w_keep: float,
        w_drop: float,
        b_keep: float,
        b_drop: float,
        inplace: bool,
    ) -> torch.Tensor:
        ctx.mask_args = (seed, thresh, list(mask_shape), w_keep, w_drop)
        out = x if inplace else None
        y = _compute(x, int(seed), thresh, mask_shape, w_keep, w_drop, b_keep, b_drop, out)
        if inplace:
            ctx.mark_dirty(x)
        return y

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple:  # type: ignore[override]
        seed, thresh, mask_shape, w_keep, w_drop = ctx.mask_args
        grad_x = _eager(grad, seed, thresh, mask_shape, w_keep, w_drop, 0.0, 0.0)
        return grad_x, None, None, None, None, None, None, None, None


def _eager(
    x: torch.Tensor,
    seed: torch.Tensor,
    thresh: int,
    shape: list[int],
    w_keep: float,
    w_drop: float,
    b_keep: float,
    b_drop: float,
    inplace: bool = False,
) -> torch.Tensor:
    """``mask_affine`` in eager mode: a graph node only when one is needed."""
    if torch.is_grad_enabled() and x.requires_grad:
        args = (x, seed, thresh, shape, w_keep, w_drop, b_keep, b_drop, inplace)
        return _MaskAffineEager.apply(*args)
    out = x if inplace else None  # no graph: in place returns the input object itself
    return _compute(x, int(seed), thresh, shape, w_keep, w_drop, b_keep, b_drop, out)


def apply_mask_affine(
    x: torch.Tensor,
    seed: torch.Tensor,
    thresh: int,
    mask_shape: Sequence[int],
    w_keep: float,
    w_drop: float = 0.0,
    b_keep: float = 0.0,
    b_drop: float = 0.0,
    *,
    inplace: bool = False,
) -> torch.Tensor:
    """Apply the masked affine map, out of place (custom op) or in place (autograd Function)."""
    shape = list(mask_shape)
    cuts = _mc_context.blocks(x, shape)  # None unless inside dropkit.mc.mc_predict's forward
    if cuts is not None:
        # mc_predict folds k Monte-Carlo samples into dim 0: each sample's rows get the mask
        # key derived from (base seed, sample index, call index), never the drawn ``seed``,
        # so draw t does not depend on how samples are batched (see dropkit._mc_context).
        if len(cuts) == 1:
            return _apply(x, cuts[0][2], thresh, shape, w_keep, w_drop, b_keep, b_drop, inplace)
        parts = [
            _apply(x.narrow(0, start, rows), key, thresh, [rows, *shape[1:]],
                   w_keep, w_drop, b_keep, b_drop, inplace)
            for start, rows, key in cuts
        ]
        return x if inplace else torch.cat(parts)
    return _apply(x, seed, thresh, shape, w_keep, w_drop, b_keep, b_drop, inplace)


def _apply(
    x: torch.Tensor,
    seed: torch.Tensor,
    thresh: int,
    shape: list[int],
    w_keep: float,
    w_drop: float,
    b_keep: float,
    b_drop: float,
    inplace: bool,
) -> torch.Tensor:
    """``apply_mask_affine`` for one key: the custom op when compiling, else eager paths."""
    if torch.compiler.is_compiling():
        # Dynamo cannot trace int(seed) inside an autograd Function (a graph break), and a
        # compiled graph is functional anyway: in place computes out of place and writes back.
        y = mask_affine(x, seed, thresh, shape, w_keep, w_drop, b_keep, b_drop)
        return x.copy_(y) if inplace else y
    return _eager(x, seed, thresh, shape, w_keep, w_drop, b_keep, b_drop, inplace)
