"""What eager backward keeps: a small multiplier (torch's autograd), else nothing (regenerated).

A call whose multiplier fits in ``seeded.KEEP_BYTES`` lets torch's C++ autograd keep it
and multiply the gradient by it; a larger one keeps nothing per element and dropkit's
graph node regenerates it from the keys. Both give the same bits: forward, gradient,
double backward, in every dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import dropkit
import dropkit.functional as F
from dropkit.backends import seeded

Fn = Callable[[torch.Tensor], torch.Tensor]
P_LOGIT = torch.tensor(-1.0)
CASES: dict[str, tuple[Fn, tuple[int, ...]]] = {
    "dropout": (lambda t: F.dropout(t, 0.3, seed=3), (8, 64)),
    "dropout inplace": (lambda t: F.dropout(t * 1.0, 0.3, True, True, seed=3), (8, 64)),
    "dropout broadcast": (lambda t: F.dropout(t, 0.3, seed=3, broadcast_dims=(1,)), (8, 64)),
    "dropout2d": (lambda t: F.dropout2d(t, 0.3, seed=3), (4, 8, 4, 4)),
    "alpha_dropout": (lambda t: F.alpha_dropout(t, 0.3, True, seed=3), (8, 64)),
    "alpha_dropout inplace": (
        lambda t: F.alpha_dropout(t * 1.0, 0.3, True, True, seed=3), (8, 64)
    ),
    "feature_alpha_dropout": (
        lambda t: F.feature_alpha_dropout(t, 0.3, True, seed=3), (4, 8, 16)
    ),
    "gaussian_dropout": (lambda t: F.gaussian_dropout(t, 0.3, seed=3), (8, 64)),
    "drop_path": (lambda t: F.drop_path(t, 0.3, seed=3), (16, 32)),
    "drop_block2d": (lambda t: F.drop_block2d(t, 0.3, 3, seed=3), (2, 4, 8, 8)),
    "locked_dropout": (lambda t: F.locked_dropout(t, 0.3, seed=3), (4, 8, 16)),
    "drop_connect": (
        lambda w: F.drop_connect(torch.ones(3, 32, dtype=w.dtype), w, None, 0.5, seed=3),
        (16, 32),
    ),
    "embedding_dropout": (
        lambda w: F.embedding_dropout(torch.tensor([[0, 3, 5], [7, 3, 1]]), w, 0.5, seed=3),
        (8, 16),
    ),
}
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def _run(fn: Fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Output, gradient (for a fixed upstream gradient) and the bytes saved for backward."""
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    leaf = x.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(leaf)
    g = torch.linspace(-2.0, 3.0, y.numel()).view(y.shape).to(y.dtype)
    (grad,) = torch.autograd.grad(y, leaf, g)
    return y.detach(), grad, sum(t.numel() * t.element_size() for t in saved)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(CASES))
def test_kept_and_regenerated_backward_agree_bit_for_bit(
    name: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    fn, shape = CASES[name]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    limit = seeded.KEEP_BYTES
    y_kept, g_kept, bytes_kept = _run(fn, x)
    monkeypatch.setattr(seeded, "KEEP_BYTES", 0)
    y_regen, g_regen, bytes_regen = _run(fn, x)
    with torch.no_grad():
        y_plain = fn(x.clone())
    assert torch.equal(y_kept, y_regen) and torch.equal(y_kept, y_plain)
    assert torch.equal(g_kept, g_regen)
    assert 0 < bytes_kept <= 2 * limit + x.numel() * 8  # (+ drop_connect's matmul input)
    assert bytes_regen <= bytes_kept  # (embedding dropout keeps its per-token factor in both)


def test_large_inputs_keep_nothing_per_element() -> None:
    x = torch.randn(64, 128)  # 32 KiB of multiplier in float32: over KEEP_BYTES
    assert x.numel() * 4 > seeded.KEEP_BYTES
    for fn in (
        lambda t: F.dropout(t * 1.0, 0.5),
        lambda t: F.alpha_dropout(t * 1.0, 0.5, True),
        lambda t: F.gaussian_dropout(t * 1.0, 0.5),
    ):
        assert _run(fn, x)[2] == 0


def test_a_broadcast_mask_is_kept_however_large_the_input() -> None:
    """Channel dropout of a large map keeps only its [N, C, 1, 1] multiplier."""
    x = torch.randn(8, 16, 32, 32)  # 512 KiB; the mask is 128 values
    _, grad, saved = _run(lambda t: F.dropout2d(t * 1.0, 0.5, seed=1), x)
    assert saved == 8 * 16 * 4
    assert torch.equal(grad != 0, F.dropout2d(torch.ones_like(x), 0.5, seed=1) != 0)


def test_the_kept_graph_holds_per_row_keys() -> None:
    """The node keeps per-row keys (a sample-keys block hangs on them for a recompute)."""
    x = torch.randn(3, 16, requires_grad=True)
    with dropkit.sample_keys(torch.tensor([4, 5, 6]), seed=9):
        y = F.dropout(x, 0.5)
    assert y.grad_fn.metadata["dropkit_keys"].shape == (3,)


def test_a_wrong_kept_multiplier_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agreement test fails when the kept path draws another mask (a plausible bug)."""
    fn, shape = CASES["dropout"]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    real = seeded.SeededMultiply._kept

    def off_by_one(self, x, seed, offset, *args):  # type: ignore[no-untyped-def]
        return real(self, x, seed, offset + 1, *args)

    monkeypatch.setattr(seeded.SeededMultiply, "_kept", off_by_one)
    y_bug, g_bug, _ = _run(fn, x)
    monkeypatch.setattr(seeded, "KEEP_BYTES", 0)
    y_regen, g_regen, _ = _run(fn, x)
    assert not torch.equal(y_bug, y_regen) and not torch.equal(g_bug, g_regen)


def test_the_kept_affine_is_one_autograd_node() -> None:
    """Alpha dropout's ``x * w + b`` keeps one node (the product's; ``b`` is a constant),
    and its gradient is still ``w`` (checked bit for bit above, against regeneration)."""
    x = torch.randn(8, 64, requires_grad=True)
    y = F.alpha_dropout(x, 0.3, True, seed=3)
    assert y.grad_fn.name() == "MulBackward0"
    assert y.grad_fn.next_functions[0][0].variable is x
    assert torch.equal(y.detach(), F.alpha_dropout(x.detach(), 0.3, True, seed=3))
