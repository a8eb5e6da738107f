"""DropConnect: drop the weights of a linear layer, not its activations."""

from __future__ import annotations

import torch
import torch.nn.functional as tF

from dropkit import rng
from dropkit._checks import check_input, check_p, check_scaling, seed_tensor
from dropkit.backends.ops import apply_mask_affine

__all__ = ["drop_connect"]


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
    check_scaling(scaling)
    check_input(input, False, "drop_connect")
    check_input(weight, False, "drop_connect (weight)")
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
    seed_t = seed_tensor(seed, generator)
    if not per_sample or input.dim() < 2:
        w = apply_mask_affine(weight, seed_t, rng.threshold(p), list(weight.shape), w_keep)
        return tF.linear(input, w, bias)
    n, (out_f, in_f) = input.shape[0], weight.shape
    shape = [n, out_f, in_f]
    w = apply_mask_affine(weight.expand(shape), seed_t, rng.threshold(p), shape, w_keep)
    y = torch.bmm(input.reshape(n, -1, in_f), w.transpose(1, 2))  # [N, M, out]
    if bias is not None:
        y = y + bias
    return y.view(*input.shape[:-1], out_f)
