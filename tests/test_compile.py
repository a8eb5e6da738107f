"""torch.compile, torch.library.opcheck and torch.export over dropkit's custom ops.

Under the same ``torch.manual_seed`` a compiled model and its eager twin draw the same
seeds (``dropkit::draw_seed*`` is opaque to the compiler), so outputs and gradients agree
bit for bit. Compiling is slow: few, small models, each compiled once per module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn
from torch.library import opcheck

import dropkit
import dropkit.functional as F

Step = tuple[torch.Tensor, list[torch.Tensor]]


@pytest.fixture(scope="module", autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    """Start and leave this module with empty Dynamo caches (no recompiles leak across)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 32),
        dropkit.nn.Dropout(0.3, inplace=True),  # in place on addmm's output (not saved)
        nn.ReLU(),
        nn.Linear(32, 32),
        dropkit.nn.Dropout(0.5),
        nn.Linear(32, 4),
        dropkit.nn.AlphaDropout(0.1),
    )


def _convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3),
        dropkit.nn.Dropout2d(0.5),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 10),
        dropkit.nn.Dropout(0.25, scaling="classic"),
    )


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (_mlp, (16, 8)),
    "convnet": (_convnet, (4, 3, 6, 6)),
}


def _step(model: nn.Module, params: list[nn.Parameter], x: torch.Tensor, seed: int) -> Step:
    """One training forward and backward from ``torch.manual_seed(seed)``."""
    for p in params:
        p.grad = None
    torch.manual_seed(seed)
    y = model(x)
    y.square().sum().backward()
    return y.detach(), [p.grad.clone() for p in params]


def _run(name: str, backend: str) -> tuple[list[Step], list[Step]]:
    """Two steps (seeds 1 and 2) of the compiled model, then of the same model eagerly."""
    make, shape = MODELS[name]
    model = make().train()
    params = list(model.parameters())
    x = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    got = [_step(compiled, params, x, seed) for seed in (1, 2)]
    want = [_step(model, params, x, seed) for seed in (1, 2)]
    return got, want


@pytest.fixture(scope="module")
def aot_eager_runs() -> dict[str, tuple[list[Step], list[Step]]]:
    return {name: _run(name, "aot_eager") for name in MODELS}


@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_training_matches_eager_bitwise(
    aot_eager_runs: dict[str, tuple[list[Step], list[Step]]], name: str
) -> None:
    got, want = aot_eager_runs[name]
    for (y_c, g_c), (y_e, g_e) in zip(got, want, strict=True):
        assert torch.equal(y_c, y_e)
        assert all(torch.equal(a, b) for a, b in zip(g_c, g_e, strict=True))
    # Control: each call draws fresh masks, so the check above is not vacuous.
    assert not torch.equal(got[0][0], got[1][0])


# Inductor's own import path uses torch.jit.script_method, deprecated: torch's, not ours.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_inductor_training_matches_eager() -> None:
    """Inductor: outputs and weight gradients bit for bit.

    Bias gradients are reductions over the batch that Inductor reorders (fused sums), so
    they may differ from eager in the last bit with or without dropout; they are compared
    at float32 rounding level instead.
    """
    pytest.importorskip("torch._inductor")
    (got, want) = _run("mlp", "inductor")
    eps = torch.finfo(torch.float32).eps
    for (y_c, g_c), (y_e, g_e) in zip(got, want, strict=True):
        assert torch.equal(y_c, y_e)
        for i, (a, b) in enumerate(zip(g_c, g_e, strict=True)):
            if i % 2 == 0:  # weights
                assert torch.equal(a, b)
            else:  # biases
                torch.testing.assert_close(a, b, rtol=8 * eps, atol=8 * eps * b.abs().max())


FUNCTIONALS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "dropout": lambda x: F.dropout(x, 0.3),
    "dropout_inplace": lambda x: F.dropout(x * 1.0, 0.3, inplace=True),
    "dropout_classic": lambda x: F.dropout(x, 0.3, scaling="classic"),
    "dropout_seeded": lambda x: F.dropout(x, 0.3, seed=2**63 + 5),
    "dropout1d": lambda x: F.dropout1d(x, 0.3),
    "dropout2d": lambda x: F.dropout2d(x.unsqueeze(-1), 0.3),
    "dropout3d_inplace": lambda x: F.dropout3d(x[..., None, None] * 1.0, 0.3, inplace=True),
    "alpha_dropout": lambda x: F.alpha_dropout(x, 0.3, True),
    "feature_alpha_dropout": lambda x: F.feature_alpha_dropout(x, 0.3, True),
    "two_on_one_input": lambda x: F.dropout(x, 0.5) - F.dropout(x, 0.5),
}


@pytest.mark.parametrize("name", list(FUNCTIONALS))
def test_no_graph_breaks(name: str) -> None:
    fn = FUNCTIONALS[name]
    x = torch.randn(2, 3, 4, requires_grad=True)
    explained = torch._dynamo.explain(fn)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_two_dropouts_in_one_graph_draw_two_seeds() -> None:
    """The seed draws of one graph are not merged: a mask differs from its twin's."""
    fn = torch.compile(FUNCTIONALS["two_on_one_input"], backend="aot_eager", fullgraph=True)
    x = torch.ones(64, requires_grad=True)
    torch.manual_seed(3)
    got = fn(x)
    torch.manual_seed(3)
    want = FUNCTIONALS["two_on_one_input"](x)
    assert torch.equal(got, want)
    assert got.abs().sum() > 0  # two equal masks would cancel exactly


def test_module_p_traced_as_symbolic_float() -> None:
    """A second Sequential with another p recompiles with p symbolic: still one graph, exact."""
    x = torch.randn(4, 8, requires_grad=True)
    for p in (0.2, 0.6, 0.7):
        model = nn.Sequential(dropkit.nn.Dropout(p))
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        torch.manual_seed(9)
        got = compiled(x)
        torch.manual_seed(9)
        assert torch.equal(got, model(x))


def _mask_affine_samples() -> list[tuple]:
    """(x, seed, offset, [thresh, *mask_shape], [w_keep, w_drop, b_keep, b_drop], bias)."""
    gen = torch.Generator().manual_seed(0)

    def randn(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=dtype)

    s = torch.tensor(7)
    rows = torch.tensor([3, -5, 2**40])  # per-row keys
    return [
        (randn(3, 5).requires_grad_(), s, 0, [1000, 3, 5], [1.5, 0.0, 0.0, 0.0], True),
        (randn(3, 5, 2), torch.tensor(-3), 0, [2**31, 3, 5, 1], [2.0, 0.0, 0.0, 0.0], True),
        (randn(4, 6, dtype=torch.float64).requires_grad_(), s, 0, [2**32 - 1, 4, 6],
         [0.7, 0.1, 0.3, -1.2], True),
        (randn(6, 4).t(), s, 5, [12345, 4, 6], [1.25, 0.0, 0.0, 0.0], True),
        (randn(8, dtype=torch.bfloat16).requires_grad_(), s, 0, [2**30, 8],
         [1.0, 0.0, 0.0, 0.0], True),
        (randn(2, 3, 4).requires_grad_(), s, 0, [2**29, 2, 3, 1], [0.9, 0.0, 0.2, -0.4], False),
        (randn(3, 7).requires_grad_(), rows, 3, [2**31, 3, 7], [2.0, 0.0, 0.0, 0.0], True),
        (randn(3, 4, 2).requires_grad_(), rows, 0, [2**31, 3, 4, 1], [2.0, 0.0, 0.5, 0.1], True),
    ]


@pytest.mark.parametrize("sample", range(len(_mask_affine_samples())))
def test_opcheck_mask_affine(sample: int) -> None:
    opcheck(torch.ops.dropkit.mask_affine.default, _mask_affine_samples()[sample])


def test_opcheck_variant_ops() -> None:
    """The other registered seeded ops: Gaussian, DropBlock and the logistic noise."""
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    s, rows = torch.tensor(11), torch.tensor([4, 9])
    for seed in (s, rows):
        opcheck(torch.ops.dropkit.gaussian_mul.default, (x, seed, 1, [], [0.5], True))
        opcheck(torch.ops.dropkit.drop_block2d.default, (x, seed, 0, [2**28, 3], [], True))
        opcheck(
            torch.ops.dropkit.logistic_noise.default,
            ([2, 5], seed, 0, [], [], torch.float32, torch.device("cpu")),
        )


def test_opcheck_draw_seed() -> None:
    opcheck(torch.ops.dropkit.draw_seed.default, ())
    opcheck(torch.ops.dropkit.draw_seed_ordered.default, (torch.zeros(1, dtype=torch.int64),))


def test_export_eval_mode_is_the_identity_graph() -> None:
    model = _mlp().eval()
    x = torch.randn(3, 8)
    exported = torch.export.export(model, (x,))
    assert "dropkit" not in exported.graph_module.code
    assert torch.equal(exported.module()(x), model(x))


def test_export_training_mode_replays_eager() -> None:
    model = _convnet().train()
    x = torch.randn(2, 3, 6, 6)
    exported = torch.export.export(model, (x,))
    assert "dropkit.mask_affine" in exported.graph_module.code
    torch.manual_seed(4)
    got = exported.module()(x)
    torch.manual_seed(4)
    assert torch.equal(got, model(x))
