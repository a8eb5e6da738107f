"""Alpha dropout for self-normalizing (SELU) networks: per unit and per channel.

Dropped units take SELU's negative saturation value, then an affine map restores the
input's mean and variance (torch's constants). The functionals keep torch's signatures and
defaults, ``training=False`` included.

Paper: Klambauer et al. 2017, "Self-normalizing neural networks".
"""

from __future__ import annotations

import torch

from dropkit import keys, rng
from dropkit._checks import (
    check_dtype,
    check_input,
    check_p,
    check_training,
    check_writable,
    zeros_like_product,
)
from dropkit.backends.bernoulli import mask_affine
from dropkit.backends.packed import check_backward
from dropkit.layers.base import DropoutBase
from dropkit.layers.channel import channel_mask_shape, draws

__all__ = ["AlphaDropout", "FeatureAlphaDropout", "alpha_dropout", "feature_alpha_dropout"]

# SELU's negative saturation value -lambda * alpha, as torch's alpha dropout uses it.
_SELU_ALPHA = 1.7580993408473766


def _alpha(
    input: torch.Tensor,
    p: float,
    training: bool,
    inplace: bool,
    seed: int | None,
    generator: torch.Generator | None,
    mask_shape: list[int],
    name: str,
    backward: str,
) -> torch.Tensor:
    """Alpha dropout with torch's constants: kept ``a*x + alpha*a*p``, dropped ``alpha*a*(p-1)``."""
    if not training or p == 0.0 or input.numel() == 0:
        return input
    check_writable(input, inplace, name)
    if p == 1.0:
        return zeros_like_product(input, inplace)  # torch's: zeros, not the saturation value
    check_dtype(input, name)
    a = 1.0 / ((_SELU_ALPHA * _SELU_ALPHA * p + 1.0) * (1.0 - p)) ** 0.5
    key = keys.resolve(seed, generator, mask_shape, name=name, p=p)
    return mask_affine(
        input,
        key.seed,
        key.offset,
        rng.threshold(p),
        mask_shape,
        w_keep=a,
        w_drop=0.0,
        b_keep=_SELU_ALPHA * a * p,
        b_drop=_SELU_ALPHA * a * (p - 1.0),
        inplace=inplace,
        backward=backward,
    )


def alpha_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = False,
    inplace: bool = False,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    backward: str = "auto",
) -> torch.Tensor:
    r"""Alpha dropout for SELU networks: keeps mean 0 and variance 1. See :class:`AlphaDropout`.

    .. math::
        y = a\,(m x + \alpha'(1 - m)) + b,\quad \alpha' = -1.7581,\quad
        a = ((1-p)(1 + p\alpha'^2))^{-1/2},\quad b = -a \alpha' p

    There is no ``scaling`` keyword: the affine correction is part of the method.
    ``training`` defaults to False, as in torch.

    Args: ``input``, ``p``, ``training``, ``inplace``, ``seed``, ``generator``,
    ``backward`` as :func:`dropkit.functional.dropout`.

    Shape: input ``(*)``, output ``(*)``.

    Example:
        >>> import torch
        >>> from dropkit.functional import alpha_dropout
        >>> x = torch.randn(10000)
        >>> abs(float(alpha_dropout(x, 0.2, True, seed=0).std()) - 1.0) < 0.05
        True

    Paper: Klambauer et al. 2017, "Self-normalizing neural networks".
    """
    p = check_p(p)
    check_training(training, "alpha_dropout")
    check_backward(backward)
    check_input(input, inplace, "alpha_dropout")
    return _alpha(input, p, training, inplace, seed, generator, list(input.shape),
                  "alpha_dropout", backward)


def feature_alpha_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = False,
    inplace: bool = False,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    backward: str = "auto",
) -> torch.Tensor:
    r"""Alpha dropout of whole channels. See :class:`FeatureAlphaDropout`.

    .. math:: y_{n,c,\ldots} = a\,(m_{n,c} x_{n,c,\ldots} + \alpha'(1 - m_{n,c})) + b

    Args: as :func:`alpha_dropout` (``training`` defaults to False, as in torch); ``p`` is
    the probability of masking a channel.

    Shape: input ``(N, C, *)``, output the same.

    Example:
        >>> import torch
        >>> from dropkit.functional import feature_alpha_dropout
        >>> feature_alpha_dropout(torch.zeros(2, 3, 5), 0.5, True, seed=0).shape
        torch.Size([2, 3, 5])

    Paper: Klambauer et al. 2017, "Self-normalizing neural networks".
    """
    p = check_p(p)
    check_training(training, "feature_alpha_dropout")
    check_backward(backward)
    check_input(input, inplace, "feature_alpha_dropout")
    shape = channel_mask_shape(input) if draws(input, p, training) else []
    return _alpha(input, p, training, inplace, seed, generator, shape, "feature_alpha_dropout",
                  backward)


class AlphaDropout(DropoutBase):
    r"""Alpha dropout for self-normalizing (SELU) networks: keeps mean 0 and variance 1.

    .. math:: y = a\,(m x + \alpha'(1 - m)) + b,\quad \alpha' = -1.7581

    Dropped units take SELU's negative saturation value, then an affine map restores the
    input's mean and variance. Identity in eval mode. No ``scaling`` keyword.

    Args:
        p: probability of an element to be dropped. Default: 0.5
        inplace: stored, and ignored by ``forward``, as torch's ``AlphaDropout`` does
            (its forward never passes it on; a model converted from torch keeps its
            behaviour). For an in-place call use the functional. Default: ``False``
        backward: what autograd keeps for backward (keyword only; see
            :func:`dropkit.functional.dropout`). Default: ``"auto"``.

    Shape:
        - Input: :math:`(*)`. Output: :math:`(*)`, same shape.

    Example:
        >>> import torch
        >>> from dropkit.nn import AlphaDropout
        >>> AlphaDropout(p=0.2)(torch.randn(20, 16)).shape
        torch.Size([20, 16])

    Paper: Klambauer et al. 2017, "Self-normalizing neural networks".
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, *, backward: str = "auto") -> None:
        super().__init__(p, inplace, backward=backward)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return alpha_dropout(input, self.p, self.training, backward=self.backward)  # (no inplace)


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
        return feature_alpha_dropout(input, self.p, self.training, backward=self.backward)
