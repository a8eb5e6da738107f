"""The overfitting verdict over several seeds: dropout must lower the test log-loss in each.

``analyse`` is pure, so these tests hand it synthetic trials with the numbers it reads.
"""

from __future__ import annotations

import numpy as np

from dropkit.lab.config import ModelConfig, TrainConfig, TrialSpec
from dropkit.lab.data import Dataset
from dropkit.lab.experiments import overfitting
from dropkit.lab.runner import Trial
from dropkit.lab.store import pack

N_TEST = 10_000


def _data() -> Dataset:
    x, y = np.zeros((N_TEST, 2), np.float32), np.arange(N_TEST) % 2
    return Dataset("synthetic", x, y, x, y, 2, "0" * 16)


def _trial(p: float, seed: int, train_acc: float, test_acc: float, test_loss: float) -> Trial:
    final = {"train_acc": train_acc, "test_acc": test_acc, "train_loss": 0.1,
             "test_loss": test_loss, "val_loss": test_loss}
    rise = 0.1 if p == 0 else 0.0  # p = 0's validation loss climbs after its minimum
    result = {"final": final, "chosen_epoch": 5, "stopped_epoch": 13, "still_improving": False,
              "history": {"val_loss": [test_loss + rise]}}
    spec = TrialSpec("synthetic", "0" * 16, ModelConfig(hidden=(8,)), TrainConfig(), p, seed)
    return Trial(spec, result, pack({}))


def _got(drop_losses: list[float]) -> list[Trial]:
    """Per seed: p = 0 (gap 0.05, test log-loss 0.33), p = 0.5 (gap 0.04, as given)."""
    return [t for s, loss in enumerate(drop_losses)
            for t in (_trial(0.0, s, 0.94, 0.89, 0.33), _trial(0.5, s, 0.93, 0.89, loss))]


def _cfg(seeds: int) -> overfitting.Config:
    return overfitting.Config(ModelConfig(hidden=(8,)), TrainConfig(), 0.5, 0, seeds)


def test_two_seeds_that_agree_hold() -> None:
    """Dropout lowers the log-loss in both seeds, unequally (by 0.03 and 0.005): the 95%
    t-interval over 2 seeds covers 0, yet each seed repeats what one seed alone shows."""
    r = overfitting.analyse(_cfg(2), _got([0.30, 0.325]), _data())
    assert r["test_loss_diff_ci95"][1] > 0  # what the t-interval rule looked at
    assert r["holds"] and "per seed -0.030, -0.005" in r["summary"]


def test_a_seed_that_disagrees_does_not_hold() -> None:
    r = overfitting.analyse(_cfg(2), _got([0.28, 0.335]), _data())  # mean lower, seed 1 not
    assert r["dropout"]["test_loss"] < r["no_dropout"]["test_loss"]
    assert not r["dropout_prevents"] and not r["holds"]


def test_the_plain_sentence_follows_the_numbers() -> None:
    """It said "the test log-loss falls" and "the gap shrinks" whatever the numbers."""
    held = overfitting.explain(overfitting.analyse(_cfg(1), _got([0.30]), _data()))[0]
    assert "falls from 0.330 to 0.300" in held and "does not hold" not in held
    worse = [_trial(0.0, 0, 0.94, 0.89, 0.33), _trial(0.5, 0, 0.96, 0.88, 0.34)]
    text = overfitting.explain(overfitting.analyse(_cfg(1), worse, _data()))[0]
    assert "rises from 0.330 to 0.340" in text and "gap grows" in text
    assert "does not hold" in text
