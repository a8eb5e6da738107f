"""Bit-identity checks of the Triton kernels under Triton's CPU interpreter.

Run by ``tests/test_backend_triton.py`` in a subprocess (so TRITON_INTERPRET never leaks
into other tests); also runnable by hand: ``python tests/triton_interpret_checks.py``.
Prints one JSON object on its last line: check name -> None (passed) or what went wrong.
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported, or the kernels compile

import json
import sys
import warnings
from collections.abc import Callable

import torch
import triton
import triton.language as tl

import dropkit
from dropkit import rng
from dropkit.backends import triton as tb
from dropkit.backends.reference import ReferenceBackend

REF = ReferenceBackend()
TRI = tb.TritonBackend()
SEEDS = (0, 1, 0x1234_5678_9ABC, 2**63 + 12345, 2**64 - 1)
PS = (1e-9, 0.1, 0.5, 0.75, 1 - 1e-9)  # thresholds 4, ..., 2**31, 3 * 2**30, 2**32 - 4
BLOCK = 4 * tb.BLOCK_SIZE  # elements per program
SIZES = (1, 3, 4, 5, 37, BLOCK - 1, BLOCK + 3, 2 * BLOCK + 6)
INT_OF = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bit patterns (so -0.0 differs from 0.0), every NaN mapped to one pattern.

    NaN payloads are not part of the contract: x86 propagates an input NaN's payload, CUDA
    (and numpy inside the interpreter) returns the canonical NaN, torch's own ops alike.
    """
    bits = t.contiguous().view(INT_OF[t.dtype])
    return torch.where(t.contiguous().isnan(), torch.full_like(bits, -1), bits)


def _input(n: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Random values plus the awkward ones: +-0, +-inf, NaN, subnormals, the largest finite."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen, dtype=torch.float64) * 3
    info = torch.finfo(dtype)
    special = [0.0, -0.0, float("inf"), -float("inf"), float("nan"), info.max, info.tiny / 4]
    k = min(n, len(special))
    x[:k] = torch.tensor(special[:k], dtype=torch.float64)
    return x.to(dtype)


@triton.jit
def _randint4x_kernel(out_ptr, seed, counter_base, BLOCK_SIZE: tl.constexpr):
    """out[4, BLOCK_SIZE] int64: the four lanes of tl.randint4x for counters base + j."""
    counter = counter_base.to(tl.int64) + tl.arange(0, BLOCK_SIZE)
    r0, r1, r2, r3 = tl.randint4x(seed, counter)
    cols = tl.arange(0, BLOCK_SIZE)
    tl.store(out_ptr + cols, r0.to(tl.int64))
    tl.store(out_ptr + BLOCK_SIZE + cols, r1.to(tl.int64))
    tl.store(out_ptr + 2 * BLOCK_SIZE + cols, r2.to(tl.int64))
    tl.store(out_ptr + 3 * BLOCK_SIZE + cols, r3.to(tl.int64))


def check_randint4x_is_philox() -> None:
    """The spec's claim: tl.randint4x(seed, c) == Philox4x32-10((lo(c), hi(c), 0, 0), key)."""
    for seed in SEEDS:
        for base in (0, 2**32 - 8, 2**40 + 3):
            out = torch.empty(4, 16, dtype=torch.int64)
            _randint4x_kernel[(1,)](out, seed, base, BLOCK_SIZE=16)
            c = torch.arange(base, base + 16, dtype=torch.int64)
            zero = torch.zeros_like(c)
            lanes = rng.philox4x32(c & rng.MASK32, c >> 32, zero, zero, *rng.seed_key(seed))
            assert torch.equal(out, torch.stack(lanes)), f"seed={seed} base={base}"


def check_scale() -> None:
    """scale == ReferenceBackend.scale bit for bit: dtypes, tails, p near 0 and 1, big seeds."""
    for dtype in INT_OF:
        for i, n in enumerate(SIZES):
            x = _input(n, dtype, i)
            for j, p in enumerate(PS):  # every size meets every p; seeds and weights rotate
                seed = SEEDS[(i + j) % len(SEEDS)]
                w_keep, w_drop = ((1.0 / (1.0 - p), 0.0), (1.0, 0.0), (0.3, -1.7))[(i + j) % 3]
                thresh = rng.threshold(p)
                want = torch.empty_like(x)
                REF.scale(x, want, seed, thresh, w_keep, w_drop)
                got = torch.empty_like(x)
                TRI.scale(x, got, seed, thresh, w_keep, w_drop)
                where = f"{dtype} n={n} p={p} seed={seed} w=({w_keep}, {w_drop})"
                assert torch.equal(_bits(got), _bits(want)), where
    x = _input(BLOCK + 3, torch.float32, 7)
    want = torch.empty_like(x)
    REF.scale(x, want, 5, rng.threshold(0.5), 2.0, 0.0)
    TRI.scale(x, x, 5, rng.threshold(0.5), 2.0, 0.0)  # in place: out is x
    assert torch.equal(_bits(x), _bits(want)), "in-place scale"


def check_keep_mask() -> None:
    """keep_mask == the reference mask; and a signed comparison would not be (p > 0.5)."""
    for i, n in enumerate(SIZES):
        for j, p in enumerate(PS):
            for seed in (SEEDS[(i + j) % len(SEEDS)], SEEDS[(i + j + 2) % len(SEEDS)]):
                thresh = rng.threshold(p)
                got = TRI.keep_mask(n, seed, thresh, torch.device("cpu"))
                assert got.dtype == torch.bool and got.shape == (n,)
                want = REF.keep_mask(n, seed, thresh, torch.device("cpu"))
                assert torch.equal(got, want), f"n={n} p={p} seed={seed}"
    bits = rng.random_bits(4096, 3)
    signed = torch.where(bits >= 2**31, bits - 2**32, bits)  # the bug of comparing int32
    thresh = rng.threshold(0.75)
    assert not torch.equal(signed >= thresh, bits >= thresh), "control: signed compare differs"
    assert torch.equal(TRI.keep_mask(4096, 3, thresh, torch.device("cpu")), bits >= thresh)


def check_counter_base() -> None:
    """Counters past 2**32 (elements past 2**34) follow the spec: hi32 of the counter counts."""
    n = 2 * BLOCK + 5
    for base in (2**32 + 5, 2**61 - 2):
        for seed in (SEEDS[2], SEEDS[3]):
            thresh = rng.threshold(0.4)
            got = tb.launch_keep_mask(n, seed, thresh, torch.device("cpu"), counter_base=base)
            want = rng.keep_bits(n, seed, thresh, start=4 * base)
            assert torch.equal(got, want), f"keep_mask base={base} seed={seed}"
            low = rng.keep_bits(n, seed, thresh, start=4 * (base & rng.MASK32))
            assert not torch.equal(got, low), "control: a 32-bit counter would differ"
            x = _input(n, torch.bfloat16, base % 7)
            out = torch.empty_like(x)
            tb.launch_scale(x, out, seed, thresh, 1.0 / 0.6, 0.0, counter_base=base)
            keep = want.view(x.shape)
            ref = x.float() * torch.where(keep, torch.tensor(1.0 / 0.6), torch.tensor(0.0))
            assert torch.equal(_bits(out), _bits(ref.to(x.dtype))), f"scale base={base}"


def check_functional() -> None:
    """dropout/dropout2d/alpha_dropout through "triton" == "reference", values and gradients."""
    gen = torch.Generator().manual_seed(0)
    cases: list[tuple[Callable, tuple[int, ...]]] = [
        (lambda t: dropkit.functional.dropout(t, 0.3, seed=2**63 + 1), (7, 301)),
        (lambda t: dropkit.functional.dropout(t, 0.3, scaling="classic", seed=9), (5, 3)),
        (lambda t: dropkit.functional.dropout2d(t, 0.5, seed=4), (3, 5, 4, 4)),
        (lambda t: dropkit.functional.alpha_dropout(t, 0.2, True, seed=11), (9, 10)),
        (lambda t: dropkit.functional.dropout(t.t(), 0.6, seed=8), (33, 17)),  # non-contiguous
    ]
    for k, (fn, shape) in enumerate(cases):
        x = torch.randn(shape, generator=gen)
        grad = torch.randn(shape[::-1] if k == 4 else shape, generator=gen)
        results = []
        for name in ("reference", "triton"):
            leaf = x.clone().requires_grad_(True)
            with dropkit.use_backend(name):
                y = fn(leaf)
                y.backward(grad)
            results.append((y.detach(), leaf.grad))
        (y_ref, g_ref), (y_tri, g_tri) = results
        assert torch.equal(_bits(y_tri), _bits(y_ref)), f"case {k}: forward"
        assert torch.equal(_bits(g_tri), _bits(g_ref)), f"case {k}: backward"


def check_scale_rows() -> None:
    """Per-row keys at any offset: the Triton row kernel == the reference, every dtype."""
    gen = torch.Generator().manual_seed(3)
    for rows, row_len in ((1, 5), (3, BLOCK + 3), (4, 2 * BLOCK - 1)):
        keys = torch.randint(-(2**62), 2**62, (rows,), generator=gen)
        for offset in (0, 1, 6, 2**34 + 3):
            for dtype in (torch.float32, torch.bfloat16, torch.float64):
                x = _input(rows * row_len, dtype, rows + offset % 5)
                ref = torch.empty_like(x)
                got = torch.empty_like(x)
                thresh = rng.threshold(0.35)
                REF.scale_keys(x, ref, keys, offset, rows, row_len, thresh, 1 / 0.65, 0.0)
                TRI.scale_keys(x, got, keys, offset, rows, row_len, thresh, 1 / 0.65, 0.0)
                assert torch.equal(_bits(got), _bits(ref)), (rows, row_len, offset, dtype)


def check_derive_keys() -> None:
    """In-kernel key derivation == dropkit.rng.derive_keys (the sample keys' reference)."""
    ids = torch.tensor([0, 1, 7, 2**32 - 1, 2**32, 2**40 + 9, 2**63 - 1, *range(300)])
    for seed in SEEDS:
        for call, domain in ((0, 0x534B4559), (2**32 - 1, 0xFFFFFFFF)):
            want = rng.derive_keys(seed, ids & rng.MASK32, ids >> 32, call, domain)
            got = tb.launch_derive_keys(ids, seed, call, domain)
            assert torch.equal(got, want), (seed, call)


def check_sample_keys() -> None:
    """dropout inside sample_keys through "triton" == "reference", forward and backward."""
    x = torch.randn(6, 2 * BLOCK + 1, generator=torch.Generator().manual_seed(4))
    results = []
    for name in ("reference", "triton"):
        leaf = x.clone().requires_grad_(True)
        with dropkit.use_backend(name), dropkit.sample_keys(torch.arange(6) * 3, seed=5):
            y = dropkit.functional.dropout(leaf, 0.4)
            y.backward(torch.ones_like(y))
        results.append((y.detach(), leaf.grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


CHECKS = {
    name: fn for name, fn in globals().items() if name.startswith("check_") and callable(fn)
}


def main() -> int:
    # numpy, inside the interpreter, warns on inf * 0 and overflow: IEEE results, expected.
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    with dropkit.use_backend("triton"):
        assert dropkit.available_backends()["triton"] is None, "triton must serve CPU here"
    report: dict[str, str | None] = {}
    for name, fn in CHECKS.items():
        try:
            fn()
            report[name] = None
        except Exception as err:  # report every check, not just the first failure
            report[name] = f"{type(err).__name__}: {err}"
    print(json.dumps(report))
    return 0 if all(v is None for v in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
