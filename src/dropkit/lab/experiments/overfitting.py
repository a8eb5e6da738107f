"""Overfitting (claims 1, 7): train and test curves without dropout and with it.

Without dropout the model learns the training set far better than the test set (a gap
beyond 3 binomial standard errors) and its validation log-loss climbs after an early
minimum; with dropout the train-test accuracy gap is smaller and the test log-loss is
lower. Each model is judged at its own best validation epoch (early stopping), so a
dropout model that learns more slowly is not compared at the no-dropout model's epoch.
Test accuracy is reported, not required to rise (that is claim 9's "overall performance").
Both models share the seed (same initial weights, same batch order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dropkit.lab.config import LabConfig, ModelConfig, TrainConfig, TrialSpec
from dropkit.lab.data import Dataset
from dropkit.lab.experiments._common import binom_se, ci95
from dropkit.lab.plots import BLUE, ORANGE
from dropkit.lab.runner import Runner, Trial

DEFAULT = True  # in the default set of experiments (else --full only)
NAME = "overfitting"
# The analysis's version (stored results of an older one are analysed again). 2: with
# several seeds dropout must lower the test log-loss in every seed (no t-interval).
ANALYSIS = 2
CLAIM = (
    "Without dropout the model overfits (train accuracy far above test, test loss rising); "
    "dropout prevents it (smaller gap, lower test loss)"
)
RULE = (  # the verdict's rule, in plain words
    """Without dropout the train-test accuracy gap exceeds 3 standard errors and the validation
loss rises after its minimum; with dropout the gap is smaller and the test log-loss lower
(each model at its best validation epoch; with several seeds, lower in every seed)."""
)


@dataclass(frozen=True)
class Config:
    model: ModelConfig  # the MLP (its hidden p is set per trial)
    train: TrainConfig  # optimiser and epoch budget
    p: float  # the dropout model's drop probability
    seed: int  # first seed, shared by both models (seed + s for pair s)
    seeds: int = 1  # pairs of models (p = 0 and p), one per seed

    @classmethod
    def from_lab(cls, lab: LabConfig) -> Config:
        return cls(lab.model, lab.train, lab.p_main, lab.seed, lab.seeds)


def trials(cfg: Config, runner: Runner) -> list[TrialSpec]:
    return [runner.spec(cfg.model, cfg.train, p, cfg.seed + s)
            for s in range(cfg.seeds) for p in (0.0, cfg.p)]


def _numbers(t: Trial) -> dict[str, Any]:
    h, f = t.result["history"], t.result["final"]
    return {
        "p": t.spec.p,
        "epoch": t.result["chosen_epoch"],
        "stopped_epoch": t.result["stopped_epoch"],
        "still_improving": t.result["still_improving"],
        "train_acc": f["train_acc"],
        "test_acc": f["test_acc"],
        "train_loss": f["train_loss"],
        "test_loss": f["test_loss"],
        "val_loss": f["val_loss"],
        "gap": f["train_acc"] - f["test_acc"],
        "last_val_loss": h["val_loss"][-1],
    }


def _mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first seed's numbers with every measured value replaced by the mean over seeds."""
    out = dict(runs[0])
    for k in ("train_acc", "test_acc", "train_loss", "test_loss", "val_loss", "gap"):
        out[k] = float(np.mean([r[k] for r in runs]))
    out["still_improving"] = any(r["still_improving"] for r in runs)
    return out


def analyse(cfg: Config, got: Sequence[Trial], data: Dataset) -> dict[str, Any]:
    """Curves of both models (the first seed's), the means over seeds and the verdict.

    With several seeds dropout must lower the test log-loss in every seed (paired: each
    seed's two models share initial weights and batch order), so a second seed is never a
    weaker test than one; the 95% t-interval over seeds is reported, not required (with 2
    seeds its t quantile is 12.7: a second seed would make the test far harder than one).
    """
    base, drop = got[0], got[1]
    n_test = len(data.y_test)
    pairs = [(_numbers(got[2 * s]), _numbers(got[2 * s + 1])) for s in range(cfg.seeds)]
    b, d = _mean([x for x, _ in pairs]), _mean([y for _, y in pairs])
    numbers = {"no_dropout": b, "dropout": d}
    se = binom_se(b["test_acc"], n_test * cfg.seeds)
    rises = all(x["last_val_loss"] > x["val_loss"] for x, _ in pairs)  # climbed after its min
    overfits = b["gap"] > 3 * se and rises
    diffs = [y["test_loss"] - x["test_loss"] for x, y in pairs]
    ci = ci95(diffs)
    prevented = d["gap"] < b["gap"] and d["test_loss"] < b["test_loss"] and all(
        x < 0 for x in diffs)
    holds = bool(overfits and prevented)
    text = (
        f"p=0 at its best validation epoch {b['epoch']}: train/test accuracy "
        f"{b['train_acc']:.3f}/{b['test_acc']:.3f} (gap {b['gap']:.3f}, 3 standard errors "
        f"{3 * se:.3f}), test log-loss {b['test_loss']:.3f}; its validation log-loss then "
        f"{'rose' if rises else 'did not rise'} to {b['last_val_loss']:.3f} by epoch "
        f"{b['stopped_epoch']}. p={cfg.p} at its epoch {d['epoch']}: "
        f"{d['train_acc']:.3f}/{d['test_acc']:.3f} (gap {d['gap']:.3f}), test log-loss "
        f"{d['test_loss']:.3f}; test error {1 - b['test_acc']:.4f} vs {1 - d['test_acc']:.4f}"
        + (" (the dropout model was still improving when the budget ran out)"
           if d["still_improving"] else "")
        + (f"; means over {cfg.seeds} seeds, test log-loss difference {np.mean(diffs):+.3f} "
           f"(per seed {', '.join(f'{x:+.3f}' for x in diffs)}; 95% CI {ci[0]:+.3f} to "
           f"{ci[1]:+.3f})" if ci is not None else "")
    )
    return {
        "holds": holds,
        "claim": CLAIM,
        "summary": text,
        "overfits_without_dropout": bool(overfits),
        "dropout_prevents": bool(prevented),
        "test_acc_se": se,
        "seeds": cfg.seeds,
        "test_loss_diff_ci95": None if ci is None else list(ci),
        "per_seed": [{"no_dropout": x, "dropout": y} for x, y in pairs],
        **numbers,
        "curves": {"no_dropout": base.result["history"], "dropout": drop.result["history"]},
    }


def plot(fig: Any, r: dict[str, Any]) -> None:
    """Draw this experiment's figure on ``fig`` from its stored result ``r``."""
    ax_acc, ax_loss = fig.subplots(1, 2)
    for tag, color in (("no_dropout", BLUE), ("dropout", ORANGE)):
        h = r["curves"][tag]
        lab = f"p={r[tag]['p']}"
        ax_acc.plot(h["epoch"], h["train_acc"], color=color, ls="--", label=f"{lab} train")
        ax_acc.plot(h["epoch"], h["test_acc"], color=color, label=f"{lab} test")
        ax_loss.plot(h["epoch"], h["train_loss"], color=color, ls="--", label=f"{lab} train")
        ax_loss.plot(h["epoch"], h["test_loss"], color=color, label=f"{lab} test")
        te = np.asarray(h["test_acc"])
        ax_acc.fill_between(h["epoch"], te - r["test_acc_se"], te + r["test_acc_se"],
                            color=color, alpha=0.2, lw=0)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy (band: ±1 SE)")
    ax_loss.set(xlabel="epoch", ylabel="log-loss", title="log-loss")
    ax_acc.legend(fontsize=9)
    ax_loss.legend(fontsize=9)


def explain(r: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A plain sentence on what the result shows, and the numbers behind it."""
    b, d = r["no_dropout"], r["dropout"]
    better = d["test_acc"] > b["test_acc"]
    fits = ("fits its training set much better than new data" if r["overfits_without_dropout"]
            else "does not clearly overfit")
    gap = "shrinks" if d["gap"] < b["gap"] else "grows"
    loss = "falls" if d["test_loss"] < b["test_loss"] else "rises"
    acc = "rises" if better else "does not rise"
    end = (f"Test accuracy {acc}{' too' if better else ''}"
           + ("." if better or not r["holds"] else
              " here: the verdict rests on the gap and the log-loss, not on accuracy.")
           + ("" if r["holds"] else " So on this data the claim does not hold."))
    text = (f"Without dropout the net {fits} (train accuracy {b['train_acc']:.1%}, test "
            f"{b['test_acc']:.1%}); with p = {d['p']} the gap {gap} to {d['gap']:.1%} and the "
            f"test log-loss (how confident it is when wrong) {loss} from {b['test_loss']:.3f} "
            f"to {d['test_loss']:.3f}. " + end)
    rows = [("", "p = 0", f"p = {d['p']}")] + [
        (label, fmt(b[key]), fmt(d[key])) for label, key, fmt in (
            ("chosen epoch (best on validation)", "epoch", str),
            ("train accuracy", "train_acc", lambda v: f"{v:.3f}"),
            ("test accuracy", "test_acc", lambda v: f"{v:.3f}"),
            ("train - test gap", "gap", lambda v: f"{v:.3f}"),
            ("test log-loss", "test_loss", lambda v: f"{v:.3f}"))]
    return text, rows
