"""One-run device check of the Triton backend: bit-identity first, then bandwidth.

On a CUDA machine (one run, well under 5 minutes)::

    python benchmarks/device_check.py

1. Bit-identity of the Triton kernels (keep mask, forward, backward, channel dropout) on a
   2**20-element tensor against the reference on CPU and against the numba CPU kernel when
   it is installed; then offsets past 2**31 elements and counters past 2**32.
2. Timing (CUDA events, warm-up, median of repeats) of forward and forward+backward against
   torch's CUDA dropout and a plain copy, float32 and bfloat16, 2**24 and 2**28 elements,
   reported as achieved GB/s (bytes each op must move, divided by its median time).

Exit status: 0 all identical, 1 a mismatch, 2 no CUDA device. Without a GPU,
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


def _median_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
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

    return [
        ("copy", lambda: y.copy_(x), 2 * nb),
        ("torch fwd", lambda: torch_drop(x), 2 * nb + n),
        ("dropkit fwd", lambda: dropkit_drop(x), 2 * nb),
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
        for log2 in (24, 28):
            n = 2**log2
            x = torch.randn(n, device="cuda", dtype=dtype)
            with dropkit.use_backend("triton"):
                copy_ms = None
                for name, fn, moved in _cases(x, p):
                    ms = _median_ms(fn, warmup, repeats)
                    copy_ms = ms if name == "copy" else copy_ms
                    rows.append((name, str(dtype).removeprefix("torch."), log2, ms,
                                 moved / ms / 1e6, ms / copy_ms))
            del x
            torch.cuda.empty_cache()
    print(f"\n  {'op':<16} {'dtype':<9} {'n':>5} {'median ms':>10} {'GB/s':>8} {'x copy':>7}")
    for name, dtype, log2, ms, gbs, ratio in rows:
        print(f"  {name:<16} {dtype:<9} {'2^' + str(log2):>5} {ms:>10.3f} {gbs:>8.0f} "
              f"{ratio:>7.2f}")
    print("  (GB/s counts the bytes each op must move: torch's dropout also writes and "
          "reads a 1-byte mask; dropkit's regenerates it)")


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
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")

    check = Checker()
    print(f"\nbit-identity ({n} elements):")
    with dropkit.use_backend("triton"):
        identity_checks(device, n, check, large)
    if check.failures:
        print(f"\n{len(check.failures)} MISMATCH(ES): {', '.join(check.failures)}")
        return 1
    print("all identical")
    if not args.dry_run and not args.skip_timing:
        timings(args.warmup, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
