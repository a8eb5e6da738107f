"""A killed lab driver takes its local worker processes with it (no orphans training on)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")

DRIVER = textwrap.dedent("""
    import sys
    from dropkit.lab import config, store
    from dropkit.lab.runner import Runner
    cfg = config.resolve_config({"data": "digits", "hidden": [512, 512], "epochs": 400,
                                 "patience": 0, "lr": 1e-3})
    runner = Runner(store.Store(sys.argv[1]), "digits", workers=2)
    runner.run("probe", [runner.spec(cfg.model, cfg.train, 0.5, s) for s in range(4)])
""")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_workers_die_with_a_killed_driver(tmp_path: Path) -> None:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)])
    try:
        deadline, workers = time.monotonic() + 60, []
        while time.monotonic() < deadline and len(workers) < 3:  # resource tracker + 2 workers
            time.sleep(0.5)
            workers = _children(driver.pid)
        assert workers, "the driver started no worker"
        time.sleep(3)  # the worker is set up and training
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        left = [w for w in workers if _alive(w)]
        for w in left:  # do not leave them burning CPU after a failure
            os.kill(w, signal.SIGKILL)
        assert not left, f"workers {left} outlived their killed driver"
    finally:
        if driver.poll() is None:
            driver.kill()
