"""broadcast_dims on dropout, and LockedDropout built on it."""

from __future__ import annotations

import math

import pytest
import torch

import dropkit
from dropkit import rng
from dropkit.functional import dropout
from dropkit.nn import LockedDropout


def binomial_ok(kept: int, n: int, q: float) -> bool:
    """|kept/n - q| within 6 binomial standard deviations."""
    return abs(kept / n - q) < 6 * math.sqrt(q * (1 - q) / n)


def shared_along(y: torch.Tensor, dim: int) -> bool:
    """Every slice along ``dim`` equals the first one."""
    return bool((y == y.narrow(dim, 0, 1)).all())


@pytest.mark.parametrize("dims", [(1,), (-2,), (0, 2), (-1, -3)])
def test_mask_is_the_spec_over_the_broadcast_shape(dims: tuple[int, ...]) -> None:
    x = torch.randn(4, 5, 6)
    p, seed = 0.3, 11
    y = dropout(x, p, seed=seed, broadcast_dims=dims)
    shape = [1 if d in {dd % 3 for dd in dims} else s for d, s in enumerate(x.shape)]
    keep = rng.keep_bits(math.prod(shape), seed, rng.threshold(p)).view(shape)
    expected = x * torch.where(keep, torch.tensor(1 / (1 - p)), torch.tensor(0.0))
    assert torch.equal(y, expected)
    for d in dims:
        assert shared_along(y != 0, d)


def test_no_broadcast_is_plain_dropout_and_shared_dims_are_really_shared() -> None:
    x = torch.ones(8, 9, 10)
    assert torch.equal(dropout(x, 0.5, seed=3), dropout(x, 0.5, seed=3, broadcast_dims=()))
    assert shared_along(dropout(x, 0.5, seed=3, broadcast_dims=(1,)), 1)
    assert not shared_along(dropout(x, 0.5, seed=3), 1)  # the invariant catches a per-element mask


def test_kept_fraction_of_decisions() -> None:
    n, t, h, p = 200, 30, 20, 0.3
    y = dropout(torch.ones(n, t, h), p, seed=5, broadcast_dims=(1,))
    decisions = y[:, 0, :]  # one decision per (sample, feature)
    kept = int((decisions != 0).sum())
    assert binomial_ok(kept, n * h, 1 - p)
    assert bool(((decisions == 0) | (decisions == 1 / (1 - p))).all())
    # A flipped comparison (keep iff draw < threshold) keeps p instead: the bound sees it.
    assert not binomial_ok(n * h - kept, n * h, 1 - p)
    # Counting over all n*t*h elements as if independent would shrink sigma by sqrt(t):
    # the bound is on the n*h decisions, which is what the broadcast makes independent.


def test_classic_inplace_eval_and_grad() -> None:
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    y = dropout(x, 0.4, seed=2, broadcast_dims=(1,), scaling="classic")
    assert bool(((y == 0) | (y == x)).all())
    z = x.clone()
    dropout(z, 0.4, seed=2, broadcast_dims=(1,), inplace=True)
    assert torch.equal(z, dropout(x, 0.4, seed=2, broadcast_dims=(1,)))
    assert dropout(x, 0.4, training=False, broadcast_dims=(1,)) is x
    xr = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda v: dropout(v, 0.4, seed=9, broadcast_dims=(0, 2)), (xr,))


@pytest.mark.parametrize(
    ("dims", "err", "text"),
    [
        ((3,), ValueError, "out of range"),
        ((-4,), ValueError, "out of range"),
        ((1, -2), ValueError, "twice"),
        (1, TypeError, "tuple of ints"),
        ((1.0,), TypeError, "must be ints"),
        ((True,), TypeError, "must be ints"),
    ],
)
def test_bad_broadcast_dims(dims: object, err: type, text: str) -> None:
    with pytest.raises(err, match=text):
        dropout(torch.ones(2, 3, 4), 0.5, seed=0, broadcast_dims=dims)  # type: ignore[arg-type]
    with pytest.raises(err, match=text):  # checked in eval too
        dropout(torch.ones(2, 3, 4), 0.5, training=False, broadcast_dims=dims)  # type: ignore[arg-type]


@pytest.mark.parametrize("batch_first", [True, False])
def test_locked_dropout_one_mask_for_all_time_steps(batch_first: bool) -> None:
    torch.manual_seed(0)
    m = LockedDropout(0.5, batch_first=batch_first)
    x = torch.ones(6, 7, 8)
    y = m(x)
    time_dim = 1 if batch_first else 0
    assert shared_along(y, time_dim)
    assert not shared_along(y, 1 - time_dim)  # different samples, different masks
    torch.manual_seed(0)
    expected = dropout(x, 0.5, broadcast_dims=(time_dim,))
    assert torch.equal(y, expected)  # same draw from torch's default generator
    assert m.eval()(x) is x


def test_locked_dropout_repr_and_errors() -> None:
    assert repr(LockedDropout(0.25)) == "LockedDropout(p=0.25, batch_first=True)"
    assert "scaling='classic'" in repr(LockedDropout(0.2, False, scaling="classic"))
    with pytest.raises(ValueError, match="between 0 and 1"):
        LockedDropout(1.5)
    with pytest.raises(TypeError, match="batch_first"):
        LockedDropout(0.5, batch_first="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        LockedDropout(0.5)(torch.ones(4))
    assert isinstance(LockedDropout(), dropkit.nn.StochasticModule)
