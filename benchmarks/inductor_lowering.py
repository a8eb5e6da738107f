"""Issue 12, point 1: the mask spec lowered into Inductor as one fused pointwise loop (CPU).

An experiment, not part of the library (nor of ``make bench``): it registers, for a private
op ``dropkit_bench::keep_scale``, an Inductor lowering whose loop body is the ten Philox
rounds as Inductor ``ops`` (int64 multiplies, shifts, xors and masks; each intermediate
built once, so the expression grows linearly with the rounds, unlike the same math as
torch ops, whose compile time exploded: RESULTS.md, fifth session). ``bias-add -> ReLU ->
dropout`` then compiles to one loop. It checks the result against dropkit's eager dropout
bit for bit and times, side by side (lines interleaved, order rotated, medians):

- ``fused``: the compiled function with the lowering (one loop);
- ``opaque``: the compiled function with dropkit's own op (Inductor's loop for bias + ReLU,
  then dropkit's numba kernel as an extern call);
- ``eager``: bias + ReLU + dropkit dropout, eager;
- ``no dropout``: the compiled bias + ReLU alone.

Usage: ``python benchmarks/inductor_lowering.py [--rows R] [--repeats N]`` (needs a C++
compiler, as torch.compile on CPU does).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch._inductor.ir import Pointwise
from torch._inductor.lowering import register_lowering
from torch._inductor.virtualized import ops

import dropkit.functional as DF
from dropkit import rng

P = 0.5


@torch.library.custom_op("dropkit_bench::keep_scale", mutates_args=())
def keep_scale(x: torch.Tensor, seed: torch.Tensor, thresh: int, w: float) -> torch.Tensor:
    """Eager: dropkit's dropout of ``x`` at p = 0.5 (the lowering's oracle)."""
    return DF.dropout(x, P, seed=int(seed))


@keep_scale.register_fake
def _(x: torch.Tensor, seed: torch.Tensor, thresh: int, w: float) -> torch.Tensor:
    return torch.empty_like(x)


@register_lowering(torch.ops.dropkit_bench.keep_scale.default, type_promotion_kind=None)
def _lower(x, seed, thresh: int, w: float):  # type: ignore[no-untyped-def]
    """``x * (w if lane(i) of Philox(i >> 2, key=seed) >= thresh else 0)``, i the flat index."""
    x_load, seed_load = x.make_loader(), seed.make_loader()
    size = x.get_size()
    strides, acc = [], 1
    for s in reversed(size):
        strides.insert(0, acc)
        acc = acc * s

    def c(v: int):  # type: ignore[no-untyped-def]
        return ops.constant(v, torch.int64)

    def inner(index):  # type: ignore[no-untyped-def]
        m = c(rng.MASK32)
        i = ops.index_expr(sum(j * st for j, st in zip(index, strides, strict=True)), torch.int64)
        ctr, lane = ops.bitwise_right_shift(i, c(2)), ops.bitwise_and(i, c(3))
        s = seed_load([])
        k0 = ops.bitwise_and(s, m)
        k1 = ops.bitwise_and(ops.bitwise_right_shift(s, c(32)), m)
        c0 = ops.bitwise_and(ctr, m)
        c1 = ops.bitwise_and(ops.bitwise_right_shift(ctr, c(32)), m)
        c2 = c3 = c(0)
        for _ in range(rng.PHILOX_ROUNDS):
            pb, pa = ops.mul(c(rng.PHILOX_ROUND_B), c2), ops.mul(c(rng.PHILOX_ROUND_A), c0)
            hb = ops.bitwise_and(ops.bitwise_right_shift(pb, c(32)), m)
            ha = ops.bitwise_and(ops.bitwise_right_shift(pa, c(32)), m)
            c0, c1 = ops.bitwise_xor(ops.bitwise_xor(hb, c1), k0), ops.bitwise_and(pb, m)
            c2, c3 = ops.bitwise_xor(ops.bitwise_xor(ha, c3), k1), ops.bitwise_and(pa, m)
            k0 = ops.bitwise_and(ops.add(k0, c(rng.PHILOX_KEY_A)), m)
            k1 = ops.bitwise_and(ops.add(k1, c(rng.PHILOX_KEY_B)), m)
        word = ops.where(
            ops.eq(lane, c(0)), c0,
            ops.where(ops.eq(lane, c(1)), c1, ops.where(ops.eq(lane, c(2)), c2, c3)),
        )
        dt = x.get_dtype()
        weight = ops.where(ops.ge(word, c(thresh)), ops.constant(w, dt), ops.constant(0.0, dt))
        return ops.mul(x_load(index), weight)

    return Pointwise.create(device=x.get_device(), dtype=x.get_dtype(), inner_fn=inner,
                            ranges=size)


def _fused(x: torch.Tensor, b: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    return torch.ops.dropkit_bench.keep_scale(torch.relu(x + b), seed, rng.threshold(P),
                                              1 / (1 - P))


def _opaque(x: torch.Tensor, b: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    return DF.dropout(torch.relu(x + b), P, seed=seed)


def _plain(x: torch.Tensor, b: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    return torch.relu(x + b)


def _median_times(lines: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    names, got = list(lines), {k: [] for k in lines}
    for f in lines.values():
        f()
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            for _ in range(20):
                lines[name]()
            got[name].append((time.perf_counter() - t0) / 20)
    return {k: statistics.median(v) for k, v in got.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=21)
    args = ap.parse_args()
    x, b = torch.randn(args.rows, 1024), torch.randn(1024)
    seed = torch.tensor(12345)
    t0 = time.perf_counter()
    fused = torch.compile(_fused, fullgraph=True)
    y = fused(x, b, seed)
    compile_s = time.perf_counter() - t0
    opaque, plain = torch.compile(_opaque, fullgraph=True), torch.compile(_plain, fullgraph=True)
    same = torch.equal(y, _opaque(x, b, seed)) and torch.equal(y, opaque(x, b, seed))
    other = fused(x, b, torch.tensor(7))
    print(f"# [{args.rows}, 1024] float32, {torch.get_num_threads()} threads; fused compile "
          f"{compile_s:.1f} s; fused == eager bit for bit: {same}; another seed differs: "
          f"{not torch.equal(other, y)}")
    med = _median_times({
        "fused": lambda: fused(x, b, seed),
        "opaque": lambda: opaque(x, b, seed),
        "eager": lambda: _opaque(x, b, seed),
        "no dropout": lambda: plain(x, b, seed),
    }, args.repeats)
    base = med["no dropout"]
    print("| line | us | over no dropout |\n|---|---:|---:|")
    for name, t in med.items():
        print(f"| {name} | {t * 1e6:.0f} | {t / base:.2f}x |")


if __name__ == "__main__":
    main()
