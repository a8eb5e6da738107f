"""Modules that drop structured groups: time-locked masks, whole samples, blocks."""

from __future__ import annotations

import numbers

import torch

from dropkit import functional as F
from dropkit._checks import check_p, check_scaling
from dropkit._variants.drop_path import drop_path_rates
from dropkit.nn import StochasticModule

__all__ = ["DropBlock2d", "DropPath", "LockedDropout", "drop_path_rates"]


class LockedDropout(StochasticModule):
    r"""Dropout with one mask for every time step of a sequence (variational / locked).

    .. math:: y_{n,t,\ldots} = m_{n,\ldots}\, x_{n,t,\ldots}\, s

    ``dropout(x, p, broadcast_dims=(time_dim,))``: the mask has the input's shape with the
    time dimension set to 1, so each (sample, feature) is kept or dropped for the whole
    sequence.

    Args:
        p: probability of dropping a (sample, feature) for the whole sequence. Default: 0.5.
        batch_first: input is ``(N, T, *)`` if True, ``(T, N, *)`` if False. Default: True.
        scaling: "inverted" (default) or "classic", as :class:`dropkit.nn.Dropout`.

    Shape:
        - Input: :math:`(N, T, *)` (``batch_first``) or :math:`(T, N, *)`. Output: same.

    Example:
        >>> import torch
        >>> from dropkit.nn import LockedDropout
        >>> y = LockedDropout(0.5)(torch.ones(2, 7, 3))
        >>> bool((y == y[:, :1]).all())
        True

    Paper: Gal & Ghahramani 2016, "A theoretically grounded application of dropout in
    recurrent neural networks"; Merity et al. 2018, "Regularizing and optimizing LSTM
    language models" (LockedDropout).
    """

    def __init__(
        self, p: float = 0.5, batch_first: bool = True, *, scaling: str = "inverted"
    ) -> None:
        super().__init__()
        check_p(p)
        if not isinstance(batch_first, bool):
            raise TypeError(f"LockedDropout: batch_first must be a bool, but got {batch_first!r}")
        self.p, self.batch_first, self.scaling = p, batch_first, check_scaling(scaling)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        dims = (1 if self.batch_first else 0,)
        return F.dropout(input, self.p, self.training, scaling=self.scaling, broadcast_dims=dims)

    def extra_repr(self) -> str:
        text = f"p={self.p}, batch_first={self.batch_first}"
        return text if self.scaling == "inverted" else f"{text}, scaling={self.scaling!r}"


class DropPath(StochasticModule):
    r"""Drop path / stochastic depth: zero a residual branch for whole samples.

    .. math:: y_{n,\ldots} = m_n\, x_{n,\ldots}\, s,\quad s = 1/(1-p) \text{ if scale\_by\_keep}

    Wrap the residual branch: ``x + drop_path(block(x))``. See
    :func:`dropkit.functional.drop_path`; :func:`drop_path_rates` spreads rates over depth.

    Args:
        p: probability of dropping a sample's branch. Default: 0.0.
        scale_by_keep: scale kept samples by ``1/(1-p)``. Default: True.

    Shape:
        - Input: :math:`(N, *)`. Output: same shape.

    Example:
        >>> import torch
        >>> from dropkit.nn import DropPath, drop_path_rates
        >>> blocks = [DropPath(r) for r in drop_path_rates(0.1, 4)]
        >>> blocks[-1]
        DropPath(p=0.1, scale_by_keep=True)

    Paper: Huang et al. 2016, "Deep networks with stochastic depth".
    """

    def __init__(self, p: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        check_p(p)
        if not isinstance(scale_by_keep, bool):
            raise TypeError(f"DropPath: scale_by_keep must be a bool, but got {scale_by_keep!r}")
        self.p, self.scale_by_keep = p, scale_by_keep

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.drop_path(input, self.p, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        return f"p={self.p}, scale_by_keep={self.scale_by_keep}"


class DropBlock2d(StochasticModule):
    r"""DropBlock: zero contiguous ``block_size x block_size`` regions of feature maps.

    .. math:: \gamma = \frac{p}{b^2}\frac{HW}{(H-b+1)(W-b+1)},\quad
              y = x \odot (1-M)\, \frac{|M|}{\sum(1-M)}

    See :func:`dropkit.functional.drop_block2d` (seed points from the keep-mask stream,
    blocks by max-pooling, kept units normalised by the kept count). Identity in eval.

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

    def __init__(self, p: float = 0.1, block_size: int = 7) -> None:
        super().__init__()
        check_p(p)
        if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral):
            raise TypeError(f"DropBlock2d: block_size must be an int, but got {block_size!r}")
        if block_size < 1:
            raise ValueError(f"DropBlock2d: block_size must be >= 1, but got {block_size}")
        self.p, self.block_size = p, int(block_size)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.drop_block2d(input, self.p, self.block_size, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, block_size={self.block_size}"
