r"""Scaling (claims 11, 12): classic and inverted dropout train to the same accuracy.

Classic (the seed's): keep with probability 1-p unscaled, multiply by (1-p) at test time.
Inverted (PyTorch's): scale kept units by 1/(1-p) in training, nothing at test time. Both
nets are trained from the same seed (same initial weights, batches and masks). Then, for
each, the mean of S train-mode outputs of the first hidden dropout layer is compared with
its eval-mode output, element by element, in units of the exact standard error
(:math:`\sigma = |h| \sqrt{p/(1-p)}` inverted, :math:`|h|\sqrt{p(1-p)}` classic): every
|z| must be below 6.

Note: the two are one model in two parametrisations (classic weights after a dropout
layer = inverted weights / (1-p)), but the optimiser does not see it that way: with Adam,
which moves every weight by about lr per step, the classic net must grow those weights by
1/(1-p) from the same initialisation, so under a short epoch budget it can lag behind.
The verdict reports what the budget shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from dropkit.lab.config import LabConfig, ModelConfig, TrainConfig, TrialSpec
from dropkit.lab.data import Dataset
from dropkit.lab.experiments._common import binom_se, summary
from dropkit.lab.experiments.ensemble import rebuild
from dropkit.lab.plots import BLUE, ORANGE, RED
from dropkit.lab.runner import Runner, Trial
from dropkit.nn import Dropout

DEFAULT = True  # in the default set of experiments (else --full only)
NAME = "scaling"
CLAIM = (
    "Multiplying by (1-p) at test time (classic) or by 1/(1-p) in training (inverted) keeps "
    "the expected output equal, and both train to the same test accuracy"
)
Z_MAX = 6.0
RULE = (  # the verdict's rule, in plain words
    """With the same seed, classic scaling (multiply by 1-p at test time) and inverted scaling
(divide by 1-p in training) must reach the same test accuracy within 3 standard errors,
and the mean of many training-mode outputs must equal the test-mode output (every
standardised difference |z| below 6)."""
)


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    train: TrainConfig
    p: float
    seeds: int
    seed: int
    samples: int = 400  # train-mode passes for the expectation check
    rows: int = 64  # test examples in the expectation check

    @classmethod
    def from_lab(cls, lab: LabConfig) -> Config:
        return cls(lab.model, lab.train, lab.p_main, lab.seeds, lab.seed)


def _models(cfg: Config) -> dict[str, ModelConfig]:
    return {s: replace(cfg.model, scaling=s) for s in ("inverted", "classic")}


def trials(cfg: Config, runner: Runner) -> list[TrialSpec]:
    return [runner.spec(m, cfg.train, cfg.p, cfg.seed + s)
            for m in _models(cfg).values() for s in range(cfg.seeds)]


def expectation_z(drop: Dropout, h: torch.Tensor, samples: int, seed: int) -> np.ndarray:
    """z-scores ``(mean of train-mode outputs - eval output) / SE`` for input ``h [N, H]``."""
    p = drop.p
    sd = h.abs() * (math.sqrt(p / (1 - p)) if drop.scaling == "inverted"
                    else math.sqrt(p * (1 - p)))
    torch.manual_seed(seed)
    with torch.no_grad():
        drop.train()
        mean = sum(drop(h) for _ in range(samples)) / samples
        drop.eval()
        target = drop(h)
    live = sd > 0
    z = torch.zeros_like(h)
    z[live] = (mean[live] - target[live]) / (sd[live] / math.sqrt(samples))
    assert torch.equal(mean[~live], target[~live])
    return z.numpy()


def analyse(cfg: Config, got: Sequence[Trial], data: Dataset) -> dict[str, Any]:
    """Accuracy and log-loss per scaling, the expectation check, the verdict."""
    n_test = len(data.y_test)
    x = torch.from_numpy(data.x_test[: cfg.rows])
    out: dict[str, Any] = {}
    for i, name in enumerate(("inverted", "classic")):
        ts = got[i * cfg.seeds : (i + 1) * cfg.seeds]
        acc = summary([t.result["final"]["test_acc"] for t in ts])
        nll = summary([t.result["final"]["test_loss"] for t in ts])
        train_acc = summary([t.result["final"]["train_acc"] for t in ts])
        net = rebuild(ts[0], data)
        first = next(j for j, m in enumerate(net) if isinstance(m, Dropout) and j > 0)
        with torch.no_grad():
            h = net[:first](x)  # [rows, H], the input of the first hidden dropout
        z = expectation_z(net[first], h, cfg.samples, cfg.seed + 5)
        out[name] = {"acc": acc, "nll": nll, "train_acc": train_acc,
                     "max_abs_z": float(np.abs(z).max()),
                     "z_hist": np.histogram(z, bins=41, range=(-8, 8))[0].tolist()}
    inv, cla = out["inverted"], out["classic"]
    if cfg.seeds > 1:
        tol = 3 * math.hypot(inv["acc"]["se"], cla["acc"]["se"])
    else:
        tol = 3 * math.sqrt(2) * binom_se(inv["acc"]["mean"], n_test)
    diff = cla["acc"]["mean"] - inv["acc"]["mean"]
    same_acc = abs(diff) <= tol
    same_expectation = max(inv["max_abs_z"], cla["max_abs_z"]) < Z_MAX
    text = (
        f"p={cfg.p}, {cfg.seeds} seed(s): test acc inverted {inv['acc']['mean']:.3f}, classic "
        f"{cla['acc']['mean']:.3f} (difference {diff:+.3f}, tolerance ±{tol:.3f}); log-loss "
        f"{inv['nll']['mean']:.3f} / {cla['nll']['mean']:.3f}; train acc "
        f"{inv['train_acc']['mean']:.3f} / {cla['train_acc']['mean']:.3f}; "
        f"E[train output] = eval output: "
        f"max |z| {inv['max_abs_z']:.2f} / {cla['max_abs_z']:.2f} over "
        f"{cfg.samples} masks (bound {Z_MAX:g})"
    )
    return {
        "holds": bool(same_acc and same_expectation),
        "claim": CLAIM,
        "summary": text,
        "p": cfg.p,
        "acc_difference": diff,
        "tolerance": tol,
        "same_accuracy": bool(same_acc),
        "same_expectation": bool(same_expectation),
        "samples": cfg.samples,
        **out,
    }


def plot(fig: Any, r: dict[str, Any]) -> None:
    """Draw this experiment's figure on ``fig`` from its stored result ``r``."""
    ax_acc, ax_z = fig.subplots(1, 2)
    names = ("inverted", "classic")
    means = [r[n]["acc"]["mean"] for n in names]
    ax_acc.bar(names, means, yerr=[r["tolerance"] / 3] * 2, color=[BLUE, ORANGE], capsize=4)
    for i, m in enumerate(means):
        ax_acc.text(i, m, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
    ax_acc.set(ylabel="test accuracy", title=f"p={r['p']}: same seed, two scalings",
               ylim=(0.0, 1.0))  # a bar's length is read: the axis starts at 0
    edges = np.linspace(-8, 8, 42)
    centers = (edges[:-1] + edges[1:]) / 2
    for n, color in zip(names, (BLUE, ORANGE), strict=True):
        ax_z.step(centers, r[n]["z_hist"], where="mid", color=color, label=n)
    ax_z.axvline(-6, color=RED, ls=":")
    ax_z.axvline(6, color=RED, ls=":", label="|z| = 6")
    ax_z.set(xlabel="z = (mean of train outputs - eval output) / SE", ylabel="elements",
             title=f"E[train output] = eval output ({r['samples']} masks)")
    ax_z.legend(fontsize=9)


def explain(r: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A plain sentence on what the result shows, and the numbers behind it."""
    z = max(r["inverted"]["max_abs_z"], r["classic"]["max_abs_z"])
    same = ("give the same model" if r["same_accuracy"] else
            "should give the same model, but here they differ by more than 3 standard errors")
    match = ("match" if r["same_expectation"] else "do not match")
    text = (f"The two ways to keep a unit's expected output equal {same}: test "
            f"accuracy {r['inverted']['acc']['mean']:.1%} (inverted) and "
            f"{r['classic']['acc']['mean']:.1%} (classic). Averaged over {r['samples']} random "
            f"masks, training-mode outputs {match} the test-mode output: the largest "
            f"standardised difference |z| is {z:.1f} (above 6 would be a real mismatch).")
    table = [("scaling", "test accuracy", "test log-loss", "max |z|")]
    table += [(n, f"{r[n]['acc']['mean']:.3f}", f"{r[n]['nll']['mean']:.3f}",
               f"{r[n]['max_abs_z']:.2f}") for n in ("inverted", "classic")]
    return text, table
