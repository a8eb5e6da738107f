"""The mask spec (dropkit.rng, keep_mask): known answers, an independent oracle, statistics."""

from __future__ import annotations

import math

import pytest
import torch

import dropkit
from conftest import SIGMAS, assert_fraction, fraction_ok
from dropkit import rng

# Known-answer vectors of Philox4x32-10 from Random123 (kat_vectors).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (
        (0xFFFFFFFF,) * 4,
        (0xFFFFFFFF, 0xFFFFFFFF),
        (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD),
    ),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("ctr", "key", "expected"), KAT)
def test_philox_known_answers(ctr, key, expected):
    words = rng.philox4x32(*(torch.tensor([c]) for c in ctr), *key)
    assert tuple(int(w) for w in words) == expected


def _philox_python(c: list[int], k0: int, k1: int) -> list[int]:
    """An independent Philox4x32-10 in Python integers (no torch, no tricks)."""
    m = 0xFFFFFFFF
    for _ in range(10):
        p0 = 0xD2511F53 * c[0]
        p1 = 0xCD9E8D57 * c[2]
        c = [((p1 >> 32) ^ c[1] ^ k0) & m, p1 & m, ((p0 >> 32) ^ c[3] ^ k1) & m, p0 & m]
        k0, k1 = (k0 + 0x9E3779B9) & m, (k1 + 0xBB67AE85) & m
    return c


@pytest.mark.parametrize("seed", [0, 1, 2**32 + 7, 2**63 + 12345, 2**64 - 1])
@pytest.mark.parametrize("start", [0, 3, 2**32 * 4 + 1, 2**35 - 6])
def test_random_bits_match_python_oracle(seed, start):
    numel = 11
    got = rng.random_bits(numel, seed, start=start).tolist()
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    want = []
    for i in range(start, start + numel):
        ctr = i >> 2
        want.append(_philox_python([ctr & 0xFFFFFFFF, ctr >> 32, 0, 0], k0, k1)[i & 3])
    assert got == want


def test_random_bits_start_is_a_window_of_the_stream():
    full = rng.random_bits(103, seed=5)
    for start in (0, 1, 2, 3, 4, 50):
        assert torch.equal(rng.random_bits(103 - start, seed=5, start=start), full[start:])


def test_signed_and_unsigned_seed_give_the_same_key():
    assert rng.seed_key(-1) == rng.seed_key(2**64 - 1) == (0xFFFFFFFF, 0xFFFFFFFF)


@pytest.mark.parametrize(
    ("p", "t"), [(0.0, 0), (0.5, 2**31), (0.25, 2**30), (1 - 2**-40, 2**32 - 1)]
)
def test_threshold_values(p, t):
    assert rng.threshold(p) == t


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, math.nan])
def test_threshold_rejects_out_of_range(p):
    with pytest.raises(ValueError, match="0 <= p < 1"):
        rng.threshold(p)


N = 1 << 20


@pytest.mark.parametrize("p", [1e-4, 0.1, 0.5, 0.9, 0.9999])
def test_keep_rate_within_binomial_bound(p):
    m = dropkit.keep_mask((N,), p, seed=1234)
    assert_fraction(int(m.sum()), N, 1 - p)
    # A plausible bug, keeping with probability p instead of 1-p, fails the same check.
    buggy = rng.random_bits(N, 1234) < rng.threshold(p)
    if abs(p - 0.5) > 0.01:
        assert not fraction_ok(int(buggy.sum()), N, 1 - p)


@pytest.mark.parametrize("lag", [1, 2, 3, 4, 5, 1024])
def test_no_correlation_between_neighbours(lag):
    m = dropkit.keep_mask((N,), 0.5, seed=99).double()
    a, b = m[:-lag], m[lag:]
    corr = float(((a - a.mean()) * (b - b.mean())).mean() / (a.std() * b.std()))
    bound = SIGMAS / math.sqrt(len(a))
    assert abs(corr) < bound
    # A plausible bug, one draw reused for all four lanes of a counter, is caught at lags 1-3.
    bits = rng.random_bits(N // 4, 99)
    reused = (bits.repeat_interleave(4) >= rng.threshold(0.5)).double()
    ra, rb = reused[:-lag], reused[lag:]
    rcorr = float(((ra - ra.mean()) * (rb - rb.mean())).mean() / (ra.std() * rb.std()))
    if lag < 4:
        assert abs(rcorr) > bound


def test_different_seeds_give_independent_masks():
    a = dropkit.keep_mask((N,), 0.5, seed=7)
    b = dropkit.keep_mask((N,), 0.5, seed=8)
    # Two independent masks agree on a fraction p^2 + (1-p)^2 = 0.5 of elements.
    assert_fraction(int((a == b).sum()), N, 0.5)
    assert not fraction_ok(int((a == a).sum()), N, 0.5)  # a repeated mask would fail


def test_mask_does_not_repeat_across_blocks():
    m = dropkit.keep_mask((64, 4096), 0.5, seed=3)
    agree = (m[:-1] == m[1:]).sum()
    assert_fraction(int(agree), m[1:].numel(), 0.5)
    # xformers' bug, offsets restarting in every tile, repeats rows; the check catches it.
    tiled = m[:1].expand(64, 4096)
    assert not fraction_ok(int((tiled[:-1] == tiled[1:]).sum()), m[1:].numel(), 0.5)


def test_keep_mask_is_deterministic_and_shaped():
    a = dropkit.keep_mask((3, 5, 7), 0.3, seed=42)
    assert a.shape == (3, 5, 7) and a.dtype == torch.bool
    assert torch.equal(a, dropkit.keep_mask([3, 5, 7], 0.3, seed=42))
    assert torch.equal(a.reshape(-1), dropkit.keep_mask((105,), 0.3, seed=42))
    assert bool(dropkit.keep_mask((9,), 0.0, seed=1).all())
    assert not bool(dropkit.keep_mask((9,), 1.0, seed=1).any())


@pytest.mark.parametrize(
    ("kwargs", "err"),
    [
        ({"p": 2.0, "seed": 0}, ValueError),
        ({"p": "0.5", "seed": 0}, TypeError),
        ({"p": 0.5, "seed": -1}, ValueError),
        ({"p": 0.5, "seed": 1.5}, TypeError),
        ({"p": 0.5, "seed": None}, TypeError),
    ],
)
def test_keep_mask_bad_arguments(kwargs, err):
    with pytest.raises(err):
        dropkit.keep_mask((4,), **kwargs)
