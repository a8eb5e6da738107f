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
