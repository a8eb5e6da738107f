"""Drop-in fidelity, point by point (tests/test_torch_parity.py has torch's full suite).

Each test names the probe finding or contract it pins; each failed on dropkit 0.1.0.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as tF

import dropkit
import dropkit.functional as F

TWINS = [
    (F.dropout, tF.dropout, (4, 6)),
    (F.dropout1d, tF.dropout1d, (2, 3, 4)),
    (F.dropout2d, tF.dropout2d, (2, 3, 4, 4)),
    (F.dropout3d, tF.dropout3d, (2, 3, 2, 2, 2)),
    (F.alpha_dropout, tF.alpha_dropout, (4, 6)),
    (F.feature_alpha_dropout, tF.feature_alpha_dropout, (2, 3, 4)),
]
NONFLOAT = [torch.int64, torch.int8, torch.bool, torch.complex64]


def _ones(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.ones(shape, dtype=dtype)


@pytest.mark.parametrize(("ours", "theirs", "shape"), TWINS)
def test_signatures_and_defaults_are_torchs(ours, theirs, shape) -> None:
    mine, torchs = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
    for name, param in torchs.items():
        assert name in mine and mine[name].default == param.default, name
        assert mine[name].kind == param.kind
    extra = [p for n, p in mine.items() if n not in torchs]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extra)


@pytest.mark.parametrize(("ours", "theirs", "shape"), TWINS)
@pytest.mark.parametrize("dtype", NONFLOAT)
def test_nonfloat_input_passes_through_when_nothing_drops(ours, theirs, shape, dtype) -> None:
    x = _ones(shape, dtype)
    for args in ((0.5, False), (0.0, True)):
        assert theirs(x, *args) is x
        assert ours(x, *args) is x
    empty = torch.ones((0, *shape[1:]), dtype=dtype)
    assert ours(empty, 0.5, True) is empty


@pytest.mark.parametrize(("ours", "theirs", "shape"), TWINS)
@pytest.mark.parametrize("dtype", NONFLOAT)
def test_nonfloat_input_raises_torchs_exception_type_while_dropping(
    ours, theirs, shape, dtype
) -> None:
    x = _ones(shape, dtype)
    with pytest.raises(Exception) as torch_error:
        theirs(x, 0.5, True)
    with pytest.raises(dropkit.DtypeError, match=str(dtype)) as ours_error:
        ours(x, 0.5, True)
    assert isinstance(ours_error.value, type(torch_error.value))  # catchable as torch's
    assert isinstance(ours_error.value, TypeError)  # and as dropkit's rule for a bad type


def test_alpha_functionals_default_to_eval_like_torch() -> None:
    x = torch.randn(4, 6)
    assert F.alpha_dropout(x) is x and tF.alpha_dropout(x) is x
    y = torch.randn(2, 3, 4)
    assert F.feature_alpha_dropout(y, 0.5) is y


@pytest.mark.parametrize("training", ["no", None, 1, 0.5, torch.tensor(True)])
def test_training_must_be_a_bool(training: object) -> None:
    """Probe: ``training="no"`` was taken as true; torch raises TypeError."""
    x = torch.randn(4)
    with pytest.raises(TypeError):
        tF.dropout(x, 0.5, training)  # type: ignore[arg-type]
    for fn in (F.dropout, F.alpha_dropout, F.gaussian_dropout, F.drop_path):
        with pytest.raises(TypeError, match="training"):
            fn(x, 0.5, training)  # type: ignore[arg-type]


def test_p_one_gives_input_times_zero_in_its_dtype() -> None:
    for dtype in (torch.int64, torch.bool, torch.float32):
        x = torch.ones(5, dtype=dtype)
        want = tF.dropout(x, 1.0, True)
        got = F.dropout(x, 1.0, True)
        assert got.dtype == want.dtype == dtype and torch.equal(got, want)
    nan = torch.tensor([1.0, float("nan"), float("inf")])
    assert torch.equal(F.dropout(nan, 1.0).isnan(), tF.dropout(nan, 1.0, True).isnan())


def test_inplace_on_a_leaf_is_refused_only_when_something_is_written() -> None:
    leaf = torch.randn(4, requires_grad=True)
    assert F.dropout(leaf, 0.5, False, True) is leaf  # nothing written: fine, as torch
    assert F.dropout(leaf, 0.0, True, True) is leaf
    with pytest.raises(RuntimeError, match="leaf"):
        F.dropout(leaf, 0.5, True, True)
