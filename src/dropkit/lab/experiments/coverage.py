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

from dataclasses import dataclass, replace
from typing import Any

from dropkit.lab.config import LabConfig, ModelConfig, TrainConfig, TrialSpec
from dropkit.lab.runner import Runner

NAME = "coverage"
CLAIM = "Dropout sets units to 0 at random, yet over training every unit ends up trained (claim 10)"


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


def run(cfg: Config, runner: Runner) -> dict[str, Any]:
    """Coverage curves per p and the verdict."""
    got = runner.run(NAME, trials(cfg, runner))
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
