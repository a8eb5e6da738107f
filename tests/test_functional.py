"""dropkit.functional: semantics, both scalings, edge cases, autograd, reproducibility, errors."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as TF
from torch.utils.checkpoint import checkpoint

import dropkit
from conftest import SIGMAS, assert_fraction, fraction_ok
from dropkit import functional as F

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
N = 1 << 18


def _opmath(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _expected(x: torch.Tensor, p: float, seed: int, scaling: str) -> torch.Tensor:
    """The spec written out: x * keep_mask * scale, in the opmath dtype, rounded once."""
    keep = dropkit.keep_mask(x.shape, p, seed)
    dt = _opmath(x.dtype)
    scale = torch.tensor(1 / (1 - p) if scaling == "inverted" else 1.0, dtype=dt)
    w = torch.where(keep, scale, torch.tensor(0.0, dtype=dt))
    return (x.to(dt) * w).to(x.dtype)


# --- invariants for every draw -------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scaling", ["inverted", "classic"])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_output_is_zero_or_scaled_input(dtype, scaling, p):
    x = torch.randn(1000, dtype=torch.float64).to(dtype)
    y = F.dropout(x, p, scaling=scaling, seed=11)
    assert torch.equal(y, _expected(x, p, 11, scaling))
    scaled = (x.to(_opmath(dtype)) * (1 / (1 - p) if scaling == "inverted" else 1.0)).to(dtype)
    assert bool(((y == 0) | (y == scaled)).all())


# --- both scalings keep the expectation (claim 12) ------------------------------------------


@pytest.mark.parametrize("scaling", ["inverted", "classic"])
@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_train_expectation_equals_eval_output(scaling, p):
    c = 3.0
    x = torch.full((N,), c, dtype=torch.float64)
    train = F.dropout(x, p, training=True, scaling=scaling, seed=5)
    evald = F.dropout(x, p, training=False, scaling=scaling)
    s = 1 / (1 - p) if scaling == "inverted" else 1.0
    # train elements are c*s*Bernoulli(1-p): the mean's standard deviation is c*s*sqrt(p(1-p)/N).
    tol = SIGMAS * c * s * math.sqrt(p * (1 - p) / N)
    assert abs(float(train.mean()) - float(evald[0])) < tol
    assert torch.equal(evald, x if scaling == "inverted" else x * (1 - p))
    # Plausible bugs fail the same check: forgetting the rescale, or the classic test-time factor.
    if scaling == "inverted":
        unscaled = F.dropout(x, p, scaling="classic", seed=5)
        assert abs(float(unscaled.mean()) - float(evald[0])) > tol
    else:
        assert abs(float(train.mean()) - float(x[0])) > tol  # eval that forgot (1 - p)


@pytest.mark.parametrize("p", [0.01, 0.3, 0.99])
def test_keep_rate_of_dropout_output(p):
    y = F.dropout(torch.ones(N), p, seed=77)
    assert_fraction(int((y != 0).sum()), N, 1 - p)
    assert not fraction_ok(int((y != 0).sum()), N, p)  # p read as the keep probability fails


# --- eval mode and identities ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "shape"),
    [
        (F.dropout, (2, 3)),
        (F.dropout1d, (2, 3, 4)),
        (F.dropout2d, (2, 3, 4, 5)),
        (F.dropout3d, (2, 3, 4, 5, 6)),
        (F.alpha_dropout, (7,)),
        (F.feature_alpha_dropout, (2, 3, 4)),
    ],
)
def test_eval_and_p0_return_the_input_itself(fn, shape):
    x = torch.randn(shape)
    assert fn(x, 0.5, training=False) is x
    assert fn(x, 0.0, training=True) is x
    # A version that dropped in eval mode would change values.
    assert torch.equal(fn(x, 0.5, False), x)


def test_classic_eval_multiplies_by_keep_probability():
    x = torch.randn(100)
    assert torch.equal(F.dropout(x, 0.3, False, scaling="classic"), x * 0.7)
    y = x.clone()
    assert F.dropout(y, 0.3, False, True, scaling="classic") is y
    assert torch.equal(y, x * 0.7)


def test_empty_and_zero_dim():
    e = torch.empty(0, 3)
    assert F.dropout(e, 0.5) is e
    s = torch.tensor(2.0)
    ys = {float(F.dropout(s, 0.5, seed=k)) for k in range(40)}
    assert ys == {0.0, 4.0}


def test_p_one_gives_zeros_and_no_nan_from_the_scale():
    x = torch.randn(50)
    y = F.dropout(x, 1.0)
    assert torch.equal(y, torch.zeros(50)) and not torch.isnan(y).any()
    assert torch.equal(F.dropout(x, 1.0, scaling="classic", training=False), torch.zeros(50))


def test_nan_and_inf_follow_torch():
    x = torch.tensor([math.nan] * 64 + [math.inf] * 64 + [-math.inf] * 64)
    y = F.dropout(x, 0.5, seed=3)
    keep = dropkit.keep_mask(x.shape, 0.5, 3)
    # torch multiplies by the mask: a dropped NaN or inf becomes NaN, a kept inf stays inf.
    assert bool(torch.isnan(y[:64]).all())
    assert bool((torch.isnan(y[64:]) == ~keep[64:]).all())
    assert bool((torch.isinf(y[64:]) == keep[64:]).all())
    torch.testing.assert_close(F.dropout(x, 1.0), TF.dropout(x, 1.0), equal_nan=True)


# --- layouts and dtypes -----------------------------------------------------------------------


def test_non_contiguous_matches_contiguous():
    base = torch.randn(6, 8)
    x = base.t()
    assert not x.is_contiguous()
    assert torch.equal(F.dropout(x, 0.4, seed=9), F.dropout(x.contiguous(), 0.4, seed=9))
    sliced = torch.randn(10, 10)[::2, 1::3]
    assert torch.equal(
        F.dropout(sliced, 0.4, seed=9), F.dropout(sliced.contiguous(), 0.4, seed=9)
    )


def test_channels_last_keeps_its_memory_format_and_values():
    x = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    for fn in (F.dropout, F.dropout2d):
        y = fn(x, 0.5, seed=4)
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(y, fn(x.contiguous(), 0.5, seed=4))


# --- seeds, generators, reproducibility -------------------------------------------------------


def test_seed_makes_output_a_pure_function():
    x = torch.randn(1000)
    a = F.dropout(x, 0.5, seed=123)
    torch.manual_seed(999)  # the global RNG does not matter when seed is given
    _ = F.dropout(x, 0.5)
    assert torch.equal(a, F.dropout(x, 0.5, seed=123))
    assert not torch.equal(a, F.dropout(x, 0.5, seed=124))


def test_unseeded_calls_draw_different_masks():
    x = torch.ones(4096)
    a, b = F.dropout(x, 0.5), F.dropout(x, 0.5)
    assert_fraction(int(((a == 0) == (b == 0)).sum()), 4096, 0.5)
    # A plausible bug, a seed drawn once and reused, gives identical masks and fails.
    c, d = F.dropout(x, 0.5, seed=7), F.dropout(x, 0.5, seed=7)
    assert not fraction_ok(int(((c == 0) == (d == 0)).sum()), 4096, 0.5)


def test_manual_seed_reproduces_a_training_run():
    def run() -> list[torch.Tensor]:
        torch.manual_seed(2024)
        model = torch.nn.Sequential(
            torch.nn.Linear(8, 16), dropkit.nn.Dropout(0.5), torch.nn.Linear(16, 1)
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(5):
            opt.zero_grad()
            model(torch.randn(4, 8)).pow(2).mean().backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(run(), run(), strict=True):
        assert torch.equal(a, b)


def test_generator_is_used_and_default_generator_untouched():
    x = torch.ones(512)
    state = torch.get_rng_state()
    a = F.dropout(x, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, F.dropout(x, 0.5, generator=torch.Generator().manual_seed(1)))


def test_checkpoint_recomputation_replays_the_same_masks():
    lin = torch.nn.Linear(16, 16)

    def block(h: torch.Tensor) -> torch.Tensor:
        return F.dropout(torch.relu(lin(h)), 0.5).sum(1)

    x = torch.randn(8, 16)
    torch.manual_seed(5)
    out_plain = block(x)
    grads_plain = torch.autograd.grad(out_plain.sum(), lin.weight)[0]
    torch.manual_seed(5)
    out_ckpt = checkpoint(block, x, use_reentrant=False)
    grads_ckpt = torch.autograd.grad(out_ckpt.sum(), lin.weight)[0]
    assert torch.equal(out_plain, out_ckpt)
    assert torch.equal(grads_plain, grads_ckpt)


# --- autograd -----------------------------------------------------------------------------------


def test_backward_uses_the_forward_mask():
    x = torch.randn(4096, requires_grad=True)
    y = F.dropout(x, 0.3, seed=8)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g != 0, y != 0)
    assert torch.equal(g, _expected(torch.ones(4096), 0.3, 8, "inverted"))


def test_nothing_per_element_is_saved_for_backward():
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    x = torch.randn(1 << 14, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = F.dropout(x * 1.0, 0.5)
    assert sum(t.numel() for t in saved) == 0
    y.sum().backward()
    # torch's own CPU dropout saves a full float noise tensor (the hook sees it).
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        TF.dropout(x * 1.0, 0.5)
    assert sum(t.numel() for t in saved) >= x.numel()


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: F.dropout(x, 0.4, seed=3),
        lambda x: F.dropout(x, 0.4, scaling="classic", seed=3),
        lambda x: F.dropout2d(x, 0.4, seed=3),
        lambda x: F.alpha_dropout(x, 0.4, True, seed=3),
        lambda x: F.feature_alpha_dropout(x, 0.4, True, seed=3),
        lambda x: F.dropout(x * 1.0, 0.4, inplace=True, seed=3),
    ],
)
def test_gradcheck_float64(fn):
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_inplace_matches_out_of_place_and_backpropagates():
    x = torch.randn(300, requires_grad=True)
    h = x * 2.0
    ref = F.dropout(h.detach(), 0.5, seed=6)
    y = F.dropout(h, 0.5, inplace=True, seed=6)
    assert y is h and torch.equal(y.detach(), ref)
    y.sum().backward()
    assert torch.equal(x.grad, 2.0 * _expected(torch.ones(300), 0.5, 6, "inverted"))


# --- channel variants ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "shape"),
    [
        (F.dropout1d, (8, 16, 5)),
        (F.dropout1d, (16, 5)),
        (F.dropout2d, (8, 16, 3, 3)),
        (F.dropout3d, (8, 16, 2, 2, 2)),
        (F.dropout3d, (16, 2, 2, 2)),
        (F.feature_alpha_dropout, (8, 16, 3)),
    ],
)
def test_channel_dropout_drops_whole_channels(fn, shape):
    x = torch.rand(shape) + 1.0  # strictly positive, so no kept value is 0
    y = fn(x, 0.5, True, seed=21)
    assert y.shape == x.shape
    flat = y.reshape(-1, math.prod(shape[-(len(shape) - (2 if len(shape) > 2 and
                                                              shape[0] == 8 else 1)):]))
    first = flat[:, :1]
    dropped = (flat == first).all(1) if fn is F.feature_alpha_dropout else (flat == 0).all(1)
    partial = (flat == 0).any(1) & ~(flat == 0).all(1)
    assert not bool(partial.any())
    assert 0 < int(dropped.sum()) < flat.shape[0]


def test_channel_keep_rate():
    y = F.dropout2d(torch.ones(512, 512, 1, 1), 0.3, seed=2)
    assert_fraction(int((y != 0).sum()), 512 * 512, 0.7)
    assert not fraction_ok(int((y != 0).sum()), 512 * 512, 0.3)  # p read as keep prob fails


def test_dropout1d_rank_error_matches_torch():
    x = torch.ones(2, 2, 2, 2)
    with pytest.raises(RuntimeError) as ours:
        F.dropout1d(x, 0.5)
    with pytest.raises(RuntimeError) as theirs:
        TF.dropout1d(x, 0.5)
    assert str(ours.value) == str(theirs.value)


def test_dropout2d_warnings_match_torch():
    x = torch.ones(2, 3, 4)
    with pytest.warns(UserWarning) as ours:
        F.dropout2d(x, 0.5)
    with pytest.warns(UserWarning) as theirs:
        TF.dropout2d(x, 0.5)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]


def test_feature_dropout_needs_two_dims_like_torch():
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        F.feature_alpha_dropout(torch.ones(3), 0.5, True)
    with pytest.raises(RuntimeError, match="at least 2 dimensions"), pytest.warns(UserWarning):
        F.dropout2d(torch.ones(3), 0.5)


# --- alpha dropout --------------------------------------------------------------------------------


def test_alpha_dropout_constants_match_torch_formula():
    p, alpha = 0.3, 1.7580993408473766
    x = torch.randn(5000, dtype=torch.float64)
    y = F.alpha_dropout(x, p, True, seed=12)
    keep = dropkit.keep_mask(x.shape, p, 12).double()
    a = 1.0 / math.sqrt((alpha**2 * p + 1) * (1 - p))
    b = (keep - 1) * alpha * a + alpha * a * p  # torch's Dropout.cpp, with our mask
    torch.testing.assert_close(y, x * keep * a + b, rtol=1e-12, atol=1e-12)


def test_alpha_dropout_keeps_mean_and_variance():
    x = torch.randn(N, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = F.alpha_dropout(x, 0.2, True, seed=1)
    # Mean of N draws with unit variance: sd 1/sqrt(N); variance estimate: sd ~ sqrt(2/N)
    # for near-Gaussian data; alpha-dropout output has a fatter tail, so allow sqrt(3/N).
    assert abs(float(y.mean())) < SIGMAS / math.sqrt(N)
    assert abs(float(y.var()) - 1.0) < SIGMAS * math.sqrt(3.0 / N)
    plain = F.dropout(x, 0.2, seed=1)  # ordinary dropout would break the variance
    assert abs(float(plain.var()) - 1.0) > SIGMAS * math.sqrt(3.0 / N)


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"p": -0.1}, ValueError, "between 0 and 1, but got -0.1"),
        ({"p": 1.5}, ValueError, "between 0 and 1, but got 1.5"),
        ({"p": math.nan}, ValueError, "NaN"),
        ({"p": "0.5"}, TypeError, "real number"),
        ({"p": None}, TypeError, "real number"),
        ({"p": True}, TypeError, "real number"),
        ({"scaling": "inverse"}, ValueError, "unknown scaling 'inverse'"),
        ({"seed": -3}, ValueError, r"\[0, 2\*\*64\)"),
        ({"seed": 2**64}, ValueError, r"\[0, 2\*\*64\)"),
        ({"seed": 1.0}, TypeError, "seed must be an int"),
        ({"generator": 3}, TypeError, "torch.Generator"),
        ({"seed": 1, "generator": torch.Generator()}, ValueError, "either seed or generator"),
    ],
)
def test_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        F.dropout(torch.ones(4), **{"p": 0.5, **kwargs})


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8])
def test_integer_and_bool_tensors_are_rejected(dtype):
    with pytest.raises(TypeError, match=re.escape(f"got dtype {dtype}")):
        F.dropout(torch.ones(4, dtype=dtype), 0.5)


def test_non_tensor_input_is_rejected():
    with pytest.raises(TypeError, match=r"expects a torch\.Tensor"):
        F.dropout([1.0, 2.0], 0.5)


def test_inplace_on_leaf_requiring_grad_is_rejected():
    x = torch.ones(4, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        F.dropout(x, 0.5, inplace=True)
    with torch.no_grad():  # without autograd it is a plain in-place update
        assert F.dropout(x, 0.5, inplace=True, seed=0) is x


@pytest.mark.parametrize(("shape", "error"), [
    ((2.7, 3), TypeError), (("2", 3), TypeError), (5, TypeError), ("23", TypeError),
    ((3, -1), ValueError), ((True, 2), TypeError),
])
def test_keep_mask_refuses_a_bad_shape_naming_it(shape: object, error: type) -> None:
    """No silent truncation of 2.7 to 2: the shape must be ints, as torch's factories ask."""
    with pytest.raises(error, match="keep_mask: shape"):
        dropkit.keep_mask(shape, 0.5, seed=0)  # type: ignore[arg-type]
    assert dropkit.keep_mask([2, 3], 0.5, seed=0).shape == (2, 3)
