"""The lab's protocol choices made before the experiments: the learning rate, on validation.

With ``lr`` unset (``None``, the default) the learning rate is chosen per (data, model):
for every rate of ``lr_grid``, the model without dropout and the one with ``p_main``
train for ``lr_epochs`` epochs (no early stopping), and the rate with the lowest mean
validation log-loss over the two (each at its best epoch) is used by every trial of the
run. A run that learned nothing (a diverged or NaN loss, or never below chance, the
``log C`` of a uniform guess over C classes) scores infinity. The test set plays no part.
The search's trials are stored like any other, so a rerun resumes them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from dropkit.lab.config import LabConfig, TrialSpec
from dropkit.lab.runner import Runner

__all__ = ["NAME", "choose_lr", "lr_trials"]

NAME = "lr-search"


def lr_trials(cfg: LabConfig, runner: Runner) -> list[TrialSpec]:
    """The search's trials: each rate of the grid, without dropout and with ``p_main``."""
    specs = []
    for lr in cfg.lr_grid:
        train = dataclasses.replace(cfg.train, lr=lr, epochs=cfg.lr_epochs, patience=0)
        specs += [runner.spec(cfg.model, train, p, cfg.seed) for p in (0.0, cfg.p_main)]
    return specs


def _score(history: dict[str, list[float]], chance: float) -> float:
    losses = [v for v in history["val_loss"] if math.isfinite(v)]
    return min(losses) if losses and min(losses) < chance else math.inf


def choose_lr(cfg: LabConfig, runner: Runner) -> tuple[LabConfig, dict[str, Any]]:
    """``cfg`` with its learning rate resolved, and what the choice rests on (a table).

    A set ``lr`` is kept as it is (``{"searched": False}``); else the search above runs.
    """
    if cfg.train.lr is not None:
        return cfg, {"searched": False, "lr": cfg.train.lr}
    trials = runner.run(NAME, lr_trials(cfg, runner), label=NAME)
    rows = []
    chance = math.log(runner.dataset.n_classes)
    for i, lr in enumerate(cfg.lr_grid):
        scores = [_score(t.result["history"], chance) for t in trials[2 * i : 2 * i + 2]]
        rows.append({"lr": lr, "val_loss_p0": scores[0], "val_loss_p": scores[1],
                     "score": sum(scores) / 2})
    best = min(rows, key=lambda r: r["score"])
    if not math.isfinite(best["score"]):
        raise RuntimeError(
            f"no learning rate of --lr-grid {list(cfg.lr_grid)} learned anything on this data "
            "(each diverged or never beat a uniform guess on validation); pass smaller rates "
            "with --lr-grid, or one with --lr"
        )
    chosen = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=best["lr"]))
    return chosen, {"searched": True, "lr": best["lr"], "epochs": cfg.lr_epochs,
                    "p": cfg.p_main, "rows": rows}
