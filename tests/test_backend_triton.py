"""The Triton backend: bit-identity under Triton's interpreter, availability and laziness.

The kernels run in a subprocess with TRITON_INTERPRET=1 (tests/triton_interpret_checks.py),
so the variable, which must be set before triton is imported, never reaches other tests.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dropkit
from dropkit.backends import backend_names, resolve
from dropkit.backends.triton import TritonBackend, _bits

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], interpret: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_kernels_match_reference_under_interpreter() -> None:
    """tl.randint4x == Philox; scale and keep_mask == reference bit for bit (see the script)."""
    pytest.importorskip("triton")
    proc = _run([str(ROOT / "tests" / "triton_interpret_checks.py")], interpret=True)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no report; stderr:\n{proc.stderr[-4000:]}"
    report = json.loads(lines[-1])
    assert set(report) == {
        "check_randint4x_is_philox",
        "check_scale",
        "check_keep_mask",
        "check_counter_base",
        "check_functional",
        "check_scale_rows",
        "check_derive_keys",
        "check_sample_keys",
    }
    failed = {name: why for name, why in report.items() if why is not None}
    assert not failed, failed
    assert proc.returncode == 0


_LAZY = """
import sys
import dropkit, torch
assert "auto never picks" in dropkit.available_backends()["triton"]
# (not after a dropout call: torch's custom-op dispatch imports triton on its own)
assert "triton" not in sys.modules, "import dropkit (or a backend probe) imported triton"
x = torch.ones(8)
sys.modules["triton"] = None  # as if triton were not installed
with dropkit.use_backend("triton"):
    reason = dropkit.available_backends()["triton"]
assert "pip install dropkit[gpu]" in reason, reason
try:
    with dropkit.use_backend("triton"):
        dropkit.functional.dropout(x, 0.5, seed=1)
except RuntimeError as err:
    assert "pip install dropkit[gpu]" in str(err), err
else:
    raise AssertionError("a missing triton must raise")
print("ok")
"""


def test_triton_is_lazy_and_missing_triton_names_the_extra() -> None:
    proc = _run(["-c", _LAZY], interpret=True)
    assert proc.stdout.strip() == "ok", proc.stderr[-4000:]


def test_cpu_tensor_without_interpreter_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = torch.ones(8)
    assert "TRITON_INTERPRET=1" in TritonBackend().unavailable(x)
    assert resolve(x).name != "triton"  # auto never picks it for CPU tensors
    with dropkit.use_backend("triton"), pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        dropkit.functional.dropout(x, 0.5, seed=0)


def test_other_devices_and_dtypes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "meta" in TritonBackend().unavailable(torch.empty(3, device="meta"))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    reason = TritonBackend().unavailable(torch.empty(3, dtype=torch.float8_e4m3fn))
    assert "float8" in reason and "bfloat16" in reason
    assert "triton" in backend_names()


@pytest.mark.parametrize(
    "value", [0.0, -0.0, 1.0, 1.0 / 0.7, 1e-45, 3.4028235e38, 3.5e38, -1e300, float("inf")]
)
def test_weight_bits_round_like_torch(value: float) -> None:
    """The kernel's weights are the reference's: torch.tensor(w, dtype) rounded the same."""
    want32 = torch.tensor(value, dtype=torch.float32).view(torch.int32).item() & 0xFFFFFFFF
    assert _bits(value, wide=False) == want32
    assert _bits(value, wide=True) == struct.unpack("<Q", struct.pack("<d", value))[0]


def test_device_check_dry_run_passes_under_interpreter() -> None:
    """benchmarks/device_check.py: its identity checks, on tiny CPU tensors."""
    pytest.importorskip("triton")
    proc = _run([str(ROOT / "benchmarks" / "device_check.py"), "--dry-run"], interpret=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "all checks passed" in proc.stdout and "FAIL" not in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_device_check_without_gpu_says_so() -> None:
    proc = _run([str(ROOT / "benchmarks" / "device_check.py")], interpret=False)
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stdout and "--dry-run" in proc.stdout
