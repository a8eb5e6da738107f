"""The noise spec (dropkit.rng): ln, sqrt, sin and cos in IEEE-exact arithmetic.

Torch's own float64 transcendentals (and even its CPU sqrt, through MKL's vector library)
round differently from numba's, so Gaussian and concrete dropout define theirs with
exactly rounded pieces in a fixed order. These tests check that the numba kernels
reproduce the torch reference bit for bit, and that the functions are accurate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dropkit
from dropkit import rng
from dropkit.backends import keyed

CPU = torch.device("cpu")
U = (rng.random_bits(200_000, 11).double() + 0.5) / 2**32  # the uniforms of a stream


def test_log_sqrt_sincos_are_accurate_to_a_few_ulp() -> None:
    log = rng.log_unit(U)
    want = torch.tensor([math.log(v) for v in U.tolist()], dtype=torch.float64)
    assert float(((log - want) / want).abs().max()) < 4 * 2**-52
    y = U * 46.0
    root = rng.sqrt_pos(y)
    want = torch.tensor([math.sqrt(v) for v in y.tolist()], dtype=torch.float64)
    assert float(((root - want) / want).abs().max()) <= 2**-52
    s, c = rng.sincos_2pi(U)
    ws = torch.tensor([math.sin(2 * math.pi * v) for v in U.tolist()], dtype=torch.float64)
    wc = torch.tensor([math.cos(2 * math.pi * v) for v in U.tolist()], dtype=torch.float64)
    # (math's own 2 pi v is rounded: an absolute bound, a few ulp of 1)
    assert float((s - ws).abs().max()) < 8 * 2**-52
    assert float((c - wc).abs().max()) < 8 * 2**-52


def test_a_missing_term_is_caught() -> None:
    """The accuracy bounds above can fail: a Taylor series two terms short misses them."""
    short = rng.SIN_COEFFS[2:]
    x = torch.tensor([0.7853], dtype=torch.float64)
    approx = x * rng.horner(short, x * x)
    assert abs(float(approx) - math.sin(0.7853)) > 8 * 2**-52


@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("offset", [0, 1, 2, 7])
@pytest.mark.parametrize("row_len", [1, 2, 37, 2049])
def test_numba_noise_is_the_reference_bit_for_bit(per_row, offset, row_len) -> None:
    seed = torch.tensor([3, -9, 2**40]) if per_row else torch.tensor(-5)
    numel = row_len * (3 if per_row else 1)
    with dropkit.use_backend("reference"):
        normal = keyed.normal(seed, offset, numel, CPU)
        logistic = keyed.logistic(seed, offset, numel, CPU)
    with dropkit.use_backend("numba"):
        assert torch.equal(keyed.normal(seed, offset, numel, CPU).view(torch.int64),
                           normal.view(torch.int64))
        assert torch.equal(keyed.logistic(seed, offset, numel, CPU).view(torch.int64),
                           logistic.view(torch.int64))


def test_numba_pieces_match_torch_pieces() -> None:
    """Each exact piece alone, over 200k uniforms (a mismatch names the piece at fault)."""
    from dropkit.kernels import numba_noise as k

    n = U.numel()
    a, m, e = U.numpy().copy(), np.empty(n), np.empty(n, np.int64)
    out = np.empty(n)
    k._log_block(a, out, m, e, n)
    assert np.array_equal(out.view(np.int64), rng.log_unit(U).numpy().view(np.int64))
    y = (U * 46.0).numpy().copy()
    k._sqrt_block(y, out, m, e, n)
    assert np.array_equal(out.view(np.int64), rng.sqrt_pos(U * 46.0).numpy().view(np.int64))
    s, c = np.empty(n), np.empty(n)
    k._sincos_block(U.numpy().copy(), s, c, n)
    ts, tc = rng.sincos_2pi(U)
    assert np.array_equal(s.view(np.int64), ts.numpy().view(np.int64))
    assert np.array_equal(c.view(np.int64), tc.numpy().view(np.int64))


# Arguments of exp as concrete dropout meets them: (logit + logistic) / t over a wide range,
# both clamps, and the edges of the clamped range.
EXP_ARGS = torch.cat([
    (U - 0.5) * 1600.0,  # [-800, 800]: past both clamps
    (U - 0.5) * 4.0,
    torch.tensor([0.0, -0.0, 708.9, -707.9, 709.0, -708.0, 1e-300, math.log(2) * 37]),
]).double()


def test_exp_is_accurate_to_a_few_ulp_and_clamps() -> None:
    got = rng.exp_clamped(EXP_ARGS)
    want = torch.tensor(
        [math.exp(min(max(v, rng.EXP_MIN), rng.EXP_MAX)) for v in EXP_ARGS.tolist()],
        dtype=torch.float64,
    )
    assert float(((got - want) / want).abs().max()) < 2 * 2**-52
    assert bool(torch.isfinite(got).all() and (got > 0).all())  # normal floats at both ends


def test_exp_two_terms_short_is_caught() -> None:
    """The bound above can fail: the Taylor series of e^r two terms short misses it."""
    r = torch.tensor([0.34], dtype=torch.float64)
    short = rng.horner(rng.EXP_COEFFS[2:], r)
    assert abs(float(short) / math.exp(0.34) - 1) > 2 * 2**-52


def test_numba_exp_matches_torch_exp() -> None:
    from dropkit.kernels import numba_noise as k

    n = EXP_ARGS.numel()
    out, m, e = np.empty(n), np.empty(n), np.empty(n, np.int64)
    k._exp_block(EXP_ARGS.numpy().copy(), out, m, e, n)
    assert np.array_equal(out.view(np.int64), rng.exp_clamped(EXP_ARGS).numpy().view(np.int64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize(("offset", "row_len"), [(0, 1), (3, 37), (1, 2049)])
@pytest.mark.parametrize(("logit", "t"), [(0.0, 0.1), (-2.5, 0.5), (4.0, 0.01)])
def test_numba_concrete_multiplier_is_the_reference(dtype, per_row, offset, row_len, logit, t):
    seed = torch.tensor([3, -9, 2**40]) if per_row else torch.tensor(-5)
    numel = row_len * (3 if per_row else 1)
    lg = torch.tensor(logit)
    with dropkit.use_backend("reference"):
        w, dw = keyed.concrete(seed, offset, numel, lg, t, dtype, True)
    with dropkit.use_backend("numba"):
        nw, ndw = keyed.concrete(seed, offset, numel, lg, t, dtype, True)
        assert keyed.concrete(seed, offset, numel, lg, t, dtype, False)[1] is None
    assert torch.equal(nw, w) and torch.equal(ndw, dw)
    # and it is the relaxation of the spec's logistic noise
    noise = keyed.logistic(seed, offset, numel, CPU)
    ref_w, ref_dw = rng.relaxed_keep(noise, lg.double(), t)
    assert torch.equal(w, ref_w.to(dtype)) and torch.equal(dw, ref_dw.to(dtype))


def test_relaxed_keep_derivative_is_the_derivative() -> None:
    """``dw`` is d w / d logit: central differences of ``w`` agree (a sign slip fails)."""
    noise = keyed.logistic(torch.tensor(4), 0, 4096, CPU)
    lg, h, t = torch.tensor(-0.4, dtype=torch.float64), 1e-6, 0.5
    _, dw = rng.relaxed_keep(noise, lg, t)
    numeric = (rng.relaxed_keep(noise, lg + h, t)[0] - rng.relaxed_keep(noise, lg - h, t)[0]) / (
        2 * h
    )
    torch.testing.assert_close(dw, numeric, rtol=1e-6, atol=1e-9)
    assert not torch.allclose(-dw, numeric, rtol=1e-6, atol=1e-9)
