"""The CPU kernels a lab run computes with: one choice, made by the driver, kept by every worker.

Torch picks its CPU kernels by the machine: an AVX-512 machine sums in other orders than an
AVX2 one, and a network trained for 40 epochs turns those last-bit differences into other
models (another early-stopping epoch, another verdict on a close call). The CLI therefore
asks for one kernel set, AVX2 on x86-64 (which every x86-64 machine of the last ten years
runs), so that a run gives the same bits on any such machine: the numbers in docs/ are the
ones a reader's own run prints. The driver's settings are passed to every worker (local
processes, a Dask cluster's) as a value; a worker whose torch already runs other kernels
refuses the trial instead of storing other bits.

Torch reads its choice once, at its first kernel; MKL and oneDNN theirs at their first call.
So the choice is made before any of them (``import dropkit`` runs no kernel) through their
documented environment variables: ``ATEN_CPU_CAPABILITY``, ``MKL_CBWR`` (MKL's conditional
numerical reproducibility) and ``ONEDNN_MAX_CPU_ISA``. A user's own setting of
``ATEN_CPU_CAPABILITY`` wins.
"""

from __future__ import annotations

import os
import platform

import torch

__all__ = ["REPRODUCIBLE", "Kernels", "check_kernels", "cpu_kernels", "kernel_settings",
           "pin_reproducible"]

REPRODUCIBLE = {  # what the CLI asks for on x86-64
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
Kernels = tuple[tuple[str, str], ...]  # the settings, ((variable, value), ...); "" = unset


def cpu_kernels() -> str:
    """The CPU kernel set torch runs in this process (``"AVX2"``, ``"AVX512"``, ...); asking
    fixes it for the process's life."""
    return torch.backends.cpu.get_cpu_capability()


def kernel_settings() -> Kernels:
    """This process's kernel settings, to hand to workers: the kernel set torch runs and the
    MKL and oneDNN variables as set here.

    Example:
        >>> dict(kernel_settings())["ATEN_CPU_CAPABILITY"] == cpu_kernels().lower()
        True
    """
    return (("ATEN_CPU_CAPABILITY", cpu_kernels().lower()),
            *((k, os.environ.get(k, "")) for k in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA")))


def _apply(settings: Kernels) -> None:
    for k, v in settings:
        if v:
            os.environ[k] = v
        else:
            os.environ.pop(k, None)


def pin_reproducible() -> bool:
    """Ask for the AVX2 kernel set on x86-64 (the CLI's first step, before torch runs
    anything) and say whether this process runs it. Nothing changes where the user chose
    (``ATEN_CPU_CAPABILITY`` set), off x86-64, or where torch already runs other kernels (a
    caller that ran torch before, or a machine without AVX2: the report names what ran)."""
    if "ATEN_CPU_CAPABILITY" in os.environ:
        return False
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    before = tuple((k, os.environ.get(k, "")) for k in REPRODUCIBLE)
    _apply(tuple(REPRODUCIBLE.items()))
    if cpu_kernels().lower() != REPRODUCIBLE["ATEN_CPU_CAPABILITY"]:
        _apply(before)  # too late here: leave the environment as it was
        return False
    return True


def check_kernels(settings: Kernels) -> None:
    """Run the driver's kernel ``settings`` in this worker, or raise ``RuntimeError`` if its
    torch already runs another set (its results would not be the driver's bits)."""
    _apply(settings)
    want, got = dict(settings)["ATEN_CPU_CAPABILITY"], cpu_kernels().lower()
    if got != want:
        raise RuntimeError(
            f"this worker's torch runs {got.upper()} CPU kernels but the run asks for "
            f"{want.upper()}: its results would not be the same bits. Start the worker with "
            f"ATEN_CPU_CAPABILITY={want} (a fresh process that has run no torch op), or run "
            f"the driver with ATEN_CPU_CAPABILITY={got}"
        )
