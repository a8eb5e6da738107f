"""Eager per-call cost of every dropkit random variant on a tiny CPU tensor, next to torch.

At 1024 float32 elements the arithmetic is negligible, so what is measured is the fixed
cost of one eager call: argument checks, seed handling, backend dispatch, autograd
bookkeeping. Every case runs in training mode (p=0.5 unless its row says otherwise) on
1024 input elements, in two modes:

- ``no-grad``: forward only, inside ``torch.no_grad()``, inputs without ``requires_grad``;
- ``fwd+bwd``: inputs with ``requires_grad``, one call is ``y = f(...)`` then
  ``y.backward(g)`` with a fixed ``g`` (the leaves' ``.grad`` reset to None first).
  ``concrete_dropout``'s ``p_logit`` requires grad too (it is learned); ``drop_connect``
  and ``F.linear`` differentiate input, weight and bias; the two embedding lines, weight.

The reference line is torch's eager ``F.dropout(x, 0.5, True)``, measured the same way.
All lines of one mode run interleaved (round robin), so a shared, noisy machine slows
them alike: a sample is the mean time of ``--calls`` back-to-back calls of one line,
each line gets ``--repeats`` samples, and each cell is the median sample. Every line is
called once before timing (the numba backend compiles or loads its kernels on first use),
and the garbage collector is off while a mode is timed.

Reading the table: ``us`` is the median per-call time in microseconds; ``/F.dropout`` is
that time over the F.dropout line's median from the same interleaved loop (1.00 is
torch's cost; the issue's target is <= 1.50 for each dropkit variant). Rows with a torch
twin (``torch.nn.Dropout``, and the two below) also give the ratio to that twin.
DropConnect, embedding dropout and concrete dropout are more than a mask: their twins are
torch's composition of the same operation (``F.linear(x, F.dropout(W, p), b)``; AWD-LSTM's
row-masked table into ``F.embedding``; the concrete-dropout paper's reference code in torch
ops), to which the 1.5x is applied too; the plain ``F.linear`` / ``F.embedding`` rows show
what the matmul and lookup cost alone.
Absolute times vary with the machine and its load; compare ratios, within a run.

Usage: ``python benchmarks/per_call.py [--quick] [--threads N] [--calls C] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import dropkit
import dropkit.functional as DF
import dropkit.nn as dnn

P = 0.5
N = 1024
TARGET = 1.5
REF = "torch F.dropout(x, 0.5, True)"
# The same operation written with torch's own ops: DropConnect as a dropped weight into
# F.linear, embedding dropout as AWD-LSTM's row mask on the table (Merity et al. 2018).
LINEAR_TWIN = "torch F.linear(x, F.dropout(W, 0.5), b)"
EMBEDDING_TWIN = "torch F.embedding(ids, W * row mask)"


CONCRETE_TWIN = "torch concrete dropout (Gal et al.'s code)"


def _concrete_torch(grad: bool) -> tuple[Callable[[], torch.Tensor], list[torch.Tensor]]:
    """Concrete dropout as the paper's reference code writes it in torch ops."""
    x = _leaf(torch.randn(N), grad)
    p_logit = _leaf(torch.tensor(0.0), grad)

    def call() -> torch.Tensor:
        p = torch.sigmoid(p_logit)
        u = torch.rand_like(x)
        drop = torch.sigmoid((torch.log(p + 1e-7) - torch.log(1 - p + 1e-7) + torch.log(u + 1e-7)
                              - torch.log(1 - u + 1e-7)) / 0.1)
        return x * (1 - drop) / (1 - p)

    return call, [x, p_logit]


def _torch_embedding_dropout(ids: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """AWD-LSTM's ``embedded_dropout``: drop whole rows of the table, rescale, look up."""
    mask = w.new_empty((w.size(0), 1)).bernoulli_(0.9) / 0.9
    return F.embedding(ids, w * mask)


@dataclass
class Case:
    """One table row: ``make(grad)`` returns ``(call, leaves)``; ``call()`` gives the output.

    ``leaves`` are the tensors that require grad in fwd+bwd mode (their ``.grad`` is
    reset before each call). ``twin`` names the torch row this one is compared with.
    """

    name: str
    shape: str
    make: Callable[[bool], tuple[Callable[[], torch.Tensor], list[torch.Tensor]]]
    twin: str | None = None
    dropkit: bool = True
    errors: dict[str, str] = field(default_factory=dict)


def _leaf(t: torch.Tensor, grad: bool) -> torch.Tensor:
    return t.requires_grad_(grad)


def _unary(
    fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...]
) -> Callable[[bool], tuple[Callable[[], torch.Tensor], list[torch.Tensor]]]:
    """A case whose only differentiable input is ``x`` of ``shape``."""

    def make(grad: bool) -> tuple[Callable[[], torch.Tensor], list[torch.Tensor]]:
        x = _leaf(torch.randn(shape), grad)
        return (lambda: fn(x)), [x]

    return make


def _concrete(grad: bool) -> tuple[Callable[[], torch.Tensor], list[torch.Tensor]]:
    x = _leaf(torch.randn(N), grad)
    p_logit = _leaf(torch.tensor(0.0), grad)
    return (lambda: DF.concrete_dropout(x, p_logit=p_logit)), [x, p_logit]


def _linear(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> Callable[[bool], tuple[Callable[[], torch.Tensor], list[torch.Tensor]]]:
    def make(grad: bool) -> tuple[Callable[[], torch.Tensor], list[torch.Tensor]]:
        x = _leaf(torch.randn(4, 32), grad)
        w = _leaf(torch.randn(32, 32) / 32**0.5, grad)
        b = _leaf(torch.randn(32), grad)
        return (lambda: fn(x, w, b)), [x, w, b]

    return make


def _embedding(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Callable[[bool], tuple[Callable[[], torch.Tensor], list[torch.Tensor]]]:
    def make(grad: bool) -> tuple[Callable[[], torch.Tensor], list[torch.Tensor]]:
        ids = torch.randint(0, 128, (4, 8), generator=torch.Generator().manual_seed(0))
        w = _leaf(torch.randn(128, 8), grad)
        return (lambda: fn(ids, w)), [w]

    return make


def _module(
    module: torch.nn.Module,
) -> Callable[[bool], tuple[Callable[[], torch.Tensor], list[torch.Tensor]]]:
    module.train()
    return _unary(module, (N,))


def cases() -> list[Case]:
    """Every row of the table, the reference first."""
    return [
        Case(REF, "(1024,)", _unary(lambda x: F.dropout(x, P, True), (N,)), dropkit=False),
        Case("DF.dropout(x, 0.5) [seed=None]", "(1024,)", _unary(lambda x: DF.dropout(x, P), (N,))),
        Case(
            "DF.dropout(x, 0.5, seed=1)",
            "(1024,)",
            _unary(lambda x: DF.dropout(x, P, seed=1), (N,)),
        ),
        Case("DF.dropout1d", "(4, 16, 16)", _unary(lambda x: DF.dropout1d(x, P), (4, 16, 16))),
        Case("DF.dropout2d", "(4, 16, 4, 4)", _unary(lambda x: DF.dropout2d(x, P), (4, 16, 4, 4))),
        Case(
            "DF.dropout3d",
            "(4, 16, 2, 2, 4)",
            _unary(lambda x: DF.dropout3d(x, P), (4, 16, 2, 2, 4)),
        ),
        Case(
            "DF.alpha_dropout(x, 0.5, True)",
            "(1024,)",
            _unary(lambda x: DF.alpha_dropout(x, P, True), (N,)),
        ),
        Case(
            "DF.feature_alpha_dropout(x, 0.5, True)",
            "(4, 16, 16)",
            _unary(lambda x: DF.feature_alpha_dropout(x, P, True), (4, 16, 16)),
        ),
        Case("DF.gaussian_dropout", "(1024,)", _unary(lambda x: DF.gaussian_dropout(x, P), (N,))),
        Case("DF.drop_path", "(16, 64)", _unary(lambda x: DF.drop_path(x, P), (16, 64))),
        Case(
            "DF.drop_block2d(x, 0.1, 3)",
            "(4, 4, 8, 8)",
            _unary(lambda x: DF.drop_block2d(x, 0.1, 3), (4, 4, 8, 8)),
        ),
        Case(CONCRETE_TWIN, "(1024,)", _concrete_torch, dropkit=False),
        Case("DF.concrete_dropout(x, p_logit=0.)", "(1024,)", _concrete, twin=CONCRETE_TWIN),
        Case("torch F.linear", "x (4, 32), W (32, 32), b", _linear(F.linear), dropkit=False),
        Case(
            LINEAR_TWIN,
            "x (4, 32), W (32, 32), b",
            _linear(lambda x, w, b: F.linear(x, F.dropout(w, P, True), b)),
            dropkit=False,
        ),
        Case(
            "DF.drop_connect(x, W, b, 0.5)",
            "x (4, 32), W (32, 32), b",
            _linear(lambda x, w, b: DF.drop_connect(x, w, b, P)),
            twin=LINEAR_TWIN,
        ),
        Case(
            "torch F.embedding",
            "ids (4, 8), W (128, 8)",
            _embedding(F.embedding),
            dropkit=False,
        ),
        Case(
            EMBEDDING_TWIN,
            "ids (4, 8), W (128, 8)",
            _embedding(_torch_embedding_dropout),
            dropkit=False,
        ),
        Case(
            "DF.embedding_dropout(ids, W, 0.1)",
            "ids (4, 8), W (128, 8)",
            _embedding(lambda ids, w: DF.embedding_dropout(ids, w, 0.1)),
            twin=EMBEDDING_TWIN,
        ),
        Case(
            "DF.locked_dropout",
            "(4, 16, 16)",
            _unary(lambda x: DF.locked_dropout(x, P), (4, 16, 16)),
        ),
        Case(
            "torch.nn.Dropout(0.5) module",
            "(1024,)",
            _module(torch.nn.Dropout(P)),
            dropkit=False,
        ),
        Case(
            "dropkit.nn.Dropout(0.5) module",
            "(1024,)",
            _module(dnn.Dropout(P)),
            twin="torch.nn.Dropout(0.5) module",
        ),
    ]


def _sampler(case: Case, grad: bool, calls: int) -> Callable[[], None]:
    """A function that runs ``calls`` calls of ``case`` in the given mode."""
    call, leaves = case.make(grad)
    if not grad:

        def forward() -> None:
            with torch.no_grad():
                for _ in range(calls):
                    call()

        return forward
    g = torch.randn_like(call())  # fixed upstream gradient, shaped like the output

    def forward_backward() -> None:
        for _ in range(calls):
            for t in leaves:
                t.grad = None
            call().backward(g)

    return forward_backward


def _error(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".replace("|", "/").replace("\n", " ")
    return text if len(text) <= 160 else text[:157] + "..."


def measure(all_cases: list[Case], grad: bool, calls: int, repeats: int) -> dict[str, float]:
    """Median per-call seconds of each case that runs, all interleaved (round robin)."""
    mode = "fwd+bwd" if grad else "no-grad"
    samplers: dict[str, Callable[[], None]] = {}
    for case in all_cases:
        try:
            sampler = _sampler(case, grad, 1)
            sampler()  # warm-up: numba kernels compile or load on first use
            sampler()
            samplers[case.name] = _sampler(case, grad, calls)
        except Exception as err:  # the library is being refactored: report, go on
            case.errors[mode] = _error(err)
    for sampler in samplers.values():
        sampler()  # one untimed round at full length
    times: dict[str, list[float]] = {name: [] for name in samplers}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, sampler in samplers.items():
                start = time.perf_counter_ns()
                try:
                    sampler()
                except Exception as err:  # a line that breaks mid-run drops out
                    next(c for c in all_cases if c.name == name).errors[mode] = _error(err)
                    continue
                times[name].append((time.perf_counter_ns() - start) / calls * 1e-9)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(ts) for name, ts in times.items() if ts}


def table(all_cases: list[Case], meds: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows: per mode, microseconds, ratio to F.dropout and to the torch twin."""
    modes = list(meds)
    head = "| case | shape |"
    rule = "|---|---|"
    for mode in modes:
        head += f" {mode} us | {mode} /F.dropout | {mode} /twin |"
        rule += "---:|---:|---:|"
    rows = [head, rule]
    for case in all_cases:
        cells = [case.name, case.shape]
        for mode in modes:
            med = meds[mode]
            if case.name not in med:
                err = case.errors.get(mode, "not measured")
                cells += [f"error: {err}", "-", "-"]
                continue
            t = med[case.name]
            ref = med.get(REF)
            ratio = "-" if ref is None else f"{t / ref:.2f}x"
            if ref is not None and case.dropkit and t / ref > TARGET:
                ratio += " (over 1.5x)"
            twin = case.twin
            twin_ratio = f"{t / med[twin]:.2f}x" if twin is not None and twin in med else "-"
            cells += [f"{t * 1e6:.1f}", ratio, twin_ratio]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def summary(all_cases: list[Case], meds: dict[str, dict[str, float]]) -> list[str]:
    """One line per mode: how many dropkit rows meet the 1.5x target, and which do not."""
    lines = []
    for mode, med in meds.items():
        ref = med.get(REF)
        if ref is None:
            lines.append(f"- {mode}: no F.dropout reference, no ratios")
            continue
        rows = [c for c in all_cases if c.dropkit]
        timed = [c for c in rows if c.name in med]
        over = [f"{c.name} ({med[c.name] / ref:.2f}x)" for c in timed if med[c.name] / ref > TARGET]
        failed = len(rows) - len(timed)
        line = f"- {mode}: {len(timed) - len(over)}/{len(rows)} dropkit rows within {TARGET}x"
        if over:
            line += "; over: " + ", ".join(over)
        if failed:
            line += f"; {failed} raised"
        lines.append(line)
        twins = [c for c in timed
                 if c.twin in (LINEAR_TWIN, EMBEDDING_TWIN, CONCRETE_TWIN) and c.twin in med]
        if twins:
            lines.append(f"- {mode}, against torch's own composition of the same operation: " +
                         ", ".join(f"{c.name} {med[c.name] / med[c.twin]:.2f}x" for c in twins))
    return lines
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter samples")
    parser.add_argument("--calls", type=int, default=None, help="calls per sample (200)")
    parser.add_argument("--repeats", type=int, default=None, help="samples per line (61)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (dropkit follows it)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    calls = args.calls if args.calls is not None else (50 if args.quick else 200)
    repeats = args.repeats if args.repeats is not None else (7 if args.quick else 61)
    try:
        be = repr(dropkit.backends.resolve(torch.empty(N)).name)
    except Exception as err:
        be = f"unknown ({_error(err)})"
    print(
        f"# dropkit per-call cost: {platform.machine()}, {torch.get_num_threads()} torch "
        f"threads, torch {torch.__version__}, dropkit backend {be}, float32, CPU, "
        f"{N} input elements, {calls} calls x {repeats} interleaved samples, medians"
    )
    all_cases = cases()
    start = time.perf_counter()
    meds = {
        "no-grad": measure(all_cases, False, calls, repeats),
        "fwd+bwd": measure(all_cases, True, calls, repeats),
    }
    elapsed = time.perf_counter() - start
    print(
        "\nMedian time per call (us) and its ratio to torch F.dropout measured in the same "
        f"interleaved loop (target for dropkit rows: <= {TARGET}x)\n"
    )
    print("\n".join(table(all_cases, meds)))
    print()
    print("\n".join(summary(all_cases, meds)))
    print(f"\n(measured in {elapsed:.0f} s)")


if __name__ == "__main__":
    main()
