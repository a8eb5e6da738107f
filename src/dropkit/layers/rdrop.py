"""R-Drop: the symmetric KL consistency loss between two dropout passes."""

from __future__ import annotations

import torch

__all__ = ["rdrop_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def rdrop_loss(
    logits_a: torch.Tensor,
    logits_b: torch.Tensor,
    *,
    dim: int = -1,
    reduction: str = "mean",
    pad_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Symmetric KL divergence between the predictions of two dropout passes (R-Drop).

    .. math::
        \ell = \tfrac12\big(\mathrm{KL}(P_a \Vert P_b) + \mathrm{KL}(P_b \Vert P_a)\big)
             = \tfrac12 \sum_k (P_{a,k} - P_{b,k})(\log P_{a,k} - \log P_{b,k})

    per row, with ``P = softmax(logits, dim)``, computed from ``log_softmax`` (stable for
    any logits). Train with ``CE(a) + CE(b) + alpha * rdrop_loss(a, b)`` where ``a`` and
    ``b`` are two forward passes of the same batch (two different dropout masks).

    Args:
        logits_a, logits_b: unnormalised scores of the same shape, classes along ``dim``.
        dim: the class dimension. Default: -1.
        reduction: ``"mean"`` over rows (default; KL's "batchmean" for 2-D input),
            ``"sum"`` (the paper's code), or ``"none"`` (one value per row).
        pad_mask: optional bool tensor shaped like a row index (``logits.shape`` without
            ``dim``); True rows (e.g. padding tokens) are left out, and ``"mean"`` averages
            over the others.

    Shape: inputs ``(*, C)``; output ``()`` or ``(*)`` for ``"none"``.

    Example:
        >>> import torch
        >>> from dropkit.functional import rdrop_loss
        >>> a = torch.tensor([[2.0, 0.0]])
        >>> float(rdrop_loss(a, a))
        0.0
        >>> bool(rdrop_loss(a, a.flip(-1)) > 0)
        True

    Paper: Liang et al. 2021, "R-Drop: regularized dropout for neural networks", NeurIPS.
    """
    for name, t in (("logits_a", logits_a), ("logits_b", logits_b)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"rdrop_loss: {name} must be a floating-point tensor")
    if logits_a.shape != logits_b.shape:
        raise ValueError(
            f"rdrop_loss: logits_a and logits_b must have the same shape, got "
            f"{tuple(logits_a.shape)} and {tuple(logits_b.shape)}"
        )
    if reduction not in _REDUCTIONS:
        raise ValueError(f"rdrop_loss: unknown reduction {reduction!r}; use one of {_REDUCTIONS}")
    log_a = torch.log_softmax(logits_a, dim=dim)
    log_b = torch.log_softmax(logits_b, dim=dim)
    per_row = 0.5 * ((log_a.exp() - log_b.exp()) * (log_a - log_b)).sum(dim=dim)
    if pad_mask is not None:
        if not isinstance(pad_mask, torch.Tensor):
            raise TypeError(
                f"rdrop_loss: pad_mask must be a bool tensor of shape {tuple(per_row.shape)}, "
                f"but got {type(pad_mask).__name__}; e.g. torch.as_tensor(mask, dtype=torch.bool)"
            )
        if pad_mask.shape != per_row.shape or pad_mask.dtype != torch.bool:
            raise ValueError(
                f"rdrop_loss: pad_mask must be a bool tensor of shape {tuple(per_row.shape)}, "
                f"got {pad_mask.dtype} {tuple(pad_mask.shape)}"
            )
        per_row = per_row.masked_fill(pad_mask, 0.0)
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    count = per_row.numel() if pad_mask is None else (~pad_mask).sum()
    return per_row.sum() / count
