"""Helpers shared by the experiments: metrics of stored probabilities and noise levels."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["accuracy", "binom_se", "example_losses", "log_loss", "loss_sem", "paired_se", "summary"]


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-probability of the true class; ``probs [N, C]``, ``y [N]``."""
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())


def example_losses(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Negative log-probability of the true class per example ``[N]`` (float64)."""
    return -np.log(np.clip(probs[np.arange(len(y)), y].astype(np.float64), 1e-12, None))


def loss_sem(probs: np.ndarray, y: np.ndarray) -> float:
    """Standard error of :func:`log_loss` over the test examples."""
    per = -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))
    return float(per.std(ddof=1) / math.sqrt(len(y)))


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows whose arg-max is the label."""
    return float((probs.argmax(1) == y).mean())


def binom_se(acc: float, n: int) -> float:
    """Standard error of an accuracy measured on ``n`` independent test examples."""
    return math.sqrt(max(acc * (1.0 - acc), 1.0 / n) / n)


def paired_se(pred_a: np.ndarray, pred_b: np.ndarray, y: np.ndarray) -> float:
    """Standard error of ``acc_a - acc_b`` on the same test set (McNemar's variance)."""
    a, b = pred_a == y, pred_b == y
    n = len(y)
    d = a.astype(float) - b.astype(float)
    return math.sqrt(max(d.var(), 1.0 / n) / n)


def summary(values: list[float]) -> dict[str, float]:
    """Mean, standard deviation (ddof 1, 0 for one value) and standard error."""
    arr = np.asarray(values, dtype=float)
    sd = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "sd": sd, "se": sd / math.sqrt(len(arr))}
