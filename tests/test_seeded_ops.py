"""The seeded-op factory's contract, for every random variant.

- Forward-mode AD, ``torch.func.grad``, ``jvp`` and ``vmap`` work on seeded calls, with the
  tangent and the gradient equal to the forward multiplier ``m = f(1) - f(0)``.
- In place bumps the version counter once, as torch's in-place ops do, so autograd notices
  when a tensor saved for backward is overwritten.
- Both backward policies (a small multiplier kept by torch's autograd, a larger one
  regenerated from the keys) pass all of it: every test runs under each.
- ``torch.jit.trace`` records the op: a traced model draws a fresh mask per call (and the
  same one as eager under the same ``torch.manual_seed``), never uninitialised memory; it
  refuses an input of another shape than the traced one, and tracing a drawn sample.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.autograd.forward_ad as fwAD

import dropkit
import dropkit.functional as F
from dropkit.backends import seeded

# torch.func and torch.jit emit torch's own deprecation notices for torch.jit on first use.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.trace.*` is deprecated:DeprecationWarning"),
    # A trace specialises on the traced shapes (as for any shape-dependent module).
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]



@pytest.fixture(autouse=True, params=["kept", "regenerated"])
def _backward_policy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test twice: small multipliers kept by torch's autograd (the default at these
    sizes), and regenerated from the keys in dropkit's own graph node (larger inputs)."""
    if request.param == "regenerated":
        monkeypatch.setattr(seeded, "KEEP_BYTES", 0)


Fn = Callable[[torch.Tensor], torch.Tensor]
LOGIT = torch.tensor(0.3, dtype=torch.float64)

# Every random variant as a seeded function of one float64 (2, 3, 6, 6) tensor, elementwise
# (affine) in its argument. DropConnect and embedding dropout are linear in their weight.
ELEMENTWISE: dict[str, Fn] = {
    "dropout": lambda t: F.dropout(t, 0.3, seed=3),
    "dropout_classic": lambda t: F.dropout(t, 0.3, scaling="classic", seed=3),
    "dropout_broadcast": lambda t: F.dropout(t, 0.3, seed=3, broadcast_dims=(2,)),
    "dropout1d": lambda t: F.dropout1d(t.flatten(2), 0.3, seed=3).view(t.shape),
    "dropout2d": lambda t: F.dropout2d(t, 0.3, seed=3),
    "dropout3d": lambda t: F.dropout3d(t.unsqueeze(2), 0.3, seed=3).squeeze(2),
    "alpha_dropout": lambda t: F.alpha_dropout(t, 0.3, True, seed=3),
    "feature_alpha_dropout": lambda t: F.feature_alpha_dropout(t, 0.3, True, seed=3),
    "gaussian_dropout": lambda t: F.gaussian_dropout(t, 0.3, seed=3),
    "locked_dropout": lambda t: F.locked_dropout(t, 0.3, seed=3),
    "drop_path": lambda t: F.drop_path(t, 0.3, seed=3),
    "drop_block2d": lambda t: F.drop_block2d(t, 0.3, 3, seed=3),
    "concrete_dropout": lambda t: F.concrete_dropout(t, LOGIT, seed=3),
}
WEIGHT = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
IDS = torch.tensor([[0, 3, 3, 4], [4, 1, 0, 2]])
LINEAR: dict[str, tuple[Fn, torch.Tensor]] = {
    "drop_connect(input)": (lambda t: F.drop_connect(t, WEIGHT, None, 0.5, seed=3), torch.randn(
        4, 6, dtype=torch.float64)),
    "drop_connect(weight)": (
        lambda w: F.drop_connect(torch.ones(4, 6, dtype=torch.float64), w, None, 0.5, seed=3),
        WEIGHT.clone(),
    ),
    "drop_connect per_sample": (
        lambda t: F.drop_connect(t, WEIGHT, None, 0.5, True, seed=3),
        torch.randn(4, 6, dtype=torch.float64),
    ),
    "embedding_dropout(weight)": (
        lambda w: F.embedding_dropout(IDS, w, 0.5, seed=3), WEIGHT.clone()
    ),
}


def _x() -> torch.Tensor:
    return torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def _multiplier(f: Fn, x: torch.Tensor) -> torch.Tensor:
    return f(torch.ones_like(x)) - f(torch.zeros_like(x))


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_forward_ad_tangent_is_the_multiplier(name: str) -> None:
    f, x = ELEMENTWISE[name], _x()
    tangent = torch.randn_like(x)
    with fwAD.dual_level():
        primal, out_tangent = fwAD.unpack_dual(f(fwAD.make_dual(x, tangent)))
    assert out_tangent is not None, "no tangent: forward AD is not wired"
    m = _multiplier(f, x)
    assert bool((m != 1).any())  # the mask does something, so the check can fail
    torch.testing.assert_close(primal, f(x), rtol=0, atol=0)
    torch.testing.assert_close(out_tangent, tangent * m)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_torch_func_grad_jvp_vmap(name: str) -> None:
    f, x = ELEMENTWISE[name], _x()
    m = _multiplier(f, x)
    torch.testing.assert_close(torch.func.grad(lambda t: f(t).sum())(x), m)
    tangent = torch.randn_like(x)
    out, jvp = torch.func.jvp(f, (x,), (tangent,))
    torch.testing.assert_close(out, f(x), rtol=0, atol=0)
    torch.testing.assert_close(jvp, tangent * m)
    # vmap over a stack: every slice gets the same mask as the unbatched call (same keys).
    stack = torch.stack([x, 2 * x, -x])
    batched = torch.func.vmap(f)(stack)
    for i in range(3):
        torch.testing.assert_close(batched[i], f(stack[i]), rtol=0, atol=1e-15)
    moved = torch.func.vmap(f, in_dims=1, out_dims=1)(stack.transpose(0, 1))
    torch.testing.assert_close(moved.transpose(0, 1), batched, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(LINEAR))
def test_linear_variants_under_forward_ad_and_torch_func(name: str) -> None:
    f, x = LINEAR[name]
    tangent = torch.randn_like(x)
    with fwAD.dual_level():
        _, out_tangent = fwAD.unpack_dual(f(fwAD.make_dual(x, tangent)))
    torch.testing.assert_close(out_tangent, f(tangent))  # linear: the tangent is f(t)
    _, jvp = torch.func.jvp(f, (x,), (tangent,))
    torch.testing.assert_close(jvp, f(tangent))
    leaf = x.clone().requires_grad_()
    f(leaf).pow(2).sum().backward()
    torch.testing.assert_close(torch.func.grad(lambda t: f(t).pow(2).sum())(x), leaf.grad)


PER_SLICE = {
    "dropout": lambda t, s: F.dropout(t, 0.5, seed=s),
    "dropout2d": lambda t, s: F.dropout2d(t.unsqueeze(0), 0.5, seed=s).squeeze(0),
    "alpha_dropout": lambda t, s: F.alpha_dropout(t, 0.5, True, seed=s),
    "feature_alpha_dropout": lambda t, s: F.feature_alpha_dropout(t, 0.5, True, seed=s),
    "gaussian_dropout": lambda t, s: F.gaussian_dropout(t, 0.5, seed=s),
    "drop_path": lambda t, s: F.drop_path(t, 0.5, seed=s),
    "locked_dropout": lambda t, s: F.locked_dropout(t, 0.5, seed=s),
}
SEEDS = torch.tensor([3, 4, 5, 6])


@pytest.mark.parametrize("name", list(PER_SLICE))
def test_vmap_over_seeds_gives_each_slice_its_seeds_mask(name: str) -> None:
    """vmap over the seed: slice ``v`` is the unbatched call with seed ``seeds[v]``, bit for
    bit, for a vmapped input and for an unbatched one."""
    f, x = PER_SLICE[name], torch.randn(4, 3, 4, 4, dtype=torch.float64)
    y = torch.func.vmap(f)(x, SEEDS)
    assert all(torch.equal(y[v], f(x[v], int(SEEDS[v]))) for v in range(4))
    assert not torch.equal(y[0], y[1])  # (the check can fail: the slices differ)
    y = torch.func.vmap(f, in_dims=(None, 0))(x[0], SEEDS)
    assert all(torch.equal(y[v], f(x[0], int(SEEDS[v]))) for v in range(4))


def test_vmap_over_seeds_differentiates_per_slice() -> None:
    """grad of vmap, vmap of grad, jvp under vmap and backward through vmap: the gradient
    and tangent of slice ``v`` are its own seed's multiplier."""
    f = PER_SLICE["dropout"]
    x = torch.randn(4, 6, 8, dtype=torch.float64)
    want = torch.stack([f(torch.ones(6, 8, dtype=torch.float64), int(s)) for s in SEEDS])
    vmap, grad = torch.func.vmap, torch.func.grad
    assert torch.equal(grad(lambda z: vmap(f)(z, SEEDS).sum())(x), want)
    assert torch.equal(vmap(grad(lambda z, s: f(z, s).sum()))(x, SEEDS), want)
    _, tangent = vmap(lambda z, s: torch.func.jvp(lambda u: f(u, s), (z,),
                                                  (torch.ones_like(z),)))(x, SEEDS)
    assert torch.equal(tangent, want)
    leaf = x.clone().requires_grad_()
    vmap(f)(leaf, SEEDS).sum().backward()
    assert torch.equal(leaf.grad, want)


def test_vmap_with_different_randomness_masks_each_slice() -> None:
    """torch's vmap(randomness='different'): each slice its own mask (one seed drawn per
    slice from torch's generator, so reproducible under torch.manual_seed); torch's
    'error' mode is unchanged, and a variant without a per-slice rule says so."""
    x = torch.ones(4, 8, 8)

    def draw() -> torch.Tensor:
        torch.manual_seed(0)
        return torch.func.vmap(lambda t: F.dropout(t, 0.5), randomness="different")(x)

    y = draw()
    assert len({tuple(r.flatten().tolist()) for r in y}) == 4 and torch.equal(y, draw())
    with pytest.raises(RuntimeError, match="randomness error mode"):
        torch.func.vmap(lambda t: F.dropout(t, 0.5))(x)
    with pytest.raises(RuntimeError, match="a mask per vmapped slice"):
        torch.func.vmap(lambda t: F.drop_block2d(t.unsqueeze(0), 0.2, 3),
                        randomness="different")(x.unsqueeze(1))
    with pytest.raises(RuntimeError, match="a mask per vmapped slice"):
        torch.func.vmap(lambda t, s: F.dropout(t, 0.5, True, True, seed=s))(x.clone(), SEEDS)
    with pytest.raises(ValueError, match="seed must be in"):
        torch.func.vmap(PER_SLICE["dropout"])(x, torch.tensor([1, -2, 3, 4]))
    with pytest.raises(RuntimeError, match="a mask per vmapped slice"):
        torch.func.vmap(lambda i: F.embedding_dropout(i, torch.randn(5, 3), 0.5),
                        randomness="different")(torch.tensor([[1, 2], [3, 4]]))
    with pytest.raises(RuntimeError, match="a draw per vmapped slice"):  # (not one for all)
        torch.func.vmap(lambda t: F.concrete_dropout(t, torch.tensor(0.0)),
                        randomness="different")(x)


def test_double_backward_regenerates_the_mask() -> None:
    x = torch.randn(8, dtype=torch.float64, requires_grad=True)
    y = F.dropout(x, 0.5, seed=7)
    (g,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x)
    m = (y != 0).double() * 2.0
    torch.testing.assert_close(gg, 2 * m * m)


# ------------------------------------------------------------------ in place
INPLACE: dict[str, tuple[Callable, Callable, tuple[int, ...]]] = {
    "dropout": (F.dropout, torch.nn.functional.dropout, (4, 6)),
    "dropout1d": (F.dropout1d, torch.nn.functional.dropout1d, (2, 3, 4)),
    "dropout2d": (F.dropout2d, torch.nn.functional.dropout2d, (2, 3, 4, 4)),
    "dropout3d": (F.dropout3d, torch.nn.functional.dropout3d, (2, 3, 2, 2, 2)),
    "alpha_dropout": (F.alpha_dropout, torch.nn.functional.alpha_dropout, (4, 6)),
    "feature_alpha_dropout": (
        F.feature_alpha_dropout, torch.nn.functional.feature_alpha_dropout, (2, 3, 4)
    ),
}


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_bumps_the_version_counter_like_torch(name: str, backend: str) -> None:
    ours, theirs, shape = INPLACE[name]
    with dropkit.use_backend(backend):
        for requires_grad in (False, True):
            base = torch.randn(shape, requires_grad=requires_grad)
            h, g = base * 1.0, base * 1.0  # non-leaf when requires_grad
            before = (h._version, g._version)
            out = ours(h, 0.5, True, True)
            theirs(g, 0.5, True, True)
            assert out is h
            assert h._version - before[0] == 1  # one in-place write, counted once
            assert g._version - before[1] >= 1  # torch's (its alpha dropout counts two)


@pytest.mark.parametrize("name", list(INPLACE))
def test_autograd_detects_an_overwritten_saved_tensor(name: str) -> None:
    ours, theirs, shape = INPLACE[name]
    for fn in (theirs, ours):
        w = torch.randn(shape, requires_grad=True)
        h = torch.randn(shape)
        y = w * h  # saves h for backward
        fn(h, 0.5, True, True)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()


def test_inplace_grad_and_forward_ad() -> None:
    x = torch.randn(10, dtype=torch.float64, requires_grad=True)
    h = x * 1.0
    y = F.dropout(h, 0.5, True, True, seed=4)
    assert y is h
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).double() * 2.0)
    t = torch.randn(10, dtype=torch.float64)
    with fwAD.dual_level():
        d = fwAD.make_dual(x.detach() * 1.0, t.clone())
        out = F.dropout(d, 0.5, True, True, seed=4)
        _, tangent = fwAD.unpack_dual(out)
    torch.testing.assert_close(tangent, t * (y.detach() != 0).double() * 2.0)


# ------------------------------------------------------------------ torch.jit.trace
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_jit_trace_draws_fresh_masks_like_eager(backend: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 32), dropkit.nn.Dropout(0.5), dropkit.nn.GaussianDropout(0.2)
    )
    x = torch.randn(3, 4)
    with dropkit.use_backend(backend):
        traced = torch.jit.trace(model, x, check_trace=False)
        a, b = traced(x), traced(x)
        assert not torch.equal(a == 0, b == 0)  # a fresh mask per call, not a frozen one
        torch.manual_seed(5)
        got = traced(x)
        torch.manual_seed(5)
        assert torch.equal(got, model(x))  # ...and the eager model's, seed for seed
        x.requires_grad_()
        traced(x).sum().backward()
        assert x.grad is not None and bool(torch.isfinite(x.grad).all())


TRACED = {
    "dropout": lambda t: F.dropout(t, 0.5),
    "dropout2d": lambda t: F.dropout2d(t, 0.5),
    "alpha_dropout": lambda t: F.alpha_dropout(t, 0.5, True),
    "gaussian_dropout": lambda t: F.gaussian_dropout(t, 0.5),
    "drop_path": lambda t: F.drop_path(t, 0.5),
    "drop_block2d": lambda t: F.drop_block2d(t, 0.2, 3),
    "locked_dropout": lambda t: F.locked_dropout(t, 0.5),
    "nn.Dropout": dropkit.nn.Dropout(0.5),
}


@pytest.mark.parametrize("name", list(TRACED))
def test_jit_trace_refuses_another_shape(name: str) -> None:
    """A trace records the mask shape as a constant: traced at batch 1, a batch of 5 would
    get one sample's mask broadcast over every row. The traced op refuses, clearly."""
    fn = TRACED[name]
    traced = torch.jit.trace(fn, torch.ones(1, 3, 8, 8), check_trace=False)
    ys = [traced(torch.ones(1, 3, 8, 8)) for _ in range(8)]  # the traced shape still works,
    assert ys[0].shape == (1, 3, 8, 8) and any(not torch.equal(ys[0], y) for y in ys)  # fresh
    with pytest.raises(RuntimeError, match=r"traced \(torch\.jit\.trace\) with an input of shape"):
        traced(torch.ones(5, 3, 8, 8))


def test_jit_trace_refuses_a_drawn_sample() -> None:
    """Concrete dropout's draw has no input to check against: tracing it is refused."""
    with pytest.raises(RuntimeError, match="cannot be traced"):
        torch.jit.trace(lambda t: F.concrete_dropout(t, torch.tensor(0.0)), torch.ones(2, 4),
                        check_trace=False)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_gradcheck_with_batched_and_forward_gradients(name: str) -> None:
    """torch's OpInfo checks for dropout: gradcheck with forward AD and batched gradients
    (backward under torch's legacy vmap, which hands the op batched tensors), and
    gradgradcheck (forward-over-reverse and reverse-over-reverse)."""
    f = ELEMENTWISE[name]
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        f, (x,), check_forward_ad=True, check_batched_grad=True, check_batched_forward_grad=True
    )
    assert torch.autograd.gradgradcheck(
        f, (x,), check_fwd_over_rev=True, check_rev_over_rev=True, check_batched_grad=True
    )


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_negated_views_are_read_by_value(name: str) -> None:
    """torch's TestMathBits: an input with the negative bit set (``torch._neg_view``) gives
    what its resolved values give; the kernels cannot read such a view's memory as is."""
    f, x = ELEMENTWISE[name], _x()
    torch.testing.assert_close(f(torch._neg_view(x)), f(-x), rtol=0, atol=0)


def test_inplace_on_a_negated_view_writes_through() -> None:
    h = torch.randn(8)
    view = torch._neg_view(h)
    want = F.dropout(-h, 0.5, seed=3)
    assert F.dropout(view, 0.5, True, True, seed=3) is view
    assert torch.equal(view, want) and torch.equal(-h, want)


def test_fake_meta_subclasses_and_dispatch_modes_see_the_op() -> None:
    """A kernel reading memory would bypass these: they go through the custom op instead."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.testing._internal.logging_tensor import LoggingTensor
    from torch.utils._python_dispatch import TorchDispatchMode

    with FakeTensorMode():
        fake = torch.randn(4, 8)
        for f in (lambda t: F.dropout(t, 0.5), lambda t: F.gaussian_dropout(t, 0.5),
                  lambda t: F.concrete_dropout(t, torch.tensor(0.0))):
            out = f(fake)
            assert type(out).__name__ == "FakeTensor" and out.shape == (4, 8)
    meta = torch.randn(2, 3, 4, 4, device="meta")
    assert F.dropout2d(meta, 0.5).device.type == "meta"
    assert type(F.dropout(LoggingTensor(torch.randn(3)), 0.5, seed=1)) is LoggingTensor

    class Record(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    x = torch.randn(4, 8)
    with Record() as mode:
        y = F.dropout(x, 0.5, seed=1)
    assert any("dropkit.mask_affine" in name for name in mode.ops), mode.ops
    assert torch.equal(y, F.dropout(x, 0.5, seed=1))


def test_fresh_seeds_come_from_the_cpu_generator_whatever_the_default_device() -> None:
    """A seed is drawn on the CPU generator (one draw, as ``torch.manual_seed`` expects) even
    under a default-device context: made like a fixed CPU tensor, not by ``torch.empty``,
    which the context would move (to the meta device here, where nothing can be drawn)."""
    torch.manual_seed(11)
    want = seeded.fresh_seed()
    torch.manual_seed(11)
    with torch.device("meta"):
        got = seeded.fresh_seed()
        fixed = seeded.seed_tensor(-5)
    assert got.device.type == "cpu" and got.dtype == torch.int64 and got.dim() == 0
    assert int(got) == int(want)
    assert fixed.device.type == "cpu" and int(fixed) == -5
