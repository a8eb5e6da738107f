"""Uncertainty from Monte-Carlo samples: mean, variance, entropies, mutual information (BALD).

Papers: Gal & Ghahramani 2016; Houlsby et al. 2011, "Bayesian active learning for
classification and preference learning" (BALD).
"""

from __future__ import annotations

import torch

__all__ = [
    "expected_entropy",
    "mutual_information",
    "predictive_entropy",
    "predictive_mean",
    "variance",
]


def _check_probs(probs: object, name: str) -> torch.Tensor:
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise TypeError(f"{name} expects a floating-point tensor of probabilities")
    if probs.dim() < 2:
        raise ValueError(
            f"{name} needs samples of shape [T, ..., C] (sample axis first), "
            f"got {tuple(probs.shape)}"
        )
    return probs


def _class_dim(probs: torch.Tensor, dim: int) -> int:
    if not -probs.dim() <= dim < probs.dim() or dim % probs.dim() == 0:
        raise ValueError(
            f"class axis dim={dim} must be a valid axis other than 0 (the sample axis) "
            f"of a {probs.dim()}-d tensor"
        )
    return dim % probs.dim()


def _entropy(probs: torch.Tensor, dim: int) -> torch.Tensor:
    return -torch.special.xlogy(probs, probs).sum(dim)


def predictive_mean(samples: torch.Tensor) -> torch.Tensor:
    r"""The MC estimate :math:`\bar y = \frac1T \sum_t y_t` (mean over the sample axis 0).

    Shape: ``[T, *]`` -> ``[*]``.

    Example:
        >>> import torch
        >>> predictive_mean(torch.tensor([[1.0, 3.0], [3.0, 5.0]])).tolist()
        [2.0, 4.0]
    """
    return samples.mean(0)


def variance(samples: torch.Tensor, correction: int = 0) -> torch.Tensor:
    r"""Per-element variance over the sample axis: :math:`\frac{1}{T - c}\sum_t (y_t - \bar y)^2`.

    ``correction=0`` (default) is Gal & Ghahramani's :math:`E[y^2] - E[y]^2` (add the
    model precision :math:`\tau^{-1}` yourself for regression); ``correction=1`` is the
    unbiased estimator.

    Shape: ``[T, *]`` -> ``[*]``.

    Example:
        >>> import torch
        >>> variance(torch.tensor([[1.0], [3.0]])).tolist()
        [1.0]
    """
    return samples.var(0, correction=correction)


def predictive_entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Entropy (nats) of the MC mean: :math:`-\sum_c \bar p_c \log \bar p_c`, with 0 log 0 = 0.

    Args:
        probs: class probabilities, sample axis first, classes along ``dim``.
        dim: the class axis. Default: -1.

    Shape: ``[T, B, C]`` -> ``[B]``.

    Example:
        >>> import torch
        >>> p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # two confident, opposite samples
        >>> round(float(predictive_entropy(p)[0]), 4)  # log 2
        0.6931
    """
    probs = _check_probs(probs, "predictive_entropy")
    dim = _class_dim(probs, dim)
    return _entropy(probs.mean(0), dim - 1)


def expected_entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Mean entropy of the samples: :math:`\frac1T\sum_t -\sum_c p_{t,c}\log p_{t,c}` (aleatoric).

    Shape: ``[T, B, C]`` -> ``[B]``.

    Example:
        >>> import torch
        >>> p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
        >>> expected_entropy(p).tolist()
        [0.0]
    """
    probs = _check_probs(probs, "expected_entropy")
    return _entropy(probs, _class_dim(probs, dim)).mean(0)


def mutual_information(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""BALD: :math:`I[y; w] = H[\bar p] - \frac1T\sum_t H[p_t]` (epistemic), clamped at 0.

    Non-negative by concavity of the entropy; the clamp only removes rounding residue.

    Shape: ``[T, B, C]`` -> ``[B]``.

    Example:
        >>> import torch
        >>> p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
        >>> round(float(mutual_information(p)[0]), 4)
        0.6931

    Paper: Houlsby et al. 2011, "Bayesian active learning for classification and
    preference learning".
    """
    mi = predictive_entropy(probs, dim) - expected_entropy(probs, dim)
    return mi.clamp_min(0.0)


# ---------------------------------------------------------------- calibration
