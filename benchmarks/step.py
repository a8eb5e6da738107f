"""What dropout costs in a real training step, eager and compiled, and in a fresh process.

Table 1 (eager) and table 2 (``torch.compile(model)``): one SGD step of a 3x1024 ReLU MLP,
batch 256, with dropout (p = 0.5) after each hidden ReLU:

- ``no dropout``: the baseline;
- ``fixed mask``: a multiply by a constant 0/2 mask, the cost of an RNG-free multiply in the
  same places (the issue's moonshot);
- ``torch.nn.Dropout``;
- ``dropkit.nn.Dropout`` with ``backward="auto"`` (the default), ``"seed"`` and ``"bits"``.

Steps of all variants run interleaved (round robin) so a shared machine slows them alike;
each cell is a median, and the overhead is in percent of the no-dropout step of the same
table. Compiled variants are compiled (and run) before timing.

Table 3: the first dropout call of a fresh process, ``python -c "import torch; <import>;
<one call>"`` against the same with ``torch.nn.functional.dropout``: median wall time of
``--fresh`` processes each (the difference is what dropkit adds: its imports, numba's, and
loading the cached kernels).

Usage: ``python benchmarks/step.py [--quick] [--no-compile] [--threads N] [--fresh K]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import dropkit.nn as dnn

P = 0.5
WIDTH, BATCH = 1024, 256


class FixedMask(nn.Module):
    """``x * m`` with a constant 0/2 mask drawn once: dropout's multiply without its RNG."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("mask", (torch.rand(BATCH, WIDTH, generator=gen) >= P) / (1 - P))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask if self.training else x


VARIANTS: dict[str, Callable[[], nn.Module] | None] = {
    "no dropout": None,
    "fixed mask (RNG-free multiply)": FixedMask,
    "torch.nn.Dropout(0.5)": lambda: nn.Dropout(P),
    'dropkit Dropout(0.5) backward="auto"': lambda: dnn.Dropout(P),
    'dropkit Dropout(0.5) backward="seed"': lambda: dnn.Dropout(P, backward="seed"),
    'dropkit Dropout(0.5) backward="bits"': lambda: dnn.Dropout(P, backward="bits"),
}


def _mlp(drop: Callable[[], nn.Module] | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(3):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
        if drop is not None:
            layers.append(drop())
    layers.append(nn.Linear(WIDTH, 10))
    return nn.Sequential(*layers).train()


def _steps(compiled: bool) -> dict[str, Callable[[], None]]:
    x = torch.randn(BATCH, WIDTH)
    target = torch.randint(0, 10, (BATCH,))
    steps = {}
    for name, drop in VARIANTS.items():
        torch.manual_seed(0)
        model = _mlp(drop)
        run = torch.compile(model) if compiled else model
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)

        def step(run: Callable = run, opt: torch.optim.Optimizer = opt) -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(run(x), target).backward()
            opt.step()

        steps[name] = step
    return steps


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, run round robin ``repeats`` times."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def step_table(compiled: bool, repeats: int) -> list[str]:
    """Markdown rows: median step time over the no-dropout step, per variant."""
    steps = _steps(compiled)
    for step in steps.values():
        for _ in range(3):  # compile (when compiled), warm caches
            step()
    med = _interleaved(steps, repeats)
    base = med["no dropout"]
    rows = ["| variant | step ms | / no-dropout step | dropout overhead |", "|---|---:|---:|---:|"]
    for name, t in med.items():
        rows.append(f"| {name} | {t * 1e3:.2f} | {t / base:.3f} | {(t / base - 1) * 100:+.1f}% |")
    return rows


_FRESH = {
    "torch F.dropout": "import torch; torch.nn.functional.dropout(torch.ones(8), 0.5, True)",
    "dropkit F.dropout": "import torch; import dropkit.functional as F; "
    "F.dropout(torch.ones(8), 0.5)",
}


def fresh_table(processes: int) -> list[str]:
    """Markdown rows: wall time of a fresh process making one call, median of ``processes``."""
    runs = {name: (lambda code=code: subprocess.run([sys.executable, "-c", code], check=True))
            for name, code in _FRESH.items()}
    med = _interleaved(runs, processes)
    base = med["torch F.dropout"]
    rows = ["| process | wall s | more than torch's |", "|---|---:|---:|"]
    for name, t in med.items():
        rows.append(f"| {name} | {t:.2f} | {t - base:+.2f} s |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-compile", action="store_true", help="skip table 2")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--fresh", type=int, default=None, help="fresh processes each (5)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    repeats = 15 if args.quick else 41
    print(f"# dropout in a training step: {platform.machine()}, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}, {WIDTH}-wide 3-layer ReLU MLP, batch {BATCH}, "
          f"SGD, medians of {repeats} interleaved steps")
    print("\nTable 1: eager step\n")
    print("\n".join(step_table(False, repeats)))
    if not args.no_compile:
        print("\nTable 2: torch.compile(model) step\n")
        print("\n".join(step_table(True, repeats)))
    print("\nTable 3: a fresh process's first dropout call\n")
    print("\n".join(fresh_table(args.fresh or (3 if args.quick else 5))))


if __name__ == "__main__":
    main()
