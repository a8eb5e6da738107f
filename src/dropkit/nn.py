"""Thin ``nn.Module`` shells over :mod:`dropkit.functional`: drop-in twins of torch.nn's dropouts.

Each module stores ``p``, ``inplace`` (and ``scaling`` where it applies),
validates them once, and calls its functional with ``self.training``. Constructor
signatures, defaults, attributes, ``repr`` and error messages match torch.nn; ``scaling``
is an extra keyword (shown in the repr only when not at its default).

Papers: see :mod:`dropkit.functional`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from dropkit import functional as F
from dropkit._checks import check_p, check_scaling

__all__ = [
    "AlphaDropout",
    "ConcreteDropout",
    "DropBlock2d",
    "DropConnect",
    "DropPath",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "EmbeddingDropout",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "LockedDropout",
    "StochasticModule",
    "drop_path_rates",
]


class StochasticModule(nn.Module):
    """Marker base of every dropkit module that samples in training mode.

    ``dropkit.mc_mode``, ``guard`` and ``active_dropout`` find dropkit's layers through it.
    """


class _DropoutNd(StochasticModule):
    """Shared settings, checks and repr of every dropout module (like torch's ``_DropoutNd``)."""

    __constants__: ClassVar[list[str]] = ["p", "inplace"]
    p: float
    inplace: bool
    _has_scaling = True

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        scaling: str = "inverted",
    ) -> None:
        super().__init__()
        check_p(p)
        self.p = p
        self.inplace = inplace
        self.scaling = check_scaling(scaling)

    def extra_repr(self) -> str:
        text = f"p={self.p}, inplace={self.inplace}"
        if self._has_scaling and self.scaling != "inverted":
            text += f", scaling={self.scaling!r}"
        return text


class Dropout(_DropoutNd):
    r"""During training, zero each element with probability ``p``; the seed's algorithm exactly.

    .. math::
        \text{training: } y = m \odot x \cdot s,\ m_i \sim \text{Bernoulli}(1-p);\quad
        \text{inverted: } s = \tfrac{1}{1-p},\ y_\text{eval} = x;\quad
        \text{classic: } s = 1,\ y_\text{eval} = (1-p)\,x

    Either way ``E[y_train] = y_eval``. ``Dropout(p, scaling="classic")`` is the original
    paper's (and the seed document's) formulation; the default is PyTorch's.

    Args:
        p: probability of an element to be zeroed. Default: 0.5
        inplace: If set to ``True``, will do this operation in-place. Default: ``False``
        scaling: "inverted" (default) or "classic".

    Every forward draws a fresh mask key from torch's default generator, so
    ``torch.manual_seed`` reproduces a run; pass ``seed=`` to the functional for a fixed key.

    Shape:
        - Input: :math:`(*)`. Output: :math:`(*)`, same shape.

    Example:
        >>> import torch
        >>> from dropkit.nn import Dropout
        >>> m = Dropout(p=0.2)
        >>> m(torch.randn(20, 16)).shape
        torch.Size([20, 16])
        >>> m.eval()(torch.ones(3)).tolist()
        [1.0, 1.0, 1.0]

    Paper: Srivastava et al. 2014, "Dropout: a simple way to prevent neural networks from
    overfitting", JMLR 15.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.dropout(
            input, self.p, self.training, self.inplace, scaling=self.scaling
        )


class Dropout1d(_DropoutNd):
    r"""Zero whole channels (1D feature maps) of ``(N, C, L)`` or ``(C, L)`` input.

    .. math:: y_{n,c,:} = m_{n,c}\, x_{n,c,:}\, s

    Args: as :class:`Dropout`; ``p`` is the probability of zeroing a channel.

    Shape:
        - Input: :math:`(N, C, L)` or :math:`(C, L)`. Output: same shape.

    Example:
        >>> import torch
        >>> from dropkit.nn import Dropout1d
        >>> Dropout1d(p=0.2)(torch.randn(20, 16, 32)).shape
        torch.Size([20, 16, 32])

    Paper: Tompson et al. 2015, "Efficient object localization using convolutional networks".
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.dropout1d(
            input, self.p, self.training, self.inplace, scaling=self.scaling
        )


class Dropout2d(_DropoutNd):
    r"""Zero whole channels (2D feature maps) of ``(N, C, H, W)`` input.

    .. math:: y_{n,c,:,:} = m_{n,c}\, x_{n,c,:,:}\, s

    Args: as :class:`Dropout`; ``p`` is the probability of zeroing a channel.

    Shape:
        - Input: :math:`(N, C, H, W)` (a 3D input is read as :math:`(N, C, L)`, with
          torch's warning). Output: same shape.

    Example:
        >>> import torch
        >>> from dropkit.nn import Dropout2d
        >>> Dropout2d(p=0.2)(torch.randn(20, 16, 32, 32)).shape
        torch.Size([20, 16, 32, 32])

    Paper: Tompson et al. 2015, "Efficient object localization using convolutional networks".
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.dropout2d(
            input, self.p, self.training, self.inplace, scaling=self.scaling
        )


class Dropout3d(_DropoutNd):
    r"""Zero whole channels (3D feature maps) of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input.

    .. math:: y_{n,c,:,:,:} = m_{n,c}\, x_{n,c,:,:,:}\, s

    Args: as :class:`Dropout`; ``p`` is the probability of zeroing a channel.

    Shape:
        - Input: :math:`(N, C, D, H, W)` or :math:`(C, D, H, W)`. Output: same shape.

    Example:
        >>> import torch
        >>> from dropkit.nn import Dropout3d
        >>> Dropout3d(p=0.2)(torch.randn(2, 4, 3, 3, 3)).shape
        torch.Size([2, 4, 3, 3, 3])

    Paper: Tompson et al. 2015, "Efficient object localization using convolutional networks".
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.dropout3d(
            input, self.p, self.training, self.inplace, scaling=self.scaling
        )


class AlphaDropout(_DropoutNd):
    r"""Alpha dropout for self-normalizing (SELU) networks: keeps mean 0 and variance 1.

    .. math:: y = a\,(m x + \alpha'(1 - m)) + b,\quad \alpha' = -1.7581

    Dropped units take SELU's negative saturation value, then an affine map restores the
    input's mean and variance. Identity in eval mode. No ``scaling`` keyword.

    Args:
        p: probability of an element to be dropped. Default: 0.5
        inplace: If set to ``True``, will do this operation in-place. Default: ``False``

    Shape:
        - Input: :math:`(*)`. Output: :math:`(*)`, same shape.

    Example:
        >>> import torch
        >>> from dropkit.nn import AlphaDropout
        >>> AlphaDropout(p=0.2)(torch.randn(20, 16)).shape
        torch.Size([20, 16])

    Paper: Klambauer et al. 2017, "Self-normalizing neural networks".
    """

    _has_scaling = False

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__(p, inplace)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.alpha_dropout(input, self.p, self.training, self.inplace)


class FeatureAlphaDropout(AlphaDropout):
    r"""Alpha dropout of whole channels of ``(N, C, *)`` input.

    .. math:: y_{n,c,\ldots} = a\,(m_{n,c} x_{n,c,\ldots} + \alpha'(1 - m_{n,c})) + b

    Args: as :class:`AlphaDropout`; ``p`` is the probability of masking a channel.

    Shape:
        - Input: :math:`(N, C, *)`. Output: same shape.

    Example:
        >>> import torch
        >>> from dropkit.nn import FeatureAlphaDropout
        >>> FeatureAlphaDropout(p=0.2)(torch.randn(20, 16, 4, 4)).shape
        torch.Size([20, 16, 4, 4])

    Paper: Klambauer et al. 2017, "Self-normalizing neural networks".
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.feature_alpha_dropout(input, self.p, self.training, self.inplace)


# The rest of the family lives in dropkit._variants (they need StochasticModule above).
from dropkit._variants.nn_noise import ConcreteDropout, GaussianDropout  # noqa: E402
from dropkit._variants.nn_structured import (  # noqa: E402
    DropBlock2d,
    DropPath,
    LockedDropout,
    drop_path_rates,
)
from dropkit._variants.nn_wrappers import DropConnect, EmbeddingDropout  # noqa: E402
