"""Per variant: ``mc_predict(seed=s)`` is the same for a loop, a fold and any chunk size, and
does not depend on ``torch.manual_seed``.

Before keys were values, four variants (Gaussian, DropBlock, Concrete, DropConnect) read
the MC context nowhere and drew from the seed of torch's global generator: their samples
changed with ``torch.manual_seed`` and with ``chunk``. These tests fail for such a variant.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import dropkit
from dropkit.keys import FoldError
from dropkit.mc import mc_predict


class Embed(nn.Module):
    """Token ids -> embedding dropout -> a linear head (the table's rows are not samples)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = dropkit.nn.EmbeddingDropout(nn.Embedding(20, 4), p=0.3)
        self.head = nn.Linear(4, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(ids)).mean(1)


# The stochastic layer sees the input directly (a GEMM in front could round differently for
# a folded batch of another size: that is the GEMM's business, not the masks').
# name -> (model factory, input factory, foldable)
CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], torch.Tensor], bool]] = {
    "Dropout": (lambda: dropkit.nn.Dropout(0.5), lambda: torch.randn(5, 6), True),
    "Dropout classic, in place": (
        lambda: dropkit.nn.Dropout(0.5, True, scaling="classic"), lambda: torch.randn(5, 6), True),
    "Dropout1d": (lambda: dropkit.nn.Dropout1d(0.5), lambda: torch.randn(5, 3, 7), True),
    "Dropout2d": (lambda: dropkit.nn.Dropout2d(0.5), lambda: torch.randn(5, 3, 4, 4), True),
    "Dropout3d": (lambda: dropkit.nn.Dropout3d(0.5), lambda: torch.randn(5, 2, 2, 2, 3), True),
    "AlphaDropout": (lambda: dropkit.nn.AlphaDropout(0.3), lambda: torch.randn(5, 6), True),
    "FeatureAlphaDropout": (lambda: dropkit.nn.FeatureAlphaDropout(0.3),
                            lambda: torch.randn(5, 3, 4, 4), True),
    "GaussianDropout": (lambda: dropkit.nn.GaussianDropout(0.4), lambda: torch.randn(5, 9), True),
    "LockedDropout": (lambda: dropkit.nn.LockedDropout(0.5), lambda: torch.randn(5, 4, 6), True),
    "DropPath": (lambda: dropkit.nn.DropPath(0.5), lambda: torch.randn(24, 6), True),
    "DropBlock2d": (lambda: dropkit.nn.DropBlock2d(0.3, 2), lambda: torch.randn(5, 2, 4, 4), True),
    "ConcreteDropout": (
        lambda: dropkit.nn.ConcreteDropout(nn.Identity(), p=0.3, input_dim=6),
        lambda: torch.randn(5, 6), True),
    "DropConnect per sample": (lambda: dropkit.nn.DropConnect(nn.Linear(6, 3), 0.5, True),
                               lambda: torch.randn(5, 6), True),
    "DropConnect": (lambda: dropkit.nn.DropConnect(nn.Linear(6, 3), 0.5),
                    lambda: torch.randn(5, 6), False),
    "EmbeddingDropout": (Embed, lambda: torch.randint(0, 20, (5, 7)), False),
}


def _build(name: str) -> tuple[nn.Module, torch.Tensor]:
    model_fn, input_fn, _ = CASES[name]
    torch.manual_seed(0)
    return model_fn(), input_fn()


@pytest.mark.parametrize("name", list(CASES))
def test_mc_predict_is_a_function_of_the_seed_alone(name: str) -> None:
    model, x = _build(name)
    foldable = CASES[name][2]
    T = 4
    torch.manual_seed(1)
    want = mc_predict(model, x, samples=T, seed=11, chunk=1)  # a loop over samples
    assert all(not torch.equal(want[t], want[t + 1]) for t in range(T - 1))  # samples differ
    chunks = (None, 2, 3, T) if foldable else (None,)
    for global_seed in (2, 3):
        for chunk in chunks:
            torch.manual_seed(global_seed)  # must not matter
            got = mc_predict(model, x, samples=T, seed=11, chunk=chunk)
            assert torch.equal(got, want), (global_seed, chunk)
    assert torch.equal(mc_predict(model, x, samples=2, seed=11), want[:2])  # a prefix
    assert not torch.equal(mc_predict(model, x, samples=T, seed=12), want)
    if not foldable:
        with pytest.raises(FoldError):
            mc_predict(model, x, samples=T, seed=11, chunk=2)


def test_explicit_seeds_inside_the_model_are_rekeyed() -> None:
    class Seeded(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return dropkit.functional.dropout(x, 0.5, seed=1234)

    x = torch.ones(3, 16)
    out = mc_predict(Seeded(), x, samples=3, seed=0)
    assert not torch.equal(out[0], out[1])  # re-keyed per sample, not the fixed seed
    assert torch.equal(out, mc_predict(Seeded(), x, samples=3, seed=0, chunk=1))
