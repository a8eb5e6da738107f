"""dropkit.lab.config: presets, TOML files, flags, and the errors for bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropkit.lab.config import EXPERIMENTS, TrialSpec, load_toml, resolve_config


def test_quick_defaults_and_full_preset() -> None:
    quick = resolve_config({})
    assert quick.mode == "quick" and quick.ps == (0.0, 0.2, 0.5, 0.8) and quick.seeds == 1
    assert "data-size" not in quick.experiments
    full = resolve_config({"mode": "full"})
    assert full.ps == tuple(round(0.1 * i, 1) for i in range(10)) and full.seeds >= 3
    assert full.experiments == EXPERIMENTS and full.bv_resample == "regenerate"
    fashion = resolve_config({"mode": "full", "data": "fashion"})
    assert fashion.data == "fashion-mnist" and fashion.model.hidden == (1024, 1024)
    assert fashion.bv_resample == "bootstrap"
    # sized to finish on 2 cores within a working session (docs/lab.md)
    assert (fashion.seeds, fashion.bv_models, fashion.ps) == (2, 4, (0.0, 0.2, 0.4, 0.5, 0.6, 0.8))


def test_layers_override_in_order(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text('hidden = [64, 32]\nepochs = 7\n[train]\nlr = 0.01\n')
    file_layer = load_toml(path)
    assert file_layer == {"hidden": [64, 32], "epochs": 7, "lr": 0.01}
    cfg = resolve_config({"mode": "quick"}, file_layer, {"epochs": 3, "lr": None})
    assert cfg.model.hidden == (64, 32) and cfg.train.epochs == 3 and cfg.train.lr == 0.01


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"hidden": [0]}, "hidden must be positive integers"),
        ({"ps": [0.1, 1.0]}, r"ps needs drop probabilities in \[0, 1\)"),
        ({"input_p": 1.5}, "between 0 and 1"),
        ({"experiments": ["nope"]}, "unknown experiment"),
        ({"colour": "red"}, "unknown lab setting 'colour'"),
        ({"mode": "medium"}, "quick' or 'full"),
        ({"scaling": "weird"}, "unknown scaling"),
        ({"tiny_hidden": 20}, "at most 16"),
        ({"data": "digits", "bv_resample": "regenerate"}, "needs --data mnist1d"),
    ],
)
def test_bad_settings(layer: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_config(layer)


def test_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("hidden = [1, \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_toml(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")


def test_trial_key_changes_with_every_field() -> None:
    cfg = resolve_config({})
    base = TrialSpec("d", "f", cfg.model, cfg.train, 0.5, 0)
    variants = [
        TrialSpec("d", "g", cfg.model, cfg.train, 0.5, 0),
        TrialSpec("d", "f", cfg.model, cfg.train, 0.2, 0),
        TrialSpec("d", "f", cfg.model, cfg.train, 0.5, 1),
        TrialSpec("d", "f", cfg.model, cfg.train, 0.5, 0, "boot:0"),
        TrialSpec("d", "f", resolve_config({"hidden": [8]}).model, cfg.train, 0.5, 0),
    ]
    keys = {base.key(), *(v.key() for v in variants)}
    assert len(keys) == 1 + len(variants)
    assert base.key() == TrialSpec("d", "f", cfg.model, cfg.train, 0.5, 0).key()
    assert base.config_hash() == variants[1].config_hash() == variants[2].config_hash()


def test_missing_extra_names_the_install_command() -> None:
    from dropkit.lab._deps import need

    with pytest.raises(ImportError, match=r"pip install dropkit\[lab\]"):
        need("surely_not_a_module_dropkit")
