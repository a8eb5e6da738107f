"""Keys as values: scalar and per-row keys, offsets, the MC derivations, seed checks.

Every keyed backend primitive matches the reference (``dropkit.rng.row_bits``) bit for bit,
across misaligned offsets, row lengths that are not multiples of four, the serial and the
parallel row kernels, and every dtype.
"""

from __future__ import annotations

import pytest
import torch

import dropkit
import dropkit.functional as F
from dropkit import _mc_context, backends, rng
from dropkit.backends import keyed
from dropkit.backends.bernoulli import mask_affine
from dropkit.keys import Keys, derive_call_key, derive_row_keys, resolve, scalar_seed

CPU = torch.device("cpu")
ROWS = torch.tensor([5, -7, 2**40 + 3, 0])  # per-row keys (int64 two's complement)


def _u64(key: torch.Tensor | int) -> int:
    return int(key) % 2**64


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bit patterns of a float tensor (so that NaNs compare too)."""
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


# ------------------------------------------------------------------ the reference itself
@pytest.mark.parametrize("start", [0, 1, 2, 3, 5, 1023])
def test_row_bits_is_random_bits_per_row(start: int) -> None:
    bits = rng.row_bits(ROWS, 13, start=start)
    assert bits.shape == (4, 13)
    for r, key in enumerate(ROWS):
        assert torch.equal(bits[r], rng.random_bits(13, _u64(key), start=start))


def test_offset_draws_the_tail_of_the_longer_stream() -> None:
    full = rng.random_bits(100, 9)
    for start in (1, 2, 3, 4, 37):
        assert torch.equal(rng.random_bits(100 - start, 9, start=start), full[start:])


# ------------------------------------------------------------------ backends, keyed
@pytest.mark.parametrize("offset", [0, 1, 3, 6, 4097])
@pytest.mark.parametrize("row_len", [1, 3, 37, 1025])
@pytest.mark.parametrize("per_row", [False, True])
def test_numba_keyed_primitives_match_the_reference(offset: int, row_len: int, per_row: bool):
    seed = ROWS if per_row else torch.tensor(-11)
    numel = row_len * (len(ROWS) if per_row else 1)
    with dropkit.use_backend("reference"):
        ref_bits = keyed.bits(seed, offset, numel, CPU)
        ref_keep = keyed.keep_mask(seed, offset, numel, rng.threshold(0.3), CPU)
    with dropkit.use_backend("numba"):
        assert torch.equal(keyed.bits(seed, offset, numel, CPU), ref_bits)
        assert torch.equal(keyed.keep_mask(seed, offset, numel, rng.threshold(0.3), CPU), ref_keep)
    # The reference keep decisions are the reference draws against the threshold.
    assert torch.equal(ref_keep, ref_bits >= rng.threshold(0.3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("rows", [4, 1])
def test_numba_keyed_scale_matches_the_reference_serial_and_parallel(dtype, rows) -> None:
    """40000 elements per row: with 4 rows the parallel row kernel runs, with 1 the serial."""
    seed = ROWS[:rows] if rows > 1 else torch.tensor(3)
    x = torch.randn(rows * 40000).to(dtype)
    x[::97] = float("nan")
    for offset in (0, 2):
        ref = torch.empty_like(x)
        got = torch.empty_like(x)
        with dropkit.use_backend("reference"):
            keyed.scale(x, ref, seed, offset, rng.threshold(0.4), 1 / 0.6, 0.25)
        with dropkit.use_backend("numba"):
            keyed.scale(x, got, seed, offset, rng.threshold(0.4), 1 / 0.6, 0.25)
            inplace = x.clone()
            keyed.scale(inplace, inplace, seed, offset, rng.threshold(0.4), 1 / 0.6, 0.25)
        assert torch.equal(_bits(got), _bits(ref))  # NaNs included, bit for bit
        assert torch.equal(_bits(inplace), _bits(ref))


@pytest.mark.parametrize(
    ("rows", "row_len"),
    [(3, 512), (5, 516), (7, 768), (2, 1028), (65, 1024), (33, 2052), (160, 520), (1, 70000),
     (300, 4), (37, 64), (9, 508), (1100, 64), (300, 260), (41, 128), (9, 480), (23, 160),
     (300, 256)],
)
@pytest.mark.parametrize("offset", [0, 4, 2])
@pytest.mark.parametrize("wide", [True, False], ids=["avx512", "avx2"])
def test_numba_row_kernels_match_the_reference_for_every_row_split(
    rows, row_len, offset, wide, monkeypatch
):
    """Rows of whole counters run as one flat walk of blocks (``scale_rows_flat``), whose
    blocks and parallel parts start and end inside rows, and shorter rows share blocks
    (``scale_short_rows``; rows of 128 to 508 elements in groups of eight counters:
    ``scale_rows_by_eight`` where the CPU has AVX-512; without it, rows from 128 elements
    on take the flat walk: both settings run on any CPU): every split matches the
    reference. (65 x 1024, 1100 x 64, 300 x 260 and 300 x 256 run the parallel kernels;
    offset 2 takes the per-row kernels.)"""
    monkeypatch.setattr(backends._instance("numba"), "wide_vectors", wide)
    seed = torch.arange(rows) * 7919 - 3 if rows > 1 else torch.tensor(-5)
    x = torch.randn(rows * row_len)
    x[::31] = float("nan")
    thresh = rng.threshold(0.35)
    ref = torch.empty_like(x)
    with dropkit.use_backend("reference"):
        keyed.scale(x, ref, seed, offset, thresh, 1 / 0.65, 0.5)
    with dropkit.use_backend("numba"):
        got = torch.empty_like(x)
        keyed.scale(x, got, seed, offset, thresh, 1 / 0.65, 0.5)
        inplace = x.clone()
        keyed.scale(inplace, inplace, seed, offset, thresh, 1 / 0.65, 0.5)
    assert torch.equal(_bits(got), _bits(ref))
    assert torch.equal(_bits(inplace), _bits(ref))


# ------------------------------------------------------------------ the op takes keys as values
def test_per_row_keys_give_each_row_its_own_stream() -> None:
    x = torch.randn(4, 9)
    y = mask_affine(x, ROWS, 0, rng.threshold(0.5), [4, 9], 2.0)
    for r in range(4):
        assert torch.equal(y[r], F.dropout(x[r], 0.5, seed=_u64(ROWS[r])))
    # A buggy kernel that ignored the per-row keys (one stream for all rows) differs.
    assert not torch.equal(y, F.dropout(x, 0.5, seed=_u64(ROWS[0])))


def test_offset_makes_a_piece_draw_its_part_of_the_whole() -> None:
    x = torch.randn(64)
    whole = mask_affine(x, torch.tensor(12), 0, rng.threshold(0.5), [64], 2.0)
    for start in (1, 3, 8, 13):
        piece = mask_affine(
            x[start:], torch.tensor(12), start, rng.threshold(0.5), [64 - start], 2.0
        )
        assert torch.equal(piece, whole[start:])
    # ...also for channel masks with per-row keys: the offset counts within each row.
    x = torch.randn(4, 6, 3)
    whole = mask_affine(x, ROWS, 0, rng.threshold(0.5), [4, 6, 1], 2.0)
    part = mask_affine(x[:, 2:], ROWS, 2, rng.threshold(0.5), [4, 4, 1], 2.0)
    assert torch.equal(part, whole[:, 2:])


def test_ops_never_read_the_mc_context() -> None:
    """Inside a fold, an op called with explicit keys computes exactly what it does outside."""
    x = torch.randn(6, 5)
    outside = mask_affine(x, torch.tensor(4), 0, rng.threshold(0.5), [6, 5], 2.0)
    with _mc_context.folding(seed=1, samples=[0, 1, 2], batch=2):
        inside = mask_affine(x, torch.tensor(4), 0, rng.threshold(0.5), [6, 5], 2.0)
    assert torch.equal(inside, outside)


# ------------------------------------------------------------------ resolve and derivations
def test_resolve_outside_and_inside_a_fold() -> None:
    key = resolve(7, None, [3, 4])
    assert isinstance(key, Keys) and not key.per_row and int(key.seed) == 7 and key.offset == 0
    with _mc_context.folding(seed=9, samples=[2, 5], batch=3) as fold:
        rows = resolve(7, None, [6, 4])  # batched, 2 samples x 3 rows: per-row keys
        assert rows.per_row and torch.equal(rows.seed, derive_row_keys(9, [2, 5], 3, 0))
        with pytest.raises(_mc_context.FoldError, match="not per sample"):
            resolve(None, None, [6, 4], batched=False)
        assert fold.calls == 2
    with _mc_context.folding(seed=9, samples=[5], batch=3):
        weight = resolve(None, None, [8, 2], batched=False)  # one sample: the call key
        assert not weight.per_row and int(weight.seed) == int(derive_call_key(9, 5, 0))


def test_row_keys_depend_on_sample_row_and_call_only() -> None:
    a = derive_row_keys(3, [0, 1, 2], batch=4, call=0)
    assert torch.equal(a[8:], derive_row_keys(3, [2], batch=4, call=0))
    assert len(set(a.tolist())) == 12  # distinct across samples and rows
    assert not torch.equal(a, derive_row_keys(3, [0, 1, 2], batch=4, call=1))
    assert not torch.equal(a, derive_row_keys(4, [0, 1, 2], batch=4, call=0))
    # The documented formula, word for word (docs/mask-spec.md, "Keys").
    k0, k1 = rng.seed_key(3)
    t, b = torch.tensor([1]), torch.tensor([2])
    w0, w1, _, _ = rng.philox4x32(t, b, torch.tensor([0]), torch.tensor([0x4D435257]), k0, k1)
    assert _u64(a[1 * 4 + 2]) == int(w0) | (int(w1) << 32)
    w0, w1, _, _ = rng.philox4x32(t, t * 0, t * 0, torch.tensor([0x4D435344]), k0, k1)
    assert _u64(derive_call_key(3, 1, 0)) == int(w0) | (int(w1) << 32)


# ------------------------------------------------------------------ seed checks (probe findings)
@pytest.mark.parametrize(
    ("seed", "error"),
    [
        (True, TypeError),
        (torch.tensor(True), TypeError),
        (torch.tensor(1.0), TypeError),
        (-1, ValueError),
        (torch.tensor(-1), ValueError),
        (2**64, ValueError),
        (torch.tensor([1, 2]), ValueError),
        ("7", TypeError),
    ],
)
def test_bad_seeds_are_refused(seed: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="seed"):
        scalar_seed(seed, None)
    with pytest.raises(error, match="seed"):
        F.dropout(torch.ones(4), 0.5, seed=seed)  # type: ignore[arg-type]


def test_tensor_seed_is_the_int_seed() -> None:
    x = torch.randn(10)
    assert torch.equal(F.dropout(x, 0.5, seed=torch.tensor(123)), F.dropout(x, 0.5, seed=123))
    assert torch.equal(
        F.dropout(x, 0.5, seed=torch.tensor(5, dtype=torch.int32)), F.dropout(x, 0.5, seed=5)
    )


BROADCAST_CASES = [
    ((4, 6, 5), [4, 1, 5]),  # LockedDropout: [outer, mid, inner]
    ((4, 6, 5), [4, 6, 1]),  # channel dropout: inner == 1
    ((4, 6, 5), [1, 6, 5]),  # broadcast over dim 0
    ((4, 6, 5), [4, 6, 5]),  # a full mask (alpha dropout's bias)
    ((3, 2, 4, 5), [3, 1, 1, 5]),
    ((2, 3, 4, 5), [2, 1, 4, 1]),  # two broadcast blocks: the general multiplier path
]


@pytest.mark.parametrize(("shape", "mask_shape"), BROADCAST_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_grouped_kernel_matches_the_reference_for_every_broadcast(shape, mask_shape, dtype):
    """mask_affine's one-pass grouped kernel (numba) equals the reference's torch ops, bit
    for bit: NaNs, per-row keys, offsets, biases, in place."""
    from dropkit.backends.bernoulli import MASK_AFFINE

    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    x.view(-1)[::7] = float("nan")
    seeds = [torch.tensor(9)]
    if mask_shape[0] == shape[0]:
        seeds.append(torch.arange(shape[0]) * 3 - 4)  # per-row keys
    for seed in seeds:
        for offset in (0, 1):
            for floats in ([2.0, 0.0, 0.0, 0.0], [0.7, 0.0, 0.3, -1.1], [1.5, 0.25, 0.0, 0.0]):
                args = (seed, offset, [2**31, *mask_shape], floats, True)
                with dropkit.use_backend("reference"):
                    want = MASK_AFFINE.compute(x, *args, None, 0)
                with dropkit.use_backend("numba"):
                    got = MASK_AFFINE.compute(x, *args, None, 0)
                    inplace = x.clone()
                    MASK_AFFINE.compute(inplace, *args, inplace, 0)
                assert torch.equal(_bits(got), _bits(want)), (seed, offset, floats)
                assert torch.equal(_bits(inplace), _bits(want))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("offset", [0, 3])
def test_draws_at_chosen_indices_match_the_reference(dtype, offset) -> None:
    """Embedding dropout draws one decision per looked-up token: numba's select_at and the
    reference (rng.bits_at) agree, and both equal the full mask read at those indices."""
    idx = torch.randint(0, 5000, (7, 9), generator=torch.Generator().manual_seed(2))
    idx[0, :3] = torch.tensor([0, 4999, 0])
    seed, thresh = torch.tensor(-21), rng.threshold(0.4)
    opmath = torch.float32 if dtype == torch.bfloat16 else dtype
    with dropkit.use_backend("reference"):
        want = keyed.select_at(seed, offset, idx, thresh, 2.5, 0.0, opmath)
    with dropkit.use_backend("numba"):
        got = keyed.select_at(seed, offset, idx, thresh, 2.5, 0.0, opmath)
    assert torch.equal(got, want)
    full = rng.random_bits(5000 + offset, _u64(seed)) >= thresh  # the whole stream
    assert torch.equal(want == 2.5, full[idx + offset])


def test_the_rank_check_runs_after_a_block_and_in_compiled_graphs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The once-per-process rank warning is checked on every seed-less draw until it has
    fired: also for a plain call once a sample_keys block has been used (the slower path),
    and when a compiled graph draws its seed at run time (a graph cannot hold the check)."""
    import dropkit
    import dropkit.functional as F
    from dropkit import keys

    checks: list[int] = []
    # (as the real check: nothing while compiling, where a graph would only replay it)
    monkeypatch.setattr(keys, "_check_distributed",
                        lambda: None if torch.compiler.is_compiling() else checks.append(1))
    monkeypatch.setattr(keys, "_WARNED", False)
    with dropkit.sample_keys(torch.arange(2), seed=0):
        F.dropout(torch.ones(2, 4), 0.5)
    before = len(checks)
    F.dropout(torch.ones(2, 4), 0.5)  # plain, blocks remembered
    assert len(checks) > before
    compiled = torch.compile(lambda t: F.dropout(t, 0.5), backend="aot_eager", fullgraph=True)
    compiled(torch.ones(3))
    before = len(checks)
    compiled(torch.ones(3))  # the graph's draw, at run time
    assert len(checks) > before
