"""Hypothesis property test: every shape, stride, dtype and p obeys the spec."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dropkit
from dropkit import functional as F

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@st.composite
def tensors(draw: st.DrawFn) -> torch.Tensor:
    shape = draw(st.lists(st.integers(0, 6), min_size=0, max_size=4))
    dtype = draw(st.sampled_from(DTYPES))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))
    x = x.to(dtype)
    layout = draw(st.sampled_from(["contiguous", "transposed", "sliced", "expanded"]))
    if layout == "transposed" and x.dim() >= 2:
        x = x.transpose(0, -1)
    elif layout == "sliced" and x.dim() >= 1:
        x = x[::2]
    elif layout == "expanded":
        x = x.unsqueeze(0).expand(2, *x.shape)
    return x


@settings(max_examples=150, deadline=None)
@given(
    x=tensors(),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**64 - 1),
    scaling=st.sampled_from(["inverted", "classic"]),
)
def test_dropout_obeys_the_spec(x, p, seed, scaling):
    y = F.dropout(x, p, seed=seed, scaling=scaling)
    assert y.shape == x.shape and y.dtype == x.dtype
    if p == 0.0 or x.numel() == 0:
        assert y is x
        return
    keep = dropkit.keep_mask(x.shape, p, seed)
    dt = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    scale = 1.0 / (1.0 - p) if scaling == "inverted" and p < 1.0 else 1.0
    weight = torch.where(keep, torch.tensor(scale, dtype=dt), torch.tensor(0.0, dtype=dt))
    expected = (x.to(dt) * weight).to(x.dtype)
    assert torch.equal(y, expected)
    assert torch.equal(y, F.dropout(x.contiguous(), p, seed=seed, scaling=scaling))
