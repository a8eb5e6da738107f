"""Modules that wrap a layer and drop its parameters: DropConnect and embedding dropout."""

from __future__ import annotations

import torch
from torch import nn

from dropkit import functional as F
from dropkit._checks import check_p, check_scaling
from dropkit.nn import StochasticModule

__all__ = ["DropConnect", "EmbeddingDropout"]


class DropConnect(StochasticModule):
    r"""Wrap an ``nn.Linear`` and drop its weight entries (not activations) in training.

    .. math:: y = x (M \odot W)^\top s + b;\quad \text{eval: } y = x (\bar s W)^\top + b

    One mask per forward for the whole batch, or with ``per_sample=True`` an independent
    mask per sample. Evaluation uses the expected weights. See
    :func:`dropkit.functional.drop_connect`.

    Args:
        linear: the ``nn.Linear`` to wrap (its state_dict keys gain a ``linear.`` prefix).
        p: probability of dropping a weight entry. Default: 0.5.
        per_sample: an independent mask for every sample. Default: False.
        scaling: "inverted" (default) or "classic".

    Shape:
        - Input: :math:`(*, H_{in})` (``(N, *, H_in)`` with ``per_sample``).
          Output: :math:`(*, H_{out})`.

    Example:
        >>> import torch
        >>> from dropkit.nn import DropConnect
        >>> m = DropConnect(torch.nn.Linear(4, 3), p=0.5)
        >>> m(torch.randn(2, 4)).shape
        torch.Size([2, 3])

    Paper: Wan et al. 2013, "Regularization of neural networks using DropConnect", ICML.
    """

    def __init__(
        self,
        linear: nn.Linear,
        p: float = 0.5,
        per_sample: bool = False,
        *,
        scaling: str = "inverted",
    ) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"DropConnect wraps an nn.Linear, but got {type(linear).__name__}")
        if not isinstance(per_sample, bool):
            raise TypeError(f"DropConnect: per_sample must be a bool, but got {per_sample!r}")
        check_p(p)
        self.linear, self.p, self.per_sample = linear, p, per_sample
        self.scaling = check_scaling(scaling)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        lin = self.linear
        return F.drop_connect(
            input,
            lin.weight,
            lin.bias,
            self.p,
            self.training,
            self.per_sample,
            scaling=self.scaling,
        )

    def extra_repr(self) -> str:
        text = f"p={self.p}, per_sample={self.per_sample}"
        return text if self.scaling == "inverted" else f"{text}, scaling={self.scaling!r}"


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
        return F.embedding_dropout(
            input,
            e.weight,
            self.p,
            self.training,
            padding_idx=e.padding_idx,
            max_norm=e.max_norm,
            norm_type=e.norm_type,
            scale_grad_by_freq=e.scale_grad_by_freq,
            sparse=e.sparse,
            scaling=self.scaling,
        )

    def extra_repr(self) -> str:
        text = f"p={self.p}"
        return text if self.scaling == "inverted" else f"{text}, scaling={self.scaling!r}"
