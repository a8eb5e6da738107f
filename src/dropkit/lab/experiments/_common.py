"""Helpers shared by the experiments: metrics of stored probabilities and noise levels."""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "accuracy", "binom_se", "ci95", "example_losses", "log_loss", "loss_sem", "paired_se",
    "summary",
]


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


# Student's t quantile t_{0.975}(df) for small df (the normal's 1.96 beyond the table).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def ci95(values: list[float]) -> tuple[float, float] | None:
    """95% confidence interval of the mean of ``values`` (Student's t); None for one value.

    Example:
        >>> lo, hi = ci95([1.0, 2.0, 3.0])
        >>> round(lo, 3), round(hi, 3)
        (-0.484, 4.484)
    """
    if len(values) < 2:
        return None
    s = summary(values)
    df = len(values) - 1
    t = _T975[max(k for k in _T975 if k <= df)] if df <= 30 else 1.96
    return s["mean"] - t * s["se"], s["mean"] + t * s["se"]


def summary(values: list[float]) -> dict[str, float]:
    """Mean, standard deviation (ddof 1, 0 for one value) and standard error."""
    arr = np.asarray(values, dtype=float)
    sd = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "sd": sd, "se": sd / math.sqrt(len(arr))}
