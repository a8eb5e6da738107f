"""Gaussian dropout: multiplicative N(1, p/(1-p)) noise from the Philox stream.

The op ``dropkit::gaussian_mul`` (a :class:`~dropkit.backends.seeded.SeededMultiply`)
computes ``y = x * n`` with ``n_i = 1 + std * z_i`` and ``z_i`` the Box-Muller normal of
element ``i`` (:mod:`dropkit.layers.noise`). Backward regenerates ``n`` from the keys and
returns ``grad * n``: nothing per element is saved (noise of at most ``seeded.KEEP_BYTES``
is kept instead: the same bits, a cheaper backward).

Paper: Srivastava et al. 2014, "Dropout: a simple way to prevent neural networks from
overfitting" (section 10, multiplicative Gaussian noise); Wang & Manning 2013, "Fast dropout
training".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dropkit import keys
from dropkit._checks import check_dtype, check_input, check_p, check_training
from dropkit.backends import keyed
from dropkit.backends.seeded import MaskGeometry, SeededMultiply
from dropkit.layers import noise
from dropkit.layers.base import StochasticModule

__all__ = ["GAUSSIAN_MUL", "GaussianDropout", "gaussian_dropout"]


def _multiplier(
    shape: tuple[int, ...],
    seed: torch.Tensor,
    offset: int,
    ints: Sequence[int],
    floats: Sequence[float],
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, None]:
    """``1 + std * z`` in the opmath dtype, shaped like the input (logical order).

    Through the fused kernel where the backend has one (``1 * w`` is exactly ``w``), else
    in torch ops.
    """
    ones = torch.ones(shape, dtype=dtype, device=device)
    if ones.numel() and keyed.gaussian(ones, ones, seed, offset, floats[0]):
        return ones, None
    z = noise.normal_keys(seed, offset, math.prod(shape), device).view(shape)
    return z.mul_(floats[0]).add_(1.0).to(dtype), None  # 1 + std * z, rounded once


def _fused(
    x: torch.Tensor,
    out: torch.Tensor | None,
    seed: torch.Tensor,
    offset: int,
    ints: Sequence[int],
    floats: Sequence[float],
    bias: bool,
) -> torch.Tensor | None:
    """Noise and product in one backend pass where the backend has one (numba), else None."""
    if not x.is_contiguous() or x.numel() == 0:
        return None
    target = torch.empty_like(x) if out is None else x
    return target if keyed.gaussian(x, target, seed, offset, floats[0]) else None


GAUSSIAN_MUL = SeededMultiply(
    "gaussian_mul",
    _multiplier,
    _fused,
    mask=MaskGeometry(  # one noise value per element of x
        shape_of=lambda x_shape, ints: [int(s) for s in x_shape],
        with_shape=lambda ints, shape: (tuple(shape), list(ints)),
    ),
)


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
    ``keep(i)``), and ``ln``, ``sqrt``, ``cos``, ``sin`` the mask spec's exactly specified
    versions (docs/mask-spec.md, "Noise"). Same mean and variance as Bernoulli dropout with
    inverted scaling, so evaluation is the identity. The noise is computed in float64 and
    rounded to the opmath dtype; the product is one multiply rounded once. Backward
    regenerates the noise from the keys (``grad_x = grad_y * n``): nothing per element is
    saved.

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
    overfitting" (section 10); Wang & Manning 2013, "Fast dropout training".
    """
    p = check_p(p)
    if p == 1.0:
        raise ValueError(
            "gaussian_dropout needs p < 1 (the noise variance p/(1-p) is infinite at p=1); "
            "use dropout(p=1) to zero everything"
        )
    check_training(training, "gaussian_dropout")
    check_input(input, False, "gaussian_dropout")
    if not training or p == 0.0 or input.numel() == 0:
        return input
    check_dtype(input, "gaussian_dropout")
    key = keys.resolve(
        seed, generator, list(input.shape), name="gaussian_dropout", p=p, kind="normal"
    )
    return GAUSSIAN_MUL.apply(input, key.seed, key.offset, [], [math.sqrt(p / (1.0 - p))])


class GaussianDropout(StochasticModule):
    r"""Multiplicative Gaussian noise of mean 1 and variance ``p/(1-p)``; identity in eval.

    .. math:: y = x \odot (1 + \sigma z),\quad \sigma = \sqrt{p / (1 - p)}

    ``z`` comes from the Philox stream by Box-Muller (see
    :func:`dropkit.functional.gaussian_dropout`); backward regenerates it from the keys.

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

    _repr_fields = ("p",)

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.check_rate(p)
        self.p = p

    @classmethod
    def check_rate(cls, p: object) -> float:
        """A rate in [0, 1): at 1 the noise variance p/(1-p) is infinite."""
        rate = check_p(p)
        if rate == 1.0:
            raise ValueError("GaussianDropout needs p < 1 (the noise variance p/(1-p) is infinite)")
        return rate

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return gaussian_dropout(input, self.p, self.training)
