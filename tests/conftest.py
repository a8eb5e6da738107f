"""Shared statistics helpers: tolerances derived from the binomial bound, never magic numbers."""

from __future__ import annotations

import math

import pytest
import torch

SIGMAS = 6.0  # every statistical test allows 6 standard deviations (>= 5 as required)


def binomial_tol(p_keep: float, n: int, sigmas: float = SIGMAS) -> float:
    """Half-width of the band for a kept fraction: sigmas * sqrt(q(1-q)/n)."""
    return sigmas * math.sqrt(max(p_keep * (1.0 - p_keep), 0.0) / n)


def assert_fraction(kept: int, n: int, p_keep: float, sigmas: float = SIGMAS) -> None:
    """Assert that kept/n is within ``sigmas`` binomial standard deviations of p_keep."""
    frac = kept / n
    tol = binomial_tol(p_keep, n, sigmas)
    assert abs(frac - p_keep) <= tol, f"kept {frac:.6f}, expected {p_keep:.6f} +- {tol:.6f}"


def fraction_ok(kept: int, n: int, p_keep: float, sigmas: float = SIGMAS) -> bool:
    """The same check as ``assert_fraction``, as a bool (used to show that bugs fail it)."""
    return abs(kept / n - p_keep) <= binomial_tol(p_keep, n, sigmas)


@pytest.fixture(autouse=True)
def _fixed_seed() -> None:
    torch.manual_seed(0)
