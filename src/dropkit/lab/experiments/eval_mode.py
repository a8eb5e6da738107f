"""Eval mode (claim 14): the same trained net evaluated with dropout on and off.

Forgetting ``model.eval()`` leaves dropout active at test time: predictions come from one
random thinned network. The verdict compares eval-mode accuracy with the mean of several
train-mode passes; the net without dropout is the control (both modes agree exactly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dropkit.lab.config import LabConfig, ModelConfig, TrainConfig, TrialSpec
from dropkit.lab.data import Dataset
from dropkit.lab.experiments._common import accuracy, log_loss, paired_se, summary
from dropkit.lab.experiments.ensemble import rebuild
from dropkit.lab.plots import BLUE, RED
from dropkit.lab.runner import Runner, Trial
from dropkit.lab.train import predict_proba

DEFAULT = True  # in the default set of experiments (else --full only)
NAME = "eval-mode"
# The analysis's version (stored results of an older one are analysed again). 2: the
# control's train-mode accuracy is reported (its input dropout, if any, stays on).
ANALYSIS = 2
CLAIM = "Forgetting model.eval() (dropout left on at test time) costs accuracy"
RULE = (  # the verdict's rule, in plain words
    """Evaluating with dropout left on (model.train()) must be less accurate than with
model.eval() by more than 2 standard errors; a net without dropout is the control."""
)


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    train: TrainConfig
    p: float
    seed: int
    passes: int = 10  # train-mode passes over the test set

    @classmethod
    def from_lab(cls, lab: LabConfig) -> Config:
        return cls(lab.model, lab.train, lab.p_main, lab.seed)


def trials(cfg: Config, runner: Runner) -> list[TrialSpec]:
    return [runner.spec(cfg.model, cfg.train, p, cfg.seed) for p in (0.0, cfg.p)]


def analyse(cfg: Config, got: Sequence[Trial], data: Dataset) -> dict[str, Any]:
    """Accuracy and log-loss in both modes, for the net with and without dropout."""
    x, y = torch.from_numpy(data.x_test), data.y_test
    rows = {}
    for t in got:
        net = rebuild(t, data)
        ev = predict_proba(net, x).numpy()
        torch.manual_seed(cfg.seed + 3)
        tr = [predict_proba(net, x, train_mode=True).numpy() for _ in range(cfg.passes)]
        rows[f"p={t.spec.p}"] = {
            "p": t.spec.p,
            "eval_acc": accuracy(ev, y), "eval_nll": log_loss(ev, y),
            "train_acc": summary([accuracy(a, y) for a in tr]),
            "train_nll": summary([log_loss(a, y) for a in tr]),
            "se": float(np.mean([paired_se(ev.argmax(1), a.argmax(1), y) for a in tr])),
        }
    d = rows[f"p={cfg.p}"]
    c = rows["p=0.0"]
    cost = d["eval_acc"] - d["train_acc"]["mean"]
    holds = bool(cost > 2 * d["se"] and d["eval_nll"] < d["train_nll"]["mean"])
    text = (
        f"p={cfg.p}: eval mode acc {d['eval_acc']:.3f} / NLL {d['eval_nll']:.3f}; train mode "
        f"{d['train_acc']['mean']:.3f}±{d['train_acc']['sd']:.3f} / "
        f"{d['train_nll']['mean']:.3f} (mean of {cfg.passes} passes): forgetting eval() costs "
        f"{cost:.3f} accuracy (2 SE = {2 * d['se']:.3f}); control p=0: eval mode "
        f"{c['eval_acc']:.3f}, train mode {c['train_acc']['mean']:.3f}"
        + (f" (its input dropout {cfg.model.input_p} stays on)" if cfg.model.input_p else "")
    )
    return {"holds": holds, "claim": CLAIM, "summary": text, "accuracy_cost": cost,
            "control_cost": c["eval_acc"] - c["train_acc"]["mean"], "control_se": c["se"],
            "input_p": cfg.model.input_p,
            "passes": cfg.passes, "rows": list(rows.values())}


def plot(fig: Any, r: dict[str, Any]) -> None:
    """Draw this experiment's figure on ``fig`` from its stored result ``r``."""
    ax_acc, ax_nll = fig.subplots(1, 2)
    rows = r["rows"]
    pos = np.arange(len(rows))
    for ax, key, label in ((ax_acc, "acc", "test accuracy"), (ax_nll, "nll", "test log-loss")):
        ev = [x[f"eval_{key}"] for x in rows]
        tr = [x[f"train_{key}"]["mean"] for x in rows]
        sd = [x[f"train_{key}"]["sd"] for x in rows]
        ax.bar(pos - 0.2, ev, 0.4, color=BLUE, label="model.eval()")
        ax.bar(pos + 0.2, tr, 0.4, yerr=sd, color=RED, capsize=3, label="forgot eval()")
        ax.set_xticks(pos, [f"p={x['p']}" for x in rows])
        ax.set(ylabel=label, title=label)
        ax.legend(fontsize=9)


def explain(r: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A plain sentence on what the result shows, and the numbers behind it."""
    control = r.get("control_cost", 0.0)
    if abs(control) <= 2 * r.get("control_se", 0.0) or not r.get("input_p"):
        tail = "a net without dropout (the control) is unaffected."
    else:
        tail = (f"the p = 0 control, whose input dropout ({r['input_p']}) stays on too, loses "
                f"{control:.1%}.")
    text = (f"Forgetting model.eval() leaves dropout on at test time and costs "
            f"{r['accuracy_cost']:.1%} accuracy here; " + tail)
    table = [("p", "accuracy with eval()", "accuracy without eval()")]
    table += [(str(x["p"]), f"{x['eval_acc']:.3f}", f"{x['train_acc']['mean']:.3f}")
              for x in r["rows"]]
    return text, table
