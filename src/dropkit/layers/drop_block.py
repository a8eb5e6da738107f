"""DropBlock: drop contiguous square blocks of feature maps.

The op ``dropkit::drop_block2d`` (a :class:`~dropkit.backends.seeded.SeededMultiply`) draws
block corners with the keep-mask stream over ``x``'s ``N*C*H*W`` indices (corner
``(n, c, h, w)`` is a seed point iff its draw is *below* ``thresh`` and the block fits:
``h <= H - b`` and ``w <= W - b``), grows each into a ``b x b`` block by ``max_pool2d``, and
scales the kept units of each sample by ``C*H*W / count_kept`` of that sample. Backward
regenerates the mask from the keys: nothing per element is saved (a multiplier of at most
``seeded.KEEP_BYTES`` is kept instead: the same bits, a cheaper backward).

Normalising per sample (timm normalises over the whole batch) makes a sample's output
independent of the rest of its batch, which Monte-Carlo folding and sample-keyed masks need.

Paper: Ghiasi, Lin & Le 2018, "DropBlock: a regularization method for convolutional networks".
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from fractions import Fraction

import torch
import torch.nn.functional as tF

from dropkit import keys, rng
from dropkit._checks import check_dtype, check_input, check_p, check_training
from dropkit.backends import keyed, resolve
from dropkit.backends.seeded import SeededMultiply
from dropkit.keys import scalar_seed
from dropkit.layers.base import StochasticModule

__all__ = ["DROP_BLOCK2D", "DropBlock2d", "block_gamma", "drop_block2d", "drop_block2d_mask"]


def _dropped(
    shape: Sequence[int], seed: torch.Tensor, offset: int, thresh: int, b: int, device: torch.device
) -> torch.Tensor:
    """Bool ``(N, C, H, W)``, True = dropped, for the call keyed by ``(seed, offset)``."""
    n, c, h, w = shape
    drawn = keyed.keep_mask(seed, offset, n * c * h * w, thresh, device)
    corners = ~drawn.view(n, c, h, w)[:, :, : h - b + 1, : w - b + 1]
    padded = tF.pad(corners.to(torch.float32), (b - 1, b - 1, b - 1, b - 1))
    return tF.max_pool2d(padded, kernel_size=b, stride=1) > 0


def drop_block2d_mask(x: torch.Tensor, seed: int, thresh: int, block_size: int) -> torch.Tensor:
    """Bool mask shaped like ``x`` ``(N, C, H, W)``, True = dropped; ``block_size`` <= min(H, W).

    The draws of the int ``seed``'s stream, from the backend that serves ``x``.

    Example:
        >>> import torch
        >>> m = drop_block2d_mask(torch.empty(1, 1, 6, 6), 0, rng.threshold(0.2), 3)
        >>> m.shape, m.dtype
        (torch.Size([1, 1, 6, 6]), torch.bool)
    """
    return _dropped(x.shape, scalar_seed(seed, None), 0, thresh, block_size, x.device)


def _multiplier(
    shape: tuple[int, ...],
    seed: torch.Tensor,
    offset: int,
    ints: Sequence[int],
    floats: Sequence[float],
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, None]:
    ones = torch.ones(shape, dtype=dtype, device=device)
    fused = _fused(ones, ones, seed, offset, ints, floats, False)  # ``1 * w`` is exactly ``w``
    if fused is not None:
        return fused, None
    thresh, b = int(ints[0]), int(ints[1])
    dropped = _dropped(shape, seed, offset, thresh, b, device)  # [N, C, H, W]
    kept = (~dropped).flatten(1).sum(1).to(torch.float64)  # [N], exact counts
    per_sample = torch.tensor(float(shape[1] * shape[2] * shape[3]), dtype=torch.float64)
    # A true float64 division (``int / tensor`` would multiply by a reciprocal), rounded
    # once to ``dtype``; inf where a sample keeps none (then every unit is dropped).
    scale = (per_sample.to(device) / kept).to(dtype).view(-1, 1, 1, 1)
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(dropped, zero, scale), None


def _fused(
    x: torch.Tensor,
    out: torch.Tensor | None,
    seed: torch.Tensor,
    offset: int,
    ints: Sequence[int],
    floats: Sequence[float],
    bias: bool,
) -> torch.Tensor | None:
    """The whole op in one backend pass where the backend has one (numba), else None."""
    method = getattr(resolve(x), "drop_block_keys", None)
    if method is None or not x.is_contiguous() or x.numel() == 0:
        return None
    target = torch.empty_like(x) if out is None else x
    return target if method(x, target, seed, offset, int(ints[0]), int(ints[1])) else None


DROP_BLOCK2D = SeededMultiply("drop_block2d", _multiplier, _fused)


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
        y_n = x_n \odot (1 - M_n)\,\frac{|M_n|}{\sum (1 - M_n)}

    Block corners are seed points with probability :math:`\gamma` (the spec's draw below
    ``threshold(gamma)``), restricted to corners whose block fits in the map, each grown
    into a :math:`b \times b` block (``max_pool2d``); any ``b`` works, odd or even. ``b`` is
    clipped to ``min(H, W)``. Expected blocks cover ``p`` of the map; overlaps make the
    expected dropped fraction :math:`E` slightly smaller:
    :math:`p\,(1 - \gamma b^2 / 2) \le E \le p`. Kept units of each sample ``n`` are scaled
    by ``C*H*W / count_kept(n)`` (the paper's normalisation, per sample), so a sample's
    output mass matches its input's in expectation and does not depend on the rest of the
    batch. ``block_size=1`` drops exactly dropout's mask for the same seed. Evaluation is
    the identity.

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
    check_training(training, "drop_block2d")
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
    check_dtype(input, "drop_block2d")
    if p == 1.0:
        return input * 0.0
    h, w = (int(s) for s in input.shape[-2:])  # (under torch.jit.trace sizes are tensors)
    b = min(int(block_size), h, w)
    gamma = block_gamma(p, b, h, w)  # the rate of block centres: what the keys draw
    key = keys.resolve(seed, generator, list(input.shape), name="drop_block2d", p=gamma)
    thresh = rng.threshold(gamma)
    return DROP_BLOCK2D.apply(input, key.seed, key.offset, [thresh, b], [])


class DropBlock2d(StochasticModule):
    r"""DropBlock: zero contiguous ``block_size x block_size`` regions of feature maps.

    .. math:: \gamma = \frac{p}{b^2}\frac{HW}{(H-b+1)(W-b+1)},\quad
              y_n = x_n \odot (1-M_n)\, \frac{|M_n|}{\sum(1-M_n)}

    See :func:`dropkit.functional.drop_block2d` (seed points from the keep-mask stream,
    blocks by max-pooling, kept units normalised per sample). Identity in eval.

    Args:
        p: target fraction of units to drop. Default: 0.1.
        block_size: side of a dropped square, odd or even. Default: 7.

    Shape:
        - Input: :math:`(N, C, H, W)`. Output: same shape.

    Example:
        >>> import torch
        >>> from dropkit.nn import DropBlock2d
        >>> DropBlock2d(0.1, 3)(torch.randn(2, 4, 8, 8)).shape
        torch.Size([2, 4, 8, 8])

    Paper: Ghiasi, Lin & Le 2018, "DropBlock: a regularization method for convolutional
    networks".
    """

    _repr_fields = ("p", "block_size")

    def __init__(self, p: float = 0.1, block_size: int = 7) -> None:
        super().__init__()
        check_p(p)
        if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral):
            raise TypeError(f"DropBlock2d: block_size must be an int, but got {block_size!r}")
        if block_size < 1:
            raise ValueError(f"DropBlock2d: block_size must be >= 1, but got {block_size}")
        self.p, self.block_size = p, int(block_size)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return drop_block2d(input, self.p, self.block_size, self.training)
