"""DropBlock: drop contiguous square blocks of feature maps.

The op ``dropkit::drop_block2d(x, seed, thresh, block_size)`` draws block corners with the
keep-mask stream over ``x``'s ``N*C*H*W`` indices (corner ``(n, c, h, w)`` is a seed point
iff its draw is *below* ``thresh`` and the block fits: ``h <= H - b`` and ``w <= W - b``),
grows each into a ``b x b`` block by ``max_pool2d``, and scales the kept units by
``numel / count_kept`` (the paper's normalisation, over the whole tensor as timm does).
Backward regenerates the mask from the seed: nothing per element is saved.
"""

from __future__ import annotations

import numbers
from fractions import Fraction

import torch
import torch.nn.functional as tF

from dropkit import rng
from dropkit._checks import check_input, check_p, seed_tensor
from dropkit.backends import resolve
from dropkit.backends.base import opmath_dtype

__all__ = ["block_gamma", "drop_block2d", "drop_block2d_mask"]


def drop_block2d_mask(x: torch.Tensor, seed: int, thresh: int, block_size: int) -> torch.Tensor:
    """Bool mask shaped like ``x`` ``(N, C, H, W)``, True = dropped; ``block_size`` <= min(H, W).

    The draws come from the backend that serves ``x``.
    """
    n, c, h, w = x.shape
    b = block_size
    drawn = resolve(x).keep_mask(n * c * h * w, seed, thresh, x.device)
    corners = ~drawn.view(n, c, h, w)[:, :, : h - b + 1, : w - b + 1]
    padded = tF.pad(corners.to(torch.float32), (b - 1, b - 1, b - 1, b - 1))
    return tF.max_pool2d(padded, kernel_size=b, stride=1) > 0


def _compute(x: torch.Tensor, seed: int, thresh: int, block_size: int) -> torch.Tensor:
    dropped = drop_block2d_mask(x, seed, thresh, block_size)
    dtype = opmath_dtype(x.dtype)
    kept = (~dropped).sum().to(torch.float64)  # exact count
    scale = (x.numel() / kept).to(dtype)  # inf when nothing is kept: every unit is dropped
    zero = torch.zeros((), dtype=dtype, device=x.device)
    return (x.to(dtype) * torch.where(dropped, zero, scale)).to(x.dtype)


@torch.library.custom_op("dropkit::drop_block2d", mutates_args=())
def drop_block2d_op(
    x: torch.Tensor, seed: torch.Tensor, thresh: int, block_size: int
) -> torch.Tensor:
    """``x * (1 - block_mask) * numel / count_kept`` for the seeded block mask."""
    return _compute(x, int(seed), thresh, block_size)


@drop_block2d_op.register_fake
def _fake(x: torch.Tensor, seed: torch.Tensor, thresh: int, block_size: int) -> torch.Tensor:
    return torch.empty_like(x)


def _setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: object) -> None:
    _, seed, thresh, block_size = inputs
    ctx.block_args = (seed, thresh, block_size)


def _backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple:
    return drop_block2d_op(grad, *ctx.block_args), None, None, None


drop_block2d_op.register_autograd(_backward, setup_context=_setup_context)


def block_gamma(p: float, block_size: int, height: int, width: int) -> float:
    r"""The paper's seed rate: ``p / b^2 * H W / ((H - b + 1)(W - b + 1))``, ``b`` clipped.

    Example:
        >>> block_gamma(0.1, 3, 10, 10)
        0.017361111111111112
    """
    b = min(block_size, height, width)
    ratio = Fraction(height * width, b * b * (height - b + 1) * (width - b + 1))
    return p * float(ratio)  # exactly p when b == 1


def drop_block2d(
    input: torch.Tensor,
    p: float = 0.1,
    block_size: int = 7,
    training: bool = True,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Zero contiguous ``block_size x block_size`` blocks of each feature map in training.

    .. math::
        \gamma = \frac{p}{b^2}\,\frac{HW}{(H-b+1)(W-b+1)},\quad
        y = x \odot (1 - M)\,\frac{|M|}{\sum (1 - M)}

    Block corners are seed points with probability :math:`\gamma` (the spec's draw below
    ``threshold(gamma)``), restricted to corners whose block fits in the map, each grown
    into a :math:`b \times b` block (``max_pool2d``); any ``b`` works, odd or even. ``b`` is
    clipped to ``min(H, W)``. Expected blocks cover ``p`` of the map; overlaps make the
    expected dropped fraction :math:`E` slightly smaller:
    :math:`p\,(1 - \gamma b^2 / 2) \le E \le p`. Kept units are scaled by
    ``numel / count_kept`` over the whole tensor (the paper's normalisation, as timm), so
    the output's total mass matches the input's in expectation. ``block_size=1`` drops
    exactly dropout's mask for the same seed. Evaluation is the identity.

    Args:
        input: ``(N, C, H, W)`` feature maps.
        p: target fraction of units to drop, in [0, 1]. Default: 0.1.
        block_size: side ``b`` of a dropped square, an int >= 1. Default: 7.
        training: apply if True. Default: True.
        seed, generator: the mask key, as for :func:`dropkit.functional.dropout`.

    Shape: input ``(N, C, H, W)``, output the same.

    Example:
        >>> import torch
        >>> from dropkit.functional import drop_block2d
        >>> y = drop_block2d(torch.ones(2, 3, 16, 16), p=0.2, block_size=4, seed=0)
        >>> y.shape, bool(((y == 0) | (y > 1)).all())
        (torch.Size([2, 3, 16, 16]), True)

    Paper: Ghiasi, Lin & Le 2018, "DropBlock: a regularization method for convolutional
    networks".
    """
    p = check_p(p)
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral):
        raise TypeError(f"drop_block2d: block_size must be an int, but got {block_size!r}")
    if block_size < 1:
        raise ValueError(f"drop_block2d: block_size must be >= 1, but got {block_size}")
    check_input(input, False, "drop_block2d")
    if input.dim() != 4:
        raise ValueError(
            f"drop_block2d expects a 4-D (N, C, H, W) input, but got {input.dim()}-D "
            f"shape {tuple(input.shape)}; add a batch dimension with unsqueeze(0)"
        )
    if not training or p == 0.0 or input.numel() == 0:
        return input
    if p == 1.0:
        return input * 0.0
    h, w = input.shape[-2:]
    b = min(int(block_size), h, w)
    thresh = rng.threshold(block_gamma(p, b, h, w))
    return drop_block2d_op(input, seed_tensor(seed, generator), thresh, b)
