"""Host time per call of dropout on tiny tensors: where the microseconds go before the GPU.

At 2**24 elements an H100 runs a dropout kernel in tens of microseconds, so the Python
work around the launch decides the time. This measures, per call, on a 1024-element
tensor (GPU work negligible, one synchronize at the end of each batch): torch's
dropout, dropkit's, and the layers beneath dropkit's down to the bare Triton launch.
Then a cProfile of dropkit's forward+backward. Needs a CUDA device::

    python benchmarks/launch_overhead.py

Figures are medians over repeats of the mean per-call time of a batch of calls.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable

import torch

import dropkit
import dropkit.functional as F
from dropkit import rng
from dropkit.backends import triton as tb


def per_call_us(fn: Callable[[], object], calls: int = 2000, repeats: int = 7) -> float:
    """Median over ``repeats`` of the mean host time of one call, in microseconds."""
    for _ in range(200):
        fn()
    torch.cuda.synchronize()
    means = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        means.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(means)


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark measures host time around GPU launches")
        return 2
    n, p = 1024, 0.5
    x = torch.randn(n, device="cuda")
    xg = x.clone().requires_grad_(True)
    g = torch.randn_like(x)
    out = torch.empty_like(x)
    thresh = rng.threshold(p)
    kernels = tb._kernels()
    grid = tb._grid(n)
    w_keep, w_drop = tb._bits(2.0, False), tb._bits(0.0, False)

    def fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            xg.grad = None
            fn(xg).backward(g)

        return run

    def raw_launch() -> None:
        kernels.scale_kernel[grid](
            x, out, n, 7, thresh, w_keep, w_drop, 0, BLOCK_SIZE=tb.BLOCK_SIZE
        )

    class Twice(torch.autograd.Function):
        """The floor of any Python autograd Function: y = 2x, backward 2g."""

        @staticmethod
        def forward(ctx: object, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return t * 2

        @staticmethod
        def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return grad * 2

    def single_threaded(run: Callable[[], None]) -> Callable[[], None]:
        def inner() -> None:
            with torch.autograd.set_multithreading_enabled(False):
                run()

        return inner

    def device_context() -> None:
        with torch.cuda.device(x.device):
            pass

    rows: list[tuple[str, Callable[[], object]]] = [
        ("torch F.dropout fwd", lambda: torch.nn.functional.dropout(x, p)),
        ("dropkit F.dropout fwd", lambda: F.dropout(x, p)),
        ("dropkit F.dropout fwd, seed given", lambda: F.dropout(x, p, seed=7)),
        ("torch fwd+bwd", fwd_bwd(lambda t: torch.nn.functional.dropout(t, p))),
        ("dropkit fwd+bwd", fwd_bwd(lambda t: F.dropout(t, p))),
        ("dropkit fwd, input requires grad", lambda: F.dropout(xg, p)),
        ("x * 2 fwd+bwd (native)", fwd_bwd(lambda t: t * 2)),
        ("Python Function 2x fwd+bwd (floor)", fwd_bwd(Twice.apply)),
        (
            "torch fwd+bwd, autograd single-threaded",
            single_threaded(fwd_bwd(lambda t: torch.nn.functional.dropout(t, p))),
        ),
        (
            "dropkit fwd+bwd, autograd single-threaded",
            single_threaded(fwd_bwd(lambda t: F.dropout(t, p))),
        ),
        ("Python Function fwd+bwd, single-threaded", single_threaded(fwd_bwd(Twice.apply))),
        ("torch x * 2 (one elementwise op)", lambda: x * 2),
        ("torch.empty_like", lambda: torch.empty_like(x)),
        ("launch_scale (dropkit's launch)", lambda: tb.launch_scale(x, out, 7, thresh, 2.0, 0.0)),
        ("scale_kernel[grid](...) bare", raw_launch),
        ("torch.cuda.device(x.device) enter/exit", device_context),
    ]
    try:
        compiled = kernels.scale_kernel[grid](
            x, out, n, 7, thresh, w_keep, w_drop, 0, BLOCK_SIZE=tb.BLOCK_SIZE
        )
        runner = compiled[(grid[0], 1, 1)]
        rows.append(
            (
                "CompiledKernel runner (no binder)",
                lambda: runner(x, out, n, 7, thresh, w_keep, w_drop, 0, tb.BLOCK_SIZE),
            )
        )
        torch.cuda.synchronize()
        out.zero_()
        runner(x, out, n, 7, thresh, w_keep, w_drop, 0, tb.BLOCK_SIZE)
        ref = torch.empty_like(x)
        tb.launch_scale(x, ref, 7, thresh, 2.0, 0.0)
        print(f"CompiledKernel runner gives the same output: {torch.equal(out, ref)}")
    except Exception as err:  # a Triton-internal API: report, go on
        print(f"CompiledKernel runner not usable: {err!r}")

    with dropkit.use_backend("triton"):
        print(f"{'host time per call, 1024 float32 elements':<44} {'us':>8}")
        for name, fn in rows:
            try:
                print(f"{name:<44} {per_call_us(fn):>8.1f}", flush=True)
            except Exception as err:  # one broken row must not hide the others
                print(f"{name:<44} failed: {err!r}", flush=True)

        run = fwd_bwd(lambda t: F.dropout(t, p))
        profile = cProfile.Profile()
        profile.enable()
        with torch.autograd.set_multithreading_enabled(False):  # backward in this thread
            for _ in range(2000):
                run()
        torch.cuda.synchronize()
        profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(22)
    print("\ncProfile of 2000 dropkit fwd+bwd calls, autograd single-threaded (tottime order):")
    print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:6000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
