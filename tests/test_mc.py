"""Monte-Carlo dropout: reproducible mc_predict, uncertainty metrics, calibration (dropkit.mc)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import dropkit
from dropkit import _mc_context
from dropkit import functional as F
from dropkit.keys import FoldError, derive_call_key, derive_row_keys
from dropkit.mc import (
    brier_score,
    calibration_report,
    expected_calibration_error,
    expected_entropy,
    mc_predict,
    mutual_information,
    negative_log_likelihood,
    predictive_entropy,
    predictive_mean,
    variance,
)


class Mixed(nn.Module):
    """Every dropkit variant, BatchNorm, an in-place dropout and a conv, batch first."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm1d(4)
        self.d1 = dropkit.nn.Dropout1d(0.3)
        self.fa = dropkit.nn.FeatureAlphaDropout(0.2)
        self.fc = nn.Linear(24, 8)
        self.d = dropkit.nn.Dropout(0.5, inplace=True)
        self.al = dropkit.nn.AlphaDropout(0.1)
        self.dc = dropkit.nn.Dropout(0.25, scaling="classic")
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fa(self.d1(torch.relu(self.bn(self.conv(x)))))
        h = self.d(torch.relu(self.fc(h.flatten(1))))
        return self.out(self.dc(self.al(h)))


def mixed() -> Mixed:
    torch.manual_seed(0)
    model = Mixed()
    model(torch.randn(8, 2, 6))  # non-trivial BN statistics
    return model


def test_loop_fold_and_chunks_are_bit_identical() -> None:
    model, x, T = mixed(), torch.randn(5, 2, 6), 7
    full = mc_predict(model, x, samples=T, seed=123)  # chunk=None: one fold of all T
    assert full.shape == (T, 5, 3)
    for chunk in (1, 2, 3, T):  # 1: a loop over samples; 2, 3: uneven chunks; T: a fold
        assert torch.equal(mc_predict(model, x, samples=T, seed=123, chunk=chunk), full), chunk
    # Draw t depends on (seed, t) only: fewer samples are a prefix.
    assert torch.equal(mc_predict(model, x, samples=3, seed=123, chunk=2), full[:3])
    # ...and on t and seed at all: samples differ from each other and across seeds.
    assert all(not torch.equal(full[t], full[t + 1]) for t in range(T - 1))
    assert not torch.equal(mc_predict(model, x, samples=T, seed=124), full)


def _u64(key: torch.Tensor) -> int:
    return int(key) % 2**64


def test_sample_masks_follow_the_key_derivation() -> None:
    """Row b of sample t of a lone Dropout is dropout(x[b], seed=row key (seed, t, b, call 0))."""
    model, x, base = dropkit.nn.Dropout(0.5), torch.ones(4, 16), 2**63 + 5
    out = mc_predict(nn.Sequential(model), x, samples=5, seed=base)
    for t in range(5):
        keys = derive_row_keys(base, [t], batch=4, call=0)
        for b in range(4):
            assert torch.equal(out[t, b], F.dropout(x[b], 0.5, seed=_u64(keys[b])))
    # A buggy fold (one key for a whole sample) would give a different sample 1.
    wrong = F.dropout(x, 0.5, seed=_u64(derive_call_key(base, 1, 0)))
    assert not torch.equal(out[1], wrong)
    # The second random call of a forward gets call index 1 (not the first layer's mask).
    two = mc_predict(nn.Sequential(model, model), x, samples=2, seed=base)
    for t in range(2):
        first, second = (derive_row_keys(base, [t], 4, c) for c in (0, 1))
        for b in range(4):
            want = F.dropout(F.dropout(x[b], 0.5, seed=_u64(first[b])), 0.5, seed=_u64(second[b]))
            assert torch.equal(two[t, b], want)
        assert not torch.equal(first, second)


def test_weight_masks_take_the_call_key_one_sample_per_forward() -> None:
    """DropConnect's weight mask has no sample axis: sample t uses derive_call_key(seed, t, c)."""
    torch.manual_seed(0)
    layer = dropkit.nn.DropConnect(nn.Linear(6, 3), p=0.5)
    x = torch.randn(4, 6)
    out = mc_predict(layer, x, samples=3, seed=77)  # chunk=None falls back to one per forward
    for t in range(3):
        want = F.drop_connect(x, layer.linear.weight, layer.linear.bias, 0.5,
                              seed=_u64(derive_call_key(77, t, 0)))
        assert torch.equal(out[t], want)
    with pytest.raises(FoldError, match="not per sample"):
        mc_predict(layer, x, samples=3, seed=77, chunk=3)


def test_mc_predict_leaves_model_and_global_rng_alone() -> None:
    model, x = mixed(), torch.randn(3, 2, 6)
    before = [m.training for m in model.modules()]
    stats = model.bn.running_mean.clone()
    rng = torch.get_rng_state()
    mc_predict(model, x, samples=4, seed=0)
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == before
    assert torch.equal(model.bn.running_mean, stats)
    # seed=None: one draw from torch's generator, so manual_seed reproduces the call.
    torch.manual_seed(7)
    a = mc_predict(model, x, samples=3)
    torch.manual_seed(7)
    assert torch.equal(mc_predict(model, x, samples=3), a)


class DropConnect(nn.Module):
    """A weight mask: dim 0 of the masked tensor is not the batch, so it cannot fold."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, F.dropout(self.fc.weight, 0.5), self.fc.bias)


def test_unfoldable_model_falls_back_to_loop() -> None:
    torch.manual_seed(0)
    model, x = DropConnect(), torch.randn(3, 4)
    auto = mc_predict(model, x, samples=4, seed=1)
    assert torch.equal(auto, mc_predict(model, x, samples=4, seed=1, chunk=1))
    assert not torch.equal(auto[0], auto[1])
    with pytest.raises(RuntimeError, match="folding 2 samples"):
        mc_predict(model, x, samples=4, seed=1, chunk=2)


def test_torch_dropout_layers_are_refused_until_converted() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    with pytest.raises(RuntimeError, match=r"dropkit.convert\(model\)"):
        mc_predict(model, torch.randn(2, 4), samples=2, seed=0)
    dropkit.convert(model)
    assert mc_predict(model, torch.randn(2, 4), samples=2, seed=0).shape == (2, 2, 4)


class OOMAbove(nn.Module):
    """Raises torch's out-of-memory error for batches above ``limit`` rows."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.drop, self.sizes = limit, dropkit.nn.Dropout(0.5), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.drop(x)


def test_auto_chunk_halves_on_out_of_memory() -> None:
    x = torch.randn(2, 8)
    model = OOMAbove(limit=6)
    out = mc_predict(model, x, samples=8, seed=3)
    assert model.sizes[:3] == [16, 8, 4]  # 8 samples, then 4, then 2 per forward
    assert torch.equal(out, mc_predict(model, x, samples=8, seed=3, chunk=1))
    with pytest.raises(torch.OutOfMemoryError):
        mc_predict(model, x, samples=8, seed=3, chunk=8)  # explicit chunk: no retry


def test_bad_arguments() -> None:
    model = nn.Sequential(dropkit.nn.Dropout(0.5))
    with pytest.raises(ValueError, match="samples"):
        mc_predict(model, torch.ones(2, 2), samples=0)
    with pytest.raises(TypeError, match="samples"):
        mc_predict(model, torch.ones(2, 2), samples=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk"):
        mc_predict(model, torch.ones(2, 2), samples=2, chunk=0)
    with pytest.raises(ValueError, match="0-d"):
        mc_predict(model, torch.tensor(1.0), samples=2)


@pytest.mark.parametrize("inplace", [False, True])
def test_folded_masks_keep_autograd_correct(inplace: bool) -> None:
    """Per-row MC keys stay differentiable (grad = mask * scale), in place too."""
    x = torch.randn(6, 5, requires_grad=True)
    with _mc_context.folding(seed=9, samples=[0, 1, 2], batch=2):
        y = F.dropout(x * 1.0, 0.5, inplace=inplace)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, (y != 0).float() * 2.0)
    with _mc_context.folding(seed=9, samples=[1], batch=2):
        alone = F.dropout(x.detach()[2:4], 0.5)
    assert torch.equal(alone, y.detach()[2:4])  # block 1 is sample 1's draw


# ------------------------------------------------------------------------ uncertainty


def H(*p: float) -> float:
    return -sum(q * math.log(q) for q in p if q > 0)


def test_uncertainty_against_hand_values() -> None:
    # T = 2 samples, B = 2 inputs, C = 2 classes.
    probs = torch.tensor(
        [[[0.2, 0.8], [0.5, 0.5]], [[0.6, 0.4], [0.5, 0.5]]], dtype=torch.float64
    )
    pe = [H(0.4, 0.6), H(0.5, 0.5)]
    ee = [(H(0.2, 0.8) + H(0.6, 0.4)) / 2, H(0.5, 0.5)]
    mean = torch.tensor([[0.4, 0.6], [0.5, 0.5]], dtype=torch.float64)
    assert torch.allclose(predictive_mean(probs), mean, rtol=0, atol=1e-15)
    assert predictive_entropy(probs).tolist() == pytest.approx(pe, abs=1e-12)
    assert expected_entropy(probs).tolist() == pytest.approx(ee, abs=1e-12)
    mi = mutual_information(probs).tolist()
    assert mi == pytest.approx([pe[0] - ee[0], 0.0], abs=1e-12) and mi[0] > 0.01
    # Class axis elsewhere: same numbers.
    moved = probs.transpose(1, 2)
    assert torch.allclose(mutual_information(moved, dim=1), mutual_information(probs))
    with pytest.raises(ValueError, match="sample axis"):
        predictive_entropy(probs, dim=0)
    assert variance(torch.tensor([[1.0], [3.0]])).tolist() == [1.0]
    assert variance(torch.tensor([[1.0], [3.0]]), correction=1).tolist() == [2.0]


def test_one_hot_probs_have_zero_entropy_not_nan() -> None:
    onehot = torch.eye(3)[torch.tensor([0, 2, 1, 1])].expand(5, 4, 3)  # [T=5, B=4, C=3]
    for fn in (predictive_entropy, expected_entropy, mutual_information):
        assert torch.equal(fn(onehot), torch.zeros(4))
    # The naive p * log p gives NaN at p = 0: the xlogy convention matters.
    assert torch.isnan(-(onehot * onehot.log()).sum(-1)).any()
    # Disagreeing confident samples: all uncertainty is epistemic, MI = log 2.
    split = torch.stack([torch.eye(2)[[0]], torch.eye(2)[[1]]])
    assert mutual_information(split).item() == pytest.approx(math.log(2))


def test_mutual_information_is_nonnegative() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(20, 50, 4, generator=gen) * torch.rand(1, 50, 1, generator=gen) * 5
    probs = logits.softmax(-1)
    raw = predictive_entropy(probs) - expected_entropy(probs)
    assert (raw > -1e-6).all()  # Jensen up to float32 rounding, before the clamp
    assert (mutual_information(probs) >= 0).all()


# ------------------------------------------------------------------------ calibration


def test_nll_and_brier_against_hand_values() -> None:
    p, y = torch.tensor([[0.5, 0.5], [0.25, 0.75]]), torch.tensor([0, 1])
    assert negative_log_likelihood(p, y).item() == pytest.approx(
        (math.log(2) + math.log(4 / 3)) / 2
    )
    assert brier_score(p, y).item() == pytest.approx((0.25 + 0.25 + 0.0625 + 0.0625) / 2)
    assert brier_score(torch.eye(3), torch.arange(3)).item() == 0.0
    assert brier_score(torch.eye(3), torch.tensor([1, 2, 0])).item() == 2.0
    with pytest.raises(ValueError, match="outside"):
        brier_score(p, torch.tensor([0, 2]))
    with pytest.raises(TypeError, match="integer"):
        brier_score(p, torch.tensor([0.0, 1.0]))


def test_ece_against_hand_values() -> None:
    p = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7]])
    y = torch.tensor([0, 1, 1])
    # Bin [0.9, 1.0): 2 samples, accuracy 1/2, confidence 0.9; bin [0.7, 0.8): 1, acc 1.
    expected = 2 / 3 * abs(0.5 - 0.9) + 1 / 3 * abs(1.0 - 0.7)
    assert expected_calibration_error(p, y, n_bins=10).item() == pytest.approx(expected)
    # Bins are left-closed (torchmetrics'): 0.5 and 0.75 share bin [0.5, 1] with M = 2.
    q = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    ece = expected_calibration_error(q, torch.tensor([0, 0]), n_bins=2).item()
    assert ece == pytest.approx(abs(0.5 - 0.625))  # right-closed bins would give 0.625
    # Perfectly calibrated: confidence 1 and always right.
    assert expected_calibration_error(torch.eye(4), torch.arange(4)).item() == 0.0


def test_calibration_report_mc_versus_deterministic() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), dropkit.nn.Dropout(0.3),
                        nn.Linear(16, 3))
    x, y = torch.randn(10, 4), torch.arange(10) % 3
    report = calibration_report(net, x, y, samples=6, seed=5, n_bins=5)
    assert all(net.training for net in net.modules())  # flags restored
    probs = mc_predict(net, x, samples=6, seed=5).softmax(-1).mean(0)
    assert report.mc.nll == pytest.approx(negative_log_likelihood(probs, y).item())
    assert report.mc.ece == pytest.approx(expected_calibration_error(probs, y, 5).item())
    with torch.no_grad():
        det = net.eval()(x).softmax(-1)
    net.train()
    assert report.deterministic.brier == pytest.approx(brier_score(det, y).item())
    assert report.mc != report.deterministic
    # Without dropout (p = 0) the MC mean is the deterministic pass.
    net[2].p = 0.0
    same = calibration_report(net, x, y, samples=3, seed=5)
    assert same.mc == pytest.approx(same.deterministic)


def test_ece_matches_torchmetrics() -> None:
    """Differential test against the well-kept implementation (torchmetrics, dev extra)."""
    tm = pytest.importorskip("torchmetrics.functional.classification")
    g = torch.Generator().manual_seed(0)
    for n_bins in (1, 10, 15):
        probs = torch.randn(500, 4, generator=g).mul(2).softmax(-1)
        target = torch.randint(0, 4, (500,), generator=g)
        ours = expected_calibration_error(probs, target, n_bins)
        theirs = tm.multiclass_calibration_error(
            probs, target, num_classes=4, n_bins=n_bins, norm="l1"
        )
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_argument_types_and_shapes_raise_the_rules_errors() -> None:
    """A non-int chunk or bin count is a TypeError; probabilities of the wrong rank a
    ValueError naming the fix."""
    model = nn.Sequential(dropkit.nn.Dropout(0.5))
    for chunk in (1.5, "2"):
        with pytest.raises(TypeError, match="chunk"):
            mc_predict(model, torch.ones(2, 2), samples=2, chunk=chunk)  # type: ignore[arg-type]
    probs, target = torch.full((4, 2), 0.5), torch.tensor([0, 1, 0, 1])
    with pytest.raises(TypeError, match="n_bins"):
        expected_calibration_error(probs, target, n_bins=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="predictive_mean"):
        brier_score(probs.expand(3, 4, 2), target)


@pytest.mark.parametrize("x", [torch.randn(1, 4), torch.randn(1, 4).expand(3, 4)])
def test_an_in_place_first_layer_on_one_row_or_an_expanded_input(x: torch.Tensor) -> None:
    """One row (or an expanded input) stacked for the fold is a stride-0 view; the stack is
    copied, so an in-place first layer runs, leaves the caller's x alone, and gives the
    rows of a larger batch."""
    net = nn.Sequential(nn.ReLU(inplace=True), dropkit.nn.Dropout(0.5), nn.Linear(4, 2))
    before = x.clone()
    got = mc_predict(net, x, samples=4, seed=0)
    assert torch.equal(x, before) and got.shape == (4, x.shape[0], 2)
    wide = torch.cat([x[:1], torch.randn(2, 4)])
    assert torch.equal(got[:, 0], mc_predict(net, wide, samples=4, seed=0)[:, 0])
