"""Embedding dropout: drop whole rows of an embedding table (whole words).

Papers: Gal & Ghahramani 2016, "A theoretically grounded application of dropout in recurrent
neural networks" (word dropout); Merity et al. 2018, "Regularizing and optimizing LSTM
language models" (embedding dropout).
"""

from __future__ import annotations

import torch
import torch.nn.functional as tF
from torch import nn

from dropkit import keys, rng
from dropkit._checks import check_dtype, check_input, check_p, check_scaling, check_training
from dropkit.backends import keyed
from dropkit.backends.base import opmath_dtype
from dropkit.backends.seeded import vmapped
from dropkit.layers.base import StochasticModule

__all__ = ["EmbeddingDropout", "embedding_dropout"]


def embedding_dropout(
    input: torch.Tensor,
    weight: torch.Tensor,
    p: float = 0.1,
    training: bool = True,
    *,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
    scaling: str = "inverted",
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Look up embeddings with whole rows of the table dropped with probability ``p``.

    .. math:: y_{\ldots} = m_{t}\, W_{t}\, s \text{ for token } t = \text{input}_{\ldots},
              \quad s = 1/(1-p) \text{ (inverted) or } 1 \text{ (classic)}

    ``m_t`` is the spec's keep decision for row index ``t`` of a mask over the ``V`` rows
    of the table: a dropped word is zero wherever it appears in the batch. Only the
    looked-up rows' decisions are drawn (one Philox counter per token), so the cost follows
    the batch, not the vocabulary. Equal, bit for bit, to ``embedding(input,
    dropout(weight, p, broadcast_dims=(1,), seed=s))``, without materialising the masked
    ``V x D`` table or even the ``V`` decisions.
    Evaluation: the plain lookup (inverted) or the lookup times ``1-p`` (classic).

    Args:
        input: integer token indices, any shape.
        weight: the table ``(V, D)``.
        p: probability of dropping a row (word), in [0, 1]. Default: 0.1.
        training: drop if True. Default: True.
        padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse: as
            :func:`torch.nn.functional.embedding`.
        scaling, seed, generator: as for :func:`dropkit.functional.dropout`.

    Shape: input ``(*)``, output ``(*, D)``.

    Example:
        >>> import torch
        >>> from dropkit.functional import embedding_dropout
        >>> table = torch.ones(10, 4)
        >>> y = embedding_dropout(torch.tensor([[3, 3, 5]]), table, 0.5, seed=0)
        >>> torch.equal(y[0, 0], y[0, 1])  # the same word, the same decision
        True

    Paper: Gal & Ghahramani 2016, "A theoretically grounded application of dropout in
    recurrent neural networks" (word dropout); Merity et al. 2018, "Regularizing and
    optimizing LSTM language models" (embedding dropout).
    """
    p = check_p(p)
    check_training(training, "embedding_dropout")
    check_scaling(scaling)
    check_dtype(check_input(weight, False, "embedding_dropout (weight)"), "embedding_dropout")
    if weight.dim() != 2:
        raise ValueError(
            f"embedding_dropout: weight must be a 2-D (V, D) table, got shape {tuple(weight.shape)}"
        )
    out = tF.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)
    if not training:
        return out if scaling == "inverted" or p == 0.0 else out * (1.0 - p)
    if p == 0.0 or out.numel() == 0:
        return out
    if p == 1.0:
        return out * 0.0
    w_keep = 1.0 / (1.0 - p) if scaling == "inverted" else 1.0
    dtype = opmath_dtype(weight.dtype)
    rows = [weight.shape[0], 1]
    key = keys.resolve(seed, generator, rows, batched=False, name="embedding_dropout", p=p)
    if torch._C._are_functorch_transforms_active() and vmapped(key.seed):
        raise RuntimeError(
            "embedding_dropout: a mask per vmapped slice (a vmapped seed, or "
            "vmap(randomness='different')) is not supported; pass one seed= (every slice "
            "gets its mask) or loop over the seeds"
        )
    # Row t's decision is element t of the mask over the table's rows; only the looked-up
    # rows are drawn (one Philox counter per token), never the whole V x 1 mask.
    factor = keyed.select_at(key.seed, key.offset, input, rng.threshold(p), w_keep, 0.0, dtype)
    if dtype == out.dtype:  # scale the fresh lookup in place (its backward never reads it)
        return out.mul_(factor.unsqueeze(-1))
    return (out.to(dtype) * factor.unsqueeze(-1)).to(weight.dtype)


class EmbeddingDropout(StochasticModule):
    r"""Wrap an ``nn.Embedding`` and drop whole rows of its table (whole words) in training.

    .. math:: y_{\ldots} = m_t\, W_t\, s,\quad t = \text{input}_{\ldots}

    A dropped word is zero wherever it appears in the batch. See
    :func:`dropkit.functional.embedding_dropout`.

    Args:
        embedding: the ``nn.Embedding`` to wrap (its options are honoured).
        p: probability of dropping a row. Default: 0.1.
        scaling: "inverted" (default) or "classic".

    Shape:
        - Input: :math:`(*)` integer indices. Output: :math:`(*, D)`.

    Example:
        >>> import torch
        >>> from dropkit.nn import EmbeddingDropout
        >>> m = EmbeddingDropout(torch.nn.Embedding(100, 8), p=0.1)
        >>> m(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 8])

    Paper: Gal & Ghahramani 2016, "A theoretically grounded application of dropout in
    recurrent neural networks"; Merity et al. 2018, "Regularizing and optimizing LSTM
    language models".
    """

    _repr_fields = ("p",)

    def __init__(
        self, embedding: nn.Embedding, p: float = 0.1, *, scaling: str = "inverted"
    ) -> None:
        super().__init__()
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(
                f"EmbeddingDropout wraps an nn.Embedding, but got {type(embedding).__name__}"
            )
        check_p(p)
        self.embedding, self.p, self.scaling = embedding, p, check_scaling(scaling)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        e = self.embedding
        return embedding_dropout(
            input, e.weight, self.p, self.training, padding_idx=e.padding_idx,
            max_norm=e.max_norm, norm_type=e.norm_type,
            scale_grad_by_freq=e.scale_grad_by_freq, sparse=e.sparse, scaling=self.scaling,
        )
