"""``dropkit.sample_keys``: a sample's mask depends on (seed, id, call, shape) alone.

Per variant: the rows of a batch keep their masks when the batch is reordered, cut or
split, and whatever torch's RNG state; the keys follow the documented derivation; bad ids
and masks without a batch dim fail clearly; autograd, activation checkpointing (also after
the block has closed), torch.compile and mc_predict compose with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import dropkit
from dropkit import _sample_context, keys, rng
from dropkit.backends import keyed
from dropkit.mc import mc_predict

IDS = torch.tensor([40, 7, 123456789012, 3, 2**40 + 5])
SUBSETS = ([4, 0, 2], [1], [3, 2, 1, 0, 4])

# name -> (module factory, input factory); each module draws a mask with the batch in dim 0
CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], torch.Tensor]]] = {
    "Dropout": (lambda: dropkit.nn.Dropout(0.5), lambda: torch.randn(5, 40)),
    "Dropout in place": (lambda: dropkit.nn.Dropout(0.5, True), lambda: torch.randn(5, 40)),
    "Dropout classic": (lambda: dropkit.nn.Dropout(0.5, scaling="classic"),
                        lambda: torch.randn(5, 40)),
    "Dropout1d": (lambda: dropkit.nn.Dropout1d(0.5), lambda: torch.randn(5, 6, 7)),
    "Dropout2d": (lambda: dropkit.nn.Dropout2d(0.5), lambda: torch.randn(5, 6, 3, 3)),
    "Dropout3d": (lambda: dropkit.nn.Dropout3d(0.5), lambda: torch.randn(5, 6, 2, 2, 3)),
    "AlphaDropout": (lambda: dropkit.nn.AlphaDropout(0.3), lambda: torch.randn(5, 40)),
    "FeatureAlphaDropout": (lambda: dropkit.nn.FeatureAlphaDropout(0.3),
                            lambda: torch.randn(5, 6, 3, 3)),
    "GaussianDropout": (lambda: dropkit.nn.GaussianDropout(0.4), lambda: torch.randn(5, 40)),
    "LockedDropout": (lambda: dropkit.nn.LockedDropout(0.5), lambda: torch.randn(5, 4, 30)),
    "DropPath": (lambda: dropkit.nn.DropPath(0.5), lambda: torch.randn(5, 40)),
    "DropBlock2d": (lambda: dropkit.nn.DropBlock2d(0.3, 2), lambda: torch.randn(5, 2, 6, 6)),
    "ConcreteDropout": (lambda: dropkit.nn.ConcreteDropout(nn.Identity(), p=0.3, input_dim=40),
                        lambda: torch.randn(5, 40)),
    "DropConnect per sample": (lambda: dropkit.nn.DropConnect(nn.Linear(40, 3), 0.5, True),
                               lambda: torch.randn(5, 40)),
}


def _run(module: nn.Module, x: torch.Tensor, ids: torch.Tensor, seed: int) -> torch.Tensor:
    with dropkit.sample_keys(ids, seed=seed):
        return module(x.clone())


@pytest.mark.parametrize("name", list(CASES))
def test_a_rows_mask_follows_its_sample(name: str) -> None:
    """Reordered, cut and single-row batches give each sample the rows of the full batch."""
    make_module, make_input = CASES[name]
    module, x = make_module().train(), make_input()
    full = _run(module, x, IDS, seed=11)
    for subset in SUBSETS:
        part = _run(module, x[subset], IDS[subset], seed=11)
        assert torch.equal(part, full[subset]), (name, subset)
    # A plausible bug, keying rows by position, breaks the check: the rows differ (for one
    # of a few seeds at least: drop path has a single decision per row).
    rows = [4, 0, 2]
    assert any(
        not torch.equal(_run(module, x[rows], IDS[[0, 1, 2]], s), _run(module, x, IDS, s)[rows])
        for s in range(11, 15)
    )


@pytest.mark.parametrize("name", list(CASES))
def test_masks_ignore_torch_rng_and_follow_the_seed(name: str) -> None:
    make_module, make_input = CASES[name]
    module, x = make_module().train(), make_input()
    torch.manual_seed(0)
    a = _run(module, x, IDS, seed=5)
    torch.manual_seed(1)
    b = _run(module, x, IDS, seed=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, _run(module, x, IDS, seed=6))


def test_keys_follow_the_spec() -> None:
    """Row r of call c: Philox4x32-10((lo id, hi id, c, SKEY), seed) words 0-1, then the
    mask spec within the row; computed here from rng.philox4x32 directly."""
    seed, ids = 2**64 - 3, IDS
    k0, k1 = rng.seed_key(seed)
    c = 2
    w = rng.philox4x32(ids & rng.MASK32, ids >> 32, torch.full_like(ids, c),
                       torch.full_like(ids, keys.SAMPLE_DOMAIN), k0, k1)
    expect = [(int(a) | (int(b) << 32)) for a, b in zip(w[0], w[1], strict=True)]
    got = [int(v) % 2**64 for v in keys.derive_sample_keys(seed, ids, c)]
    assert got == expect
    x = torch.ones(5, 64)
    with dropkit.sample_keys(ids, seed=seed):
        for _ in range(c):
            dropkit.functional.dropout(x, 0.5)
        y = dropkit.functional.dropout(x, 0.5)  # call 2
    for r in range(5):
        kept = rng.keep_bits(64, expect[r], rng.threshold(0.5))
        assert torch.equal(y[r] != 0, kept), r


def test_kernel_derivation_matches_the_reference() -> None:
    """The numba derivation (one pass over the ids) is the torch reference, bit for bit."""
    g = torch.Generator().manual_seed(0)
    c0 = torch.randint(0, 2**32, (3000,), generator=g)
    c1 = torch.randint(0, 2**32, (3000,), generator=g)
    for seed in (0, 7, 2**63 + 1, 2**64 - 1):
        for call, domain in ((0, keys.SAMPLE_DOMAIN), (2**32 - 1, 0xFFFFFFFF)):
            ref = rng.derive_keys(seed, c0, c1, call, domain)
            assert torch.equal(keyed.derive_keys(seed, c0, c1, call, domain), ref)
            assert torch.equal(rng.derive_keys(torch.tensor(keys._as_int64(seed)), c0, c1,
                                               call, domain), ref)


@pytest.mark.parametrize("rows", [5, 3000, 8192, 20001])
def test_id_derivation_matches_the_reference_serial_and_parallel(rows: int) -> None:
    """A block's per-call derivation (numba: one pass, in parallel parts from 8192 ids on)
    is the torch reference's, bit for bit, for ids across the whole 63-bit range."""
    g = torch.Generator().manual_seed(rows)
    ids = torch.randint(0, 2**63 - 1, (rows,), generator=g)
    ids[: min(rows, 3)] = torch.tensor([0, 2**32 - 1, 2**32])[: min(rows, 3)]
    for seed in (0, 2**64 - 1):
        with dropkit.use_backend("numba"):
            derive = keyed.id_deriver(seed, ids, keys.SAMPLE_DOMAIN)
        for call in (0, 5, 2**32 - 1):
            ref = rng.derive_keys(seed, ids & rng.MASK32, ids >> 32, call, keys.SAMPLE_DOMAIN)
            assert torch.equal(derive(call), ref)


def test_calls_in_a_block_differ_and_blocks_restart() -> None:
    x = torch.ones(5, 200)
    with dropkit.sample_keys(IDS, seed=1):
        a, b = dropkit.functional.dropout(x, 0.5), dropkit.functional.dropout(x, 0.5)
    with dropkit.sample_keys(IDS, seed=1):
        c = dropkit.functional.dropout(x, 0.5)
    assert not torch.equal(a, b)
    assert torch.equal(a, c)


def test_explicit_seed_inside_a_block_is_overridden() -> None:
    x = torch.ones(5, 50)
    with dropkit.sample_keys(IDS, seed=1):
        a = dropkit.functional.dropout(x, 0.5, seed=123)
    with dropkit.sample_keys(IDS, seed=1):
        b = dropkit.functional.dropout(x, 0.5)
    assert torch.equal(a, b)


def test_seed_none_draws_from_torch_on_entry() -> None:
    x = torch.ones(5, 50)
    torch.manual_seed(3)
    with dropkit.sample_keys(IDS):
        a = dropkit.functional.dropout(x, 0.5)
    torch.manual_seed(3)
    with dropkit.sample_keys(IDS):
        b = dropkit.functional.dropout(x, 0.5)
    assert torch.equal(a, b)


def test_backward_regenerates_the_mask() -> None:
    x = torch.randn(5, 30, requires_grad=True)
    with dropkit.sample_keys(IDS, seed=2):
        y = dropkit.functional.dropout(x, 0.4)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g, (y != 0).float() / 0.6)


# ------------------------------------------------------------------ errors
def test_dim0_mismatch_names_layer_and_sizes() -> None:
    with dropkit.sample_keys(IDS, seed=0), pytest.raises(dropkit.SampleKeyError) as err:
        dropkit.nn.Dropout2d(0.5).train()(torch.ones(3, 2, 2, 2))
    assert "dropout2d" in str(err.value) and "5 ids" in str(err.value)
    assert "(3, 2, 1, 1)" in str(err.value)
    locked = pytest.raises(dropkit.SampleKeyError, match="batch_first")
    with dropkit.sample_keys(IDS, seed=0), locked:
        dropkit.nn.LockedDropout(0.5, batch_first=False).train()(torch.ones(7, 5, 3))


@pytest.mark.parametrize("ids, error", [
    ([1, 2], TypeError),
    (torch.tensor([1.0, 2.0]), TypeError),
    (torch.tensor([True, False]), TypeError),
    (torch.tensor([[1, 2]]), ValueError),
    (torch.tensor([1, -2]), ValueError),
    (torch.tensor([1, 2**63], dtype=torch.uint64), ValueError),
])
def test_bad_ids_fail_on_entry(ids: object, error: type) -> None:
    with pytest.raises(error, match="sample_keys"), dropkit.sample_keys(ids, seed=0):  # type: ignore[arg-type]
        pass
    assert _sample_context._ACTIVE is None


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.uint32,
                                   torch.uint64])
def test_ids_of_any_integer_dtype_key_as_int64_ids(dtype: torch.dtype) -> None:
    ids, x = torch.tensor([5, 7, 200]), torch.ones(3, 16)
    with dropkit.sample_keys(ids, seed=1):
        want = dropkit.functional.dropout(x, 0.5)
    with dropkit.sample_keys(ids.to(dtype), seed=1):
        assert torch.equal(dropkit.functional.dropout(x, 0.5), want)


def test_masks_without_per_sample_meaning_are_refused() -> None:
    x = torch.randn(5, 4)
    with dropkit.sample_keys(IDS, seed=0), pytest.raises(dropkit.SampleKeyError,
                                                         match="per_sample=True"):
        dropkit.nn.DropConnect(nn.Linear(4, 2), 0.5).train()(x)
    emb = dropkit.nn.EmbeddingDropout(nn.Embedding(10, 3), 0.5).train()
    with dropkit.sample_keys(IDS, seed=0), pytest.raises(dropkit.SampleKeyError,
                                                         match="embedding_dropout"):
        emb(torch.randint(0, 10, (5, 2)))


def test_blocks_do_not_nest_and_each_thread_has_its_own() -> None:
    """A block keys its own thread's calls: another thread's calls stay plain, and that
    thread may open a block of its own at the same time."""
    x = torch.ones(5, 40)
    with dropkit.sample_keys(IDS, seed=0):
        with pytest.raises(RuntimeError, match="nest"), dropkit.sample_keys(IDS, seed=1):
            pass
        mine = dropkit.functional.dropout(x, 0.5)
        other: dict[str, torch.Tensor] = {}

        def work() -> None:
            other["plain"] = dropkit.functional.dropout(x, 0.5, seed=9)
            with dropkit.sample_keys(IDS, seed=0):
                other["keyed"] = dropkit.functional.dropout(x, 0.5)

        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert torch.equal(other["plain"], dropkit.functional.dropout(x, 0.5, seed=9))
    assert torch.equal(other["keyed"], mine)
    assert not _sample_context._BY_THREAD


# ------------------------------------------------------------------ composition
def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), dropkit.nn.Dropout(0.5),
                         nn.Linear(16, 16), dropkit.nn.Dropout(0.3), nn.Linear(16, 1))


def _grads(net: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor],
           x: torch.Tensor) -> list[torch.Tensor]:
    net.zero_grad()
    with dropkit.sample_keys(IDS, seed=3):
        out = fn(x)
    out.sum().backward()  # after the block: checkpointed segments recompute here
    return [p.grad.clone() for p in net.parameters()]  # type: ignore[union-attr]


@pytest.mark.parametrize("reentrant", [False, True])
def test_activation_checkpointing_recomputes_the_same_masks(reentrant: bool) -> None:
    net = _net()
    x = torch.randn(5, 8, requires_grad=True)
    plain = _grads(net, net, x)

    def segmented(x: torch.Tensor) -> torch.Tensor:
        return net[5](checkpoint(net[:5], x, use_reentrant=reentrant))

    assert all(torch.equal(a, b) for a, b in zip(plain, _grads(net, segmented, x), strict=True))


@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpointing_with_backward_inside_the_block(reentrant: bool) -> None:
    """The usual loop: forward and backward in one block. The recompute must replay its
    call, not count as a new one."""
    net = _net()
    x = torch.randn(5, 8, requires_grad=True)
    plain = _grads(net, net, x)
    net.zero_grad()
    with dropkit.sample_keys(IDS, seed=3):
        net[5](checkpoint(net[:5], x, use_reentrant=reentrant)).sum().backward()
        after = dropkit.functional.dropout(torch.ones(5, 4), 0.5)  # call 2 of the block
    assert all(torch.equal(a, p.grad) for a, p in zip(plain, net.parameters(), strict=True))
    with dropkit.sample_keys(IDS, seed=3):
        dropkit.functional.dropout(torch.ones(5, 16), 0.5)
        dropkit.functional.dropout(torch.ones(5, 16), 0.3)
        assert torch.equal(after, dropkit.functional.dropout(torch.ones(5, 4), 0.5))


def test_a_recompute_on_another_thread_replays(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA, autograd's device thread recomputes checkpointed segments: a call from
    another thread inside backward finds its forward call; outside backward it is refused."""
    x = torch.ones(5, 30)
    with dropkit.sample_keys(IDS, seed=4):
        torch.manual_seed(7)
        first = dropkit.functional.dropout(x, 0.5)
        dropkit.functional.dropout(x, 0.5)
        got: list[torch.Tensor] = []

        def recompute() -> None:
            monkeypatch.setattr(torch._C, "_current_graph_task_id", lambda: 1)
            torch.manual_seed(7)  # what checkpoint's RNG restore does
            got.append(dropkit.functional.dropout(x, 0.5))

        t = threading.Thread(target=recompute)
        t.start()
        t.join()
    assert got and torch.equal(got[0], first)


def test_checkpointing_fails_without_the_kept_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: a recompute that finds no block draws fresh masks."""
    net = _net()
    x = torch.randn(5, 8, requires_grad=True)
    plain = _grads(net, net, x)
    monkeypatch.setattr(_sample_context, "replayed_call", lambda handle: None)

    def segmented(x: torch.Tensor) -> torch.Tensor:
        return net[5](checkpoint(net[:5], x, use_reentrant=False))

    assert not all(torch.equal(a, b)
                   for a, b in zip(plain, _grads(net, segmented, x), strict=True))


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_equals_eager_without_recompiling() -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    net = _net()
    compiled = torch.compile(net, fullgraph=True)
    x = torch.randn(5, 8)
    for step in range(3):
        ids = torch.randperm(1000, generator=torch.Generator().manual_seed(step))[:5]
        with dropkit.sample_keys(ids, seed=step):
            a = compiled(x)
        with dropkit.sample_keys(ids, seed=step):
            b = net(x)
        assert torch.equal(a, b)
    assert counters["stats"]["unique_graphs"] == 1


def test_mc_predict_of_sample_keyed_rows() -> None:
    """MC sample t of a sample: the same for any chunk, row order or batch."""
    net = dropkit.nn.Dropout(0.5)
    x = torch.randn(5, 12)
    with dropkit.sample_keys(IDS, seed=4):
        ref = mc_predict(net, x, samples=6, seed=9, chunk=1)
        folded = mc_predict(net, x, samples=6, seed=9, chunk=4)
    assert torch.equal(ref, folded)
    with dropkit.sample_keys(IDS[[2, 0]], seed=4):
        part = mc_predict(net, x[[2, 0]], samples=6, seed=9, chunk=6)
    assert torch.equal(part, ref[:, [2, 0]])
    with dropkit.sample_keys(IDS, seed=5):
        other = mc_predict(net, x, samples=6, seed=9)
    assert not torch.equal(other, ref)  # the block's seed enters


def test_indexed_dataset_yields_ids() -> None:
    data = dropkit.IndexedDataset(torch.utils.data.TensorDataset(torch.arange(10.0)))
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True)
    for ids, (x,) in loader:
        assert ids.dtype == torch.int64
        assert torch.equal(x, ids.float())
    with pytest.raises(TypeError, match="map-style"):
        dropkit.IndexedDataset(iter([1, 2]))


@pytest.mark.parametrize("rows, row_len", [(1, 5), (3, 64), (7, 65), (100, 4), (100, 511),
                                           (50, 508), (3, 513), (3000, 64), (3000, 65),
                                           (40, 8192)])
@pytest.mark.parametrize("offset", [0, 2, 4])
def test_per_row_kernels_match_the_reference(rows: int, row_len: int, offset: int) -> None:
    """Every per-row path of the numba backend (short rows across row boundaries, row by
    row, parallel parts) is the reference, bit for bit, at any offset."""
    from dropkit.backends.bernoulli import mask_affine

    g = torch.Generator().manual_seed(rows + row_len + offset)
    k = torch.randint(-(2**62), 2**62, (rows,), generator=g)
    x = torch.randn(rows, row_len, generator=g)
    args = (k, offset, rng.threshold(0.3), [rows, row_len], 1 / 0.7)
    got = mask_affine(x, *args)
    with dropkit.use_backend("reference"):
        assert torch.equal(got, mask_affine(x, *args))


def _plain_grads(net: nn.Module, x: torch.Tensor, checkpointed: bool) -> list[torch.Tensor]:
    net.zero_grad()
    torch.manual_seed(0)
    out = net[5](checkpoint(net[:5], x, use_reentrant=False)) if checkpointed else net(x)
    out.sum().backward()
    return [p.grad.clone() for p in net.parameters()]  # type: ignore[union-attr]


def test_a_plain_recompute_never_takes_a_closed_blocks_keys() -> None:
    """torch.manual_seed(0) before a sample-keyed step and again before a plain one: the
    plain step's recompute draws what the block's call drew, and must stay plain."""
    net = _net()
    x = torch.randn(5, 8, requires_grad=True)
    torch.manual_seed(0)
    with dropkit.sample_keys(IDS, seed=3):
        net[5](checkpoint(net[:5], x, use_reentrant=False)).sum().backward()
    plain = _plain_grads(net, x, checkpointed=False)
    assert all(torch.equal(a, b)
               for a, b in zip(plain, _plain_grads(net, x, checkpointed=True), strict=True))


@pytest.mark.parametrize("checkpointed_first", ["plain", "block"])
def test_a_recompute_takes_its_own_regions_keys_whatever_came_between(
    checkpointed_first: str,
) -> None:
    """A checkpointed call, then a call of the same draw in the other context (torch's seed
    repeated), then the first one's backward: its recompute is matched by its checkpoint
    region, not by the latest equal draw (which once gave the other call's keys, and wrong
    gradients, in both orders)."""
    x = torch.randn(5, 8, requires_grad=True)
    with dropkit.sample_keys(IDS, seed=0):  # (blocks remembered from here on)
        pass

    def call() -> torch.Tensor:
        return checkpoint(lambda t: dropkit.functional.dropout(t * 1.0, 0.5), x,
                          use_reentrant=False)

    torch.manual_seed(123)
    if checkpointed_first == "plain":
        y = call()
    else:
        with dropkit.sample_keys(IDS, seed=1):
            y = call()
    torch.manual_seed(123)
    if checkpointed_first == "plain":
        with dropkit.sample_keys(IDS, seed=1):
            dropkit.functional.dropout(x * 1.0, 0.5)
    else:
        dropkit.functional.dropout(x * 1.0, 0.5)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g, (y != 0).float() / 0.5)


@pytest.mark.parametrize("reentrant", [True, False])
def test_micro_batches_reseeded_alike_then_one_backward(reentrant: bool) -> None:
    """torch.manual_seed(5) before each of two blocks (outside them), checkpointed, one
    backward for both: the two recomputes draw the same value and are matched one by one
    (latest first, as backward runs them), not both to the latest block."""
    x = torch.randn(4, 8)

    def grads(checkpointed: bool) -> list[torch.Tensor]:
        out = []
        for ids in (torch.arange(4), torch.arange(4) + 100):
            xi = x.clone().requires_grad_(True)
            torch.manual_seed(5)
            with dropkit.sample_keys(ids, seed=7):
                f = lambda t: dropkit.functional.dropout(t, 0.5)  # noqa: E731
                y = checkpoint(f, xi, use_reentrant=reentrant) if checkpointed else f(xi)
            out.append((y, xi))
        sum(y.sum() for y, _ in out).backward()
        return [xi.grad for _, xi in out]  # type: ignore[misc]

    eager, ckpt = grads(False), grads(True)
    assert not torch.equal(eager[0], eager[1])  # (the two blocks' masks differ)
    assert all(torch.equal(a, b) for a, b in zip(eager, ckpt, strict=True))


def test_many_blocks_before_one_backward() -> None:
    """Gradient accumulation over more blocks than are kept: the graph keeps its blocks."""
    net = _net()
    xs = [torch.randn(5, 8, requires_grad=True) for _ in range(_sample_context.KEPT_BLOCKS + 4)]

    def accumulate(checkpointed: bool) -> list[torch.Tensor]:
        net.zero_grad()
        total = torch.zeros(())
        for k, x in enumerate(xs):
            with dropkit.sample_keys(IDS, seed=k):
                h = checkpoint(net[:5], x, use_reentrant=False) if checkpointed else net[:5](x)
                total = total + net[5](h).sum()
        total.backward()
        return [p.grad.clone() for p in net.parameters()]  # type: ignore[union-attr]

    assert all(torch.equal(a, b)
               for a, b in zip(accumulate(False), accumulate(True), strict=True))


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_a_compiled_function_may_open_the_block() -> None:
    """Entering and leaving run eagerly (a graph break each); the calls inside compile."""
    net = _net()

    def step(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        with dropkit.sample_keys(ids, seed=2):
            return net(x)

    x = torch.randn(5, 8)
    assert torch.equal(torch.compile(step)(x, IDS), step(x, IDS))


def test_editing_the_ids_after_entry_changes_nothing() -> None:
    ids = IDS.clone()
    x = torch.ones(5, 30)
    with dropkit.sample_keys(ids, seed=1):
        ids += 1  # the caller reuses its buffer
        a = dropkit.functional.dropout(x, 0.5)
    with dropkit.sample_keys(IDS, seed=1):
        assert torch.equal(a, dropkit.functional.dropout(x, 0.5))


def test_messages_for_a_1d_per_sample_drop_connect_and_a_reused_block() -> None:
    with dropkit.sample_keys(torch.tensor([1]), seed=0), pytest.raises(
            dropkit.SampleKeyError, match=r"1-D input .*unsqueeze\(0\)"):
        dropkit.functional.drop_connect(torch.randn(6), torch.randn(3, 6), None, 0.5,
                                        per_sample=True)
    block = dropkit.sample_keys(torch.tensor([1]), seed=0)
    with block:
        pass
    with pytest.raises(RuntimeError, match="entered already"), block:
        pass


def test_indexed_dataset_negative_indices_are_their_places() -> None:
    data = dropkit.IndexedDataset(torch.utils.data.TensorDataset(torch.arange(5.0)))
    assert data[-1][0] == 4 and torch.equal(data[-1][1][0], torch.tensor(4.0))
    with pytest.raises(IndexError):
        data[-6]
