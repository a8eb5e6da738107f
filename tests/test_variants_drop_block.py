"""DropBlock: union-of-blocks masks, the paper's gamma, count normalisation, regenerated grad."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as tF

import dropkit
from dropkit import rng
from dropkit.functional import drop_block2d, dropout
from dropkit.layers import drop_block as db
from dropkit.nn import DropBlock2d


def union_of_blocks(dropped: torch.Tensor, b: int) -> bool:
    """Whether every dropped unit lies in a fully dropped b x b square inside the map."""
    full = tF.avg_pool2d(dropped.double(), b, stride=1) == 1  # corners of all-dropped squares
    grown = tF.max_pool2d(tF.pad(full.double(), (b - 1,) * 4), b, stride=1) > 0
    return torch.equal(grown, dropped)


@pytest.mark.parametrize("b", [1, 2, 3, 4, 5])
def test_blocks_and_scale(b: int) -> None:
    x = torch.rand(4, 3, 12, 10) + 0.5
    p, seed = 0.3, 17
    y = drop_block2d(x, p, b, seed=seed)
    dropped = y == 0
    assert union_of_blocks(dropped, b)
    assert not union_of_blocks(dropout(x, p, seed=seed) == 0, 3)  # an element mask is not
    for n in range(x.shape[0]):  # each sample normalised by its own kept count
        keep = ~dropped[n]
        scale = torch.tensor(keep.numel() / int(keep.sum()), dtype=torch.float32)
        assert torch.equal(y[n][keep], x[n][keep] * scale)
    # A whole-batch normalisation (timm's) would make the scales of the samples differ
    # from these; with this seed at least two samples keep different counts.
    counts = (~dropped).flatten(1).sum(1)
    assert len(set(counts.tolist())) > 1 or b == 1
    # The seed points are the spec's draws below threshold(gamma) at corners that fit.
    thresh = rng.threshold(db.block_gamma(p, b, 12, 10))
    seeds = ~rng.keep_bits(x.numel(), seed, thresh).view(x.shape)
    assert torch.equal(dropped, db.drop_block2d_mask(x, seed, thresh, b))
    assert bool(
        dropped[:, :, : 12 - b + 1, : 10 - b + 1][seeds[:, :, : 12 - b + 1, : 10 - b + 1]].all()
    )


def test_block_size_one_is_dropouts_mask_and_total_mass_is_kept() -> None:
    x = torch.ones(8, 4, 9, 9)
    y = drop_block2d(x, 0.25, 1, seed=4)
    assert torch.equal(y == 0, dropout(x, 0.25, seed=4) == 0)
    assert float(y.sum()) == pytest.approx(x.numel(), rel=1e-6)  # count normalisation
    # ...per sample: a sample's output does not depend on the rest of its batch.
    for n in range(x.shape[0]):
        assert float(y[n].sum()) == pytest.approx(x[n].numel(), rel=1e-6)


def expected_fraction(gamma_eff: float, b: int, h: int, w: int) -> float:
    """Exact E[dropped fraction]: a unit covered by k valid corners survives w.p. (1-g)^k."""
    corners = torch.ones(1, 1, h - b + 1, w - b + 1, dtype=torch.float64)
    k = tF.conv2d(tF.pad(corners, (b - 1,) * 4), torch.ones(1, 1, b, b, dtype=torch.float64))
    assert k.shape[-2:] == (h, w)
    return float((1 - (1 - gamma_eff) ** k).mean())


@pytest.mark.parametrize(("b", "gamma_rule"), [(4, "paper"), (5, "paper"), (5, "no_valid_term")])
def test_dropped_fraction(b: int, gamma_rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Observed fraction within 6 sigma of the exact expectation, which lies in
    [p (1 - gamma b^2 / 2), p]; a gamma without the valid-region term is caught."""
    n, c, h, w, p = 16, 32, 16, 16, 0.2
    gamma = db.block_gamma(p, b, h, w)
    lo, hi = p * (1 - gamma * b * b / 2), p
    expected = expected_fraction(rng.threshold(gamma) / 2**32, b, h, w)
    assert lo <= expected <= hi
    if gamma_rule == "no_valid_term":
        monkeypatch.setattr(db, "block_gamma", lambda p, b, h, w: p / (b * b))
    y = drop_block2d(torch.ones(n, c, h, w), p, b, seed=123)
    per_map = (y == 0).double().mean(dim=(2, 3)).flatten()  # n*c independent maps
    tol = 6 * float(per_map.std()) / math.sqrt(per_map.numel())
    assert (abs(float(per_map.mean()) - expected) < tol) == (gamma_rule == "paper")


def test_block_larger_than_map_is_clipped() -> None:
    y = drop_block2d(torch.ones(50, 2, 5, 5), 0.5, 9, seed=1)
    dropped = (y == 0).flatten(2)
    assert bool((dropped.all(2) | (~dropped).all(2)).all())  # clipped to 5: whole maps


def test_eval_degenerate_backward() -> None:
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    assert drop_block2d(x, 0.3, 3, training=False) is x
    assert drop_block2d(x, 0.0, 3) is x
    assert torch.equal(drop_block2d(x, 1.0, 3), x * 0)
    xr = x.clone().requires_grad_()
    y = drop_block2d(xr, 0.3, 3, seed=5)
    y.sum().backward()
    assert torch.equal(xr.grad, drop_block2d(torch.ones_like(x), 0.3, 3, seed=5))
    assert torch.autograd.gradcheck(lambda v: drop_block2d(v, 0.3, 2, seed=5), (xr,))
    m = DropBlock2d(0.2, 3)
    assert m.eval()(x) is x
    torch.manual_seed(3)
    a = m.train()(x)
    torch.manual_seed(3)
    assert torch.equal(a, drop_block2d(x, 0.2, 3))


def test_repr_and_errors() -> None:
    assert repr(DropBlock2d(0.1, 5)) == "DropBlock2d(p=0.1, block_size=5)"
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        DropBlock2d(0.1, 0)
    with pytest.raises(TypeError, match="block_size must be an int"):
        DropBlock2d(0.1, 2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="block_size must be an int"):
        drop_block2d(torch.ones(1, 1, 4, 4), 0.1, True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="4-D"):
        drop_block2d(torch.ones(3, 4, 4), 0.1, 2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        DropBlock2d(1.1, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_row", [False, True])
def test_fused_numba_pass_matches_the_reference_bit_for_bit(dtype, per_row) -> None:
    """numba's one-pass DropBlock (corners, blocks, per-sample counts, scale) is the
    reference's torch ops exactly: NaNs, per-row keys, offsets and every block size, on a view
    that starts inside its storage (the scalar-key pass goes by address)."""
    from dropkit.layers.drop_block import DROP_BLOCK2D

    gen = torch.Generator().manual_seed(3)
    bits = {torch.float32: torch.int32, torch.float64: torch.int64}[dtype]
    for shape in [(2, 3, 8, 8), (4, 2, 7, 5), (1, 1, 3, 3)]:
        x = torch.randn(shape, generator=gen).to(dtype)
        x.view(-1)[::13] = float("nan")
        x = torch.cat([torch.zeros(1, dtype=dtype), x.view(-1)])[1:].view(shape)  # (offset 1)
        seed = torch.arange(shape[0]) * 7 + 1 if per_row else torch.tensor(5)
        for b in (1, 2, 3):
            for p in (0.1, 0.6, 0.99):
                thresh = rng.threshold(min(db.block_gamma(p, b, *shape[2:]), 0.999))
                for offset in (0, 3):
                    args = (x, seed, offset, [thresh, b], [], True, None, 0)
                    with dropkit.use_backend("reference"):
                        want = DROP_BLOCK2D.compute(*args)
                    with dropkit.use_backend("numba"):
                        got = DROP_BLOCK2D.compute(*args)
                    assert torch.equal(got.view(bits), want.view(bits)), (shape, b, p)
