"""DropConnect (weights, per batch or per sample) and embedding dropout (whole rows)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as tF

from dropkit import rng
from dropkit.functional import drop_connect, dropout, embedding_dropout
from dropkit.nn import DropConnect, EmbeddingDropout


def binomial_ok(kept: int, n: int, q: float) -> bool:
    return abs(kept / n - q) < 6 * math.sqrt(q * (1 - q) / n)


# ---------------------------------------------------------------- DropConnect


def test_drop_connect_is_linear_with_the_spec_masked_weight() -> None:
    x, w, b = torch.randn(5, 7), torch.randn(4, 7), torch.randn(4)
    p, seed = 0.3, 6
    keep = rng.keep_bits(w.numel(), seed, rng.threshold(p)).view(w.shape)
    w_masked = w * torch.where(keep, torch.tensor(1 / (1 - p)), torch.tensor(0.0))
    assert torch.equal(drop_connect(x, w, b, p, seed=seed), tF.linear(x, w_masked, b))
    classic = drop_connect(x, w, b, p, seed=seed, scaling="classic")
    assert torch.equal(classic, tF.linear(x, w * keep, b))


def test_drop_connect_per_sample_masks_are_independent_and_start_with_the_shared_one() -> None:
    n, out_f, in_f, p, seed = 6, 3, 5, 0.5, 2
    x, w, b = (
        torch.randn(n, 2, in_f, dtype=torch.float64),
        torch.randn(out_f, in_f, dtype=torch.float64),
        None,
    )
    y = drop_connect(x, w, b, p, per_sample=True, seed=seed)
    keep = rng.keep_bits(n * out_f * in_f, seed, rng.threshold(p)).view(n, out_f, in_f)
    for i in range(n):
        assert torch.allclose(y[i], tF.linear(x[i], w * keep[i] * 2.0), rtol=1e-12, atol=1e-12)
    assert not all(torch.equal(keep[0], keep[i]) for i in range(1, n))
    shared = drop_connect(x, w, b, p, seed=seed)
    assert torch.allclose(shared[0], y[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_sample", [False, True])
def test_drop_connect_kept_fraction(per_sample: bool) -> None:
    out_f, in_f, p = 100, 100, 0.2
    # eye(in) @ W'^T is the effective weight itself (per sample: 4 samples' own weights).
    eye = torch.eye(in_f).expand(4, in_f, in_f) if per_sample else torch.eye(in_f)
    y = drop_connect(eye, torch.ones(out_f, in_f), None, p, per_sample=per_sample, seed=9)
    n = y.numel()
    kept = int((y != 0).sum())
    assert bool(((y == 0) | (y == 1 / (1 - p))).all())
    assert binomial_ok(kept, n, 1 - p)
    assert not binomial_ok(n - kept, n, 1 - p)  # a flipped comparison fails it


def test_drop_connect_eval_uses_expected_weights_and_grads() -> None:
    x, w, b = torch.randn(3, 4), torch.randn(2, 4), torch.randn(2)
    assert torch.equal(drop_connect(x, w, b, 0.4, training=False), tF.linear(x, w, b))
    classic = drop_connect(x, w, b, 0.4, training=False, scaling="classic")
    assert torch.equal(classic, tF.linear(x, w * 0.6, b))
    assert torch.equal(drop_connect(x, w, b, 1.0), tF.linear(x, w * 0, b))
    args = [t.double().requires_grad_() for t in (x, w, b)]
    for per_sample in (False, True):

        def f(
            xx: torch.Tensor, ww: torch.Tensor, bb: torch.Tensor, ps: bool = per_sample
        ) -> torch.Tensor:
            return drop_connect(xx, ww, bb, 0.5, per_sample=ps, seed=4)

        assert torch.autograd.gradcheck(f, tuple(args))


def test_drop_connect_module() -> None:
    lin = torch.nn.Linear(4, 3)
    m = DropConnect(lin, 0.25)
    assert "p=0.25, per_sample=False" in repr(m) and "(linear): Linear" in repr(m)
    assert "scaling='classic'" in repr(DropConnect(lin, 0.2, scaling="classic"))
    assert set(m.state_dict()) == {"linear.weight", "linear.bias"}
    x = torch.randn(2, 4)
    torch.manual_seed(0)
    a = m(x)
    torch.manual_seed(0)
    assert torch.equal(a, drop_connect(x, lin.weight, lin.bias, 0.25))
    assert torch.equal(m.eval()(x), lin(x))
    with pytest.raises(TypeError, match=r"nn\.Linear"):
        DropConnect(torch.nn.Conv1d(1, 1, 1), 0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="per_sample"):
        DropConnect(lin, 0.5, per_sample=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="between 0 and 1"):
        DropConnect(lin, -1.0)
    with pytest.raises(ValueError, match="2-D"):
        drop_connect(x, torch.ones(4), None, 0.5)


# ---------------------------------------------------------- embedding dropout


def test_embedding_dropout_drops_whole_words() -> None:
    vocab, dim, p, seed = 50, 6, 0.4, 13
    table = torch.randn(vocab, dim)
    tokens = torch.randint(0, vocab, (8, 30), generator=torch.Generator().manual_seed(0))
    y = embedding_dropout(tokens, table, p, seed=seed)
    keep = rng.keep_bits(vocab, seed, rng.threshold(p))
    dense = tF.embedding(tokens, dropout(table, p, seed=seed, broadcast_dims=(1,)))
    assert torch.equal(y, dense)  # the documented equivalence, bit for bit
    assert torch.equal(y[keep[tokens]], table[tokens][keep[tokens]] * (1 / (1 - p)))
    assert bool((y[~keep[tokens]] == 0).all())
    for t in tokens.unique():  # a word is dropped everywhere or nowhere
        rows = (y[tokens == t] == 0).all(-1)
        assert bool(rows.all() or (~rows).all())
    per_token = dropout(tF.embedding(tokens, table), p, seed=seed, broadcast_dims=(-1,))
    assert not torch.equal(per_token == 0, y == 0)  # per-occurrence masks differ


def test_embedding_dropout_kept_fraction_of_rows() -> None:
    vocab, p = 20_000, 0.1
    y = embedding_dropout(torch.arange(vocab), torch.ones(vocab, 1), p, seed=3)
    kept = int((y != 0).sum())
    assert binomial_ok(kept, vocab, 1 - p)
    assert not binomial_ok(vocab - kept, vocab, 1 - p)


def test_embedding_dropout_eval_and_grads() -> None:
    table = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    tokens = torch.tensor([[1, 2, 2, 9], [0, 1, 5, 5]])
    assert torch.equal(
        embedding_dropout(tokens, table, 0.3, training=False), tF.embedding(tokens, table)
    )
    classic = embedding_dropout(tokens, table, 0.3, training=False, scaling="classic")
    assert torch.equal(classic, tF.embedding(tokens, table) * 0.7)
    embedding_dropout(tokens, table, 0.5, seed=1).sum().backward()
    keep = rng.keep_bits(10, 1, rng.threshold(0.5))
    counts = torch.bincount(tokens.flatten(), minlength=10).double()
    assert torch.equal(table.grad[:, 0], counts * keep.double() * 2.0)
    assert torch.autograd.gradcheck(lambda t: embedding_dropout(tokens, t, 0.5, seed=1), (table,))


def test_embedding_dropout_module() -> None:
    emb = torch.nn.Embedding(20, 4, padding_idx=0)
    m = EmbeddingDropout(emb, 0.2)
    assert "p=0.2" in repr(m) and "(embedding): Embedding(20, 4, padding_idx=0)" in repr(m)
    tokens = torch.tensor([[0, 3, 3, 7]])
    torch.manual_seed(2)
    a = m(tokens)
    torch.manual_seed(2)
    assert torch.equal(a, embedding_dropout(tokens, emb.weight, 0.2, padding_idx=0))
    a.sum().backward()
    assert bool((emb.weight.grad[0] == 0).all())  # padding_idx honoured
    assert torch.equal(m.eval()(tokens), emb(tokens))
    with pytest.raises(TypeError, match=r"nn\.Embedding"):
        EmbeddingDropout(torch.nn.Linear(2, 2), 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="between 0 and 1"):
        EmbeddingDropout(emb, 2.0)
    with pytest.raises(ValueError, match="2-D"):
        embedding_dropout(tokens, torch.ones(3), 0.1)


@pytest.mark.parametrize("shape", [(0, 6), (0, 2, 6)])
@pytest.mark.parametrize("per_sample", [False, True])
def test_drop_connect_of_an_empty_batch_is_the_linear_map_of_nothing(shape, per_sample) -> None:
    w, b = torch.randn(3, 6), torch.randn(3)
    y = drop_connect(torch.randn(shape), w, b, 0.5, per_sample=per_sample, seed=1)
    assert y.shape == tF.linear(torch.randn(shape), w, b).shape
