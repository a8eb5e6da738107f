"""Both backward policies of ``dropkit.functional.dropout`` side by side with torch, on the CPU.

For float32 inputs of 2^20 and 2^24 elements (p = 0.5, training), each line runs one
forward and one backward (``y.backward(g)`` with a fixed ``g``):

- torch's eager ``F.dropout(x, 0.5, True)`` (it keeps its mask: 4 bytes per element on CPU);
- dropkit with ``backward="seed"`` (keeps the key only; backward regenerates Philox);
- dropkit with ``backward="bits"`` (keeps a 1-bit mask; backward unpacks it).

Lines of one size run interleaved, round robin, ``--repeats`` times; each cell is the
median, and the ratio ``F.dropout / line`` says how many times faster than torch's the line
is (the issue's targets: >= 10x at 2^20 and >= 4x at 2^24). Bytes kept per element come from
:func:`dropkit.backward_bytes` on a one-layer model. Absolute times move with the machine's
load; read ratios within a run.

Usage: ``python benchmarks/backward_policy.py [--quick] [--repeats R] [--threads N]``.
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
import dropkit.functional as DF

P = 0.5


def _lines(n: int) -> dict[str, Callable[[], None]]:
    x = torch.randn(n, requires_grad=True)
    g = torch.randn(n)

    def run(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            x.grad = None
            fn(x).backward(g)

        return step

    return {
        "torch F.dropout": run(lambda t: F.dropout(t, P, True)),
        'dropkit backward="seed"': run(lambda t: DF.dropout(t, P, backward="seed")),
        'dropkit backward="bits"': run(lambda t: DF.dropout(t, P, backward="bits")),
    }


def _kept(n: int) -> dict[str, float]:
    """Bytes per element each line keeps for backward (a one-layer model)."""
    out = {}
    x = torch.randn(n, requires_grad=True)
    for name, layer in (("torch F.dropout", torch.nn.Dropout(P)),
                        ('dropkit backward="seed"', dropkit.nn.Dropout(P, backward="seed")),
                        ('dropkit backward="bits"', dropkit.nn.Dropout(P, backward="bits"))):
        kept = dropkit.backward_bytes(layer.train(), x)
        out[name] = kept[""].per_element
    return out


def measure(n: int, repeats: int) -> dict[str, float]:
    lines = _lines(n)
    for step in lines.values():
        step()  # warm-up: kernels load on first use
        step()
    times: dict[str, list[float]] = {k: [] for k in lines}
    for _ in range(repeats):
        for name, step in lines.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2^20 only, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="samples per line (21)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (7 if args.quick else 21)
    sizes = (20,) if args.quick else (20, 24)
    print(f"# backward policies: {platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, float32, p={P}, forward+backward, medians of {repeats} "
          "interleaved samples")
    print()
    print("| size | line | fwd+bwd ms | F.dropout / line | bytes kept per element |")
    print("|---|---|---:|---:|---:|")
    for k in sizes:
        n = 2**k
        med, kept = measure(n, repeats), _kept(n)
        ref = med["torch F.dropout"]
        for name, t in med.items():
            print(f"| 2^{k} | {name} | {t * 1e3:.2f} | {ref / t:.2f}x | {kept[name]:.3f} |")


if __name__ == "__main__":
    main()
