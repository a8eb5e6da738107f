"""Drop path (stochastic depth): drop whole samples of a residual branch.

Naming, as timm explains it: "drop path" drops whole paths (residual branches) per sample;
it is not DropConnect, which drops weights (:mod:`dropkit.layers.drop_connect`).

Papers: Huang et al. 2016, "Deep networks with stochastic depth"; Larsson et al. 2017,
"FractalNet: ultra-deep neural networks without residuals" (drop path).
"""

from __future__ import annotations

import torch

from dropkit import keys, rng
from dropkit._checks import check_dtype, check_input, check_p, check_training
from dropkit.backends.bernoulli import mask_affine
from dropkit.layers.base import StochasticModule

__all__ = ["DropPath", "drop_path", "drop_path_rates"]


def drop_path(
    input: torch.Tensor,
    p: float = 0.0,
    training: bool = True,
    scale_by_keep: bool = True,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Zero whole samples (dim 0) of a residual branch with probability ``p`` in training.

    .. math:: y_{n,\ldots} = m_n\, x_{n,\ldots}\, s,\quad s = 1/(1-p) \text{ if scale\_by\_keep
              else } 1

    ``m_n`` is the spec's keep decision for index ``n`` (the mask has shape ``[N, 1, ..., 1]``,
    through the same kernels as dropout). Use it as ``x + drop_path(branch(x), p)``.
    Evaluation is the identity (as timm: with ``scale_by_keep=False`` the training output
    is then biased by ``1-p``).

    Args:
        input: the branch output, ``(N, *)``.
        p: probability of dropping a sample's branch, in [0, 1]. Default: 0.0.
        training: apply if True. Default: True.
        scale_by_keep: divide kept samples by ``1-p``. Default: True.
        seed, generator: the mask key, as for :func:`dropkit.functional.dropout`.

    Shape: input ``(N, *)``, output the same.

    Example:
        >>> import torch
        >>> from dropkit.functional import drop_path
        >>> y = drop_path(torch.ones(6, 3), 0.5, seed=0)
        >>> all(len(set(row.tolist())) == 1 for row in y)
        True

    Paper: Huang et al. 2016, "Deep networks with stochastic depth"; Larsson et al. 2017,
    "FractalNet: ultra-deep neural networks without residuals" (drop path).
    """
    p = check_p(p)
    check_training(training, "drop_path")
    if not isinstance(scale_by_keep, bool):
        raise TypeError(f"drop_path: scale_by_keep must be a bool, but got {scale_by_keep!r}")
    check_input(input, False, "drop_path")
    if not training or p == 0.0 or input.numel() == 0:
        return input
    if input.dim() == 0:
        raise ValueError("drop_path needs input of shape (N, *) with a batch dimension, got 0-D")
    check_dtype(input, "drop_path")
    if p == 1.0:
        return input * 0.0
    w_keep = 1.0 / (1.0 - p) if scale_by_keep else 1.0
    shape = [input.shape[0]] + [1] * (input.dim() - 1)
    key = keys.resolve(seed, generator, shape, name="drop_path", p=p)
    return mask_affine(input, key.seed, key.offset, rng.threshold(p), shape, w_keep)


def drop_path_rates(max_rate: float, depth: int) -> list[float]:
    r"""Per-block drop rates growing linearly with depth: the stochastic-depth decay rule.

    .. math:: p_l = \frac{l}{L}\, p_L,\quad l = 1, \ldots, L

    Block ``l`` (1-based) of ``L = depth`` gets ``max_rate * l / depth``, so the last block
    has ``max_rate`` and the first ``max_rate / depth`` (Huang et al.'s rule). timm's
    ``torch.linspace(0, max_rate, depth)`` starts at 0 instead.

    Example:
        >>> drop_path_rates(0.2, 4)
        [0.05, 0.1, 0.15000000000000002, 0.2]

    Paper: Huang et al. 2016, "Deep networks with stochastic depth" (linear decay rule).
    """
    max_rate = check_p(max_rate, "maximum drop-path rate")
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"depth must be an int, but got {type(depth).__name__} {depth!r}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, but got {depth}")
    return [max_rate * k / depth for k in range(1, depth + 1)]


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

    _repr_fields = ("p", "scale_by_keep")

    def __init__(self, p: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        check_p(p)
        if not isinstance(scale_by_keep, bool):
            raise TypeError(f"DropPath: scale_by_keep must be a bool, but got {scale_by_keep!r}")
        self.p, self.scale_by_keep = p, scale_by_keep

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return drop_path(input, self.p, self.training, self.scale_by_keep)
