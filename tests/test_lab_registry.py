"""One ordered registry of experiments, read by the CLI, the defaults and the report; each
experiment's ``analyse`` is pure (it never trains)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("rich")

from dropkit.cli import _lab_parser
from dropkit.lab import experiments, train
from dropkit.lab.config import EXPERIMENTS, LabConfig, resolve_config
from dropkit.lab.runner import Runner
from dropkit.lab.session import run_lab
from dropkit.lab.store import Store


def test_every_experiment_follows_the_protocol() -> None:
    assert tuple(experiments.REGISTRY) == experiments.NAMES == EXPERIMENTS
    for name, m in experiments.REGISTRY.items():
        assert name == m.NAME and m.CLAIM and isinstance(m.DEFAULT, bool)
        assert all(callable(getattr(m, f)) for f in ("trials", "analyse", "plot", "explain"))
        assert m.RULE and "claim" not in m.CLAIM.lower()  # no numbering after a document
        assert dataclasses.is_dataclass(m.Config.from_lab(LabConfig()))
    assert "data-size" in experiments.NAMES and "data-size" not in experiments.DEFAULTS


def test_the_defaults_and_the_cli_read_the_registry() -> None:
    assert LabConfig().experiments == experiments.DEFAULTS
    assert resolve_config({}).experiments == experiments.DEFAULTS
    assert resolve_config({"mode": "full"}).experiments == experiments.NAMES
    helptext = _lab_parser().format_help()
    assert all(n in helptext for n in experiments.NAMES)
    with pytest.raises(ValueError, match="choose from overfitting, rate-sweep"):
        resolve_config({"experiments": ["nope"]})


def test_analyse_is_pure_and_reproduces_the_stored_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    y = np.arange(240) % 3
    x = (np.eye(3, 6)[y] * 2 + rng.normal(size=(240, 6))).astype(np.float32)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x[:180], y_train=y[:180], x_test=x[180:], y_test=y[180:])
    cfg = resolve_config({"data": str(path), "out": str(tmp_path / "o"), "hidden": [16],
                          "epochs": 3, "batch_size": 60, "lr": 0.01, "workers": 1,
                          "ps": [0.0, 0.5], "experiments": ["overfitting", "rate-sweep"]})
    run = run_lab(cfg)

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("analyse trained a model")

    monkeypatch.setattr(train, "run_trial", no_training)
    monkeypatch.setattr("dropkit.lab.runner.run_trial", no_training)
    store = Store(cfg.out)
    runner = Runner(store, cfg.data)
    for name, c in experiments.configs(cfg).items():
        m = experiments.REGISTRY[name]
        again = m.analyse(c, runner.run(name, m.trials(c, runner)), runner.dataset)
        stored = run.results[name]
        assert json.loads(json.dumps(again)) == {k: v for k, v in stored.items()
                                                 if k in again}, name
    store.close()


def _trial(p: float, test_loss: float, gap: float) -> object:
    import types

    final = {"train_acc": 0.95, "test_acc": 0.95 - gap, "train_loss": 0.1,
             "test_loss": test_loss, "val_loss": test_loss}
    return types.SimpleNamespace(spec=types.SimpleNamespace(p=p), result={
        "history": {"val_loss": [test_loss, test_loss + 0.1]}, "final": final,
        "chosen_epoch": 1, "stopped_epoch": 2, "still_improving": False})


@pytest.mark.parametrize(("dropout_losses", "holds"), [((0.40, 0.41, 0.39), True),
                                                       ((0.40, 0.60, 0.30), False)])
def test_several_seeds_need_a_confidence_interval_below_zero(
    dropout_losses: tuple[float, ...], holds: bool
) -> None:
    """Mean test log-loss lower with dropout in both cases; only a consistent drop holds."""
    from dropkit.lab.data import Dataset
    from dropkit.lab.experiments import overfitting

    cfg = overfitting.Config.from_lab(resolve_config({"seeds": 3}))
    got = []
    for loss in dropout_losses:
        got += [_trial(0.0, 0.5, 0.2), _trial(cfg.p, loss, 0.1)]
    y = np.zeros(1000, dtype=np.int64)
    data = Dataset("x", np.zeros((1, 1), np.float32), y[:1], np.zeros((1000, 1), np.float32),
                   y, 2, "f")
    r = overfitting.analyse(cfg, got, data)
    assert r["seeds"] == 3 and len(r["test_loss_diff_ci95"]) == 2
    assert r["dropout"]["test_loss"] < r["no_dropout"]["test_loss"]
    assert r["holds"] is holds and "95% CI" in r["summary"]
