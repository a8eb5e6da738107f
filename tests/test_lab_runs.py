"""The lab end to end on a tiny config: every experiment, resume, report rebuild, CLI, oracles."""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
pytest.importorskip("rich")

from dropkit.cli import main
from dropkit.lab.config import EXPERIMENTS, ModelConfig, TrainConfig, resolve_config
from dropkit.lab.data import load_npz
from dropkit.lab.experiments.bias_variance import decompose
from dropkit.lab.experiments.ensemble import exact_average
from dropkit.lab.session import run_lab
from dropkit.lab.train import run_trial
from dropkit.nn import Dropout

TINY = {
    "hidden": [16],
    "epochs": 3,
    "batch_size": 50,
    "lr": 0.01,
    "ps": [0.0, 0.5],
    "seeds": 2,
    "bv_models": 2,
    "ens_members": 2,
    "ens_k": 5,
    "tiny_hidden": 4,
    "coverage_epochs": 1,
    "coverage_ps": [0.5],
    "sizes": [60, 300],
    "workers": 1,
    "experiments": list(EXPERIMENTS),
}


def _blobs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centers = np.array([[2.0, 0, 0, 0, 0, 0], [0, 2.0, 0, 0, 0, 0], [0, 0, 2.0, 0, 0, 0]])
    y = np.arange(n) % 3
    return (centers[y] + rng.normal(size=(n, 6))).astype(np.float32), y


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    x, y = _blobs(300, rng)
    xt, yt = _blobs(150, rng)
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return path


def _cfg(npz: Path, out: Path, **extra: object):
    return resolve_config({"data": str(npz), "out": str(out), **TINY, **extra})


@pytest.fixture(scope="module")
def lab(npz: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("lab")
    return run_lab(_cfg(npz, out)), out


def test_every_experiment_has_a_verdict(lab) -> None:
    run, out = lab
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert list(verdicts) == list(EXPERIMENTS)
    for name, v in verdicts.items():
        assert isinstance(v["holds"], bool) and v["claim"] and v["summary"], name
        assert v["wall_s"] >= 0
    assert (out / "report.html").read_text().count("data:image/png;base64,") == len(EXPERIMENTS)
    text = (out / "report.md").read_text()
    assert "patience 8 epochs, cap 3 epochs" in text and "never the test set" in text
    assert "learning rate 0.01 (set)" in text
    assert json.loads((out / "config.json").read_text())["model"]["hidden"] == [16]
    # Trials are shared between experiments: fewer trainings than requests.
    assert run.trained == sqlite3.connect(out / "results.sqlite").execute(
        "SELECT COUNT(*) FROM trials").fetchone()[0]


def test_rerun_trains_nothing(lab, npz: Path) -> None:
    run, out = lab
    again = run_lab(_cfg(npz, out))
    assert again.trained == 0
    assert again.results["rate-sweep"]["rows"] == run.results["rate-sweep"]["rows"]


def test_a_new_analysis_version_reanalyses_stored_trials(
    lab, npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stored verdict is keyed by its experiment's ANALYSIS version: after a change of the
    analysis the stored trials are analysed again (nothing retrained), not served stale."""
    from dropkit.lab.experiments import rate_sweep

    _, out = lab
    calls: list[int] = []
    analyse = rate_sweep.analyse
    monkeypatch.setattr(rate_sweep, "analyse", lambda *a: calls.append(1) or analyse(*a))
    assert run_lab(_cfg(npz, out)).trained == 0 and not calls  # same version: stored
    monkeypatch.setattr(rate_sweep, "ANALYSIS", rate_sweep.ANALYSIS + 1)
    again = run_lab(_cfg(npz, out))
    assert again.trained == 0 and calls == [1]


def test_resume_after_kill_recomputes_nothing(npz: Path, tmp_path: Path) -> None:
    cfg = _cfg(npz, tmp_path, experiments=["rate-sweep", "eval-mode"])
    stored: list[int] = []

    def killer(label: str, done: int, total: int) -> None:
        if label == "training" and done == 2:
            stored.append(total)
            raise KeyboardInterrupt  # a kill right after the second trial was committed

    with pytest.raises(KeyboardInterrupt):
        run_lab(cfg, progress=killer)
    total = stored[0]
    resumed = run_lab(cfg)
    assert resumed.trained == total - 2  # the two stored trials are not retrained
    assert run_lab(cfg).trained == 0


def test_report_rebuild_is_identical(lab) -> None:
    _, out = lab
    figures = {p.name: p.read_bytes() for p in (out / "figures").glob("*.png")}
    verdicts = (out / "verdicts.json").read_text()
    assert main(["lab", "report", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in (out / "figures").glob("*.png")} == figures
    assert (out / "verdicts.json").read_text() == verdicts


def test_report_of_empty_folder_fails_cleanly(tmp_path: Path, capsys) -> None:
    assert main(["lab", "report", str(tmp_path)]) == 2
    assert "holds no lab results" in capsys.readouterr().err


def test_cli_end_to_end(npz: Path, tmp_path: Path, capsys) -> None:
    conf = tmp_path / "lab.toml"
    conf.write_text("epochs = 2\nhidden = [8]\n")
    rc = main(["lab", "overfitting", "eval-mode", "--data", str(npz), "--out",
               str(tmp_path / "o"), "--config", str(conf), "--workers", "1", "--quiet",
               "--seed", "3"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "verdicts" in text and "report:" in text
    verdicts = json.loads((tmp_path / "o" / "verdicts.json").read_text())
    assert set(verdicts) == {"overfitting", "eval-mode"}
    cfg = json.loads((tmp_path / "o" / "config.json").read_text())
    assert cfg["train"]["epochs"] == 2 and cfg["model"]["hidden"] == [8] and cfg["seed"] == 3


def test_cli_errors_are_messages(tmp_path: Path, capsys) -> None:
    assert main(["lab", "--data", str(tmp_path / "nope.npz"), "--out", str(tmp_path)]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["lab", "--epochs", "0", "--out", str(tmp_path)]) == 2
    assert "epochs must be a positive integer" in capsys.readouterr().err
    assert main(["info"]) == 0
    assert "reference" in capsys.readouterr().out


def test_bias_variance_identities(lab) -> None:
    rows = lab[0].results["bias-variance"]["rows"]
    for r in rows:
        assert math.isclose(r["sq_bias"] + r["sq_variance"], r["sq_loss"], rel_tol=1e-9)
        assert math.isclose(r["log_bias"] + r["log_variance"], r["log_loss"], rel_tol=1e-9)
        assert r["sq_variance"] >= 0 and r["log_variance"] >= -1e-12


def test_decompose_by_hand() -> None:
    f = np.array([[[1.0, 0.0]], [[0.5, 0.5]]])  # two models, one point, label 0
    d = decompose(f, np.array([0]))
    # mean (0.75, 0.25): bias = 0.25^2 * 2, variance = mean of 0.25^2 * 2 over both models
    assert math.isclose(d["sq_bias"], 0.125) and math.isclose(d["sq_variance"], 0.125)


@pytest.mark.parametrize(("p", "scaling"), [(0.3, "inverted"), (0.5, "classic")])
def test_exact_average_matches_brute_force(p: float, scaling: str) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(),
                              Dropout(p, scaling=scaling), torch.nn.Linear(4, 3))
    x = torch.randn(7, 5)
    scale = 1 / (1 - p) if scaling == "inverted" else 1.0
    brute = torch.zeros(7, 3, dtype=torch.float64)
    with torch.no_grad():
        h = torch.relu(net[0](x))
        for bits in itertools.product((0, 1), repeat=4):
            m = torch.tensor(bits, dtype=torch.float32)
            prob = math.prod((1 - p) if b else p for b in bits)
            brute += prob * net[3](h * m * scale).softmax(-1).double()
    exact = exact_average(net, x, chunk=3)
    torch.testing.assert_close(exact, brute.float(), rtol=1e-5, atol=1e-6)
    # A plausible bug, equal weights for every mask, is visible at p != 0.5.
    if p != 0.5:
        uniform = torch.zeros(7, 3, dtype=torch.float64)
        with torch.no_grad():
            for bits in itertools.product((0, 1), repeat=4):
                m = torch.tensor(bits, dtype=torch.float32)
                uniform += net[3](h * m * scale).softmax(-1).double() / 16
        assert (uniform.float() - exact).abs().max() > 1e-3


def test_mc_average_converges_to_exact() -> None:
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.ReLU(), Dropout(0.5),
                              torch.nn.Linear(6, 3)).train()
    x = 3 * torch.randn(4, 5)
    exact = exact_average(net, x)
    s = 2000
    with torch.no_grad():
        draws = torch.stack([net(x).softmax(-1) for _ in range(s)])  # [S, N, C]
        se = draws.std(0).clamp_min(1e-6) / math.sqrt(s)
        assert ((draws.mean(0) - exact) / se).abs().max() < 6
        # A wrong oracle (the weight-scaled net is another function) is caught by the bound.
        assert ((net.eval()(x).softmax(-1) - exact) / se).abs().max() > 6


@pytest.mark.parametrize("p", [0.5, 0.8])
def test_coverage_follows_the_mask_law(npz: Path, p: float) -> None:
    """With lr = 0 activity is fixed, so pair coverage = active fraction x (1 - p^epochs)."""
    ds = load_npz(npz)
    model, epochs = ModelConfig(hidden=(16,)), 2
    from dropkit.lab.config import TrialSpec

    def cover(pp: float) -> list[float]:
        spec = TrialSpec("x", ds.fingerprint, model, TrainConfig(epochs, 50, 0.0), pp, 0,
                         record_coverage=True)
        return run_trial(spec, ds)[0]["coverage"]["pairs"]

    active = cover(0.0)[-1]  # every active pair is trained at p = 0
    n = len(ds.y_train) * 16 * active
    for e, got in enumerate(cover(p), start=1):
        q = 1 - p**e
        assert abs(got / active - q) < 6 * math.sqrt(q * (1 - q) / n), (e, got, active)
    # A coverage that ignored the mask would read the active fraction: far outside the bound.
    assert abs(1.0 - (1 - p)) > 6 * math.sqrt(p * (1 - p) / n)


def test_scaling_expectation_catches_a_wrong_scale() -> None:
    from dropkit.lab.experiments.scaling import expectation_z

    h = torch.rand(32, 64) + 0.1
    for p, scaling in ((0.5, "inverted"), (0.3, "classic")):
        z = expectation_z(Dropout(p, scaling=scaling), h, 300, seed=0)
        assert np.abs(z).max() < 6

    class Shifted(Dropout):
        def forward(self, input: torch.Tensor) -> torch.Tensor:
            out = super().forward(input)
            return out * (1 - self.p) if self.training else out  # forgot 1/(1-p)

    assert np.abs(expectation_z(Shifted(0.5), h, 300, seed=0)).max() > 6


def test_workers_give_the_same_results(npz: Path, tmp_path: Path) -> None:
    serial = run_lab(_cfg(npz, tmp_path / "a", experiments=["overfitting"]))
    parallel = run_lab(_cfg(npz, tmp_path / "b", experiments=["overfitting"], workers=2))
    assert parallel.trained == serial.trained == 2 * TINY["seeds"]  # a pair per seed
    assert parallel.results["overfitting"]["curves"] == serial.results["overfitting"]["curves"]


def test_an_executor_with_threads_gives_the_same_results(npz: Path, tmp_path: Path) -> None:
    """Trials in two threads of one process (a Dask worker with ``--nthreads 2``) run one at
    a time: each seeds torch's global generator, and interleaved they drew from each other's
    stream (the stored results differed from a local run's)."""
    from concurrent.futures import ThreadPoolExecutor

    settings = {"experiments": ["overfitting"], "epochs": 6}
    serial = run_lab(_cfg(npz, tmp_path / "a", **settings))
    with ThreadPoolExecutor(2) as pool:
        threaded = run_lab(_cfg(npz, tmp_path / "b", **settings), executor=pool)
    assert threaded.trained == serial.trained == 2 * TINY["seeds"]
    assert threaded.results["overfitting"]["curves"] == serial.results["overfitting"]["curves"]
    assert threaded.results["overfitting"]["per_seed"] == serial.results["overfitting"]["per_seed"]


def test_a_closed_pipe_is_no_traceback() -> None:
    """``dropkit info | head -1``: the reader leaves early; dropkit exits quietly (141)."""
    import subprocess
    import sys

    code = "import sys; from dropkit.cli import main; sys.exit(main(['info']))"
    proc = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"dropkit ")
    proc.stdout.close()  # the reader is gone before the rest is written
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err
