"""R-Drop: the symmetric KL between two dropout passes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as tF

from dropkit.functional import dropout, rdrop_loss


def paper_code(
    p: torch.Tensor, q: torch.Tensor, pad_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The R-Drop repository's compute_kl_loss, per element then summed."""
    p_loss = tF.kl_div(tF.log_softmax(p, dim=-1), tF.softmax(q, dim=-1), reduction="none")
    q_loss = tF.kl_div(tF.log_softmax(q, dim=-1), tF.softmax(p, dim=-1), reduction="none")
    if pad_mask is not None:
        p_loss = p_loss.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        q_loss = q_loss.masked_fill(pad_mask.unsqueeze(-1), 0.0)
    return (p_loss.sum() + q_loss.sum()) / 2


def test_matches_the_papers_code_in_every_reduction() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(4, 7, 10, generator=gen, dtype=torch.float64),
        torch.randn(4, 7, 10, generator=gen, dtype=torch.float64),
    )
    ref = paper_code(a, b)
    assert float(rdrop_loss(a, b, reduction="sum")) == pytest.approx(float(ref), rel=1e-12)
    assert float(rdrop_loss(a, b)) == pytest.approx(float(ref) / 28, rel=1e-12)
    rows = rdrop_loss(a, b, reduction="none")
    assert rows.shape == (4, 7) and bool((rows >= 0).all())
    pad = torch.zeros(4, 7, dtype=torch.bool)
    pad[:, 5:] = True
    masked = rdrop_loss(a, b, reduction="sum", pad_mask=pad)
    assert float(masked) == pytest.approx(float(paper_code(a, b, pad)), rel=1e-12)
    assert float(rdrop_loss(a, b, pad_mask=pad)) == pytest.approx(float(masked) / 20, rel=1e-12)
    one_sided = tF.kl_div(tF.log_softmax(a, -1), tF.softmax(b, -1), reduction="sum")
    assert abs(float(one_sided) - float(ref)) > 1e-3  # a one-sided KL is a different number


def test_properties_and_gradient() -> None:
    a = torch.randn(3, 4, dtype=torch.float64)
    b = torch.randn(3, 4, dtype=torch.float64)
    assert float(rdrop_loss(a, b)) == pytest.approx(float(rdrop_loss(b, a)), rel=1e-12)
    assert float(rdrop_loss(a, a)) == 0.0
    assert float(rdrop_loss(a, a + 3.0)) == pytest.approx(0.0, abs=1e-12)  # shift-invariant
    assert float(rdrop_loss(a * 1e4, b * 1e4)) < float("inf")  # stable for huge logits
    args = (a.clone().requires_grad_(), b.clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda x, y: rdrop_loss(x, y), args)
    assert rdrop_loss(a.T, b.T, dim=0).shape == ()


@torch.no_grad()
def test_two_dropout_passes() -> None:
    head = torch.nn.Linear(8, 3)
    h = torch.randn(16, 8)
    a = head(dropout(h, 0.3, seed=1))
    assert float(rdrop_loss(a, head(dropout(h, 0.3, seed=2)))) > 0
    assert float(rdrop_loss(a, head(dropout(h, 0.3, seed=1)))) == 0.0


def test_errors() -> None:
    a = torch.randn(2, 3)
    with pytest.raises(ValueError, match="same shape"):
        rdrop_loss(a, torch.randn(2, 4))
    with pytest.raises(ValueError, match="unknown reduction"):
        rdrop_loss(a, a, reduction="batchmean")
    with pytest.raises(TypeError, match="floating-point"):
        rdrop_loss(a, torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="pad_mask"):
        rdrop_loss(a, a, pad_mask=torch.zeros(3, dtype=torch.bool))


def test_pad_mask_of_another_type_is_a_type_error() -> None:
    logits = torch.randn(2, 3, 5)
    with pytest.raises(TypeError, match="pad_mask must be a bool tensor"):
        rdrop_loss(logits, logits, pad_mask=[[True, False, False], [False] * 3])  # type: ignore[arg-type]
