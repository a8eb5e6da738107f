"""The lab's protocol: a validation split for every choice, early stopping, the lr search.

Nothing is chosen on the test set (a run with the test set replaced by noise makes the same
choices), each model is judged at its best validation epoch, a run cut by its cap while
still improving says so, and the dropout paper's recipe is what it claims.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
pytest.importorskip("rich")

from dropkit.lab import protocol
from dropkit.lab.config import ModelConfig, TrainConfig, TrialSpec, resolve_config
from dropkit.lab.data import Dataset
from dropkit.lab.runner import Runner
from dropkit.lab.session import run_lab
from dropkit.lab.store import Store
from dropkit.lab.train import build_mlp, load_state, run_trial, split_validation, train_subset


def _blobs(n: int, rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
    centers = np.eye(3, 8, dtype=np.float32) * 2.0
    y = np.arange(n) % 3
    flip = rng.random(n) < noise  # label noise: a wide net overfits it
    y = np.where(flip, rng.integers(0, 3, n), y)
    return (centers[np.arange(n) % 3] + rng.normal(size=(n, 8))).astype(np.float32), y


def _dataset(test_noise: bool = False) -> Dataset:
    rng = np.random.default_rng(0)
    x, y = _blobs(400, rng, 0.3)
    xt, yt = _blobs(200, rng, 0.0)
    if test_noise:  # another test set entirely: the choices must not move
        xt = np.random.default_rng(9).normal(size=xt.shape).astype(np.float32)
        yt = np.random.default_rng(9).integers(0, 3, len(yt))
    return Dataset("blobs", x, y.astype(np.int64), xt, yt.astype(np.int64), 3,
                   "t" if test_noise else "a")


def _spec(data: Dataset, **train: object) -> TrialSpec:
    t = TrainConfig(**{"epochs": 40, "batch_size": 50, "lr": 0.01, "patience": 3, **train})
    return TrialSpec(data.name, data.fingerprint, ModelConfig(hidden=(128, 128)), t, 0.0, 0)


def test_the_validation_split_is_fixed_disjoint_and_never_trained_on() -> None:
    tr, va = split_validation(400, 0.1)
    assert len(va) == 40 and not set(tr) & set(va) and len(tr) + len(va) == 400
    assert all(np.array_equal(a, b) for a, b in zip(split_validation(400, 0.1), (tr, va),
                                                      strict=True))
    data = _dataset()
    for subset in ("full", "boot:3", "first:100"):
        spec = dataclasses.replace(_spec(data), subset=subset)
        assert not set(train_subset(spec, data).tolist()) & set(va.tolist()), subset


def test_early_stopping_keeps_the_best_validation_epoch() -> None:
    data = _dataset()
    result, arrays = run_trial(_spec(data), data)
    h = result["history"]
    chosen = result["chosen_epoch"]
    assert result["stopped_epoch"] == chosen + 3 < 40  # patience 3: stopped early
    assert h["val_loss"][chosen - 1] == min(h["val_loss"])
    assert result["final"] == {k: v[chosen - 1] for k, v in h.items()}
    # The stored model is the chosen epoch's: its test accuracy is the reported one.
    net = load_state(build_mlp(8, 3, ModelConfig(hidden=(128, 128)), 0.0), arrays)
    with torch.no_grad():
        acc = (net.eval()(torch.from_numpy(data.x_test)).argmax(1).numpy() == data.y_test)
    assert acc.mean() == pytest.approx(result["final"]["test_acc"])
    assert result["still_improving"] is False


def test_no_patience_trains_to_the_cap_and_a_short_cap_is_flagged() -> None:
    data = _dataset()
    result, _ = run_trial(_spec(data, patience=0, epochs=5), data)
    assert result["chosen_epoch"] == result["stopped_epoch"] == 5
    slow, _ = run_trial(_spec(data, lr=3e-4, epochs=3, patience=2), data)  # still learning
    assert slow["stopped_epoch"] == 3 and slow["still_improving"] is True
    assert slow["recent_gain"] > slow["val_loss_se"] > 0


def test_the_test_set_plays_no_part_in_any_choice(tmp_path: Path) -> None:
    """Same lr, epochs and best p whatever the test set holds (here: pure noise)."""
    cfg = resolve_config({"hidden": [32], "epochs": 12, "patience": 3, "batch_size": 50,
                          "ps": [0.0, 0.5], "lr_grid": [0.03, 0.003], "lr_epochs": 2,
                          "workers": 1, "experiments": ["rate-sweep"]})
    choices = []
    for noise in (False, True):
        data = _dataset(noise)
        store = Store(tmp_path / str(noise))
        runner = Runner(store, "blobs", dataset=data)
        resolved, choice = protocol.choose_lr(cfg, runner)
        specs = [runner.spec(resolved.model, resolved.train, p, 0) for p in (0.0, 0.5)]
        epochs = [t.result["chosen_epoch"] for t in runner.run("x", specs)]
        choices.append((choice["lr"], [r["score"] for r in choice["rows"]], epochs))
        store.close()
    assert choices[0] == choices[1]


def test_the_lr_search_picks_the_lowest_validation_loss_and_skips_divergence(
    tmp_path: Path,
) -> None:
    data = _dataset()
    cfg = resolve_config({"hidden": [32], "batch_size": 50, "lr_grid": [1e4, 0.01, 1e-5],
                          "lr_epochs": 2})
    store = Store(tmp_path)
    resolved, choice = protocol.choose_lr(cfg, Runner(store, "blobs", dataset=data))
    store.close()
    assert choice["searched"] and resolved.train.lr == 0.01 == choice["lr"]
    scores = {r["lr"]: r["score"] for r in choice["rows"]}
    assert scores[0.01] == min(scores.values()) and scores[0.01] < scores[1e-5]
    set_lr = resolve_config({"lr": 0.002})
    assert protocol.choose_lr(set_lr, None)[1] == {"searched": False, "lr": 0.002}  # type: ignore[arg-type]


def test_every_rate_diverging_is_a_clear_error(tmp_path: Path) -> None:
    data = _dataset()
    cfg = resolve_config({"hidden": [32], "batch_size": 50, "lr_grid": [1e6, 1e7],
                          "lr_epochs": 1})
    store = Store(tmp_path)
    with pytest.raises(RuntimeError, match="--lr-grid"):
        protocol.choose_lr(cfg, Runner(store, "blobs", dataset=data))
    store.close()


def test_the_srivastava2014_recipe() -> None:
    cfg = resolve_config({"recipe": "srivastava2014"})
    t = cfg.train
    assert (t.optimizer, t.momentum, t.max_norm, t.lr_decay) == ("sgd", 0.95, 3.0, 0.98)
    assert (cfg.model.input_p, cfg.p_main, t.lr) == (0.2, 0.5, 0.05)
    assert resolve_config({"recipe": "srivastava2014", "lr": 0.01}).train.lr == 0.01
    data = _dataset()
    spec = dataclasses.replace(_spec(data, epochs=2, patience=0), train=dataclasses.replace(
        t, epochs=2, patience=0, max_norm=0.5, batch_size=50))
    _, arrays = run_trial(spec, data)
    for name, w in arrays.items():
        if name.endswith("weight"):
            assert np.linalg.norm(w, axis=1).max() <= 0.5 * (1 + 1e-5), name


@pytest.mark.parametrize(
    ("key", "value", "flag"),
    [("patience", -1, "--patience"), ("val_fraction", 0.7, "--val-fraction"),
     ("optimizer", "rmsprop", "--optimizer"), ("recipe", "hinton", "--recipe"),
     ("lr_grid", [0.1, -1], "--lr"), ("momentum", 1.5, "--momentum"),
     ("lr_decay", 0.0, "--lr-decay")],
)
def test_protocol_settings_are_checked(key: str, value: object, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        resolve_config({key: value})


def test_the_report_states_the_protocol(tmp_path: Path) -> None:
    data_path = tmp_path / "blobs.npz"
    d = _dataset()
    np.savez(data_path, x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test)
    cfg = resolve_config({"data": str(data_path), "out": str(tmp_path / "o"), "hidden": [16],
                          "epochs": 4, "batch_size": 50, "lr_grid": [0.01, 0.001],
                          "lr_epochs": 1, "workers": 1, "experiments": ["overfitting"]})
    run_lab(cfg)
    text = (tmp_path / "o" / "report.md").read_text()
    assert "chosen on the validation split" in text and "never the test set" in text
    verdict = json.loads((tmp_path / "o" / "verdicts.json").read_text())["overfitting"]
    assert "best validation epoch" in verdict["summary"]
    assert run_lab(cfg).trained == 0  # the search resumes from the store too


@pytest.mark.parametrize(
    ("args", "flag"),
    [(["--patience", "-1"], "--patience"), (["--val-fraction", "0.9"], "--val-fraction"),
     (["--lr-grid", "0.1,inf"], "--lr")],
)
def test_the_cli_names_the_bad_protocol_flag(
    args: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dropkit.cli import main

    rc = main(["lab", "overfitting", "--out", str(tmp_path / "o"), "--quiet", *args])
    assert rc != 0 and flag in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_the_projected_gain_of_a_slowing_curve_and_its_straight_line_bound() -> None:
    from dropkit.lab.train import projected_gain

    halving = [1.0, 0.8, 0.7, 0.65]  # falls 0.2, 0.1, 0.05: 0.05 left in a geometric tail
    assert projected_gain(halving, cap=4, patience=1) == pytest.approx(0.05)
    steady = [1.0, 0.9, 0.8, 0.7]  # not slowing: the line, 0.1 per epoch for 4 epochs
    assert projected_gain(steady, cap=4, patience=1) == pytest.approx(0.4)
    assert projected_gain(halving, cap=1, patience=1) == pytest.approx(0.05)  # line is lower
