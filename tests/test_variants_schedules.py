"""Dropout-rate schedules: values per step, resumable state, stateless modules."""

from __future__ import annotations

import io

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
