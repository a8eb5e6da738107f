"""Dropout-rate schedules: values per step, resumable state, stateless modules."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable

import pytest
import torch
from torch import nn

import dropkit
from dropkit import schedules
from dropkit.nn import (
    ConcreteDropout,
    DropBlock2d,
    DropConnect,
    Dropout,
    DropPath,
    EmbeddingDropout,
    GaussianDropout,
    LockedDropout,
)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.ModuleDict(
        {
            "drop": Dropout(0.5),
            "path": DropPath(0.2),
            "block": DropBlock2d(0.1, 3),
            "gauss": GaussianDropout(0.3),
            "locked": LockedDropout(0.4),
            "connect": DropConnect(nn.Linear(3, 3), 0.25),
            "emb": EmbeddingDropout(nn.Embedding(5, 2), 0.1),
            "concrete": ConcreteDropout(nn.Linear(3, 1), p=0.3),
        }
    )


BASE = {
    "drop": 0.5,
    "path": 0.2,
    "block": 0.1,
    "gauss": 0.3,
    "locked": 0.4,
    "connect": 0.25,
    "emb": 0.1,
}


def rates(m: nn.Module) -> dict[str, float]:
    return {k: m[k].p for k in BASE}


@pytest.mark.parametrize(
    ("make", "factors"),
    [
        (lambda m: schedules.ConstantDropout(m), [1, 1, 1, 1, 1, 1]),
        (lambda m: schedules.LinearWarmup(m, 4), [0, 0.25, 0.5, 0.75, 1, 1]),
        (lambda m: schedules.EarlyDropout(m, 3), [1, 1, 1, 0, 0, 0]),
        (lambda m: schedules.EarlyDropout(m, 4, schedule="linear"), [1, 0.75, 0.5, 0.25, 0, 0]),
        (lambda m: schedules.LateDropout(m, 2), [0, 0, 1, 1, 1, 1]),
    ],
)
def test_rates_per_step_on_every_dropkit_layer(make: object, factors: list[float]) -> None:
    m = model()
    sched = make(m)  # type: ignore[operator]
    concrete_p = m["concrete"].p
    for step, f in enumerate(factors):
        if step:
            sched.step()
        assert rates(m) == pytest.approx({k: v * f for k, v in BASE.items()})
        assert sched.get_last_p() == pytest.approx({k: v * f for k, v in BASE.items()})
    assert m["concrete"].p == concrete_p  # learned p is left alone
    assert "concrete" not in sched.get_last_p()


def test_one_rate_override() -> None:
    m = model()
    schedules.LateDropout(m, 1, p=0.05).step()
    assert set(rates(m).values()) == {0.05}


def test_state_dict_round_trip_resumes_identically() -> None:
    m1 = model()
    s1 = schedules.EarlyDropout(m1, 6, schedule="linear")
    for _ in range(3):
        s1.step()
    buf = io.BytesIO()
    torch.save({"model": m1.state_dict(), "sched": s1.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf)
    m2 = model()  # a fresh process: layers at their constructor rates
    m2.load_state_dict(ckpt["model"], strict=True)
    s2 = schedules.EarlyDropout(m2, 99)  # hyperparameters come back from the state
    s2.load_state_dict(ckpt["sched"])
    assert rates(m2) == rates(m1) and s2.last_step == 3 and s2.cutoff == 6
    for _ in range(5):
        s1.step()
        s2.step()
        assert rates(m2) == rates(m1)
    # Outputs agree too: same rates, same seeds.
    x = torch.randn(2, 3, 5, 5)
    torch.manual_seed(4)
    y1 = m1["block"](x)
    torch.manual_seed(4)
    assert torch.equal(y1, m2["block"](x))


def test_base_rates_survive_a_schedule_built_on_an_already_scheduled_model() -> None:
    m = model()
    s = schedules.LinearWarmup(m, 10)  # sets every p to 0 at step 0
    state = s.state_dict()
    s2 = schedules.LinearWarmup(m, 10)  # would record base rates of 0 ...
    s2.load_state_dict(state)  # ... until the saved base rates come back
    for _ in range(10):
        s2.step()
    assert rates(m) == pytest.approx(BASE)


def test_modules_stay_stateless_strict_load_from_plain_torch() -> None:
    def torch_net() -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Linear(4, 8), nn.Dropout(0.3), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2)
        )

    def dropkit_net() -> nn.Sequential:  # what dropkit.convert makes of torch_net()
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Linear(4, 8), Dropout(0.3), nn.ReLU(), Dropout(0.1), nn.Linear(8, 2)
        )

    ours = dropkit_net()
    sched = schedules.LinearWarmup(ours, 3)
    sched.step()
    theirs = torch_net().state_dict()
    assert set(ours.state_dict()) == set(theirs)
    ours.load_state_dict(theirs, strict=True)
    torch_net().load_state_dict(ours.state_dict(), strict=True)
    assert list(ours.buffers()) == [] and len(list(ours.parameters())) == 4


def test_errors_and_repr() -> None:
    with pytest.raises(ValueError, match="no dropkit dropout layer"):
        schedules.ConstantDropout(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)))
    with pytest.raises(TypeError, match=r"nn\.Module"):
        schedules.ConstantDropout("model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        schedules.LateDropout(model(), -1)
    with pytest.raises(TypeError, match="int number of steps"):
        schedules.LinearWarmup(model(), 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'constant' or 'linear'"):
        schedules.EarlyDropout(model(), 3, schedule="cosine")
    with pytest.raises(ValueError, match="between 0 and 1"):
        schedules.ConstantDropout(model(), p=1.5)
    s = schedules.ConstantDropout(model())
    bad = dict(s.state_dict(), base_ps={"nope": 0.1})
    with pytest.raises(ValueError, match="not dropkit layers"):
        s.load_state_dict(bad)
    assert repr(schedules.LateDropout(model(), 2)) == "LateDropout(last_step=0, layers=7)"
    assert dropkit.schedules is schedules


def _with(**changes: object) -> Callable[[dict], object]:
    return lambda good: dict(good, **changes)


def _rates(**changes: object) -> Callable[[dict], object]:
    return lambda good: dict(good, base_ps={**good["base_ps"], **changes})


# (what is wrong, bad state made from a good one, error, message pattern)
BAD_STATES = [
    ("not-a-dict", lambda good: list(good.items()), TypeError, r"expects a dict.*list"),
    ("step-str", _with(last_step="3"), TypeError, r"last_step.*int number of steps.*'3'"),
    ("step-bool", _with(last_step=True), TypeError, r"last_step.*int number.*True"),
    ("step-float", _with(last_step=2.0), TypeError, r"last_step.*int number.*2\.0"),
    ("step-negative", _with(last_step=-1), ValueError, r"last_step.*>= 0, but got -1"),
    ("rates-list", _with(base_ps=[0.1]), TypeError, r"base_ps.*dict.*\[0\.1\]"),
    ("rate-str", _rates(drop="0.5"), TypeError, r"\['drop'\].*real number.*'0\.5'"),
    ("rate-bool", _rates(drop=True), TypeError, r"\['drop'\].*real number.*True"),
    ("rate-range", _rates(drop=1.5), ValueError, r"\['drop'\].*between 0 and 1.*1\.5"),
    ("rate-nan", _rates(drop=float("nan")), ValueError, r"between 0 and 1, but got nan"),
    (
        "name-int",
        lambda good: dict(good, base_ps={**good["base_ps"], 3: 0.1}),
        TypeError,
        r"\[3\].*layer names",
    ),
    ("name-unknown", _rates(nope=0.1), ValueError, r"\['nope'\].*not dropkit layers"),
    (
        "name-missing",
        lambda good: dict(good, base_ps={k: v for k, v in good["base_ps"].items() if k != "gauss"}),
        ValueError,
        r"missing.*\['gauss'\]",
    ),
    ("warmup-negative", _with(warmup_steps=-2), ValueError, r"warmup_steps.*>= 0"),
    ("warmup-str", _with(warmup_steps="4"), TypeError, r"warmup_steps.*'4'"),
    ("unknown-key", _with(typo=1), ValueError, r"unknown key.*'typo'.*last_step"),
]


@pytest.mark.parametrize(
    ("make_bad", "error", "pattern"),
    [case[1:] for case in BAD_STATES],
    ids=[case[0] for case in BAD_STATES],
)
def test_failed_load_state_dict_leaves_the_schedule_unchanged(
    make_bad: Callable[[dict], object], error: type[Exception], pattern: str
) -> None:
    # load_state_dict used to write the state into the schedule before checking it: after a
    # failed load every step() raised (or, for some bad values, the load went through).
    m = model()
    s = schedules.LinearWarmup(m, 4)
    s.step()
    before, before_rates = copy.deepcopy(s.state_dict()), rates(m)
    with pytest.raises(error, match=pattern):
        s.load_state_dict(make_bad(copy.deepcopy(before)))  # type: ignore[arg-type]
    assert s.state_dict() == before and rates(m) == before_rates
    s.step()  # still works, from where it was
    assert s.last_step == 2 and rates(m) == pytest.approx({k: v * 0.5 for k, v in BASE.items()})


def test_failed_load_rolls_back_when_factor_raises() -> None:
    class Custom(schedules.DropoutSchedule):
        def __init__(self, model: nn.Module) -> None:
            self.rates = [1.0, 0.5, 0.25]  # a subclass attribute the base cannot check
            super().__init__(model)

        def factor(self, step: int) -> float:
            return self.rates[step]

    m = model()
    s = Custom(m)
    s.step()
    before, before_rates = copy.deepcopy(s.state_dict()), rates(m)
    with pytest.raises(IndexError):
        s.load_state_dict(dict(s.state_dict(), rates=[1.0]))  # factor(1) fails: rolled back
    assert s.state_dict() == before and rates(m) == before_rates
    s.step()
    assert rates(m) == pytest.approx({k: v * 0.25 for k, v in BASE.items()})


def test_load_state_dict_good_round_trip_and_partial_state() -> None:
    m = model()
    s = schedules.EarlyDropout(m, 4, schedule="linear")
    s.step()
    state = copy.deepcopy(s.state_dict())
    s2 = schedules.EarlyDropout(model(), 99)
    s2.load_state_dict(state)
    assert s2.state_dict() == state and s2.get_last_p() == s.get_last_p()
    s2.load_state_dict({"last_step": 2})  # a partial state sets just those keys, as torch's
    assert s2.last_step == 2 and s2.cutoff == 4
    assert s2.get_last_p() == pytest.approx({k: v * 0.5 for k, v in BASE.items()})
    state["base_ps"]["drop"] = 0.0  # the loaded state is a copy, not the caller's dict
    assert s2.base_ps["drop"] == 0.5
    with pytest.raises(ValueError, match=r"schedule.*'constant' or 'linear'"):
        s2.load_state_dict(dict(state, schedule="cosine"))
    with pytest.raises(ValueError, match=r"cutoff.*>= 0"):
        schedules.LateDropout(model(), 1).load_state_dict({"cutoff": -1})


def test_a_rate_the_layer_refuses_is_refused_by_the_schedule_and_changes_nothing() -> None:
    """GaussianDropout refuses p = 1 in its constructor; a schedule that would set it says
    so, names the layer, and leaves every rate and its step where they were."""
    model = nn.Sequential(GaussianDropout(0.3), Dropout(0.2))
    with pytest.raises(ValueError, match=r"layer '0' to p=1\.0.*GaussianDropout needs p < 1"):
        schedules.ConstantDropout(model, p=1.0)
    assert (model[0].p, model[1].p) == (0.3, 0.2)
    schedule = schedules.LinearWarmup(model, warmup_steps=2, p=1.0)  # step 0: factor 0, fine
    with pytest.raises(ValueError, match="GaussianDropout"):
        for _ in range(3):
            schedule.step()
    last = schedule.last_step
    with pytest.raises(ValueError):
        schedule.step()
    assert schedule.last_step == last  # (a refused step is not taken)


def test_state_dict_is_a_copy() -> None:
    """Editing a saved state (a dict of base rates) changes nothing until it is loaded,
    and loading checks it."""
    model = nn.Sequential(Dropout(0.2))
    schedule = schedules.ConstantDropout(model, p=0.5)
    state = schedule.state_dict()
    state["base_ps"]["0"] = 7.0
    schedule.step()
    assert model[0].p == 0.5
    with pytest.raises(ValueError):
        schedule.load_state_dict(state)
