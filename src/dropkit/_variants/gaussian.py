"""Gaussian dropout: multiplicative N(1, p/(1-p)) noise from the Philox stream.

The op ``dropkit::gaussian_mul(x, seed, std)`` computes ``y = x * n`` with
``n_i = 1 + std * z_i`` and ``z_i`` the Box-Muller normal of element ``i``
(:mod:`dropkit._variants.noise`). Backward regenerates ``n`` from the seed and returns
``grad * n``: nothing per element is saved.
"""

from __future__ import annotations

import math

import torch

from dropkit._checks import check_input, check_p, seed_tensor
from dropkit._variants import noise
from dropkit.backends.base import opmath_dtype

__all__ = ["gaussian_dropout", "gaussian_mul"]


def _multiplier(x: torch.Tensor, seed: int, std: float) -> torch.Tensor:
    """``1 + std * z`` in the opmath dtype of ``x``, shaped like ``x`` (logical order)."""
    z = noise.normal(x.numel(), seed, x.device).view(x.shape)
    return (1.0 + std * z).to(opmath_dtype(x.dtype))


@torch.library.custom_op("dropkit::gaussian_mul", mutates_args=())
def gaussian_mul(x: torch.Tensor, seed: torch.Tensor, std: float) -> torch.Tensor:
    """``x * (1 + std * z)``: one multiply in opmath dtype, rounded once to ``x.dtype``."""
    return (x.to(opmath_dtype(x.dtype)) * _multiplier(x, int(seed), std)).to(x.dtype)


@gaussian_mul.register_fake
def _gaussian_mul_fake(x: torch.Tensor, seed: torch.Tensor, std: float) -> torch.Tensor:
    return torch.empty_like(x)


def _setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: object) -> None:
    _, seed, std = inputs
    ctx.noise_args = (seed, std)  # the seed and one number: no per-element storage


def _backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple:
    seed, std = ctx.noise_args
    return gaussian_mul(grad, seed, std), None, None


gaussian_mul.register_autograd(_backward, setup_context=_setup_context)


def gaussian_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Multiply each element by Gaussian noise of mean 1 and variance ``p/(1-p)`` in training.

    .. math::
        y_i = x_i\,(1 + \sigma z_i),\quad \sigma = \sqrt{p/(1-p)},\quad
        z_{2j} = \sqrt{-2\ln u_{2j}}\cos(2\pi u_{2j+1}),\
        z_{2j+1} = \sqrt{-2\ln u_{2j}}\sin(2\pi u_{2j+1}),\quad u_i = (r_i + \tfrac12)/2^{32}

    with ``r_i`` the uint32 Philox draw of element ``i`` (the draw that decides dropout's
    ``keep(i)``). Same mean and variance as Bernoulli dropout with inverted scaling, so
    evaluation is the identity. The noise is computed in float64 and rounded to the opmath
    dtype; the product is one multiply rounded once. Backward regenerates the noise from
    the seed (``grad_x = grad_y * n``): nothing per element is saved.

    Args:
        input: a floating-point tensor of any shape.
        p: the matching dropout rate in [0, 1); sets the noise variance p/(1-p).
            Default: 0.5.
        training: add the noise if True; identity otherwise. Default: True.
        seed: the noise's 64-bit key (as for :func:`dropkit.functional.dropout`).
        generator: where a fresh seed comes from when ``seed`` is None.

    Shape: input ``(*)``, output ``(*)``.

    Example:
        >>> import torch
        >>> from dropkit.functional import gaussian_dropout
        >>> y = gaussian_dropout(torch.ones(10000), p=0.5, seed=0)
        >>> abs(float(y.mean()) - 1.0) < 6 * (1.0 / 10000) ** 0.5
        True

    Paper: Srivastava et al. 2014, "Dropout: a simple way to prevent neural networks from
    overfitting" (section 10, multiplicative Gaussian noise); Wang & Manning 2013, "Fast
    dropout training".
    """
    p = check_p(p)
    if p == 1.0:
        raise ValueError(
            "gaussian_dropout needs p < 1 (the noise variance p/(1-p) is infinite at p=1); "
            "use dropout(p=1) to zero everything"
        )
    check_input(input, False, "gaussian_dropout")
    if not training or p == 0.0 or input.numel() == 0:
        return input
    return gaussian_mul(input, seed_tensor(seed, generator), math.sqrt(p / (1.0 - p)))
