"""The numba backend matches the reference backend (the mask spec) bit for bit."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
import torch

import dropkit
from dropkit import rng
from dropkit.backends import resolve
from dropkit.backends.reference import ReferenceBackend
from dropkit.functional import alpha_dropout, dropout, dropout2d

numba = pytest.importorskip("numba")
K = pytest.importorskip("dropkit.kernels.numba_dropout")
from dropkit.backends.numba import load  # noqa: E402

np = pytest.importorskip("numpy")

REF = ReferenceBackend()
NB = load()
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
BITS = {torch.float16: torch.int16, torch.bfloat16: torch.int16,
        torch.float32: torch.int32, torch.float64: torch.int64}
SEEDS = (0, 12345, 2**63 + 7, 2**64 - 1)
PS = (1e-9, 0.1, 0.5, 1 - 1e-7)
# tiny, not divisible by 4, one chunk, several chunks (parallel path), ~1e5
NUMELS = (1, 2, 3, 5, 7, 4097, K.CHUNK + 3, 100003)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(BITS[t.dtype])


def _input(numel: int, dtype: torch.dtype) -> torch.Tensor:
    x = torch.randn(numel, generator=torch.Generator().manual_seed(numel)).to(dtype)
    if numel >= 8:  # special values travel through the multiply like torch's
        x[:4] = torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0])
    return x


def _both(x: torch.Tensor, seed: int, p: float, w_drop: float = 0.0) -> tuple:
    thresh, w_keep = rng.threshold(p), 1.0 / (1.0 - p)
    ref, got = torch.empty_like(x), torch.empty_like(x)
    REF.scale(x, ref, seed, thresh, w_keep, w_drop)
    NB.scale(x, got, seed, thresh, w_keep, w_drop)
    return ref, got


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("numel", NUMELS)
def test_scale_bit_identical(dtype: torch.dtype, numel: int) -> None:
    x = _input(numel, dtype)
    for seed, p in itertools.product(SEEDS, PS):
        ref, got = _both(x, seed, p)
        assert torch.equal(_bits(got), _bits(ref)), (seed, p)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_small_calls_by_address_match_the_spec(dtype: torch.dtype) -> None:
    """Small calls pass ``data_ptr()`` to the kernels (no numpy views): a view that starts
    inside its storage, in place and not, every seed form (Python ints past 2**63 and
    negative ones are the same 64 bits), on both sides of the serial/parallel boundary."""
    limit = 2 * NB._min_part  # (below it: by address)
    for numel in (1, 1027, limit - 1, limit):
        base = _input(numel + 3, dtype)
        x = base[3:]  # contiguous, storage offset 3: data_ptr() is not the storage's
        for seed in (0, 2**63 - 1, 2**63, 2**64 - 1, -1, -(2**63)):
            thresh = rng.threshold(0.3)
            ref = torch.empty_like(x)
            REF.scale(x, ref, seed % 2**64, thresh, 1.0 / 0.7, 0.25)
            got = torch.empty_like(x)
            NB.scale(x, got, seed, thresh, 1.0 / 0.7, 0.25)
            assert torch.equal(_bits(got), _bits(ref)), (numel, seed)
            y = base.clone()[3:]
            NB.scale(y, y, seed, thresh, 1.0 / 0.7, 0.25)
            assert torch.equal(_bits(y), _bits(ref)), (numel, seed, "in place")


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64), ids=str)
@pytest.mark.parametrize("mid, inner", [(16, 1), (1, 64), (4, 16)])
def test_grouped_calls_by_address_match_the_spec(dtype: torch.dtype, mid: int, inner: int) -> None:
    """The grouped kernel by address (a scalar key): a view inside its storage, an element
    offset (a shard's), a bias (alpha dropout's), in place and not."""
    numel = 8 * mid * inner
    base = _input(numel + 5, dtype)
    x = base[5:]
    thresh = rng.threshold(0.4)
    for seed, offset, weights in (
        (2**63 + 9, 0, (2.0, 0.0, 0.0, 0.0)),
        (-3, 77, (1.5, 0.5, 0.25, -1.0)),
    ):
        key = torch.tensor(seed if seed < 2**63 else seed - 2**64)
        ref, got = torch.empty_like(x), torch.empty_like(x)
        rows, row_len = 1, numel // mid
        args = (key, offset, rows, row_len, mid, inner, thresh, weights)
        REF.scale_groups_keys(x, ref, *args)
        assert NB.scale_groups_keys(x, got, *args)
        assert torch.equal(_bits(got), _bits(ref)), (seed, offset)
        y = base.clone()[5:]
        assert NB.scale_groups_keys(y, y, *args)
        assert torch.equal(_bits(y), _bits(ref)), (seed, offset, "in place")


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64), ids=str)
def test_gaussian_calls_by_address_match_the_spec(dtype: torch.dtype) -> None:
    """Gaussian dropout's one pass by address (a scalar key) is ``x * (1 + std z)`` with the
    spec's normals ``z``: a view inside its storage, an element offset, in place and not."""
    base = _input(1027, dtype)
    x = base[3:]
    for seed, offset in ((2**63 + 1, 0), (5, 1001)):
        key = torch.tensor(seed if seed < 2**63 else seed - 2**64)
        z = REF.normal_keys(key, offset, 1, x.numel(), x.device)
        ref = x * (z * 0.7 + 1.0).to(dtype)
        got = torch.empty_like(x)
        assert NB.gaussian_keys(x, got, key, offset, 1, x.numel(), 0.7)
        assert torch.equal(_bits(got), _bits(ref)), (seed, offset)
        y = base.clone()[3:]
        assert NB.gaussian_keys(y, y, key, offset, 1, y.numel(), 0.7)
        assert torch.equal(_bits(y), _bits(ref)), (seed, offset, "in place")


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64), ids=str)
def test_selections_by_address_match_the_spec(dtype: torch.dtype) -> None:
    """The by-address selections: draws at chosen indices (embedding dropout's; indices
    from a view inside its storage, an offset) and both halves of an affine multiplier
    (alpha dropout's) equal the reference's, for seeds on both sides of 2**63."""
    thresh = rng.threshold(0.3)
    indices = torch.randint(0, 10**6, (1001,), generator=torch.Generator().manual_seed(1))[1:]
    for seed in (3, 2**63 + 3):
        key = torch.tensor(seed if seed < 2**63 else seed - 2**64)
        for offset in (0, 17):
            want = REF.select_at_keys(key, offset, indices, thresh, 1.5, -0.5, dtype)
            got = NB.select_at_keys(key, offset, indices, thresh, 1.5, -0.5, dtype)
            assert torch.equal(_bits(got), _bits(want)), (seed, offset)
        w, b = NB.select_pair(1000, seed, thresh, (1.5, -0.5, 0.25, 2.0), dtype)
        for got, (keep, drop) in ((w, (1.5, -0.5)), (b, (0.25, 2.0))):
            want = torch.ones(1000, dtype=dtype)
            REF.scale(want, want, seed, thresh, keep, drop)
            assert torch.equal(_bits(got), _bits(want)), seed


def test_scale_identity_detects_a_wrong_lane() -> None:
    """The comparison above would catch an off-by-one-lane kernel (a plausible bug)."""
    x = _input(1001, torch.float32)
    ref, got = _both(x, 3, 0.5)
    assert not torch.equal(_bits(got[1:]), _bits(ref[:-1]))
    seed_off, _ = _both(x, 4, 0.5)
    assert not torch.equal(_bits(got), _bits(seed_off))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_scale_in_place_and_nonzero_drop_weight(dtype: torch.dtype) -> None:
    x = _input(K.CHUNK * 2 + 5, dtype)
    ref, _ = _both(x, 2**63 + 1, 0.3, w_drop=0.25)
    y = x.clone()
    NB.scale(y, y, 2**63 + 1, rng.threshold(0.3), 1.0 / 0.7, 0.25)
    assert torch.equal(_bits(y), _bits(ref))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_weight_scalars_made_once_keep_the_sign_of_zero(dtype: torch.dtype) -> None:
    """The kernels' numpy scalars are made once per (threshold, weights): a weight of -0.0
    after one of 0.0 (equal as dict keys) still gives the reference's signed zeros, and a
    weight of 0.0 after -0.0 too."""
    x = _input(1001, dtype).abs()  # (dropped elements: x * w_drop, a zero of w_drop's sign)
    thresh = rng.threshold(0.5)
    for w_drop in (0.0, -0.0, 0.0, -0.0):
        ref = torch.empty_like(x)
        REF.scale(x, ref, 7, thresh, 2.0, w_drop)
        got = torch.empty_like(x)
        NB.scale(x, got, 7, thresh, 2.0, w_drop)
        assert torch.equal(_bits(got), _bits(ref)), w_drop
        zeros = got.float()[got == 0]
        assert zeros.numel() and bool(torch.signbit(zeros).all()) == (str(w_drop) == "-0.0")


@pytest.mark.parametrize("numel", (0, 1, 3, 4, 9, 40001))
def test_keep_mask_matches_spec(numel: int) -> None:
    for seed, p in itertools.product(SEEDS, PS):
        thresh = rng.threshold(p)
        got = NB.keep_mask(numel, seed, thresh, torch.device("cpu"))
        assert torch.equal(got, rng.keep_bits(numel, seed, thresh))


@pytest.mark.parametrize("ctr_base", (2**32 - 5, 2**40 + 3, 2**62 - 1))
def test_counter_high_word(ctr_base: int) -> None:
    """Counters >= 2**32 put their high word into Philox's second counter word."""
    n, seed, thresh = 4 * 9 + 3, 2**63 + 99, rng.threshold(0.5)
    k0, k1 = (np.uint64(k) for k in rng.seed_key(seed))
    expected = rng.keep_bits(n, seed, thresh, start=4 * ctr_base).numpy()
    mask = np.empty(n, np.bool_)
    K.keep_mask_serial(mask, np.uint64(ctr_base), k0, k1, np.uint64(thresh))
    assert np.array_equal(mask, expected)
    x = np.ones(n, np.float32)
    out = np.empty_like(x)
    K.scale_serial(x, out, np.uint64(ctr_base), k0, k1, np.uint64(thresh),
                   np.float32(2.0), np.float32(0.0))
    assert np.array_equal(out == 2.0, expected)
    # the high word matters: dropping it would give the low word's draws instead
    ctr = torch.arange(ctr_base, ctr_base + (n + 3) // 4)
    zero = torch.zeros_like(ctr)
    lanes = rng.philox4x32(ctr & rng.MASK32, zero, zero, zero, int(k0), int(k1))
    low = (torch.stack(lanes, 1).reshape(-1)[:n] >= thresh).numpy()
    assert not np.array_equal(mask, low)


@pytest.mark.parametrize("w_keep, w_drop", [(1 / 0.7, 0.0), (1.0, 0.5), (3.4e38, -1e-40)])
def test_bfloat16_kernel_every_bit_pattern(w_keep: float, w_drop: float) -> None:
    """The fused bfloat16 kernel (raw bits, rounding by hand) on all 65536 bfloat16 values:
    subnormals, infinities, both NaN signs, overflow to inf, exactly the reference's bits."""
    x = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)
    thresh = rng.threshold(0.3)
    ref, got = torch.empty_like(x), torch.empty_like(x)
    REF.scale(x, ref, 2**63 + 3, thresh, w_keep, w_drop)
    NB.scale(x, got, 2**63 + 3, thresh, w_keep, w_drop)
    assert torch.equal(_bits(got), _bits(ref))
    inplace = x.clone()
    NB.scale(inplace, inplace, 2**63 + 3, thresh, w_keep, w_drop)
    assert torch.equal(_bits(inplace), _bits(ref))


def test_independent_of_split() -> None:
    """Any split at a multiple of 4 elements, with the counter base shifted, is the same call."""
    n, seed, thresh = 5 * K.CHUNK + 3, 2**64 - 3, rng.threshold(0.4)
    k0, k1 = (np.uint64(k) for k in rng.seed_key(seed))
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    w = (np.float32(1 / 0.6), np.float32(0.0))
    serial = np.empty_like(x)
    K.scale_serial(x, serial, np.uint64(0), k0, k1, np.uint64(thresh), *w)
    for cut in (4, 4 * 1001, K.CHUNK, n - 3):
        split = np.empty_like(x)
        K.scale_serial(x[:cut], split[:cut], np.uint64(0), k0, k1, np.uint64(thresh), *w)
        K.scale_serial(x[cut:], split[cut:], np.uint64(cut // 4), k0, k1, np.uint64(thresh), *w)
        assert np.array_equal(serial.view(np.uint32), split.view(np.uint32)), cut


@pytest.mark.parametrize("parts", (1, 2, 3, 7))
def test_parallel_kernels_match_serial(parts: int) -> None:
    """prange over parts of any chunk-multiple size computes the serial kernels' bits."""
    n, seed, thresh = 5 * K.CHUNK + 3, 2**63 + 9, rng.threshold(0.3)
    k0, k1 = (np.uint64(k) for k in rng.seed_key(seed))
    step = -(-n // (parts * K.CHUNK)) * K.CHUNK
    for dtype in (np.float32, np.float64):
        x = np.random.default_rng(parts).standard_normal(n).astype(dtype)
        w = (dtype(1 / 0.7), dtype(0.0))
        serial, par = np.empty_like(x), np.full_like(x, np.nan)
        K.scale_serial(x, serial, np.uint64(0), k0, k1, np.uint64(thresh), *w)
        K.scale_parallel(x, par, step, k0, k1, np.uint64(thresh), *w)
        assert np.array_equal(serial, par), dtype
    mask_serial, mask_par = np.zeros(n, np.bool_), np.zeros(n, np.bool_)
    K.keep_mask_serial(mask_serial, np.uint64(0), k0, k1, np.uint64(thresh))
    K.keep_mask_parallel(mask_par, step, k0, k1, np.uint64(thresh))
    assert np.array_equal(mask_serial, mask_par)
    assert 0 < mask_par.sum() < n  # not vacuous


def test_step_splits_by_threads_and_not_in_a_forked_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dropkit.backends import numba as backend_module

    backend = load()
    n = 10 * backend._min_part + 5
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert backend._step(n) == 0  # one thread: serial
        torch.set_num_threads(3)
        step = backend._step(n)
        assert step % K.CHUNK == 0 and 2 * step < n <= 3 * step
        assert backend._step(backend._min_part) == 0  # too small to split
        # as if the parallel pool had started in a parent process
        monkeypatch.setattr(backend_module, "_parallel_pid", -1)
        assert backend._step(n) == 0  # a forked child runs serially
    finally:
        torch.set_num_threads(before)


_FORK_CODE = """
import multiprocessing as mp, sys, torch, dropkit
torch.set_num_threads(2)
x = torch.randn(1 << 18)
with dropkit.use_backend("reference"):
    want = dropkit.functional.dropout(x, 0.5, seed=3)
def child(q):  # compares with numpy: torch's own OpenMP ops can hang after a fork
    with dropkit.use_backend("numba"):
        y = dropkit.functional.dropout(x, 0.5, seed=3)
    q.put(bool((y.numpy().view("u4") == want.numpy().view("u4")).all()))
with dropkit.use_backend("numba"):
    assert torch.equal(dropkit.functional.dropout(x, 0.5, seed=3), want)  # parallel, parent
ctx = mp.get_context("fork")
q = ctx.Queue()
proc = ctx.Process(target=child, args=(q,))
proc.start()
proc.join(120)
sys.exit(0 if proc.exitcode == 0 and q.get(timeout=5) else 1)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_forked_child_after_parallel_parent() -> None:
    """GNU OpenMP cannot cross fork (numba kills such a child): the child runs serially.

    The child must still run dropkit's kernel after a fork with its own parallel launch
    already made in the parent (a DataLoader worker, a fork-based process pool)."""
    subprocess.run([sys.executable, "-c", _FORK_CODE], check=True, timeout=300)


_FIRST_USE_CODE = """
import gc, json, sys
import numpy as np, torch
import dropkit.functional as F
F.dropout(torch.randn(64), 0.5)  # numba's CPU target set up, its registries imported
import numba.np.arraymath as am, numba.np.linalg as linalg
state = {"scipy_linalg": "scipy.linalg" in sys.modules, "have_blas": bool(am._HAVE_BLAS),
         "collector": gc.isenabled(),
         "restored": am.ensure_blas is linalg.ensure_blas
                     and linalg.ensure_blas.__qualname__ == "ensure_blas"}
if state["have_blas"]:  # a user's jitted function that uses BLAS: numba's own check, unchanged
    import numba
    a = np.arange(6.0).reshape(2, 3)
    dot = numba.njit(lambda u, v: np.dot(u, v))
    state["dot"] = bool(np.array_equal(dot(a, a.T), a @ a.T))
print(json.dumps(state))
"""


def test_first_use_probes_blas_without_importing_scipy_linalg() -> None:
    """numba's BLAS probe (run when its CPU target first loads) imports all of
    ``scipy.linalg`` (about 0.2 s of a fresh process's first call); dropkit lets it find the
    module on disk instead and restores numba's ``ensure_blas``, so a user's jitted
    ``np.dot`` still compiles and runs. In a fresh process."""
    import json

    out = subprocess.run([sys.executable, "-c", _FIRST_USE_CODE], check=True, timeout=300,
                         capture_output=True, text=True).stdout
    state = json.loads(out.strip().splitlines()[-1])
    from dropkit.backends import numba as backend_module

    assert state["have_blas"] == backend_module._cython_blas_present()
    assert state["restored"]
    assert state["collector"]  # (paused while numba loads, then on again)
    if state["have_blas"]:
        assert state["dot"]
        assert not state["scipy_linalg"]  # (read before the dot, whose compile imports it)


def test_loading_pauses_the_collector_and_leaves_it_as_it_was() -> None:
    """The garbage collector is off while numba loads (the load allocates some hundred
    thousand objects), then as the user had it: on, off, and after an error alike."""
    import gc

    from dropkit.backends import numba as backend_module

    was = gc.isenabled()
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            with backend_module._collector_paused():
                assert not gc.isenabled()
            assert gc.isenabled() is enabled
            with pytest.raises(ImportError), backend_module._collector_paused():
                raise ImportError("numba")
            assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_wide_vectors_follows_the_features_numba_compiles_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The row-kernel choice reads numba's target features: ``NUMBA_CPU_FEATURES`` when
    set (an empty string too: no AVX-512), else the host's as numba's codegen sees them."""
    from numba.core import codegen

    from dropkit.backends import numba as backend_module

    for features, wide in (("+avx2,+avx512f", True), ("+avx2,-avx512f", False), ("", False)):
        monkeypatch.setattr(numba.config, "CPU_FEATURES", features)
        assert backend_module._wide_vectors() is wide, features
    monkeypatch.setattr(numba.config, "CPU_FEATURES", None)
    host = str(codegen.get_host_cpu_features()).split(",")
    assert backend_module._wide_vectors() is ("+avx512f" in host)


def test_prefers_openmp_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    from dropkit.backends import numba as backend_module

    for var in backend_module._LAYER_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "default")
    monkeypatch.setattr(numba.config, "THREADING_LAYER_PRIORITY", ["tbb", "omp", "workqueue"])
    backend_module._prefer_openmp()
    assert numba.config.THREADING_LAYER_PRIORITY == ["omp", "tbb", "workqueue"]
    monkeypatch.setattr(numba.config, "THREADING_LAYER_PRIORITY", ["tbb", "omp", "workqueue"])
    monkeypatch.setenv("NUMBA_THREADING_LAYER_PRIORITY", "tbb omp workqueue")
    backend_module._prefer_openmp()
    assert numba.config.THREADING_LAYER_PRIORITY == ["tbb", "omp", "workqueue"]
    monkeypatch.delenv("NUMBA_THREADING_LAYER_PRIORITY")
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "workqueue")
    backend_module._prefer_openmp()
    assert numba.config.THREADING_LAYER_PRIORITY == ["tbb", "omp", "workqueue"]


@pytest.mark.parametrize("dtype", (torch.float16, torch.float32), ids=str)
def test_backend_thread_split_bit_identical(dtype: torch.dtype) -> None:
    """Inputs big enough to be split into torch.get_num_threads() parallel parts."""
    n = 2 * NB._min_part + 4 * 3 + 3
    before = torch.get_num_threads()
    x = _input(n, dtype)
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            ref, got = _both(x, 2**63 + 5, 0.25)
            assert torch.equal(_bits(got), _bits(ref)), threads
            mask = NB.keep_mask(n, 77, rng.threshold(0.25), torch.device("cpu"))
            assert torch.equal(mask, rng.keep_bits(n, 77, rng.threshold(0.25)))
    finally:
        torch.set_num_threads(before)


def test_dispatch_names_backend_and_reason() -> None:
    assert resolve(torch.empty(3)).name == "numba"  # "auto" prefers it on CPU
    assert resolve(torch.empty(3, dtype=torch.complex64)).name == "reference"  # falls back
    with dropkit.use_backend("numba"):
        with pytest.raises(RuntimeError, match=r"'numba'.*CPU only.*meta"):
            resolve(torch.empty(3, device="meta"))
        with pytest.raises(RuntimeError, match=r"'numba'.*complex64"):
            resolve(torch.empty(3, dtype=torch.complex64))
        assert dropkit.get_backend() == "numba"
    assert dropkit.get_backend() == "auto"
    assert dropkit.available_backends()["numba"] is None


def test_missing_numba_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from dropkit.backends import numba as backend_module

    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "dropkit.kernels.numba_dropout")
    monkeypatch.setattr(backend_module, "_failed", [])
    for _ in range(2):  # the second call answers from the remembered failure
        with pytest.raises(ImportError, match=r"pip install dropkit\[cpu\]"):
            load()


def test_import_dropkit_does_not_import_numba() -> None:
    code = "import sys, dropkit; assert 'numba' not in sys.modules, 'numba imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def _run(backend: str, fn, x: torch.Tensor, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.clone().requires_grad_(True)
    with dropkit.use_backend(backend):
        y = fn(leaf * 1.0, **kw)
        grad = torch.linspace(-1, 1, y.numel()).view(y.shape).to(y.dtype)
        y.backward(grad)
    return y.detach(), leaf.grad


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "fn, kw",
    [
        (dropout, {"p": 0.3, "seed": 2**63 + 11}),
        (dropout, {"p": 0.5, "seed": 7, "inplace": True}),
        (dropout, {"p": 0.2, "seed": 8, "scaling": "classic"}),
        (dropout2d, {"p": 0.5, "seed": 9}),
        (alpha_dropout, {"p": 0.1, "seed": 10}),
    ],
    ids=["dropout", "inplace", "classic", "dropout2d", "alpha"],
)
def test_end_to_end_forward_and_backward(dtype: torch.dtype, fn, kw: dict) -> None:
    x = torch.randn(6, 5, 7, 3, generator=torch.Generator().manual_seed(1)).to(dtype)
    y_ref, g_ref = _run("reference", fn, x, **kw)
    y_nb, g_nb = _run("numba", fn, x, **kw)
    assert torch.equal(_bits(y_nb), _bits(y_ref))
    assert torch.equal(_bits(g_nb), _bits(g_ref))


def test_end_to_end_non_contiguous_and_fresh_seed() -> None:
    x = torch.randn(64, 33).t()  # non-contiguous: logical (row-major) order still rules
    with dropkit.use_backend("reference"):
        torch.manual_seed(5)
        ref = dropout(x, 0.4)
    with dropkit.use_backend("numba"):
        torch.manual_seed(5)
        got = dropout(x, 0.4)
    assert torch.equal(got, ref)
