"""Gaussian dropout: Box-Muller noise from the Philox stream, regenerated in backward."""

from __future__ import annotations

import math

import pytest
import torch

from dropkit import rng
from dropkit.backends import seeded
from dropkit.functional import gaussian_dropout
from dropkit.layers import noise
from dropkit.nn import GaussianDropout

N = 100_000


def test_uniforms_are_the_dropout_draws() -> None:
    bits = rng.random_bits(1000, 7)
    assert torch.equal(noise.uniform(1000, 7), (bits.double() + 0.5) / 2**32)
    z = noise.normal(1001, 7)
    u = noise.uniform(1002, 7).view(-1, 2)
    r = torch.sqrt(-2 * torch.log(u[:, 0]))
    assert torch.allclose(z[0::2], (r * torch.cos(2 * math.pi * u[:, 1]))[:501], rtol=0, atol=1e-12)
    assert torch.allclose(z[1::2], (r * torch.sin(2 * math.pi * u[:, 1]))[:500], rtol=0, atol=1e-12)


def test_output_is_input_times_regenerated_noise() -> None:
    x = torch.randn(33, 17)
    p, seed = 0.2, 3
    y = gaussian_dropout(x, p, seed=seed)
    n = gaussian_dropout(torch.ones_like(x), p, seed=seed)
    std = math.sqrt(p / (1 - p))
    assert torch.equal(n, (1 + std * noise.normal(x.numel(), seed)).float().view(x.shape))
    assert torch.equal(y, x * n)  # one multiply, rounded once
    xb = x.bfloat16()
    assert torch.equal(gaussian_dropout(xb, p, seed=seed), (xb.float() * n).bfloat16())


@pytest.mark.parametrize(
    ("std_of", "ok"), [(lambda p: math.sqrt(p / (1 - p)), True), (lambda p: p / (1 - p), False)]
)
def test_mean_and_variance(std_of: object, ok: bool) -> None:
    """Mean 1 and variance p/(1-p) within 6 sigma; a std of p/(1-p) (no sqrt) fails."""
    p = 0.2
    var = p / (1 - p)
    n = 1 + std_of(p) * noise.normal(N, 12345)  # type: ignore[operator]
    mean_ok = abs(float(n.mean()) - 1) < 6 * math.sqrt(var / N)
    # The sample variance of N normals has standard deviation var * sqrt(2 / (N - 1)).
    var_ok = abs(float(n.var()) - var) < 6 * var * math.sqrt(2 / (N - 1))
    assert (mean_ok and var_ok) == ok
    if ok:
        assert torch.equal(n.float(), gaussian_dropout(torch.ones(N), p, seed=12345))


def test_normal_shape_and_pair_independence() -> None:
    z = noise.normal(N, 99)
    inside = int((z.abs() < 1).sum())
    q = math.erf(1 / math.sqrt(2))  # P(|Z| < 1)
    assert abs(inside / N - q) < 6 * math.sqrt(q * (1 - q) / N)
    # Uniform noise of the same variance (a plausible wrong transform) fails that bound.
    u = (noise.uniform(N, 99) - 0.5) * math.sqrt(12)
    assert abs(int((u.abs() < 1).sum()) / N - q) > 6 * math.sqrt(q * (1 - q) / N)
    # cos and sin of one pair are uncorrelated: |corr| < 6 / sqrt(pairs).
    pairs = z.view(-1, 2)
    corr = float(torch.corrcoef(pairs.T)[0, 1])
    assert abs(corr) < 6 / math.sqrt(N / 2)


def test_backward_regenerates_the_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seeded, "KEEP_BYTES", 0)  # small multipliers are kept otherwise
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    y = gaussian_dropout(x, 0.3, seed=8)
    y.sum().backward()
    assert torch.equal(x.grad, gaussian_dropout(torch.ones_like(x), 0.3, seed=8))
    # Nothing per element is saved: the graph holds the seed, not a noise tensor.
    assert not any(
        isinstance(v, torch.Tensor) and v.numel() > 1 for v in y.grad_fn.__dict__.values()
    )
    assert torch.autograd.gradcheck(lambda v: gaussian_dropout(v, 0.3, seed=8), (x,))
    assert torch.autograd.gradgradcheck(lambda v: gaussian_dropout(v, 0.3, seed=8), (x,))


def test_seeds_generators_eval_and_identities() -> None:
    x = torch.randn(100)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(gaussian_dropout(x, generator=g1), gaussian_dropout(x, generator=g2))
    torch.manual_seed(1)
    a = gaussian_dropout(x)
    torch.manual_seed(1)
    assert torch.equal(a, gaussian_dropout(x))
    assert not torch.equal(gaussian_dropout(x, seed=1), gaussian_dropout(x, seed=2))
    assert gaussian_dropout(x, 0.5, training=False) is x
    assert gaussian_dropout(x, 0.0) is x
    m = GaussianDropout(0.2)
    assert m.eval()(x) is x
    assert m.train()(x).shape == x.shape


def test_repr_and_errors() -> None:
    assert repr(GaussianDropout(0.2)) == "GaussianDropout(p=0.2)"
    with pytest.raises(ValueError, match="p < 1"):
        GaussianDropout(1.0)
    with pytest.raises(ValueError, match="p < 1"):
        gaussian_dropout(torch.ones(3), 1.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        gaussian_dropout(torch.ones(3), -0.1)
    with pytest.raises(TypeError, match="floating-point"):
        gaussian_dropout(torch.ones(3, dtype=torch.long), 0.5)
    with pytest.raises(ValueError, match="seed or generator"):
        gaussian_dropout(torch.ones(3), 0.5, seed=1, generator=torch.Generator())
