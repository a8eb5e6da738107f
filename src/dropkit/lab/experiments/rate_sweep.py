"""Rate sweep (claim 5): test error against the drop probability, a U with two sides.

Too low a rate overfits (large train-test gap), too high underfits (train error high
too); the best p (lowest mean test error) lies between. Error bars: the standard error
over seeds, or, with one seed, over test examples (binomial for the error).

Verdict: both ends of the grid have a higher test error than the best p, a higher test
log-loss by more than 2 standard errors (the log-loss, a proper score, separates models
that 1000 test labels cannot), the low end with the larger train-test gap (overfitting)
and the high end with the higher train error (underfitting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dropkit.lab.config import LabConfig, ModelConfig, TrainConfig, TrialSpec
from dropkit.lab.experiments._common import binom_se, loss_sem, summary
from dropkit.lab.runner import Runner

NAME = "rate-sweep"
CLAIM = (
    "Too high a dropout rate underfits and too low a rate overfits: test error is U-shaped "
    "in p (claim 5)"
)


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    train: TrainConfig
    ps: tuple[float, ...]  # the grid of drop probabilities
    seeds: int  # seeds per p
    seed: int  # first seed

    @classmethod
    def from_lab(cls, lab: LabConfig) -> Config:
        return cls(lab.model, lab.train, tuple(sorted(lab.ps)), lab.seeds, lab.seed)


def trials(cfg: Config, runner: Runner) -> list[TrialSpec]:
    return [runner.spec(cfg.model, cfg.train, p, cfg.seed + s)
            for p in cfg.ps for s in range(cfg.seeds)]


def run(cfg: Config, runner: Runner) -> dict[str, Any]:
    """Mean test error, log-loss and train error per p, the best p and the verdict."""
    got = runner.run(NAME, trials(cfg, runner))
    n_test = len(runner.dataset.y_test)
    rows = []
    for i, p in enumerate(cfg.ps):
        ts = got[i * cfg.seeds : (i + 1) * cfg.seeds]
        finals = [t.result["final"] for t in ts]
        err = summary([1 - f["test_acc"] for f in finals])
        loss = summary([f["test_loss"] for f in finals])
        if cfg.seeds > 1:
            se, loss_se = err["se"], loss["se"]
        else:
            se = binom_se(1 - err["mean"], n_test)
            loss_se = loss_sem(ts[0].arrays["test_probs"], runner.dataset.y_test)
        rows.append({
            "p": p,
            "test_err": err["mean"],
            "test_err_se": se,
            "test_loss": loss["mean"],
            "test_loss_se": loss_se,
            "train_err": summary([1 - f["train_acc"] for f in finals])["mean"],
            "train_loss": summary([f["train_loss"] for f in finals])["mean"],
        })
    best = min(rows, key=lambda r: r["test_err"])
    lo, hi = rows[0], rows[-1]

    def worse(r: dict[str, float]) -> bool:
        loss_margin = 2 * math.hypot(r["test_loss_se"], best["test_loss_se"])
        return r["test_err"] > best["test_err"] and r["test_loss"] - best["test_loss"] > loss_margin

    def gap(r: dict[str, float]) -> float:
        return r["test_err"] - r["train_err"]

    overfit_side = worse(lo) and gap(lo) > gap(best)
    underfit_side = worse(hi) and hi["train_err"] > best["train_err"]
    for r in rows:
        r["side"] = ("best" if r is best else "overfitting" if r["p"] < best["p"]
                     else "underfitting")
    text = (
        f"best p={best['p']} (test error {best['test_err']:.3f}±{best['test_err_se']:.3f}, "
        f"log-loss {best['test_loss']:.3f}±{best['test_loss_se']:.3f}); p={lo['p']}: error "
        f"{lo['test_err']:.3f} (train {lo['train_err']:.3f}), log-loss {lo['test_loss']:.3f}; "
        f"p={hi['p']}: error {hi['test_err']:.3f} (train {hi['train_err']:.3f}), log-loss "
        f"{hi['test_loss']:.3f}"
    )
    return {
        "holds": bool(overfit_side and underfit_side),
        "claim": CLAIM,
        "summary": text,
        "best_p": best["p"],
        "overfitting_side_worse": bool(overfit_side),
        "underfitting_side_worse": bool(underfit_side),
        "rows": rows,
        "seeds": cfg.seeds,
        "epochs": cfg.train.epochs,
    }
