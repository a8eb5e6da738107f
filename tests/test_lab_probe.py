"""The CLI reliability probe of issue 11: each finding fails clearly, before anything is written.

Each test reproduces one finding; each failed before its fix (a wrong file trained on, a
mixed report, a raw traceback, NaN models, a silently coerced setting, phantom classes).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rich")

from dropkit.cli import main
from dropkit.lab.config import load_toml, resolve_config
from dropkit.lab.data import DataError, load_data

TINY = ["--hidden", "8", "--epochs", "1", "--workers", "1", "--quiet", "--batch-size", "50"]


def _npz(path: Path, seed: int, classes: int = 3, stray: int | None = None) -> Path:
    rng = np.random.default_rng(seed)
    y = np.arange(90) % classes
    if stray is not None:
        y[0] = stray
    x = rng.normal(size=(90, 5)).astype(np.float32) + y[:, None]
    np.savez(path, x_train=x, y_train=y, x_test=x[:30], y_test=y[:30] % classes)
    return path


def _lab(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["lab", "overfitting", *args, *TINY])
    captured = capsys.readouterr()
    return rc, captured.err


def test_a_relative_data_path_keeps_its_case(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _npz(tmp_path / "MyData.npz", seed=1)
    _npz(tmp_path / "mydata.npz", seed=2)
    cfg = resolve_config({"data": "MyData.npz"})
    assert cfg.data == "MyData.npz"
    assert load_data(cfg.data).fingerprint == load_data(str(tmp_path / "MyData.npz")).fingerprint
    assert load_data(cfg.data).fingerprint != load_data("mydata.npz").fingerprint
    assert resolve_config({"data": "Fashion"}).data == "fashion-mnist"  # names: any case


def test_one_out_for_two_configs_is_refused(tmp_path: Path, capsys) -> None:
    data, out = _npz(tmp_path / "d.npz", seed=0), tmp_path / "o"
    rc, err = _lab(["--data", str(data), "--out", str(out)], capsys)
    assert rc == 0, err
    before = (out / "config.json").read_text()
    rc, err = _lab(["--data", str(data), "--out", str(out), "--lr", "0.01"], capsys)
    assert rc == 2 and "other settings" in err and "lr" in err and "another --out" in err
    assert (out / "config.json").read_text() == before  # nothing was written
    rc, err = _lab(["--data", str(data), "--out", str(out), "--workers", "1"], capsys)
    assert rc == 0, err  # the same settings resume


def test_a_corrupt_store_is_a_message(tmp_path: Path, capsys) -> None:
    data, out = _npz(tmp_path / "d.npz", seed=0), tmp_path / "o"
    out.mkdir()
    (out / "results.sqlite").write_bytes(b"this is not sqlite" * 100)
    rc, err = _lab(["--data", str(data), "--out", str(out)], capsys)
    assert rc == 2 and "not a readable dropkit results store" in err and "Traceback" not in err
    assert main(["lab", "report", str(out)]) == 2


def test_an_unwritable_out_is_a_message(tmp_path: Path, capsys) -> None:
    data = _npz(tmp_path / "d.npz", seed=0)
    (tmp_path / "file").write_text("x")
    rc, err = _lab(["--data", str(data), "--out", str(tmp_path / "file" / "o")], capsys)
    assert rc == 2 and "cannot write to --out" in err
    rc, err = _lab(["--data", str(data), "--out", str(tmp_path / "file")], capsys)
    assert rc == 2 and "is a file" in err


def test_a_truncated_npz_is_a_message(tmp_path: Path, capsys) -> None:
    good = _npz(tmp_path / "d.npz", seed=0).read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="truncated"):
        load_data(str(tmp_path / "cut.npz"))
    rc, err = _lab(["--data", str(tmp_path / "cut.npz"), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "truncated" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags, message", [
    (["--lr", "inf"], "--lr must be a finite positive number"),
    (["--lr", "nan"], "--lr must be a finite positive number"),
    (["--ps", "0.5"], "--ps is a grid"),
    (["--seed", str(2**64)], r"--seed must be in \[0, 2\*\*63\)"),
    (["--p", "1.5"], r"--p \(p_main\)"),
])
def test_bad_flags_fail_before_anything_is_written(
    tmp_path: Path, capsys, flags: list[str], message: str
) -> None:
    data = _npz(tmp_path / "d.npz", seed=0)
    rc, err = _lab(["--data", str(data), "--out", str(tmp_path / "o"), *flags], capsys)
    assert rc == 2
    assert re.search(message, err), err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("line, message", [
    ("lr = true", "--lr must be a number"),
    ("seed = 1.5", "--seed must be an integer"),
])
def test_toml_values_are_not_coerced(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "lab.toml").write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        resolve_config(load_toml(tmp_path / "lab.toml"))


def test_a_stray_label_adds_no_phantom_classes(tmp_path: Path) -> None:
    path = _npz(tmp_path / "d.npz", seed=0, classes=3, stray=7)
    with pytest.raises(DataError, match=r"classes \[3, 4, 5, 6\] never occur"):
        load_data(str(path))
    assert load_data(str(_npz(tmp_path / "ok.npz", seed=0))).n_classes == 3


def test_config_json_is_written_only_after_the_checks(tmp_path: Path, capsys) -> None:
    """SIGINT/SIGKILL safety is unchanged: the store is opened before config.json is
    written, so a bad store leaves no config behind."""
    data, out = _npz(tmp_path / "d.npz", seed=0), tmp_path / "o"
    out.mkdir()
    (out / "results.sqlite").write_bytes(b"junk" * 50)
    _lab(["--data", str(data), "--out", str(out)], capsys)
    assert not (out / "config.json").exists()


def test_cli_conventions(tmp_path: Path, capsys, monkeypatch) -> None:
    """--version; progress on stderr and results on stdout; `lab [flags] report DIR`;
    exit status 130 on Ctrl-C with a word on resuming; a report of nothing is an error."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("dropkit ")
    data, out = _npz(tmp_path / "d.npz", seed=0), tmp_path / "o"
    rc = main(["lab", "overfitting", "--data", str(data), "--out", str(out),
               *[a for a in TINY if a != "--quiet"]])
    captured = capsys.readouterr()
    assert rc == 0 and "verdicts" in captured.out and "training" in captured.err
    assert "training" not in captured.out  # the bars went to stderr
    assert main(["lab", "--quick", "report", str(out)]) == 0
    assert "report:" in capsys.readouterr().out
    assert main(["lab", "report", str(tmp_path / "nothing")]) == 2
    assert "holds no lab results" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("dropkit.lab.session.run_lab", interrupted)
    assert main(["lab", "overfitting", "--data", str(data), "--out", str(out), *TINY]) == 130
    assert "rerun with the same --out" in capsys.readouterr().err
