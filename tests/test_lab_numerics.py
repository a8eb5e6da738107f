"""The lab's CPU kernel set: chosen once by the driver, kept by every worker (numerics.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import sqlite3
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from dropkit.lab.numerics import check_kernels, cpu_kernels, kernel_settings

DEFAULT = (("ATEN_CPU_CAPABILITY", "default"), ("MKL_CBWR", ""), ("ONEDNN_MAX_CPU_ISA", ""))
X86 = platform.machine().lower() in ("x86_64", "amd64")


def _env(**set_: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}
    return {**env, "PYTHONWARNINGS": "ignore", **set_}


def _python(code: str, **set_: str) -> str:
    return subprocess.run([sys.executable, "-c", code], env=_env(**set_), check=True,
                          capture_output=True, text=True, timeout=120).stdout.strip()


def test_importing_dropkit_runs_no_kernel() -> None:
    # A kernel at import would fix torch's CPU kernel set before a worker can choose it
    # (a module-level torch.arange did).
    code = ("import os, dropkit, dropkit.cli, dropkit.lab.runner, dropkit.lab.session, torch\n"
            "os.environ['ATEN_CPU_CAPABILITY'] = 'default'\n"
            "print(torch.backends.cpu.get_cpu_capability())")
    assert _python(code) == "DEFAULT"


def test_a_worker_runs_the_drivers_kernels() -> None:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:  # a fresh process, unpinned
        pool.submit(check_kernels, DEFAULT).result()
        assert pool.submit(cpu_kernels).result() == "DEFAULT"


def test_a_worker_already_on_other_kernels_refuses() -> None:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        native = pool.submit(cpu_kernels).result()  # fixes the worker's kernel set
        if native == "DEFAULT":
            pytest.skip("this machine's torch runs only its default kernels")
        with pytest.raises(RuntimeError, match="ATEN_CPU_CAPABILITY=default"):
            pool.submit(check_kernels, DEFAULT).result()


def test_kernel_settings_name_this_process() -> None:
    assert dict(kernel_settings())["ATEN_CPU_CAPABILITY"] == cpu_kernels().lower()


@pytest.mark.skipif(not X86, reason="the CLI pins a kernel set on x86-64 only")
def test_the_cli_runs_avx2_everywhere(tmp_path: Path) -> None:
    if "avx2" not in Path("/proc/cpuinfo").read_text():
        pytest.skip("no AVX2 on this machine")
    args = ["-c", "import sys; from dropkit.cli import main; sys.exit(main())", "lab",
            "overfitting", "--data", "digits", "--hidden", "8", "--epochs", "1", "--quiet"]
    runs = {"pool": ["--workers", "2"], "here": ["--workers", "1"]}
    stored = {}
    for name, extra in runs.items():
        out = tmp_path / name
        subprocess.run([sys.executable, *args, *extra, "--out", str(out)], env=_env(),
                       check=True, capture_output=True, timeout=300)
        with sqlite3.connect(out / "results.sqlite") as db:
            rows = db.execute("SELECT key, result, arrays FROM trials").fetchall()
            protocol = json.loads(db.execute(
                "SELECT result FROM experiments WHERE name = 'protocol'").fetchone()[0])
        assert protocol["cpu_kernels"] == "AVX2"
        assert "CPU kernels: AVX2" in (out / "report.md").read_text()
        stored[name] = {k: ({**json.loads(r), "wall_s": 0}, a) for k, r, a in rows}
    assert stored["pool"] == stored["here"]  # workers in their processes, or the driver
