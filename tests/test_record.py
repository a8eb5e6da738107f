"""``dropkit.record`` / ``dropkit.replay``: every random call's keys, and its mask again."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import dropkit
import dropkit.functional as F
from conftest import assert_fraction
from dropkit import recording


def _net() -> nn.Sequential:
    return nn.Sequential(dropkit.nn.Dropout(0.2), dropkit.nn.Dropout1d(0.5),
                         dropkit.nn.GaussianDropout(0.3), dropkit.nn.DropPath(0.25))


def test_records_layer_keys_p_shape_and_replays_exactly() -> None:
    net = _net().train()
    ones = torch.ones(8, 6, 5)
    with dropkit.record(net) as rec:
        outs = [layer(ones) for layer in net]
    assert [c.layer for c in rec.calls] == ["0", "1", "2", "3"]
    assert [c.function for c in rec.calls] == ["dropout", "dropout1d", "gaussian_dropout",
                                               "drop_path"]
    assert [c.kind for c in rec.calls] == ["keep", "keep", "normal", "keep"]
    assert [c.p for c in rec.calls] == [0.2, 0.5, 0.3, 0.25]
    assert [c.mask_shape for c in rec.calls] == [(8, 6, 5), (8, 6, 1), (8, 6, 5), (8, 1, 1)]
    for i in (0, 1, 3):
        mask = dropkit.replay(rec[i])
        assert mask.dtype == torch.bool and mask.shape == rec[i].mask_shape
        assert torch.equal(mask.expand_as(ones), outs[i] != 0)
        assert rec[i].kept == int(mask.sum())


def test_replayed_noise_is_the_multiplier() -> None:
    x = torch.ones(4, 50, dtype=torch.float64)
    with dropkit.record() as rec:
        y = dropkit.functional.gaussian_dropout(x, 0.3)
    z = dropkit.replay(rec[0])
    std = (0.3 / 0.7) ** 0.5
    assert torch.equal(y, z * std + 1.0)
    assert rec[0].kept is None and rec[0].layer == "gaussian_dropout"


def test_a_saved_recording_replays_elsewhere() -> None:
    with dropkit.record() as rec:
        y = dropkit.functional.dropout(torch.ones(3, 40), 0.5)
    buffer = io.BytesIO()
    torch.save(rec.calls, buffer)
    calls = torch.load(io.BytesIO(buffer.getvalue()))  # (torch's default: weights_only)
    assert torch.equal(dropkit.replay(calls[0]), y != 0)


def test_keep_rates_show_a_wrong_p() -> None:
    """A layer whose masks keep 1 - p passes the 5-sigma check; a claimed p that is not the
    one drawn fails it (the statistic can fail)."""
    net = nn.Sequential(dropkit.nn.Dropout(0.3)).train()
    with dropkit.record(net) as rec:
        for _ in range(3):
            net(torch.ones(64, 256))
    rate = rec.keep_rates()["0"]
    assert rate.calls == 3 and rate.numel == 3 * 64 * 256
    assert_fraction(rate.kept, rate.numel, 0.7)
    assert abs(rate.z) < 5
    wrong = dropkit.recording.KeepRate("0", rate.calls, rate.kept, rate.numel, 0.25)
    assert abs(wrong.z) > 5


def test_sample_keyed_calls_replay() -> None:
    ids = torch.tensor([9, 2, 7])
    with dropkit.sample_keys(ids, seed=1), dropkit.record() as rec:
        y = dropkit.functional.dropout(torch.ones(3, 20), 0.5)
    assert rec[0].seed.shape == (3,)  # per-row keys
    assert torch.equal(dropkit.replay(rec[0]), y != 0)


def test_recomputation_is_flagged_and_not_counted_twice() -> None:
    # the second Linear saves the dropout's output: backward recomputes the dropout
    net = nn.Sequential(nn.Linear(4, 8), dropkit.nn.Dropout(0.5), nn.Linear(8, 2)).train()
    x = torch.randn(5, 4, requires_grad=True)
    with dropkit.record(net) as rec:
        checkpoint(net, x, use_reentrant=False).sum().backward()
    assert [c.recomputed for c in rec.calls] == [False, True]
    assert torch.equal(rec[0].seed, rec[1].seed)
    assert rec.keep_rates()["1"].calls == 1


def test_nothing_is_recorded_outside_and_bad_input_fails() -> None:
    with dropkit.record() as rec:
        pass
    dropkit.functional.dropout(torch.ones(3), 0.5)
    assert len(rec) == 0
    with pytest.raises(TypeError, match=r"nn\.Module"), dropkit.record("net"):  # type: ignore[arg-type]
        pass


def test_nested_blocks_each_keep_their_calls_and_close() -> None:
    """Two open blocks both note a call; each closes itself, not an equal-looking one (a
    value-equal dataclass once removed the outer block and left the inner one open)."""
    x = torch.ones(8)
    with dropkit.record() as outer:
        with dropkit.record() as inner:
            F.dropout(x, 0.5, seed=1)
        F.dropout(x, 0.5, seed=2)
    assert len(inner.calls) == 1 and len(outer.calls) == 2
    assert not recording.active()
    F.dropout(x, 0.5, seed=3)  # after both closed: noted nowhere
    assert len(inner.calls) == 1 and len(outer.calls) == 2


def test_replay_of_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="RandomCall"):
        dropkit.replay("x")  # type: ignore[arg-type]
