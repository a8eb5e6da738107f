"""The lab on a Dask cluster (127.0.0.1): the same stored results as a local run, a worker
killed mid-run included; ``--scheduler`` on the CLI.

The test starts a scheduler and two workers (no nanny, so a killed worker stays dead) as
subprocesses bound to 127.0.0.1, each killed at the end, everything bounded in time.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("rich")

from dropkit.cli import main  # noqa: E402
from dropkit.lab.config import resolve_config  # noqa: E402
from dropkit.lab.session import run_lab  # noqa: E402

SETTINGS = {"data": "digits", "hidden": [16], "epochs": 2, "batch_size": 100, "seeds": 2,
            "ps": [0.0, 0.5, 0.8], "workers": 1,
            "experiments": ["overfitting", "rate-sweep", "eval-mode"]}
START_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A scheduler and two single-threaded workers on 127.0.0.1 (address, workers)."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    procs = [_spawn(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                     address.rsplit(":", 1)[1], "--no-dashboard"])]
    try:
        with distributed.Client(address, timeout=f"{START_S}s") as client:
            workers = [_spawn(["distributed.cli.dask_worker", address, "--nthreads", "1",
                               "--no-nanny", "--host", "127.0.0.1", "--no-dashboard"])
                       for _ in range(2)]
            procs += workers
            client.wait_for_workers(2, timeout=START_S)
        yield address, workers
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=30)


def _stored(out: Path) -> dict[str, tuple[str, bytes]]:
    """Every stored trial: (result without its wall time, arrays), by key."""
    with sqlite3.connect(out / "results.sqlite") as db:
        rows = db.execute("SELECT key, result, arrays FROM trials").fetchall()
    out_rows = {}
    for key, result, arrays in rows:
        r = json.loads(result)
        r.pop("wall_s")
        out_rows[key] = (json.dumps(r, sort_keys=True), arrays)
    return out_rows


def _verdicts(out: Path) -> dict[str, object]:
    v = json.loads((out / "verdicts.json").read_text())
    return {k: (r["holds"], r["summary"]) for k, r in v.items()}


def test_a_cluster_stores_what_a_local_run_stores(tmp_path: Path, cluster) -> None:
    address, workers = cluster
    local = run_lab(resolve_config({**SETTINGS, "out": str(tmp_path / "local")}))
    killed: list[int] = []

    def progress(label: str, done: int, total: int) -> None:
        if label == "training" and done >= 1 and not killed:  # mid-run: kill a worker
            workers[0].kill()
            killed.append(done)

    with distributed.Client(address, timeout=f"{START_S}s") as client:
        started = time.perf_counter()
        remote = run_lab(resolve_config({**SETTINGS, "out": str(tmp_path / "remote")}),
                         progress=progress, executor=client.get_executor())
        assert time.perf_counter() - started < 300
    assert killed and killed[0] < local.trained  # the kill came before the end
    assert remote.trained == local.trained
    assert _stored(tmp_path / "remote") == _stored(tmp_path / "local")  # bit for bit
    assert _verdicts(tmp_path / "remote") == _verdicts(tmp_path / "local")


def test_the_cli_takes_a_scheduler(tmp_path: Path, cluster, capsys) -> None:
    address, _ = cluster
    args = ["lab", "overfitting", "--data", "digits", "--hidden", "8", "--epochs", "1",
            "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a"), "--scheduler", address]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert _stored(tmp_path / "a") == _stored(tmp_path / "b")
    assert main([*args, "--out", str(tmp_path / "c"), "--scheduler",
                 f"tcp://127.0.0.1:{_free_port()}"]) == 2
    assert "cannot reach a Dask scheduler" in capsys.readouterr().err
