"""One-run device check of the Triton backend: bit-identity first, then bandwidth.

On a CUDA machine (one run, well under 5 minutes)::

    python benchmarks/device_check.py

1. Bit-identity of the Triton kernels (keep mask, forward, backward, channel dropout) on a
   2**20-element tensor against the reference on CPU and against the numba CPU kernel when
   it is installed; then offsets past 2**31 elements and counters past 2**32.
2. Timing (CUDA events, warm-up, median of repeats) of forward and forward+backward against
   torch's CUDA dropout and a plain copy, float32 and bfloat16, 2**24, 2**26 and 2**28 elements,
   reported as achieved GB/s (bytes each op must move, divided by its median time); the
   forward kernel alone too, apart from Python dispatch and allocation.
3. On CUDA: a compiled model (aot_eager and inductor) against its eager twin, CPU and CUDA
   masks under one ``torch.manual_seed``, and ``opcheck`` of the op on CUDA tensors.
4. Host time per forward+backward (2**16, 2**20, 2**24; no synchronisation in the loop),
   torch against dropkit; then one training step of a 3x1024 MLP and of a transformer block,
   eager and ``torch.compile``d, without dropout, with torch's and with dropkit's (both
   backward policies): the overhead over the no-dropout step.
5. Forward-kernel GB/s for each launch configuration (BLOCK_SIZE x num_warps).

Every section runs even when an earlier one fails. Exit status: 0 all checks passed,
1 a failure, 2 no CUDA device. Without a GPU,
``--dry-run`` runs the identity checks on tiny CPU tensors through Triton's interpreter
(it sets TRITON_INTERPRET=1 itself), to check this script's logic.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily: --dry-run must set TRITON_INTERPRET first
    import torch

BIG = 2**31 + 2**20  # elements: offsets past 2**31
TAIL = 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="identity checks only, on tiny CPU tensors through Triton's interpreter",
    )
    parser.add_argument("--repeats", type=int, default=25, help="timed runs per case")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per case")
    parser.add_argument("--skip-large", action="store_true", help="skip the 2**31+ checks")
    parser.add_argument("--skip-timing", action="store_true", help="identity checks only")
    return parser.parse_args(argv)


class Checker:
    """Collects named pass/fail results and prints them as they come."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, name: str, ok: bool, detail: str = "") -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {name}{'' if ok else '  ' + detail}", flush=True)
        if not ok:
            self.failures.append(name)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """Raw bit patterns with every NaN mapped to one pattern (payloads are not compared)."""
    import torch

    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    bits = t.detach().contiguous().view(ints)
    return torch.where(t.detach().contiguous().isnan(), torch.full_like(bits, -1), bits).cpu()


def _input(n: int, dtype: torch.dtype, device: torch.device, seed: int) -> torch.Tensor:
    """Random values with +-0, +-inf, NaN, a subnormal and the largest finite up front."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen, dtype=torch.float64) * 3
    info = torch.finfo(dtype)
    special = [0.0, -0.0, float("inf"), -float("inf"), float("nan"), info.tiny / 4, info.max]
    x[: len(special)] = torch.tensor(special, dtype=torch.float64)
    return x.to(dtype).to(device)


def identity_checks(device: torch.device, n: int, check: Checker, large: bool) -> None:
    """Triton (on ``device``) against the reference (CPU) and numba (CPU, if present)."""
    import torch

    import dropkit
    from dropkit import rng
    from dropkit.backends import triton as tb

    cpu = torch.device("cpu")
    numba = dropkit.available_backends().get("numba", "not registered")
    if numba is not None:
        print(f"  (numba CPU kernel not compared: {numba})")
    seeds = (0, 0x0123_4567_89AB_CDEF, 2**64 - 1)
    probs = (1e-6, 0.1, 0.5, 0.9)

    for seed in seeds:
        for p in probs:
            got = dropkit.keep_mask((n,), p, seed, device=device)  # served by "triton"
            with dropkit.use_backend("reference"):
                want = dropkit.keep_mask((n,), p, seed)
            check(f"keep_mask p={p} seed={seed:#x}", torch.equal(got.cpu(), want))
            if numba is None:
                with dropkit.use_backend("numba"):
                    other = dropkit.keep_mask((n,), p, seed)
                check(f"keep_mask vs numba p={p} seed={seed:#x}", torch.equal(got.cpu(), other))

    F = dropkit.functional
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        x = _input(n, dtype, cpu, 1)
        grad = _input(n, dtype, cpu, 2)
        for p, scaling in ((0.1, "inverted"), (0.5, "classic"), (0.9, "inverted")):
            seed = 2**63 + 17
            results = {}
            for name, dev in (("triton", device), ("reference", cpu)):
                leaf = x.to(dev).clone().requires_grad_(True)
                with dropkit.use_backend(name):
                    y = F.dropout(leaf, p, scaling=scaling, seed=seed)
                    y.backward(grad.to(dev))
                results[name] = (_bits(y), _bits(leaf.grad))
            (y_t, g_t), (y_r, g_r) = results["triton"], results["reference"]
            check(f"forward  {dtype} p={p} {scaling}", torch.equal(y_t, y_r))
            check(f"backward {dtype} p={p} {scaling}", torch.equal(g_t, g_r))
            if numba is None:
                with dropkit.use_backend("numba"):
                    y_n = F.dropout(x, p, scaling=scaling, seed=seed)
                check(f"forward  {dtype} p={p} vs numba", torch.equal(y_t, _bits(y_n)))
        x4 = x[: (n // 64) * 64].view(-1, 8, 4, 2)
        with dropkit.use_backend("triton"):
            y_t = F.dropout2d(x4.to(device), 0.5, seed=5)
        with dropkit.use_backend("reference"):
            y_r = F.dropout2d(x4, 0.5, seed=5)
        check(f"dropout2d {dtype}", torch.equal(_bits(y_t), _bits(y_r)))

    # Counters past 2**32 (elements past 2**34), without the memory: shift the stream.
    base = 2**32 + 7
    thresh = rng.threshold(0.3)
    got = tb.launch_keep_mask(n, seeds[1], thresh, device, counter_base=base)
    want = rng.keep_bits(n, seeds[1], thresh, start=4 * base)
    check("keep_mask counters past 2**32", torch.equal(got.cpu(), want))

    if not large:
        return
    # Offsets past 2**31 elements, for real: the last TAIL elements of a BIG tensor.
    start = BIG - TAIL
    mask = tb.launch_keep_mask(BIG, seeds[2], thresh, device)
    want = rng.keep_bits(TAIL, seeds[2], thresh, device=device, start=start)
    check("keep_mask tail past 2**31 elements", torch.equal(mask[start:], want))
    del mask
    x = torch.empty(BIG, dtype=torch.float16, device=device).normal_()
    out = torch.empty_like(x)
    tb.launch_scale(x, out, seeds[2], thresh, 1 / 0.7, 0.0)
    w = torch.where(want, torch.tensor(1 / 0.7, device=device), torch.tensor(0.0, device=device))
    ref = (x[start:].float() * w).half()
    check("scale tail past 2**31 elements", torch.equal(_bits(out[start:]), _bits(ref)))
    del x, out


def _median_ms(fn: Callable[[], object], warmup: int, repeats: int, inner: int = 1) -> float:
    """Median over ``repeats`` of the time per call of ``inner`` back-to-back calls (ms).

    Back to back, the host queues the next launch while the GPU runs the last one, as in a
    training loop: the figure is GPU time when the host keeps up, host time when it cannot.
    """
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / inner)
    return statistics.median(times)


def _cases(x: torch.Tensor, p: float) -> list[tuple[str, Callable[[], object], int]]:
    """(name, function, bytes it must move: reads + writes, masks included) per timed op."""
    import torch

    import dropkit

    n, nb = x.numel(), x.numel() * x.element_size()
    xg = x.clone().requires_grad_(True)
    g = torch.randn_like(x)
    y = torch.empty_like(x)

    def fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            xg.grad = None
            fn(xg).backward(g)

        return run

    def torch_drop(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.dropout(t, p)

    def dropkit_drop(t: torch.Tensor) -> torch.Tensor:
        return dropkit.functional.dropout(t, p)

    from dropkit import rng
    from dropkit.backends import triton as tb

    thresh = rng.threshold(p)
    return [
        ("copy", lambda: y.copy_(x), 2 * nb),
        ("torch fwd", lambda: torch_drop(x), 2 * nb + n),
        ("dropkit fwd", lambda: dropkit_drop(x), 2 * nb),
        ("dropkit kernel", lambda: tb.launch_scale(x, y, 7, thresh, 1 / (1 - p), 0.0), 2 * nb),
        ("torch fwd+bwd", fwd_bwd(torch_drop), 4 * nb + 2 * n),
        ("dropkit fwd+bwd", fwd_bwd(dropkit_drop), 4 * nb),
    ]


def timings(warmup: int, repeats: int) -> None:
    """Forward and forward+backward vs torch's CUDA dropout and a copy; achieved GB/s."""
    import torch

    import dropkit

    p = 0.5
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for log2 in (24, 26, 28):
            n = 2**log2
            x = torch.randn(n, device="cuda", dtype=dtype)
            with dropkit.use_backend("triton"):
                copy_ms = None
                for name, fn, moved in _cases(x, p):
                    ms = _median_ms(fn, warmup, repeats, inner=2 ** max(2, 28 - log2))
                    copy_ms = ms if name == "copy" else copy_ms
                    rows.append(
                        (
                            name,
                            str(dtype).removeprefix("torch."),
                            log2,
                            ms,
                            moved / ms / 1e6,
                            ms / copy_ms,
                        )
                    )
            del x
            torch.cuda.empty_cache()
    print(f"\n  {'op':<16} {'dtype':<9} {'n':>5} {'median ms':>10} {'GB/s':>8} {'x copy':>7}")
    for name, dtype, log2, ms, gbs, ratio in rows:
        print(
            f"  {name:<16} {dtype:<9} {'2^' + str(log2):>5} {ms:>10.3f} {gbs:>8.0f} {ratio:>7.2f}"
        )
    print(
        "  (GB/s counts the bytes each op must move: torch's dropout also writes and "
        "reads a 1-byte mask; dropkit's regenerates it. 'dropkit kernel' is the forward "
        "kernel alone into a preallocated output: no Python dispatch, no allocation)"
    )


def _block(drop: Callable[[], object] | None, width: int = 512, heads: int = 8) -> object:
    """A pre-norm transformer block (attention and MLP), dropout after each residual branch
    (torch is imported here: ``--dry-run`` must set the interpreter first)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                     nn.Linear(4 * width, width))
            self.drop1 = nn.Identity() if drop is None else drop()
            self.drop2 = nn.Identity() if drop is None else drop()

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, width]
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, heads, -1).unbind(2)
            a = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
            ).transpose(1, 2).reshape(b, t, width)
            x = x + self.drop1(self.proj(a))
            return x + self.drop2(self.mlp(self.ln2(x)))

    return Block()


def _step_models(device: torch.device) -> dict[str, tuple[Callable, Callable, torch.Tensor]]:
    """(model factory taking a dropout factory, loss, input) per model."""
    import torch
    from torch import nn

    def mlp(drop: Callable[[], nn.Module] | None) -> nn.Module:
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [nn.Linear(1024, 1024), nn.ReLU()]
            if drop is not None:
                layers.append(drop())
        return nn.Sequential(*layers, nn.Linear(1024, 10))

    x_mlp = torch.randn(256, 1024, device=device)
    x_block = torch.randn(16, 256, 512, device=device)
    return {
        "MLP 3x1024, batch 256, p=0.5": (mlp, lambda y: y.square().mean(), x_mlp),
        "transformer block 512x8, 16x256 tokens, p=0.1": (
            _block, lambda y: y.square().mean(), x_block),
    }


def step_timings(device: torch.device, warmup: int, repeats: int,
                 median: Callable[..., float] | None = None) -> list[str]:
    """Training-step time (eager and compiled) without dropout, with torch's and dropkit's;
    dropout's overhead over the no-dropout step. ``median(fn, warmup, repeats)`` times one
    step (default: CUDA events)."""
    import torch
    from torch import nn

    import dropkit

    median = median or _median_ms
    rows = [f"  {'model':<46} {'mode':<9} {'variant':<26} {'ms/step':>8} {'overhead':>9}"]
    for model_name, (make, loss_fn, x) in _step_models(device).items():
        p = 0.5 if model_name.startswith("MLP") else 0.1
        variants: dict[str, Callable[[], nn.Module] | None] = {
            "no dropout": None,
            "torch.nn.Dropout": lambda p=p: nn.Dropout(p),
            'dropkit backward="auto"': lambda p=p: dropkit.nn.Dropout(p),
            'dropkit backward="bits"': lambda p=p: dropkit.nn.Dropout(p, backward="bits"),
        }
        for mode in ("eager", "compiled"):
            base = None
            for name, drop in variants.items():
                torch.manual_seed(0)
                model = make(drop).to(device).train()
                run = torch.compile(model) if mode == "compiled" else model
                opt = torch.optim.SGD(model.parameters(), lr=1e-4)

                def step(run: Callable = run, opt: torch.optim.Optimizer = opt,
                         loss_fn: Callable = loss_fn, x: torch.Tensor = x) -> None:
                    opt.zero_grad(set_to_none=True)
                    loss_fn(run(x)).backward()
                    opt.step()

                ms = median(step, warmup, repeats)
                base = ms if base is None else base
                rows.append(f"  {model_name:<46} {mode:<9} {name:<26} {ms:>8.3f} "
                            f"{(ms / base - 1) * 100:>+8.1f}%")
    return rows


def host_timings(warmup: int, repeats: int) -> list[str]:
    """Host time of one forward+backward (no synchronisation inside the loop) at sizes where
    the GPU is idle most of the time: what Python and autograd cost per call."""
    import time

    import torch

    import dropkit

    rows = [f"  {'n':>6} {'torch fwd+bwd us':>17} {'dropkit fwd+bwd us':>19} {'ratio':>6}"]
    for log2 in (16, 20, 24):
        x = torch.randn(2**log2, device="cuda", requires_grad=True)
        g = torch.randn_like(x)
        fns = {"torch": lambda t: torch.nn.functional.dropout(t, 0.5),
               "dropkit": lambda t: dropkit.functional.dropout(t, 0.5)}
        got = {}
        for name, fn in fns.items():
            for _ in range(warmup):
                fn(x).backward(g)
            torch.cuda.synchronize()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(20):
                    x.grad = None
                    fn(x).backward(g)
                times.append((time.perf_counter() - t0) / 20)
                torch.cuda.synchronize()
            got[name] = statistics.median(times) * 1e6
        rows.append(f"  {'2^' + str(log2):>6} {got['torch']:>17.1f} {got['dropkit']:>19.1f} "
                    f"{got['dropkit'] / got['torch']:>6.2f}")
    return rows


def tuning(warmup: int, repeats: int) -> None:
    """Forward kernel GB/s for each (BLOCK_SIZE, num_warps), 2**26 elements, to pick defaults."""
    import torch

    n = 2**26
    print(f"\n  forward kernel by launch config BLOCK_SIZE/num_warps, {n} elements, GB/s")
    for dtype in (torch.float32, torch.bfloat16):
        cells = _tune_dtype(dtype, n, warmup, repeats)
        print(f"  {str(dtype).removeprefix('torch.'):<9} " + "  ".join(cells), flush=True)
        torch.cuda.empty_cache()


def _tune_dtype(dtype: torch.dtype, n: int, warmup: int, repeats: int) -> list[str]:
    import torch

    from dropkit import rng
    from dropkit.backends import triton as tb

    kernels = tb._kernels()
    thresh = rng.threshold(0.5)
    x = torch.randn(n, device="cuda", dtype=dtype)
    out = torch.empty_like(x)
    moved = 2 * x.numel() * x.element_size()
    copy_ms = _median_ms(lambda: out.copy_(x), warmup, repeats, inner=4)
    cells = [f"copy {moved / copy_ms / 1e6:.0f}"]
    w_keep, w_drop = tb._bits(2.0, False), tb._bits(0.0, False)  # opmath float32
    for block in (256, 512, 1024, 2048):
        for warps in (4, 8):
            grid = (triton_cdiv(n, 4 * block),)

            def run(block: int = block, warps: int = warps, grid: tuple = grid) -> None:
                kernels.scale_kernel[grid](
                    x, out, n, 7, thresh, w_keep, w_drop, 0, BLOCK_SIZE=block, num_warps=warps
                )

            ms = _median_ms(run, warmup, repeats, inner=4)
            cells.append(f"{block}/{warps} {moved / ms / 1e6:.0f}")
    return cells


def triton_cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


def compile_checks(check: Checker) -> None:
    """On CUDA: compiled (aot_eager, inductor) vs eager training steps, CPU vs CUDA masks,
    opcheck of ``dropkit::mask_affine`` on CUDA tensors."""
    import torch
    from torch import nn

    import dropkit

    for p in (0.1, 0.5):
        torch.manual_seed(3)
        on_gpu = dropkit.functional.dropout(torch.ones(4099, device="cuda"), p)
        torch.manual_seed(3)
        on_cpu = dropkit.functional.dropout(torch.ones(4099), p)
        check(
            f"same torch.manual_seed, CPU and CUDA masks equal p={p}",
            torch.equal(on_gpu.cpu(), on_cpu),
        )

    def make() -> nn.Module:
        torch.manual_seed(0)
        return (
            nn.Sequential(
                nn.Linear(64, 256),
                dropkit.nn.Dropout(0.3, inplace=True),
                nn.ReLU(),
                nn.Linear(256, 256),
                dropkit.nn.Dropout(0.5),
                nn.Linear(256, 10),
                dropkit.nn.Dropout(0.2, scaling="classic"),
            )
            .cuda()
            .train()
        )

    x = torch.randn(128, 64, generator=torch.Generator().manual_seed(5)).cuda()

    def step(model: nn.Module, params: list, seed: int) -> tuple:
        for q in params:
            q.grad = None
        torch.manual_seed(seed)
        y = model(x)
        y.square().sum().backward()
        return y.detach(), [q.grad.clone() for q in params]

    model = make()
    params = list(model.parameters())
    want = [step(model, params, s) for s in (1, 2)]
    check("eager steps draw fresh masks", not torch.equal(want[0][0], want[1][0]))
    for backend in ("aot_eager", "inductor"):
        compiled = torch.compile(model, backend=backend, fullgraph=True)
        got = [step(compiled, params, s) for s in (1, 2)]
        zeros = all(torch.equal(g[0] == 0, w[0] == 0) for g, w in zip(got, want, strict=True))
        check(f"compiled ({backend}) vs eager on CUDA: same dropped outputs", zeros)
        out_eq = all(torch.equal(g[0], w[0]) for g, w in zip(got, want, strict=True))
        grads_eq = all(
            torch.equal(a, b)
            for g, w in zip(got, want, strict=True)
            for a, b in zip(g[1], w[1], strict=True)
        )
        worst = max(
            ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
            for g, w in zip(got, want, strict=True)
            for a, b in zip([g[0], *g[1]], [w[0], *w[1]], strict=True)
        )
        print(
            f"        outputs bitwise {out_eq}, gradients bitwise {grads_eq}, "
            f"worst relative difference {worst:.2e}"
        )
        check(f"compiled ({backend}) vs eager on CUDA: values agree (rel 1e-5)", worst < 1e-5)
        if backend == "aot_eager":
            check("compiled (aot_eager) vs eager on CUDA: bit for bit", out_eq and grads_eq)

    gen = torch.Generator().manual_seed(0)
    s, rows = torch.tensor(7), torch.tensor([3, -5, 2**40])  # a scalar key, per-row keys
    # (x, seed, offset, [thresh, *mask_shape], [w_keep, w_drop, b_keep, b_drop], bias)
    samples = [
        (torch.randn(3, 5, generator=gen).cuda().requires_grad_(), s, 0, [1000, 3, 5],
         [1.5, 0.0, 0.0, 0.0], True),
        (torch.randn(8, generator=gen).to("cuda", torch.bfloat16).requires_grad_(), s, 0,
         [2**30, 8], [1.0, 0.0, 0.0, 0.0], True),
        (torch.randn(2, 3, 4, generator=gen).cuda().requires_grad_(), s, 0, [2**29, 2, 3, 1],
         [0.9, 0.0, 0.2, -0.4], True),
        (torch.randn(3, 7, generator=gen).cuda().requires_grad_(), rows, 3, [2**31, 3, 7],
         [2.0, 0.0, 0.0, 0.0], True),
    ]
    for i, sample in enumerate(samples):
        try:
            torch.library.opcheck(torch.ops.dropkit.mask_affine.default, sample)
            check(f"opcheck mask_affine on CUDA, sample {i}", True)
        except Exception as err:  # report and go on
            check(f"opcheck mask_affine on CUDA, sample {i}", False, repr(err)[:300])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is first imported
        # numpy, inside the interpreter, warns on inf * 0 and overflow: IEEE results.
        warnings.filterwarnings("ignore", category=RuntimeWarning)
    import torch

    import dropkit

    if args.dry_run:
        device, n, large = torch.device("cpu"), 4099, False
        print("dry run: identity checks on CPU through Triton's interpreter (tiny tensors)")
        with dropkit.use_backend("triton"):
            reason = dropkit.available_backends()["triton"]
        if reason is not None:
            print(f"the triton backend cannot run here: {reason}")
            return 2
    else:
        if not torch.cuda.is_available():
            print(
                "no CUDA device: this check needs a GPU. Run with --dry-run to check its "
                "logic on CPU through Triton's interpreter."
            )
            return 2
        device, n, large = torch.device("cuda"), 2**20, not args.skip_large
        import triton

        print(
            f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
            f"triton {triton.__version__}"
        )

    check = Checker()
    print(f"\nbit-identity ({n} elements):")
    _section(check, "identity", lambda: _identity(device, n, check, large))
    if not args.dry_run:
        print("\ncompile, cross-device masks, opcheck (CUDA):")
        _section(check, "compile", lambda: compile_checks(check))
        if not args.skip_timing:
            _section(check, "timings", lambda: timings(args.warmup, args.repeats))
            print("\nhost time per forward+backward (no sync inside the loop):")
            _section(check, "host", lambda: print("\n".join(host_timings(args.warmup, 7))))
            print("\ntraining steps, eager and compiled (CUDA events):")
            _section(check, "steps", lambda: print("\n".join(
                step_timings(device, args.warmup, min(args.repeats, 15)))))
            _section(check, "tuning", lambda: tuning(args.warmup, args.repeats))
    if check.failures:
        print(f"\n{len(check.failures)} FAILURE(S): {', '.join(check.failures)}")
        return 1
    print("\nall checks passed")
    return 0


def _identity(device: torch.device, n: int, check: Checker, large: bool) -> None:
    import dropkit

    with dropkit.use_backend("triton"):
        identity_checks(device, n, check, large)


def _section(check: Checker, name: str, fn: Callable[[], object]) -> None:
    """Run one section; an exception is a failure, reported, and the next section runs."""
    import traceback

    try:
        fn()
    except Exception:  # one run must report every section
        traceback.print_exc()
        check(f"section {name} raised", False)


if __name__ == "__main__":
    sys.exit(main())
