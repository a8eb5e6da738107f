"""Calibration of the MC mean versus one deterministic pass: NLL, Brier score, ECE.

Papers: Brier 1950, "Verification of forecasts expressed in terms of probability"; Guo et
al. 2017, "On calibration of modern neural networks" (ECE); Naeini et al. 2015 (binning).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch
from torch import nn

from dropkit.mc.predict import mc_predict

__all__ = [
    "Calibration",
    "CalibrationReport",
    "brier_score",
    "calibration_report",
    "expected_calibration_error",
    "negative_log_likelihood",
]


def _check_pair(probs: object, target: object, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise TypeError(f"{name} expects probs as a floating-point tensor [N, C]")
    if probs.dim() != 2:
        raise ValueError(
            f"{name} expects probs of shape [N, C], but got shape {tuple(probs.shape)}; for "
            "MC samples [T, N, C] pass their mean over dim 0 (predictive_mean)"
        )
    if not isinstance(target, torch.Tensor) or target.dtype not in (
        torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8
    ):
        raise TypeError(f"{name} expects target as an integer tensor [N] of class indices")
    if target.shape != probs.shape[:1]:
        raise ValueError(
            f"{name}: target shape {tuple(target.shape)} does not match probs {tuple(probs.shape)}"
        )
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= probs.shape[1]):
        raise ValueError(f"{name}: target holds class indices outside [0, {probs.shape[1]})")
    return probs, target.long()


def negative_log_likelihood(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Mean :math:`-\log p_{n, y_n}` (nats); ``inf`` where a true class got probability 0.

    Shape: probs ``[N, C]``, target ``[N]`` -> scalar.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
        >>> round(float(negative_log_likelihood(p, torch.tensor([0, 1]))), 4)
        0.4904
    """
    probs, target = _check_pair(probs, target, "negative_log_likelihood")
    return -probs.gather(1, target[:, None]).log().mean()


def brier_score(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Multi-class Brier score :math:`\frac1N \sum_n \sum_c (p_{n,c} - [y_n = c])^2`, in [0, 2].

    Shape: probs ``[N, C]``, target ``[N]`` -> scalar.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
        >>> float(brier_score(p, torch.tensor([0, 1])))
        0.3125

    Paper: Brier 1950, "Verification of forecasts expressed in terms of probability".
    """
    probs, target = _check_pair(probs, target, "brier_score")
    onehot = torch.nn.functional.one_hot(target, probs.shape[1]).to(probs.dtype)
    return (probs - onehot).square().sum(1).mean()


def expected_calibration_error(
    probs: torch.Tensor, target: torch.Tensor, n_bins: int = 15
) -> torch.Tensor:
    r"""Top-label ECE with equal-width bins: :math:`\sum_b \frac{|B_b|}{N}\,|acc(B_b) - conf(B_b)|`.

    Confidence is :math:`\max_c p_{n,c}`, the prediction its argmax (first on ties). Bin
    ``b`` holds confidences in :math:`[b/M, (b+1)/M)`, the last bin also 1.0: torchmetrics'
    ``multiclass_calibration_error(norm="l1")``, which the tests check it against. Kept here
    (a few lines of torch) so that ``dropkit.mc`` needs no extra dependency.

    Args:
        probs: class probabilities ``[N, C]``.
        target: class indices ``[N]``.
        n_bins: ``M``, the number of bins. Default: 15.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7]])
        >>> round(float(expected_calibration_error(p, torch.tensor([0, 1, 1]), 10)), 4)
        0.3667

    Paper: Guo et al. 2017, "On calibration of modern neural networks".
    """
    probs, target = _check_pair(probs, target, "expected_calibration_error")
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral):
        raise TypeError(f"n_bins must be a positive int, but got {type(n_bins).__name__} "
                        f"{n_bins!r}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, but got {n_bins!r}")
    if target.numel() == 0:
        return probs.new_zeros(())
    conf, pred = probs.max(1)
    correct = (pred == target).to(probs.dtype)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=probs.dtype, device=probs.device)
    bins = (torch.bucketize(conf, edges, right=True) - 1).clamp(0, n_bins - 1)
    gap = probs.new_zeros(n_bins).index_add_(0, bins, correct - conf)
    return gap.abs().sum() / target.numel()


class Calibration(NamedTuple):
    """NLL (nats), Brier score and ECE of one set of predictions."""

    nll: float
    brier: float
    ece: float


class CalibrationReport(NamedTuple):
    """Calibration of the MC-dropout mean versus the single deterministic (eval) pass."""

    mc: Calibration
    deterministic: Calibration


def _calibration(probs: torch.Tensor, target: torch.Tensor, n_bins: int) -> Calibration:
    return Calibration(
        float(negative_log_likelihood(probs, target)),
        float(brier_score(probs, target)),
        float(expected_calibration_error(probs, target, n_bins)),
    )


def calibration_report(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    samples: int = 30,
    seed: int | None = None,
    *,
    logits: bool = True,
    n_bins: int = 15,
    chunk: int | None = None,
) -> CalibrationReport:
    r"""NLL, Brier and ECE of the MC mean :math:`\bar p` versus one deterministic pass.

    The deterministic pass runs the model in eval mode (every flag restored after); the MC
    mean averages the probabilities (softmax of each sample when ``logits``) of
    :func:`mc_predict`.

    Args:
        model: a classifier returning ``[N, C]`` logits (or probabilities: ``logits=False``).
        x: inputs ``[N, ...]``. target: class indices ``[N]``.
        samples, seed, chunk: as :func:`mc_predict`.
        logits: apply softmax over the last axis. Default: True.
        n_bins: ECE bins. Default: 15.

    Example:
        >>> import torch, dropkit
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), dropkit.nn.Dropout(0.3),
        ...                           torch.nn.Linear(16, 3))
        >>> r = dropkit.mc.calibration_report(net, torch.randn(8, 4), torch.arange(8) % 3,
        ...                                   samples=5, seed=0)
        >>> sorted(r.mc._fields)
        ['brier', 'ece', 'nll']
    """
    saved = [(m, m.training) for m in model.modules()]
    try:
        with torch.no_grad():
            det = model.eval()(x)
    finally:
        for module, flag in saved:
            module.training = flag
    mc = mc_predict(model, x, samples, seed, chunk)
    if logits:
        det, mc = det.softmax(-1), mc.softmax(-1)
    return CalibrationReport(
        _calibration(mc.mean(0), target, n_bins), _calibration(det, target, n_bins)
    )
