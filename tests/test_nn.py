"""dropkit.nn: drop-in twins of torch.nn's dropout modules."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn as tnn

import dropkit
from dropkit import nn as dnn

PAIRS = [
    (dnn.Dropout, tnn.Dropout, (4, 6)),
    (dnn.Dropout1d, tnn.Dropout1d, (4, 6, 3)),
    (dnn.Dropout2d, tnn.Dropout2d, (4, 6, 3, 3)),
    (dnn.Dropout3d, tnn.Dropout3d, (4, 6, 2, 2, 2)),
    (dnn.AlphaDropout, tnn.AlphaDropout, (4, 6)),
    (dnn.FeatureAlphaDropout, tnn.FeatureAlphaDropout, (4, 6, 3)),
]


@pytest.mark.parametrize(("ours", "theirs", "shape"), PAIRS)
def test_constructor_attributes_and_repr_match_torch(ours, theirs, shape):
    for args in [(), (0.2,), (0.3, True), (0, False), (1,)]:
        a, b = ours(*args), theirs(*args)
        assert repr(a) == repr(b)
        assert (a.p, a.inplace) == (b.p, b.inplace)
    their_params = list(inspect.signature(theirs.__init__).parameters.values())
    our_params = list(inspect.signature(ours.__init__).parameters.values())
    assert [(q.name, q.default) for q in our_params[: len(their_params)]] == [
        (q.name, q.default) for q in their_params
    ]


@pytest.mark.parametrize(("ours", "theirs", "shape"), PAIRS)
@pytest.mark.parametrize("p", [-0.5, 1.01])
def test_bad_p_raises_like_torch(ours, theirs, shape, p):
    with pytest.raises(ValueError) as a:
        ours(p)
    with pytest.raises(ValueError) as b:
        theirs(p)
    assert str(a.value) == str(b.value)


@pytest.mark.parametrize("cls", [c for c, _, _ in PAIRS])
def test_nan_and_non_number_p_are_rejected(cls):
    with pytest.raises(ValueError, match="NaN"):
        cls(float("nan"))
    with pytest.raises(TypeError, match="real number"):
        cls("0.5")


def test_unknown_scaling_is_rejected():
    with pytest.raises(ValueError, match="unknown scaling 'paper'"):
        dnn.Dropout(0.5, scaling="paper")


@pytest.mark.parametrize(("ours", "theirs", "shape"), PAIRS)
def test_train_and_eval_behaviour_match_torch(ours, theirs, shape):
    x = torch.randn(shape)
    a, b = ours(0.5), theirs(0.5)
    a.eval(), b.eval()
    assert a(x) is x and b(x) is x
    a.train()
    y = a(x)
    assert y.shape == x.shape and not torch.equal(y, x)


def test_classic_scaling_is_the_seed_algorithm():
    m = dnn.Dropout(0.25, scaling="classic")
    assert repr(m) == "Dropout(p=0.25, inplace=False, scaling='classic')"
    x = torch.rand(10000) + 1.0
    y = m(x)
    assert bool(((y == 0) | (y == x)).all())  # training: drop, no rescale
    m.eval()
    assert torch.equal(m(x), x * 0.75)  # test time: every unit, times (1 - p)


def test_state_dict_is_the_same_as_torch():
    def build(drop: type) -> tnn.Module:
        torch.manual_seed(0)
        return tnn.Sequential(tnn.Linear(3, 4), drop(0.5), tnn.Linear(4, 2))

    a, b = build(dnn.Dropout), build(tnn.Dropout)
    assert a.state_dict().keys() == b.state_dict().keys()
    a.load_state_dict(b.state_dict(), strict=True)


def test_module_follows_global_seed_and_matches_functional():
    x = torch.randn(64)
    torch.manual_seed(3)
    y = dnn.Dropout(0.5)(x)
    torch.manual_seed(3)
    assert torch.equal(y, dropkit.functional.dropout(x, 0.5))


def test_inplace_module():
    x = torch.randn(20)
    m = dnn.Dropout(0.5, inplace=True)
    assert m(x) is x
