"""Every variant that draws through the backends gives the same bits on "reference" and "auto"."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import dropkit
from dropkit import functional as F

NAMES = [
    "concrete_dropout",
    "drop_block2d",
    "drop_connect",
    "drop_connect_per_sample",
    "drop_path",
    "dropout_broadcast",
    "dropout_broadcast_inplace",
    "embedding_dropout",
    "gaussian_dropout",
]


def calls(dtype: torch.dtype) -> dict[str, Callable[[], torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 9, 8, generator=gen).to(dtype)
    w = torch.randn(6, 5, generator=gen).to(dtype)
    ones = torch.ones(2, 5, dtype=dtype)
    table = torch.randn(7, 3, generator=gen).to(dtype)
    tokens = torch.tensor([[1, 4, 4, 0], [2, 3, 5, 1]])
    return {
        "dropout_broadcast": lambda: F.dropout(x, 0.3, seed=1, broadcast_dims=(1, -1)),
        "dropout_broadcast_inplace": lambda: F.dropout(
            x.clone(), 0.3, True, True, seed=1, broadcast_dims=(2,)
        ),
        "drop_path": lambda: F.drop_path(x, 0.4, seed=2),
        "drop_block2d": lambda: F.drop_block2d(x, 0.2, 3, seed=3),
        "drop_connect": lambda: F.drop_connect(ones, w, None, 0.5, seed=4),
        "drop_connect_per_sample": lambda: F.drop_connect(ones, w, None, 0.5, True, seed=4),
        "embedding_dropout": lambda: F.embedding_dropout(tokens, table, 0.5, seed=5),
        "gaussian_dropout": lambda: F.gaussian_dropout(x, 0.3, seed=6),
        "concrete_dropout": lambda: F.concrete_dropout(x, torch.tensor(-1.0), seed=7),
    }


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reference_and_auto_agree_bit_for_bit(name: str, dtype: torch.dtype) -> None:
    call = calls(dtype)[name]
    with dropkit.use_backend("reference"):
        ref = call()
    with dropkit.use_backend("auto"):
        assert torch.equal(call(), ref)
    for backend, reason in dropkit.available_backends(torch.empty(0, dtype=dtype)).items():
        if reason is None:  # numba / triton once they are registered
            with dropkit.use_backend(backend):
                assert torch.equal(call(), ref), backend
    assert ref.dtype == dtype
