"""Locked (variational) dropout: one mask for every time step of a sequence.

Paper: Gal & Ghahramani 2016, "A theoretically grounded application of dropout in recurrent
neural networks"; Merity et al. 2018, "Regularizing and optimizing LSTM language models"
(LockedDropout).
"""

from __future__ import annotations

import torch

from dropkit._checks import check_p, check_scaling
from dropkit.layers.base import StochasticModule
from dropkit.layers.dropout import dropout

__all__ = ["LockedDropout", "locked_dropout"]


def locked_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    batch_first: bool = True,
    *,
    scaling: str = "inverted",
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Dropout with one mask shared by every time step. See :class:`LockedDropout`.

    .. math:: y_{n,t,\ldots} = m_{n,\ldots}\, x_{n,t,\ldots}\, s

    ``dropout(input, p, training, broadcast_dims=(time_dim,))`` with the time dimension 1
    (``batch_first``) or 0.

    Args: as :func:`dropkit.functional.dropout`; ``batch_first``: input ``(N, T, *)`` if
    True, ``(T, N, *)`` if False. Default: True.

    Shape: input ``(N, T, *)`` or ``(T, N, *)``; output the same.

    Example:
        >>> import torch
        >>> from dropkit.functional import locked_dropout
        >>> y = locked_dropout(torch.ones(2, 7, 3), 0.5, seed=0)
        >>> bool((y == y[:, :1]).all())
        True
    """
    if not isinstance(batch_first, bool):
        raise TypeError(f"locked_dropout: batch_first must be a bool, but got {batch_first!r}")
    dims = (1 if batch_first else 0,)
    return dropout(
        input, p, training, scaling=scaling, seed=seed, generator=generator, broadcast_dims=dims
    )


class LockedDropout(StochasticModule):
    r"""Dropout with one mask for every time step of a sequence (variational / locked).

    .. math:: y_{n,t,\ldots} = m_{n,\ldots}\, x_{n,t,\ldots}\, s

    The mask has the input's shape with the time dimension set to 1, so each (sample,
    feature) is kept or dropped for the whole sequence.

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

    _repr_fields = ("p", "batch_first")

    def __init__(
        self, p: float = 0.5, batch_first: bool = True, *, scaling: str = "inverted"
    ) -> None:
        super().__init__()
        check_p(p)
        if not isinstance(batch_first, bool):
            raise TypeError(f"LockedDropout: batch_first must be a bool, but got {batch_first!r}")
        self.p, self.batch_first, self.scaling = p, batch_first, check_scaling(scaling)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return locked_dropout(input, self.p, self.training, self.batch_first, scaling=self.scaling)
