"""Before/after of the block-wise Philox: one counter at a time vs blocks of counters.

"Before" runs the ten rounds for one counter and writes its four elements straight away
(branches for the tail in the loop body keep LLVM from vectorising across counters).
"After" is dropkit's kernel: rounds for a block of counters (SIMD ``vpmuludq``), then one
vectorised select-and-multiply pass. Both single-threaded, float32, same bits.

Usage: ``python benchmarks/philox_blocking.py``.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from numba import njit

from dropkit import rng
from dropkit.kernels import numba_dropout as K

_M = np.uint64(rng.MASK32)
_A = np.uint64(rng.PHILOX_ROUND_A)
_B = np.uint64(rng.PHILOX_ROUND_B)
_KA = np.uint64(rng.PHILOX_KEY_A)
_KB = np.uint64(rng.PHILOX_KEY_B)
_S = np.uint64(32)


@njit(cache=True, error_model="numpy")
def scale_one_counter_at_a_time(x, out, ctr_base, key0, key1, th, wk, wd):  # type: ignore[no-untyped-def]
    """The "before" kernel: scalar Philox per counter, outputs written per lane."""
    n = x.shape[0]
    for j in range((n + 3) // 4):
        ctr = ctr_base + np.uint64(j)
        c0, c1, c2, c3 = ctr & _M, ctr >> _S, np.uint64(0), np.uint64(0)
        k0, k1 = key0, key1
        for _ in range(10):
            pb, pa = _B * c2, _A * c0
            c0, c1, c2, c3 = (pb >> _S) ^ c1 ^ k0, pb & _M, (pa >> _S) ^ c3 ^ k1, pa & _M
            k0, k1 = (k0 + _KA) & _M, (k1 + _KB) & _M
        i = 4 * j
        out[i] = x[i] * (wk if c0 >= th else wd)
        if i + 1 < n:
            out[i + 1] = x[i + 1] * (wk if c1 >= th else wd)
        if i + 2 < n:
            out[i + 2] = x[i + 2] * (wk if c2 >= th else wd)
        if i + 3 < n:
            out[i + 3] = x[i + 3] * (wk if c3 >= th else wd)


def main() -> None:
    n = 1 << 20
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    k0, k1 = (np.uint64(k) for k in rng.seed_key(2**63 + 1))
    args = (np.uint64(0), k0, k1, np.uint64(rng.threshold(0.5)), np.float32(2), np.float32(0))
    kernels = {
        "before (one counter)": scale_one_counter_at_a_time,
        "after (blocks)": K.scale_serial,
    }
    outs, times = {}, {name: [] for name in kernels}
    for name, kernel in kernels.items():
        outs[name] = np.empty_like(x)
        kernel(x, outs[name], *args)
    for _ in range(41):  # interleaved, so machine noise hits both alike
        for name, kernel in kernels.items():
            start = time.perf_counter()
            kernel(x, outs[name], *args)
            times[name].append(time.perf_counter() - start)
    first, second = outs.values()
    assert np.array_equal(first.view(np.uint32), second.view(np.uint32))
    med = {name: statistics.median(ts) / n * 1e9 for name, ts in times.items()}
    for name, t in med.items():
        print(f"{name:>22}: {t:6.2f} ns/element (median of 41, 1 thread, float32, n=2^20)")
    before, after = med.values()
    print(f"speed-up from blocking: {before / after:.1f}x")


if __name__ == "__main__":
    main()
