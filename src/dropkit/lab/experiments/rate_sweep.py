"""Rate sweep (claim 5): test error against the drop probability, a U with two sides.

Too low a rate overfits (large train-test gap), too high underfits (train error high
too); the best p lies between. The best p is the one with the lowest mean validation
log-loss (ties: validation error), never chosen on the test set; every model is judged at
its own best validation epoch. Log-loss, not error: it is the proper score early stopping
already reads, and it separates models that a validation split's error cannot (on MNIST,
6000 validation images put the 0.1-0.3 point error gaps between p = 0, 0.2 and 0.5 within
one standard error, while their log-losses differ by several). Error bars: the standard error
over seeds, or, with one seed, over test examples (binomial for the error).

Verdict: both ends of the grid have a higher test error than the best p and a higher test
log-loss by more than 2 standard errors of the paired difference (per test example, the
models' losses on the same examples; the log-loss, a proper score, separates models that
1000 test labels cannot), over the seed-mean losses and, with several seeds, in every seed
on its own (seed s against seed s): the difference replicates. (Not a t-interval over
seeds: with the 2-3 seeds a session affords its t quantile is 12.7 or 4.3, which makes a
second seed a harder test than one; the interval is reported.) The low end overfits (its validation
log-loss rose after its minimum by more than its standard error: training longer made it
worse, which early stopping cut short) and the high end underfits (a higher train error
than the best p's at their chosen epochs). A high end whose training budget ran out while
its validation loss was still falling fast enough to reach the best p (projected from how
its best-so-far validation curve slows) is not read as underfitting: the verdict says so
instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dropkit.lab.config import LabConfig, ModelConfig, TrainConfig, TrialSpec
from dropkit.lab.data import Dataset
from dropkit.lab.experiments._common import binom_se, ci95, example_losses, loss_sem, summary
from dropkit.lab.plots import BLUE, GREY, ORANGE, RED
from dropkit.lab.runner import Runner, Trial

DEFAULT = True  # in the default set of experiments (else --full only)
NAME = "rate-sweep"
# The analysis's version: stored results of an older analysis are analysed again (their
# trials are reused). 2: the best p is chosen by validation log-loss, no longer by error.
# 3: with several seeds, each seed's paired difference must exceed 2 SE (no t-interval).
ANALYSIS = 3
CLAIM = (
    "Too high a dropout rate underfits and too low a rate overfits: test error is U-shaped "
    "in p"
)
RULE = (  # the verdict's rule, in plain words
    """The best p is the one with the lowest validation log-loss. Both ends of the grid must
be worse than it on the test set (higher error, and a higher log-loss by more than 2
standard errors of the paired difference, with several seeds in every seed on its own); the
low end must overfit (its validation loss rises when trained longer) and the
high end underfit (a higher training error)."""
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


def _paired(d: np.ndarray) -> tuple[float, float]:
    """The mean of per-example differences ``d`` [N] and its standard error."""
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0


def analyse(cfg: Config, got: Sequence[Trial], data: Dataset) -> dict[str, Any]:
    """Mean test error, log-loss and train error per p, the best p and the verdict."""
    n_test = len(data.y_test)
    rows = []
    y_test = data.y_test
    seed_examples = []  # [len(ps)][seeds] arrays [N]: each trial's test loss per example
    for i, p in enumerate(cfg.ps):
        ts = got[i * cfg.seeds : (i + 1) * cfg.seeds]
        finals = [t.result["final"] for t in ts]
        seed_examples.append([example_losses(t.arrays["test_probs"], y_test) for t in ts])
        err = summary([1 - f["test_acc"] for f in finals])
        loss = summary([f["test_loss"] for f in finals])
        if cfg.seeds > 1:
            se, loss_se = err["se"], loss["se"]
        else:
            se = binom_se(1 - err["mean"], n_test)
            loss_se = loss_sem(ts[0].arrays["test_probs"], data.y_test)
        rows.append({
            "p": p,
            "val_err": summary([1 - f["val_acc"] for f in finals])["mean"],
            "val_loss": summary([f["val_loss"] for f in finals])["mean"],
            "chosen_epochs": [t.result["chosen_epoch"] for t in ts],
            "still_improving": any(t.result["still_improving"] for t in ts),
            "recent_gain": max(t.result["recent_gain"] for t in ts),
            "projected_gain": max(t.result["projected_gain"] for t in ts),
            "val_rise": max(t.result["history"]["val_loss"][-1] - t.result["final"]["val_loss"]
                            - t.result["val_loss_se"] for t in ts),
            "test_err": err["mean"],
            "test_err_se": se,
            "test_loss": loss["mean"],
            "test_loss_se": loss_se,
            "train_err": summary([1 - f["train_acc"] for f in finals])["mean"],
            "train_loss": summary([f["train_loss"] for f in finals])["mean"],
        })
    b = min(range(len(rows)), key=lambda i: (rows[i]["val_loss"], rows[i]["val_err"]))
    best = rows[b]  # chosen on validation
    lo, hi = rows[0], rows[-1]
    seed_loss = [[t.result["final"]["test_loss"] for t in got[i * cfg.seeds:(i + 1) * cfg.seeds]]
                 for i in range(len(cfg.ps))]
    per_example = [np.mean(x, axis=0) for x in seed_examples]  # [len(ps)] [N]: seed means
    for i, r in enumerate(rows):  # the paired difference of test log-loss to the best p
        r["loss_vs_best"], r["loss_vs_best_se"] = _paired(per_example[i] - per_example[b])
        r["loss_vs_best_per_seed"] = [list(_paired(a - c)) for a, c in
                                      zip(seed_examples[i], seed_examples[b], strict=True)]
        # over seeds (seed s of this p against seed s of the best p): a 95% t-interval
        ci = ci95([a - c for a, c in zip(seed_loss[i], seed_loss[b], strict=True)])
        r["loss_vs_best_ci95"] = None if ci is None else [float(ci[0]), float(ci[1])]

    def worse(r: dict[str, Any]) -> bool:
        # with several seeds each seed on its own too (seed-to-seed variation is what the
        # per-example standard error of the seed means cannot see)
        return (r["test_err"] > best["test_err"]
                and r["loss_vs_best"] > 2 * r["loss_vs_best_se"]
                and all(m > 2 * se for m, se in r["loss_vs_best_per_seed"]))

    overfit_side = worse(lo) and lo["val_rise"] > 0
    # A high end still improving at the cap is read as underfitting only if the fall its
    # validation loss has left (train.py, projected from how its curve slows; at most its
    # recent pace kept up for as long again as the whole budget) would not reach the best
    # p's validation loss.
    closes = hi["still_improving"] and hi["projected_gain"] >= hi["val_loss"] - best["val_loss"]
    underfit_side = worse(hi) and hi["train_err"] > best["train_err"] and not closes
    for r in rows:
        r["side"] = ("best" if r is best else "overfitting" if r["p"] < best["p"]
                     else "underfitting")
    epochs = ", ".join(f"p={r['p']}: {r['chosen_epochs']}" for r in rows)

    def over_seeds(r: dict[str, Any]) -> str:
        ci = r["loss_vs_best_ci95"]
        if ci is None:
            return ""
        each = ", ".join(f"{m:+.3f}±{se:.3f}" for m, se in r["loss_vs_best_per_seed"])
        return (f"; per seed {each}; 95% CI over {cfg.seeds} seeds "
                f"[{ci[0]:+.3f}, {ci[1]:+.3f}]")

    budget = ""
    if closes:
        budget = (f"; p={hi['p']} was still improving when the {cfg.train.epochs}-epoch "
                  "budget ran out, fast enough to reach the best p, so its higher error is not "
                  "read as underfitting (raise --epochs)")
    elif hi["still_improving"]:
        budget = (f"; p={hi['p']} was still improving slowly at the {cfg.train.epochs}-epoch "
                  f"cap (validation log-loss -{hi['recent_gain']:.3f} over the last "
                  f"{cfg.train.patience} epochs, {hi['val_loss'] - best['val_loss']:.3f} above "
                  "the best p's): too slowly to close the gap in as long again")
    text = (
        f"best p on validation={best['p']} (validation log-loss {best['val_loss']:.4f}, "
        f"error {best['val_err']:.3f}; test "
        f"error {best['test_err']:.3f}±{best['test_err_se']:.3f}, "
        f"log-loss {best['test_loss']:.3f}±{best['test_loss_se']:.3f}); p={lo['p']}: error "
        f"{lo['test_err']:.3f} (train {lo['train_err']:.3f}), log-loss {lo['test_loss']:.3f} "
        f"({lo['loss_vs_best']:+.3f}±{lo['loss_vs_best_se']:.3f} paired{over_seeds(lo)}), "
        "validation log-loss "
        f"{'rising' if lo['val_rise'] > 0 else 'not rising'} after its best epoch; "
        f"p={hi['p']}: error {hi['test_err']:.3f} (train {hi['train_err']:.3f}), log-loss "
        f"{hi['test_loss']:.3f} ({hi['loss_vs_best']:+.3f}±{hi['loss_vs_best_se']:.3f} paired"
        f"{over_seeds(hi)})"
        f"; each model at its best validation epoch ({epochs}){budget}"
    )
    return {
        "holds": bool(overfit_side and underfit_side),
        "claim": CLAIM,
        "summary": text,
        "best_p": best["p"],
        "overfitting_side_worse": bool(overfit_side),
        "underfitting_side_worse": bool(underfit_side),
        "high_end_still_improving": bool(hi["still_improving"]),
        "rows": rows,
        "seeds": cfg.seeds,
        "epochs": cfg.train.epochs,
    }


def plot(fig: Any, r: dict[str, Any]) -> None:
    """Draw this experiment's figure on ``fig`` from its stored result ``r``."""
    ax_err, ax_loss = fig.subplots(1, 2)
    rows = r["rows"]
    p = np.array([x["p"] for x in rows])
    err = np.array([x["test_err"] for x in rows])
    se = np.array([x["test_err_se"] for x in rows])
    ax_err.errorbar(p, err, yerr=se, marker="o", color=BLUE, capsize=3, label="test error")
    ax_err.plot(p, [x["train_err"] for x in rows], marker=".", ls="--", color=GREY,
                label="train error")
    best = r["best_p"]
    ax_err.axvspan(p.min() - 0.02, best, color=RED, alpha=0.08, label="overfitting side")
    ax_err.axvspan(best, p.max() + 0.02, color=BLUE, alpha=0.08, label="underfitting side")
    ax_err.axvline(best, color="k", lw=0.8, ls=":")
    ax_err.annotate(f"best p={best}", (best, err.min()), textcoords="offset points",
                    xytext=(4, -12), fontsize=8)
    ax_err.set(xlabel="drop probability p", ylabel="error",
               title=f"error vs p ({r['seeds']} seed(s), <= {r['epochs']} epochs each)")
    ax_err.legend(fontsize=9)
    ax_loss.errorbar(p, [x["test_loss"] for x in rows], yerr=[x["test_loss_se"] for x in rows],
                     marker="o", color=ORANGE, capsize=3, label="test")
    ax_loss.plot(p, [x["train_loss"] for x in rows], marker=".", ls="--", color=GREY,
                 label="train")
    ax_loss.axvline(best, color="k", lw=0.8, ls=":")
    ax_loss.set(xlabel="drop probability p", ylabel="log-loss", title="log-loss vs p (±1 SE)")
    ax_loss.legend(fontsize=9)


def explain(r: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A plain sentence on what the result shows, and the numbers behind it."""
    rows = r["rows"]
    lo, hi = rows[0], rows[-1]
    def gap(x: dict[str, Any]) -> str:
        return f"test log-loss {x['loss_vs_best']:+.3f} ± {x['loss_vs_best_se']:.3f} against it"

    low = (f"Too little dropout (p = {lo['p']}) memorises the training set and does worse on "
           f"the test set ({gap(lo)})" if r["overfitting_side_worse"] else
           f"Too little dropout (p = {lo['p']}) is not clearly worse here ({gap(lo)})")
    high = (f"too much (p = {hi['p']}) cannot even fit it (training error "
            f"{hi['train_err']:.1%}; {gap(hi)})" if r["underfitting_side_worse"] else
            f"too much (p = {hi['p']}) is not clearly underfitting here (training error "
            f"{hi['train_err']:.1%}; {gap(hi)})")
    text = (f"Chosen on held-out validation data, p = {r['best_p']} works best. {low}; {high}. "
            + ("Both ends are worse on the test set, as the claim says."
               if r["holds"] else "Not both ends are clearly worse here, so the verdict is no."))
    seeds = any(x.get("loss_vs_best_ci95") for x in rows)  # (results stored before: none)
    head = ("p", "validation log-loss", "validation error", "test error", "train error",
            "test log-loss", "epoch")
    table = [(*head, "log-loss vs best p, 95% CI over seeds") if seeds else head]
    for x in rows:
        cells = (str(x["p"]), f"{x['val_loss']:.4f}", f"{x['val_err']:.3f}",
                 f"{x['test_err']:.3f}", f"{x['train_err']:.3f}", f"{x['test_loss']:.3f}",
                 ", ".join(map(str, x["chosen_epochs"])))
        if seeds:
            ci = x.get("loss_vs_best_ci95")
            cells = (*cells, "-" if not ci else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]")
        table.append(cells)
    return text, table
