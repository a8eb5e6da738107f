r"""Coverage (claim 10): with dropout, every hidden unit still ends up trained.

A unit behind ``ReLU -> Dropout`` receives a gradient from an example iff it is kept by
the mask and active. Recorded during training: the fraction of hidden units trained at
least once, per step, and the fraction of (example, unit) pairs, per epoch. For the
masks alone, a pair is kept at least once in e epochs with probability
:math:`1 - p^e`, and a unit within t steps of B examples with :math:`1 - p^{Bt}`.
Dead units (never active) are never trained, with or without dropout: the net without
dropout is the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dropkit.lab.config import LabConfig, ModelConfig, TrainConfig, TrialSpec
from dropkit.lab.data import Dataset
from dropkit.lab.plots import BLUE, GREEN, GREY, ORANGE, RED
from dropkit.lab.runner import Runner, Trial

DEFAULT = True  # in the default set of experiments (else --full only)
NAME = "coverage"
CLAIM = "Dropout sets units to 0 at random, yet over training every unit ends up trained"
RULE = (  # the verdict's rule, in plain words
    """With dropout, as many hidden units must receive a gradient (and change) during training
as without it."""
)


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    train: TrainConfig  # with the short coverage epoch budget
    ps: tuple[float, ...]  # includes 0, the reference
    seed: int

    @classmethod
    def from_lab(cls, lab: LabConfig) -> Config:
        train = replace(lab.train, epochs=lab.coverage_epochs)
        return cls(lab.model, train, tuple(sorted({0.0, *lab.coverage_ps})), lab.seed)


def trials(cfg: Config, runner: Runner) -> list[TrialSpec]:
    return [runner.spec(cfg.model, cfg.train, p, cfg.seed, record_coverage=True)
            for p in cfg.ps]


def analyse(cfg: Config, got: Sequence[Trial], data: Dataset) -> dict[str, Any]:
    """Coverage curves per p and the verdict."""
    width = sum(cfg.model.hidden)
    rows = []
    for t in got:
        c = t.result["coverage"]
        rows.append({"p": t.spec.p, "units": c["units"], "pairs": c["pairs"],
                     "final_units": c["units"][-1], "updated_fraction": c["updated_fraction"],
                     "batch_size": c["batch_size"]})
    ref = rows[0]
    slack = 1.0 / width  # one unit
    holds = all(r["final_units"] >= ref["final_units"] - slack
                and r["updated_fraction"] >= ref["updated_fraction"] - slack for r in rows[1:])
    parts = [f"p={r['p']}: {r['final_units']:.3f} of units trained, "
             f"{r['updated_fraction']:.3f} updated, pairs {r['pairs'][-1]:.3f}" for r in rows]
    text = (f"after {cfg.train.epochs} epochs ({len(ref['units'])} steps of "
            f"{ref['batch_size']}): " + "; ".join(parts))
    return {"holds": bool(holds), "claim": CLAIM, "summary": text, "hidden_units": width,
            "epochs": cfg.train.epochs, "rows": rows}


def plot(fig: Any, r: dict[str, Any]) -> None:
    """Draw this experiment's figure on ``fig`` from its stored result ``r``."""
    ax_u, ax_p = fig.subplots(1, 2)
    colors = [GREY, BLUE, ORANGE, GREEN, RED]
    for row, color in zip(r["rows"], colors, strict=False):
        steps = np.arange(1, len(row["units"]) + 1)
        ax_u.plot(steps, row["units"], color=color, label=f"p={row['p']}")
        epochs = np.arange(1, len(row["pairs"]) + 1)
        ax_p.plot(epochs, row["pairs"], marker="o", color=color, label=f"p={row['p']}")
        if row["p"] > 0:
            ref = r["rows"][0]["pairs"]
            ax_p.plot(epochs, np.asarray(ref) * (1 - row["p"] ** epochs), ls=":", color=color,
                      label=f"(p=0) x (1 - {row['p']}^e)")
    ax_u.set(xscale="log", xlabel="training step", ylabel="fraction of hidden units",
             title=f"units trained at least once ({r['hidden_units']} units)")
    ax_p.set(xlabel="epoch", ylabel="fraction of (example, unit) pairs",
             title="pairs trained at least once")
    ax_u.legend(fontsize=9)
    ax_p.legend(fontsize=9)


def explain(r: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A plain sentence on what the result shows, and the numbers behind it."""
    text = ("Even though dropout switches units off at random, every unit still gets trained "
            "within a few steps; what drops is the share of (example, unit) pairs that were "
            "ever trained together.")
    table = [("p", "units trained", "units changed", "(example, unit) pairs trained")]
    table += [(str(x["p"]), f"{x['final_units']:.3f}", f"{x['updated_fraction']:.3f}",
               f"{x['pairs'][-1]:.3f}") for x in r["rows"]]
    return text, table
