"""Modules with continuous noise: Gaussian dropout and concrete (learned-rate) dropout."""

from __future__ import annotations

import math

import torch
from torch import nn

from dropkit import functional as F
from dropkit._checks import check_p
from dropkit._variants.concrete import check_temperature
from dropkit.nn import StochasticModule

__all__ = ["ConcreteDropout", "GaussianDropout"]


class GaussianDropout(StochasticModule):
    r"""Multiplicative Gaussian noise of mean 1 and variance ``p/(1-p)``; identity in eval.

    .. math:: y = x \odot (1 + \sigma z),\quad \sigma = \sqrt{p / (1 - p)}

    ``z`` comes from the Philox stream by Box-Muller (see
    :func:`dropkit.functional.gaussian_dropout`); backward regenerates it from the seed.

    Args:
        p: the matching dropout rate in [0, 1). Default: 0.5.

    Shape:
        - Input: :math:`(*)`. Output: same shape.

    Example:
        >>> import torch
        >>> from dropkit.nn import GaussianDropout
        >>> m = GaussianDropout(0.2)
        >>> m.eval()(torch.ones(3)).tolist()
        [1.0, 1.0, 1.0]

    Paper: Srivastava et al. 2014, "Dropout: a simple way to prevent neural networks from
    overfitting" (section 10).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if check_p(p) == 1.0:
            raise ValueError("GaussianDropout needs p < 1 (the noise variance p/(1-p) is infinite)")
        self.p = p

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.gaussian_dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ConcreteDropout(StochasticModule):
    r"""Dropout on the input of ``layer`` with a learned rate (relaxed Bernoulli mask).

    .. math::
        y = \text{layer}\big(x \odot (1 - \tilde d) / (1 - p)\big),\quad
        p = \sigma(\text{p\_logit}),\quad
        \mathcal{L} \mathrel{+}= \text{regularizer()}

    ``p_logit`` is an ``nn.Parameter`` (the only dropkit module that adds state): train it
    with the rest of the model and add :meth:`regularizer` to the loss. Identity dropout in
    eval (``layer(x)``); MC-dropout keeps it sampling. ``p`` is read-only (a schedule
    leaves it alone).

    Args:
        layer: the layer that consumes the dropped input (its parameters enter the
            weight term of the regulariser).
        p: initial rate, in (0, 1). Default: 0.1.
        temperature: relaxation temperature. Default: 0.1.
        weight_regularizer: :math:`\lambda_w` (paper: :math:`l^2/(\tau N)`). Default: 1e-6.
        dropout_regularizer: :math:`\lambda_p` (paper: :math:`2/(\tau N)`). Default: 1e-5.
        input_dim: ``K`` of the entropy term; default ``layer.weight.shape[1]``
            (``in_features`` / ``in_channels``).

    Shape:
        - Input: what ``layer`` takes. Output: what ``layer`` returns.

    Example:
        >>> import torch
        >>> from dropkit.nn import ConcreteDropout
        >>> m = ConcreteDropout(torch.nn.Linear(4, 2), p=0.2)
        >>> loss = m(torch.randn(3, 4)).pow(2).mean() + m.regularizer()
        >>> loss.backward(); m.p_logit.grad is not None
        True

    Paper: Gal, Hron & Kendall 2017, "Concrete dropout", NeurIPS.
    """

    def __init__(
        self,
        layer: nn.Module,
        p: float = 0.1,
        temperature: float = 0.1,
        *,
        weight_regularizer: float = 1e-6,
        dropout_regularizer: float = 1e-5,
        input_dim: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(layer, nn.Module):
            raise TypeError(f"ConcreteDropout wraps an nn.Module, but got {type(layer).__name__}")
        if check_p(p, "initial concrete dropout rate") in (0.0, 1.0):
            raise ValueError(
                f"ConcreteDropout: the initial p must be strictly between 0 and 1, got {p}"
            )
        if input_dim is None:
            weight = getattr(layer, "weight", None)
            if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
                raise ValueError(
                    f"ConcreteDropout cannot infer input_dim from {type(layer).__name__}; "
                    "pass input_dim= (the number of features the dropout acts on)"
                )
            input_dim = int(weight.shape[1])
        self.layer = layer
        self.temperature = check_temperature(temperature)
        self.weight_regularizer = float(weight_regularizer)
        self.dropout_regularizer = float(dropout_regularizer)
        self.input_dim = input_dim
        self.p_logit = nn.Parameter(torch.tensor(math.log(p) - math.log1p(-p)))

    @property
    def p(self) -> float:
        """The current rate ``sigmoid(p_logit)`` (learned; read-only)."""
        return float(torch.sigmoid(self.p_logit.detach()))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.layer(F.concrete_dropout(input, self.p_logit, self.temperature, self.training))

    def regularizer(self) -> torch.Tensor:
        """The paper's penalty for this layer; add it to the loss (see the functional)."""
        return F.concrete_dropout_regularizer(
            self.p_logit,
            self.layer.parameters(),
            self.input_dim,
            self.weight_regularizer,
            self.dropout_regularizer,
        )

    def extra_repr(self) -> str:
        return (
            f"p={self.p:.4g} (learned), temperature={self.temperature}, "
            f"weight_regularizer={self.weight_regularizer}, "
            f"dropout_regularizer={self.dropout_regularizer}, input_dim={self.input_dim}"
        )
