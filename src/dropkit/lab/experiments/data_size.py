"""Data size (Srivastava et al. 2014, Fig. 10): the gain from dropout against training-set size.

Each size N trains on the first N examples of a fixed permutation, with and without
dropout, for the same number of steps as the full set gets (epochs scaled by N_full / N,
at most 20x), so that small sets are not simply under-trained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from dropkit.lab.config import LabConfig, ModelConfig, TrainConfig, TrialSpec
from dropkit.lab.data import Dataset
from dropkit.lab.experiments._common import binom_se, summary
from dropkit.lab.plots import BLUE, GREEN, ORANGE
from dropkit.lab.runner import Runner, Trial

DEFAULT = False  # in the default set of experiments (else --full only)
NAME = "data-size"
CLAIM = (
    "Dropout's gain depends on the amount of data: it helps once the training set is not "
    "tiny (Srivastava et al. 2014, Fig. 10)"
)
RULE = (  # the verdict's rule, in plain words
    """Dropout must lower the test error at every training-set size but the smallest."""
)


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    train: TrainConfig
    sizes: tuple[int, ...]
    p: float
    seeds: int
    seed: int

    @classmethod
    def from_lab(cls, lab: LabConfig) -> Config:
        return cls(lab.model, lab.train, tuple(sorted(lab.sizes)), lab.p_main, lab.seeds,
                   lab.seed)


def _sizes(cfg: Config, n_full: int) -> list[int]:
    return sorted({min(n, n_full) for n in cfg.sizes})


def _train(cfg: Config, n: int, n_full: int) -> TrainConfig:
    factor = min(20.0, n_full / n)
    return replace(cfg.train, epochs=max(1, math.ceil(cfg.train.epochs * factor)))


def trials(cfg: Config, runner: Runner) -> list[TrialSpec]:
    n_full = len(runner.dataset.y_train)
    return [runner.spec(cfg.model, _train(cfg, n, n_full), p, cfg.seed + s, f"first:{n}")
            for n in _sizes(cfg, n_full) for p in (0.0, cfg.p) for s in range(cfg.seeds)]


def analyse(cfg: Config, got: Sequence[Trial], data: Dataset) -> dict[str, Any]:
    """Test error with and without dropout per size, the gain, the verdict."""
    n_test = len(data.y_test)
    sizes = _sizes(cfg, len(data.y_train))
    rows, i = [], 0
    for n in sizes:
        errs = []
        for _ in (0.0, cfg.p):
            errs.append(summary([1 - t.result["final"]["test_acc"]
                                 for t in got[i : i + cfg.seeds]]))
            i += cfg.seeds
        se = math.hypot(*(e["se"] if cfg.seeds > 1 else binom_se(e["mean"], n_test)
                          for e in errs))
        rows.append({"n": n, "err_no_dropout": errs[0]["mean"], "err_dropout": errs[1]["mean"],
                     "gain": errs[0]["mean"] - errs[1]["mean"], "gain_se": se})
    helps = [r["gain"] > 0 for r in rows]
    holds = all(helps[1:]) if len(rows) > 1 else helps[0]
    text = "; ".join(f"N={r['n']}: {r['err_no_dropout']:.3f} -> {r['err_dropout']:.3f} "
                     f"(gain {r['gain']:+.3f})" for r in rows)
    return {"holds": bool(holds), "claim": CLAIM, "summary": text, "p": cfg.p, "rows": rows}


def plot(fig: Any, r: dict[str, Any]) -> None:
    """Draw this experiment's figure on ``fig`` from its stored result ``r``."""
    ax_err, ax_gain = fig.subplots(1, 2)
    rows = r["rows"]
    n = [x["n"] for x in rows]
    ax_err.plot(n, [x["err_no_dropout"] for x in rows], marker="o", color=BLUE, label="p=0")
    ax_err.plot(n, [x["err_dropout"] for x in rows], marker="o", color=ORANGE,
                label=f"p={r['p']}")
    ax_err.set(xscale="log", xlabel="training examples", ylabel="test error",
               title="test error vs data size")
    ax_err.legend(fontsize=9)
    ax_gain.errorbar(n, [x["gain"] for x in rows], yerr=[x["gain_se"] for x in rows],
                     marker="o", color=GREEN, capsize=3)
    ax_gain.axhline(0, color="k", lw=0.8)
    ax_gain.set(xscale="log", xlabel="training examples", ylabel="error(p=0) - error(dropout)",
                title="gain from dropout")


def explain(r: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A plain sentence on what the result shows, and the numbers behind it."""
    text = ("How much dropout helps depends on how much data there is: the gain is the test "
            "error without dropout minus the error with it. ")
    rows = r["rows"]
    lost = [x for x in rows[1:] if x["gain"] <= 0] if len(rows) > 1 else [
        x for x in rows if x["gain"] <= 0]
    text += ("Here dropout helps at every size but the smallest (the rule leaves it out)."
             if not lost else
             "Here it does not help at " + ", ".join(
                 f"N = {x['n']} (gain {x['gain']:+.3f})" for x in lost)
             + ", so the claim does not hold on this data.")
    table = [("training examples", "error p = 0", "error with dropout", "gain")]
    table += [(str(x["n"]), f"{x['err_no_dropout']:.3f}", f"{x['err_dropout']:.3f}",
               f"{x['gain']:+.3f}") for x in r["rows"]]
    return text, table
