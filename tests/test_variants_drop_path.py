"""Drop path / stochastic depth: whole samples, scale_by_keep, and the rate helper."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dropkit import rng
from dropkit.functional import drop_path, dropout
from dropkit.nn import DropPath, drop_path_rates


def whole_samples(y: torch.Tensor) -> bool:
    """Each sample is either all zero or all nonzero (for nonzero input)."""
    zero = (y == 0).flatten(1)
    return bool((zero.all(1) | (~zero).all(1)).all())


def test_whole_samples_scaled_as_documented() -> None:
    x = torch.rand(64, 3, 4) + 0.5
    p, seed = 0.4, 21
    y = drop_path(x, p, seed=seed)
    assert whole_samples(y)
    keep = rng.keep_bits(64, seed, rng.threshold(p))
    assert torch.equal(y[keep], x[keep] * (1 / (1 - p)))
    assert bool((y[~keep] == 0).all())
    assert torch.equal(y, dropout(x, p, seed=seed, broadcast_dims=(1, 2)))
    y2 = drop_path(x, p, scale_by_keep=False, seed=seed)
    assert torch.equal(y2[keep], x[keep])
    assert not whole_samples(dropout(x, p, seed=seed))  # a per-element mask breaks it


def test_kept_fraction_of_samples() -> None:
    n, p = 20_000, 0.25
    y = drop_path(torch.ones(n, 2), p, seed=2)
    kept = int((y[:, 0] != 0).sum())
    bound = 6 * math.sqrt(p * (1 - p) / n)
    assert abs(kept / n - (1 - p)) < bound
    assert abs((n - kept) / n - (1 - p)) > bound  # a flipped comparison would fail it


def test_eval_degenerate_and_grad() -> None:
    x = torch.randn(4, 5, dtype=torch.float64)
    assert drop_path(x, 0.5, training=False) is x
    assert drop_path(x, 0.0) is x
    assert torch.equal(drop_path(x, 1.0), x * 0)
    xr = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda v: drop_path(v, 0.5, seed=3), (xr,))
    m = DropPath(0.3)
    assert m.eval()(x) is x
    torch.manual_seed(5)
    a = m.train()(x)
    torch.manual_seed(5)
    assert torch.equal(a, drop_path(x, 0.3))


def test_rates_over_depth() -> None:
    rates = drop_path_rates(0.3, 6)
    assert len(rates) == 6
    assert rates[-1] == pytest.approx(0.3)
    assert rates == pytest.approx([0.3 * k / 6 for k in range(1, 7)])
    assert all(b > a for a, b in itertools.pairwise(rates))
    assert drop_path_rates(0.0, 3) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="at least 1"):
        drop_path_rates(0.1, 0)
    with pytest.raises(TypeError, match="depth must be an int"):
        drop_path_rates(0.1, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="between 0 and 1"):
        drop_path_rates(1.5, 3)


def test_repr_and_errors() -> None:
    assert repr(DropPath(0.1)) == "DropPath(p=0.1, scale_by_keep=True)"
    assert repr(DropPath(0.2, False)) == "DropPath(p=0.2, scale_by_keep=False)"
    with pytest.raises(ValueError, match="between 0 and 1"):
        DropPath(2.0)
    with pytest.raises(TypeError, match="scale_by_keep"):
        DropPath(0.1, scale_by_keep=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch dimension"):
        drop_path(torch.tensor(1.0), 0.5, seed=0)
