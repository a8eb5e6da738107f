"""Kernel benchmarks (``make bench``): dropkit against torch's dropouts, measured side by side.

Table 1, float32 sizes 2**16, 2**20, 2**24: forward and forward+backward time of
dropkit's ``dropout``, eager ``torch.nn.functional.dropout``, ``torch.compile``'d
``F.dropout`` and a plain ``clone()`` (the memory-traffic floor), as medians over repeats,
with ratios to dropkit and the bytes per element each saves for backward (counted by
``torch.autograd.graph.saved_tensors_hooks``).

The training-step tables (a 3x1024 ReLU MLP, eager and compiled, every backward policy)
are ``benchmarks/step.py``'s.

Usage: ``python benchmarks/kernels.py [--quick] [--no-compile] [--threads N] [--budget S]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import dropkit
from dropkit.functional import dropout as dk_dropout

P = 0.5


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_medians(
    fns: dict[str, Callable[[], object]], budget_s: float, min_reps: int = 5
) -> dict[str, float]:
    """Median seconds per call of each fn, run round robin (one warm-up round first)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    while True:
        for name, fn in fns.items():
            times[name].append(_timed(fn))
        reps = len(next(iter(times.values())))
        if reps >= min_reps and time.perf_counter() - start > budget_s:
            break
        if reps >= 2000:
            break
    return {name: statistics.median(ts) for name, ts in times.items()}


def saved_bytes_per_element(fn: Callable[[torch.Tensor], torch.Tensor], n: int) -> float:
    """Bytes of tensors saved for backward by ``fn`` on an ``n``-element input, per element."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    x = torch.randn(n, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(x * 1.0)
    y.sum().backward()
    return total / n


def _contenders(use_compile: bool) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    fns: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "dropkit": lambda x: dk_dropout(x, P),
        "F.dropout (eager)": lambda x: F.dropout(x, P),
    }
    if use_compile:
        fns["F.dropout (compiled)"] = torch.compile(lambda x: F.dropout(x, P), dynamic=False)
    fns["clone (floor)"] = lambda x: x.clone()
    return fns


def kernel_table(sizes: list[int], budget_s: float, use_compile: bool) -> list[str]:
    """Markdown rows of table 1."""
    fns = _contenders(use_compile)
    rows = [
        "| n | op | " + " | ".join(fns) + " |",
        "|---|---|" + "---|" * len(fns),
    ]
    for n in sizes:
        x = torch.randn(n)
        xg = torch.randn(n, requires_grad=True)
        g = torch.randn(n)
        fwd = {k: (lambda f=f, x=x: f(x)) for k, f in fns.items()}
        fwdbwd = {
            k: (lambda f=f, xg=xg, g=g: torch.autograd.grad(f(xg), xg, g))
            for k, f in fns.items()
        }
        for label, group in (("forward", fwd), ("fwd+bwd", fwdbwd)):
            med = interleaved_medians(group, budget_s)
            base = med["dropkit"]
            cells = [f"{med[k] * 1e6:.0f} us ({med[k] / base:.2f}x)" for k in group]
            rows.append(f"| 2^{n.bit_length() - 1} | {label} | " + " | ".join(cells) + " |")
    n = sizes[0]
    saved = [f"{saved_bytes_per_element(f, n):.2f}" for f in fns.values()]
    rows.append("| any | bytes saved for backward / element | " + " | ".join(saved) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2^16 and 2^20 only, short runs")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--budget", type=float, default=None, help="seconds per measurement")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (dropkit follows it)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sizes = [2**16, 2**20] if args.quick else [2**16, 2**20, 2**24]
    budget = args.budget if args.budget is not None else (0.5 if args.quick else 3.0)
    be = dropkit.backends.resolve(torch.empty(1)).name
    print(
        f"# dropkit kernel benchmarks: {platform.machine()}, {torch.get_num_threads()} torch "
        f"threads, torch {torch.__version__}, dropkit backend {be!r}, p={P}, float32"
    )
    print("\nTable 1: median time per call (ratio to dropkit; > 1 means dropkit is faster)\n")
    print("\n".join(kernel_table(sizes, budget, not args.no_compile)))


if __name__ == "__main__":
    main()
