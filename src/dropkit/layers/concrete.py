"""Concrete dropout: a dropout rate learned through a relaxed (Concrete) Bernoulli mask.

The relaxed mask is part of the mask spec (:func:`dropkit.rng.relaxed_keep`: logistic noise,
an exactly specified ``exp``, float64 throughout), so a backend computes the multiplier
``w`` and its derivative ``dw / d logit`` in one pass from the keys and ``logit(p)``, and
every backend gives the same bits. ``w + dw * (p_logit - p_logit.detach())`` then hands the
gradient in ``p_logit`` to torch's autograd: the graph is three torch ops, and forward-mode
AD and ``torch.func`` work as for any torch expression. Under ``torch.compile`` and tensor
subclasses the noise comes from the seeded op ``dropkit::logistic_noise`` (a
:class:`~dropkit.backends.seeded.SeededSample`) and the spec runs in torch ops.

Paper: Gal, Hron & Kendall 2017, "Concrete dropout", NeurIPS; Maddison et al. 2017 and Jang
et al. 2017 (the Concrete / Gumbel-softmax relaxation).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import torch
import torch.autograd.forward_ad as _fwad
from torch import nn

from dropkit import keys, rng
from dropkit._checks import check_dtype, check_input, check_p, check_training
from dropkit.backends import keyed
from dropkit.backends.base import opmath_dtype
from dropkit.backends.seeded import SeededSample, dispatched
from dropkit.layers import noise
from dropkit.layers.base import StochasticModule

__all__ = [
    "LOGISTIC_NOISE",
    "ConcreteDropout",
    "check_temperature",
    "concrete_dropout",
    "concrete_dropout_regularizer",
]


def check_temperature(temperature: object) -> float:
    """``temperature`` as a positive finite float; TypeError or ValueError otherwise."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a float, but got {temperature!r}")
    t = float(temperature)
    if not (t > 0.0 and math.isfinite(t)):
        raise ValueError(f"temperature must be positive and finite, but got {temperature}")
    return t


def _logistic(
    shape: tuple[int, ...],
    seed: torch.Tensor,
    offset: int,
    ints: Sequence[int],
    floats: Sequence[float],
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``ln(1 - u) - ln u`` per element (the noise spec's float64), rounded to ``dtype``."""
    return noise.logistic_keys(seed, offset, math.prod(shape), device).view(shape).to(dtype)


LOGISTIC_NOISE = SeededSample("logistic_noise", _logistic)


def concrete_dropout(
    input: torch.Tensor,
    p_logit: torch.Tensor,
    temperature: float = 0.1,
    training: bool = True,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Dropout with a relaxed mask, differentiable in the rate ``p = sigmoid(p_logit)``.

    .. math::
        \tilde d_i = \sigma\!\Big(\frac{\operatorname{logit} p + \log(1-u_i) - \log u_i}{t}\Big),
        \quad y_i = x_i\,\frac{1 - \tilde d_i}{1 - p},\quad u_i = (r_i + \tfrac12)/2^{32}

    with ``r_i`` the uint32 Philox draw of element ``i`` (the draw behind dropout's
    ``keep(i)``), so the relaxed mask is as reproducible as a dropout mask. This is the
    paper's formula with ``u -> 1 - u`` (the same distribution), chosen so that as
    ``t -> 0`` the element is dropped iff ``u_i < p``: dropout's own mask for the same
    seed. The relaxation is the mask spec's, in float64 with its exactly specified ``exp``
    (docs/mask-spec.md, "Noise"; :func:`dropkit.rng.relaxed_keep`), and the multiplier is
    rounded once to the opmath dtype, so every backend gives the same bits. Gradients flow
    to ``input`` and ``p_logit`` through torch's autograd (forward AD and ``torch.func``
    too). Evaluation is the identity. See :class:`ConcreteDropout`.

    Args:
        input: a floating-point tensor of any shape.
        p_logit: 0-d tensor, ``logit(p)`` (learned).
        temperature: the relaxation temperature ``t > 0``. Default: 0.1 (the paper's).
        training: sample if True; identity otherwise. Default: True.
        seed, generator: the noise key, as for :func:`dropkit.functional.dropout`.

    Shape: input ``(*)``, output ``(*)``.

    Example:
        >>> import torch
        >>> from dropkit.functional import concrete_dropout
        >>> logit = torch.tensor(0.0, requires_grad=True)  # p = 0.5
        >>> concrete_dropout(torch.ones(4), logit, seed=0).shape
        torch.Size([4])

    Paper: Gal, Hron & Kendall 2017, "Concrete dropout", NeurIPS.
    """
    t = check_temperature(temperature)
    check_training(training, "concrete_dropout")
    check_input(input, False, "concrete_dropout")
    if not isinstance(p_logit, torch.Tensor) or p_logit.numel() != 1:
        raise TypeError("concrete_dropout: p_logit must be a one-element tensor holding logit(p)")
    if not training or input.numel() == 0:
        return input
    check_dtype(input, "concrete_dropout")
    dtype = opmath_dtype(input.dtype)
    shape = list(input.shape)
    key = keys.resolve(seed, generator, shape, name="concrete_dropout", kind="logistic")
    return (input.to(dtype) * _multiplier(input, p_logit, key, t, dtype)).to(input.dtype)


def _multiplier(
    input: torch.Tensor,
    p_logit: torch.Tensor,
    key: keys.Keys,
    temperature: float,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The relaxed mask's multiplier ``w`` (``dtype``, ``input``'s shape), differentiable in
    ``p_logit`` with the derivative ``dw`` of the spec.

    Eager: one backend pass gives ``w`` and ``dw`` (:func:`dropkit.backends.keyed.concrete`).
    Anything that must see the op (torch.compile, tensor subclasses, torch.func): the
    logistic noise through the registered op, then the same spec in torch ops, the same
    bits. ``w + dw * (p_logit - p_logit.detach())`` is exactly ``w``, with the gradient and
    tangent ``dw`` in ``p_logit``.
    """
    shape = list(input.shape)
    logit = p_logit.detach().reshape(())
    transformed = torch._C._are_functorch_transforms_active()
    grad = (p_logit.requires_grad and torch.is_grad_enabled()) or transformed or (
        _fwad._current_level >= 0
    )
    if dispatched(input) or transformed:
        noise = LOGISTIC_NOISE.apply(shape, key.seed, key.offset, [], [], torch.float64,
                                     input.device)
        w64, dw64 = rng.relaxed_keep(noise, logit.to(torch.float64), temperature)
        w, dw = w64.to(dtype), dw64.to(dtype)
    else:
        w, dw = keyed.concrete(key.seed, key.offset, input.numel(), logit, temperature, dtype,
                               grad)
        w = w.view(shape)
    if not grad or dw is None:
        return w
    lg = p_logit if p_logit.dim() == 0 else p_logit.reshape(())
    delta = lg.to(dtype) - logit.to(dtype)  # 0, carrying p_logit's gradient
    return torch.addcmul(w, dw.view(shape), delta)


def concrete_dropout_regularizer(
    p_logit: torch.Tensor,
    weights: Iterable[torch.Tensor],
    input_dim: int,
    weight_regularizer: float = 1e-6,
    dropout_regularizer: float = 1e-5,
) -> torch.Tensor:
    r"""The concrete-dropout penalty to add to the loss for one layer.

    .. math::
        \lambda_w \frac{\sum \lVert W \rVert^2}{1 - p}
        + \lambda_p K \big(p \log p + (1-p) \log(1-p)\big)

    The first term is weight decay under dropout (it favours small ``p``); the second is
    the negative entropy of the rate (it pulls ``p`` towards 1/2) scaled by the input
    dimension ``K``. The paper sets :math:`\lambda_w = l^2/(\tau N)`,
    :math:`\lambda_p = 2/(\tau N)` for ``N`` training points, so with less data ``p`` grows.

    Args:
        p_logit: 0-d tensor, ``logit(p)``.
        weights: the parameters of the layer that follows the dropout.
        input_dim: ``K``, the number of features the dropout acts on.
        weight_regularizer: :math:`\lambda_w`. Default: 1e-6.
        dropout_regularizer: :math:`\lambda_p`. Default: 1e-5.

    Example:
        >>> import torch
        >>> from dropkit.functional import concrete_dropout_regularizer
        >>> r = concrete_dropout_regularizer(torch.tensor(0.0), [torch.ones(2, 2)], 2, 1.0, 1.0)
        >>> round(float(r), 4)  # 4 / 0.5 + 2 * log(1/2)
        6.6137

    Paper: Gal, Hron & Kendall 2017, "Concrete dropout", NeurIPS (eq. 3 and the reference
    implementation).
    """
    if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
        raise ValueError(f"input_dim must be a positive int, but got {input_dim!r}")
    logit = p_logit.reshape(())
    log_p = torch.nn.functional.logsigmoid(logit)
    log_q = torch.nn.functional.logsigmoid(-logit)
    p, q = log_p.exp(), log_q.exp()
    square_sum = sum((w.pow(2).sum() for w in weights), torch.zeros((), device=logit.device))
    weight_term = weight_regularizer * square_sum / q
    entropy_term = dropout_regularizer * input_dim * (p * log_p + q * log_q)
    return weight_term + entropy_term


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
        return self.layer(concrete_dropout(input, self.p_logit, self.temperature, self.training))

    def regularizer(self) -> torch.Tensor:
        """The paper's penalty for this layer; add it to the loss (see the functional)."""
        return concrete_dropout_regularizer(
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
