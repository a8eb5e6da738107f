"""Concrete dropout: relaxed mask from the Philox stream, the regulariser, and learning p."""

from __future__ import annotations

import math

import pytest
import torch

from dropkit import rng
from dropkit.functional import concrete_dropout, concrete_dropout_regularizer, dropout
from dropkit.nn import ConcreteDropout


def logit(p: float) -> torch.Tensor:
    return torch.tensor(math.log(p / (1 - p)))


def test_relaxed_mask_formula_and_its_hard_limit_is_dropouts_mask() -> None:
    x = torch.rand(64, 64) + 0.5
    p, seed, t = 0.3, 5, 0.1
    y = concrete_dropout(x, logit(p), t, seed=seed)
    u = (rng.random_bits(x.numel(), seed).double() + 0.5) / 2**32
    z = (logit(p).double() + torch.log1p(-u) - torch.log(u)) / t
    drop = torch.sigmoid(z).view(x.shape)  # torch's float64 sigmoid, log and log1p
    keep = torch.sigmoid(-z).view(x.shape)  # 1 - drop without cancellation
    # The spec's float64 is within a few ulp of these; the float32 output rounds once more.
    torch.testing.assert_close(y, (x.double() * keep / (1 - p)).float(), rtol=3e-7, atol=0)
    assert bool(((y >= 0) & (y <= x / (1 - p) * (1 + 1e-6))).all())  # kept values in [0, x/(1-p)]
    hard_drop = (1 - drop) < 0.5
    assert torch.equal(hard_drop, dropout(x, p, seed=seed) == 0)  # same draws, same decisions


@pytest.mark.parametrize(("sign", "ok"), [(1.0, True), (-1.0, False)])
def test_fraction_mostly_dropped_is_p(sign: float, ok: bool) -> None:
    """P(d > 1/2) = p exactly: 6-sigma binomial bound; a flipped logit (rate 1-p) fails it."""
    n, p = 40_000, 0.2
    y = concrete_dropout(torch.ones(n), sign * logit(p), 0.1, seed=77)
    rate = 1 / (1 - p) if sign > 0 else 1 / p
    dropped = int((y * (1 / rate) < 0.5).sum())
    assert (abs(dropped / n - p) < 6 * math.sqrt(p * (1 - p) / n)) == ok


# forward AD's first use compiles a TorchScript helper inside torch (a deprecation warning)
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_gradients_reach_input_and_rate() -> None:
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    lg = torch.tensor(-0.7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: concrete_dropout(a, b, 0.5, seed=3), (x, lg),
                                    check_forward_ad=True)


def test_regularizer_formula() -> None:
    lg = torch.tensor(-1.2, requires_grad=True)
    w = [torch.full((3, 2), 0.5), torch.ones(3)]
    r = concrete_dropout_regularizer(lg, w, 2, weight_regularizer=0.1, dropout_regularizer=0.2)
    p = 1 / (1 + math.exp(1.2))
    expected = 0.1 * (6 * 0.25 + 3) / (1 - p) + 0.2 * 2 * (
        p * math.log(p) + (1 - p) * math.log(1 - p)
    )
    assert float(r.detach()) == pytest.approx(expected, rel=1e-6)
    entropy_only = concrete_dropout_regularizer(lg, [], 2, 0.0, 1.0)
    entropy_only.backward()
    assert float(lg.grad) < 0  # minimising it raises p (< 1/2) towards 1/2
    with pytest.raises(ValueError, match="input_dim"):
        concrete_dropout_regularizer(lg, w, 0)


def train_rate(n_data: int) -> float:
    """Fit y = x w + noise with ConcreteDropout(Linear), regularisers scaled as 1/N (paper)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen)
    y = x @ torch.tensor([[0.2], [-0.4], [0.1], [0.3]]) + 0.05 * torch.randn(64, 1, generator=gen)
    torch.manual_seed(0)
    m = ConcreteDropout(
        torch.nn.Linear(4, 1),
        p=0.2,
        weight_regularizer=1e-2 / n_data,
        dropout_regularizer=2 / n_data,
    )
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        loss = (m(x) - y).pow(2).mean() + m.regularizer()
        loss.backward()
        opt.step()
    return m.p


def test_p_moves_the_right_way_on_a_toy_problem() -> None:
    """With plenty of data dropout only adds noise: p falls. With little data the
    regulariser's entropy term dominates: p rises (Gal et al.: p shrinks as N grows)."""
    p_much_data, p_little_data = train_rate(1_000_000), train_rate(2)
    assert p_much_data < 0.2 < p_little_data


def test_module_eval_state_repr_and_errors() -> None:
    lin = torch.nn.Linear(4, 2)
    m = ConcreteDropout(lin, p=0.25, temperature=0.2)
    assert m.p == pytest.approx(0.25)
    assert set(m.state_dict()) == {"p_logit", "layer.weight", "layer.bias"}
    assert m.input_dim == 4
    x = torch.randn(3, 4)
    assert torch.equal(m.eval()(x), lin(x))
    torch.manual_seed(1)
    a = m.train()(x)
    torch.manual_seed(1)
    assert torch.equal(a, lin(concrete_dropout(x, m.p_logit, 0.2)))
    assert "p=0.25 (learned), temperature=0.2" in repr(m) and "input_dim=4" in repr(m)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        ConcreteDropout(lin, p=0.0)
    with pytest.raises(ValueError, match="temperature must be positive"):
        ConcreteDropout(lin, temperature=0.0)
    with pytest.raises(TypeError, match="temperature must be a float"):
        ConcreteDropout(lin, temperature="hot")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"nn\.Module"):
        ConcreteDropout(lambda v: v)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pass input_dim"):
        ConcreteDropout(torch.nn.ReLU())
    assert ConcreteDropout(torch.nn.ReLU(), input_dim=3).input_dim == 3
    with pytest.raises(TypeError, match="one-element tensor"):
        concrete_dropout(x, 0.3)  # type: ignore[arg-type]


def test_every_path_gives_the_same_bits_and_gradients() -> None:
    """Eager (one backend pass), torch.func (the spec in torch ops) and a compiled graph
    (the registered noise op, then torch ops) agree bit for bit, values and gradients."""
    x = torch.randn(4, 33, dtype=torch.float32)
    lg = torch.tensor(-0.8, requires_grad=True)

    def f(lgt: torch.Tensor) -> torch.Tensor:
        return (concrete_dropout(x, lgt, 0.2, seed=11) * x).sum()

    eager = f(lg)
    (eager_grad,) = torch.autograd.grad(eager, lg)
    func_grad = torch.func.grad(f)(lg.detach())
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    value = compiled(lg)
    (compiled_grad,) = torch.autograd.grad(value, lg)
    assert torch.equal(value, eager)
    assert torch.equal(func_grad, eager_grad) and torch.equal(compiled_grad, eager_grad)
    assert float(eager_grad) != 0.0  # the check can fail
    with torch.no_grad():  # no derivative asked: the same multiplier
        assert torch.equal(concrete_dropout(x, lg, 0.2, seed=11), concrete_dropout(
            x, lg.detach(), 0.2, seed=11))
