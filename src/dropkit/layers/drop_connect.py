"""DropConnect: drop the weights of a linear layer, not its activations.

Paper: Wan et al. 2013, "Regularization of neural networks using DropConnect", ICML.
"""

from __future__ import annotations

import torch
import torch.nn.functional as tF
from torch import nn

from dropkit import keys, rng
from dropkit._checks import check_dtype, check_input, check_p, check_scaling, check_training
from dropkit.backends.bernoulli import mask_affine
from dropkit.layers.base import StochasticModule

__all__ = ["DropConnect", "drop_connect"]


def drop_connect(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    p: float = 0.5,
    training: bool = True,
    per_sample: bool = False,
    *,
    scaling: str = "inverted",
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""A linear layer whose weight entries are dropped with probability ``p`` in training.

    .. math::
        y = x\,(M \odot W)^\top s + b,\quad s = 1/(1-p) \text{ (inverted) or } 1
        \text{ (classic)};\quad \text{eval: } y = x\,(\bar s W)^\top + b

    with :math:`\bar s = 1` (inverted) or :math:`1-p` (classic): evaluation uses the expected
    weights. The bias is never dropped. ``M`` is the spec's keep mask over ``W``'s
    ``out*in`` indices (through dropout's kernels), one mask for the whole batch; with
    ``per_sample=True`` each sample ``n`` (dim 0) gets its own mask, the spec's mask over
    ``[N, out, in]`` (so sample 0's mask is the shared mask of the same seed). The
    per-sample form materialises ``N`` weight copies and runs a batched matmul.

    Args:
        input: ``(*, in)``; with ``per_sample=True``, ``(N, *, in)``.
        weight: ``(out, in)``.
        bias: ``(out,)`` or None.
        p: probability of dropping a weight entry, in [0, 1]. Default: 0.5.
        training: drop if True; else the expected weights. Default: True.
        per_sample: an independent mask per sample instead of one per batch. Default: False.
        scaling, seed, generator: as for :func:`dropkit.functional.dropout`.

    Shape: input ``(*, in)``, output ``(*, out)``.

    Example:
        >>> import torch
        >>> from dropkit.functional import drop_connect
        >>> w = torch.ones(2, 3)
        >>> drop_connect(torch.ones(1, 3), w, None, 0.5, seed=0).shape
        torch.Size([1, 2])

    Paper: Wan et al. 2013, "Regularization of neural networks using DropConnect", ICML.
    """
    p = check_p(p)
    check_training(training, "drop_connect")
    check_scaling(scaling)
    check_dtype(check_input(input, False, "drop_connect"), "drop_connect")
    check_dtype(check_input(weight, False, "drop_connect (weight)"), "drop_connect (weight)")
    if weight.dim() != 2:
        raise ValueError(
            f"drop_connect: weight must be 2-D (out, in), got shape {tuple(weight.shape)}"
        )
    if not isinstance(per_sample, bool):
        raise TypeError(f"drop_connect: per_sample must be a bool, but got {per_sample!r}")
    if not training or p == 0.0:
        factor = 1.0 if scaling == "inverted" or p == 0.0 else 1.0 - p
        return tF.linear(input, weight if factor == 1.0 else weight * factor, bias)
    if p == 1.0:
        return tF.linear(input, weight * 0.0, bias)
    w_keep = 1.0 / (1.0 - p) if scaling == "inverted" else 1.0
    thresh = rng.threshold(p)
    if not per_sample or input.dim() < 2:
        shape = list(weight.shape)
        name = "drop_connect" if not per_sample else (
            "drop_connect(per_sample=True) of a 1-D input (no batch dimension: give it one, "
            "input.unsqueeze(0))"
        )
        key = keys.resolve(seed, generator, shape, batched=False, name=name, p=p)
        w = mask_affine(weight, key.seed, key.offset, thresh, shape, w_keep)
        return tF.linear(input, w, bias)
    n, (out_f, in_f) = input.shape[0], weight.shape
    if input.numel() == 0:  # (no sample, no mask: the linear map of nothing, as F.linear)
        return tF.linear(input, weight, bias)
    shape = [n, out_f, in_f]
    key = keys.resolve(seed, generator, shape, name="drop_connect", p=p)
    w = mask_affine(weight.expand(shape), key.seed, key.offset, thresh, shape, w_keep)
    y = torch.bmm(input.reshape(n, -1, in_f), w.transpose(1, 2))  # [N, M, out]
    if bias is not None:
        y = y + bias
    return y.view(*input.shape[:-1], out_f)


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

    _repr_fields = ("p", "per_sample")

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
        return drop_connect(
            input, lin.weight, lin.bias, self.p, self.training, self.per_sample,
            scaling=self.scaling,
        )
