"""Sample-keyed dropout against plain dropout on CPU, side by side (issue 10's target).

Each line is ``DF.dropout(x, 0.5)`` on a float32 ``[rows, cols]`` tensor of ``2**20``
elements (and ``2**24`` with ``--large``): plain (one key for the call, drawn from torch's
generator), inside ``dropkit.sample_keys(ids)`` (one key per row, derived from the row's id in
one kernel pass, then the per-row kernel), and torch's ``F.dropout`` for scale; and four
calls in one block (a forward's worth: the block's set-up is paid once) against four plain
calls. Forward
only, in ``torch.no_grad()``, and forward + backward. Lines run interleaved (round robin),
so a shared, noisy machine slows them alike; each time is the median of ``--repeats``
samples of ``--calls`` calls, each ratio the median of the ratios within one round (the
order of the lines rotates between rounds). The target: sample-keyed / plain <= 1.2 at 2**20.

Usage: ``python benchmarks/sample_keys.py [--repeats R] [--calls C] [--large]``.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import dropkit
import dropkit.functional as DF

TARGET = 1.2
CALLS_PER_BLOCK = 4


def _lines(rows: int, cols: int, grad: bool) -> dict[str, Callable[[], object]]:
    x = torch.randn(rows, cols, requires_grad=grad)
    ids = torch.randperm(10 * rows)[:rows]
    g = torch.randn(rows, cols)

    def run(f: Callable[[], torch.Tensor]) -> Callable[[], object]:
        if not grad:
            return f

        def step() -> None:
            x.grad = None
            f().backward(g)

        return step

    def keyed() -> torch.Tensor:
        with dropkit.sample_keys(ids, seed=1):
            return DF.dropout(x, 0.5)

    def keyed_block() -> torch.Tensor:  # a forward's worth of calls in one block
        with dropkit.sample_keys(ids, seed=1):
            return sum(DF.dropout(x, 0.5) for _ in range(CALLS_PER_BLOCK))  # type: ignore[return-value]

    def plain_block() -> torch.Tensor:
        return sum(DF.dropout(x, 0.5) for _ in range(CALLS_PER_BLOCK))  # type: ignore[return-value]

    return {
        "torch F.dropout": run(lambda: F.dropout(x, 0.5, True)),
        "dropkit plain": run(lambda: DF.dropout(x, 0.5)),
        "dropkit sample-keyed": run(keyed),
        "plain x4": run(plain_block),
        "sample-keyed x4 in one block": run(keyed_block),
    }


def _measure(lines: dict[str, Callable[[], object]], repeats: int, calls: int,
             grad: bool) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Medians per line, and each round's times (for ratios within one round). The order
    of the lines rotates from round to round, so no line always follows the same one."""
    for f in lines.values():
        f()
    names = list(lines)
    rounds: list[dict[str, float]] = []
    gc.disable()
    try:
        with torch.set_grad_enabled(grad):
            for i in range(repeats):
                got: dict[str, float] = {}
                for name in names[i % len(names):] + names[: i % len(names)]:
                    f = lines[name]
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        f()
                    got[name] = (time.perf_counter() - t0) / calls
                rounds.append(got)
    finally:
        gc.enable()
    return {k: statistics.median(r[k] for r in rounds) for k in names}, rounds


def _ratio(rounds: list[dict[str, float]], num: str, den: str) -> float:
    """The median over rounds of ``num / den`` timed in the same round."""
    return statistics.median(r[num] / r[den] for r in rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--large", action="store_true", help="also 2**24 elements")
    args = ap.parse_args()
    sizes = [20] + ([24] if args.large else [])
    print(f"# sample-keyed dropout: {platform.machine()}, {torch.get_num_threads()} torch "
          f"threads, torch {torch.__version__}, backend {dropkit.get_backend()}, "
          f"float32, medians of {args.repeats} interleaved samples of {args.calls} calls\n")
    print("| elements | rows x cols | mode | torch F.dropout ms | dropkit plain ms | "
          "sample-keyed ms | sample-keyed / plain | 4 calls per block / 4 plain |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    verdicts = []
    for log2 in sizes:
        n = 1 << log2
        for rows in (64, 1024, 4096, 16384):
            cols = n // rows
            for grad in (False, True):
                med, rounds = _measure(_lines(rows, cols, grad), args.repeats, args.calls, grad)
                ratio = _ratio(rounds, "dropkit sample-keyed", "dropkit plain")
                mode = "fwd+bwd" if grad else "forward"
                flag = "" if ratio <= TARGET or log2 != 20 else " (over 1.2x)"
                block = _ratio(rounds, "sample-keyed x4 in one block", "plain x4")
                print(f"| 2^{log2} | {rows} x {cols} | {mode} | "
                      f"{med['torch F.dropout'] * 1e3:.3f} | {med['dropkit plain'] * 1e3:.3f} | "
                      f"{med['dropkit sample-keyed'] * 1e3:.3f} | {ratio:.2f}x{flag} | "
                      f"{block:.2f}x |")
                if log2 == 20:
                    verdicts.append(ratio <= TARGET)
    print(f"\n- 2^20: {sum(verdicts)}/{len(verdicts)} lines within {TARGET}x of plain dropout")


if __name__ == "__main__":
    main()
