"""Concrete dropout: a dropout rate learned through a relaxed (Concrete) Bernoulli mask."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch

from dropkit._checks import check_input, seed_tensor
from dropkit._variants import noise
from dropkit.backends.base import opmath_dtype

__all__ = [
    "check_temperature",
    "concrete_dropout",
    "concrete_dropout_regularizer",
    "logistic_noise",
]


def check_temperature(temperature: object) -> float:
    """``temperature`` as a positive finite float; TypeError or ValueError otherwise."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a float, but got {temperature!r}")
    t = float(temperature)
    if not (t > 0.0 and math.isfinite(t)):
        raise ValueError(f"temperature must be positive and finite, but got {temperature}")
    return t


@torch.library.custom_op("dropkit::logistic_noise", mutates_args=())
def logistic_noise(like: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """``log(1 - u) - log(u)`` per element of ``like`` (its shape, device, opmath dtype)."""
    u = noise.uniform(like.numel(), int(seed), like.device).view(like.shape)
    return (torch.log1p(-u) - torch.log(u)).to(opmath_dtype(like.dtype))


@logistic_noise.register_fake
def _logistic_noise_fake(like: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    return torch.empty(like.shape, dtype=opmath_dtype(like.dtype), device=like.device)


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
    seed. Gradients flow to ``input`` and ``p_logit`` through plain autograd (the noise is
    saved, one value per element). Evaluation is the identity.

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

    Paper: Gal, Hron & Kendall 2017, "Concrete dropout", NeurIPS; Maddison et al. 2017 and
    Jang et al. 2017 (the Concrete / Gumbel-softmax relaxation).
    """
    t = check_temperature(temperature)
    check_input(input, False, "concrete_dropout")
    if not isinstance(p_logit, torch.Tensor) or p_logit.numel() != 1:
        raise TypeError("concrete_dropout: p_logit must be a one-element tensor holding logit(p)")
    if not training or input.numel() == 0:
        return input
    dtype = opmath_dtype(input.dtype)
    logistic = logistic_noise(input.detach(), seed_tensor(seed, generator))
    logit = p_logit.reshape(()).to(dtype)
    drop = torch.sigmoid((logit + logistic) / t)
    keep_prob = torch.sigmoid(-logit)  # 1 - p
    return (input.to(dtype) * ((1.0 - drop) / keep_prob)).to(input.dtype)


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
