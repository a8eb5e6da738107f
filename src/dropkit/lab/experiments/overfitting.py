"""Overfitting (claims 1, 7): train and test curves without dropout and with it.

Without dropout the model learns the training set far better than the test set (a gap
beyond 3 binomial standard errors) and its test log-loss climbs after an early minimum;
with dropout the train-test accuracy gap is smaller and the test log-loss ends lower.
Test accuracy is reported, not required to rise (that is claim 9's "overall performance").
Both models share the seed (same initial weights, same batch order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dropkit.lab.config import LabConfig, ModelConfig, TrainConfig, TrialSpec
from dropkit.lab.experiments._common import binom_se
from dropkit.lab.runner import Runner

NAME = "overfitting"
CLAIM = (
    "Without dropout the model overfits (train accuracy far above test, test loss rising); "
    "dropout prevents it (smaller gap, lower test loss) (claims 1, 7)"
)


@dataclass(frozen=True)
class Config:
    model: ModelConfig  # the MLP (its hidden p is set per trial)
    train: TrainConfig  # optimiser and epoch budget
    p: float  # the dropout model's drop probability
    seed: int  # shared by both models

    @classmethod
    def from_lab(cls, lab: LabConfig) -> Config:
        return cls(lab.model, lab.train, lab.p_main, lab.seed)


def trials(cfg: Config, runner: Runner) -> list[TrialSpec]:
    return [runner.spec(cfg.model, cfg.train, p, cfg.seed) for p in (0.0, cfg.p)]


def run(cfg: Config, runner: Runner) -> dict[str, Any]:
    """Curves of both models and the verdict."""
    base, drop = runner.run(NAME, trials(cfg, runner))
    n_test = len(runner.dataset.y_test)
    numbers: dict[str, Any] = {}
    for tag, t in (("no_dropout", base), ("dropout", drop)):
        h = t.result["history"]
        best = min(range(len(h["test_loss"])), key=h["test_loss"].__getitem__)
        numbers[tag] = {
            "p": t.spec.p,
            "train_acc": h["train_acc"][-1],
            "test_acc": h["test_acc"][-1],
            "train_loss": h["train_loss"][-1],
            "test_loss": h["test_loss"][-1],
            "gap": h["train_acc"][-1] - h["test_acc"][-1],
            "best_test_loss": h["test_loss"][best],
            "best_epoch": h["epoch"][best],
        }
    b, d = numbers["no_dropout"], numbers["dropout"]
    se = binom_se(b["test_acc"], n_test)
    overfits = b["gap"] > 3 * se and b["test_loss"] > b["best_test_loss"]
    prevented = d["gap"] < b["gap"] and d["test_loss"] < b["test_loss"]
    holds = bool(overfits and prevented)
    text = (
        f"p=0: train/test acc {b['train_acc']:.3f}/{b['test_acc']:.3f} (gap {b['gap']:.3f}), "
        f"test loss {b['test_loss']:.3f} (min {b['best_test_loss']:.3f} at epoch "
        f"{b['best_epoch']}); p={cfg.p}: {d['train_acc']:.3f}/{d['test_acc']:.3f} "
        f"(gap {d['gap']:.3f}), test loss {d['test_loss']:.3f}"
    )
    return {
        "holds": holds,
        "claim": CLAIM,
        "summary": text,
        "overfits_without_dropout": bool(overfits),
        "dropout_prevents": bool(prevented),
        "test_acc_se": se,
        **numbers,
        "curves": {"no_dropout": base.result["history"], "dropout": drop.result["history"]},
    }
