r"""Ensemble (claims 4, 11, 12): one dropout net against averages of many networks.

For the trained dropout net: Monte-Carlo averaging of k thinned networks (train-mode
passes, k = 1 .. K) against weight scaling (one eval-mode pass: the (1-p) rule that
stands in for the average); beside it, an explicit ensemble of independently trained
nets without dropout. For a tiny net with n dropout units, the exact average over all
:math:`2^n` sub-networks, each weighted by its probability
:math:`(1-p)^{|m|} p^{n-|m|}`:

.. math:: \bar f(x) = \sum_{m \in \{0,1\}^n} P(m)\, \mathrm{softmax}(W_2 (m \odot h(x)) s + b_2)

(Srivastava et al. 2014, section 7.5; Baldi & Sadowski 2013).

Verdict: weight scaling is at least as accurate as the average it stands in for (within 2
paired standard errors), for the MC average of the big net and the exact average of the
tiny one; the MC average approaches the exact one as k grows; and the dropout net beats
one net trained without dropout in test log-loss (an ensemble's gain without building
several models).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from dropkit.lab.config import LabConfig, ModelConfig, TrainConfig, TrialSpec
from dropkit.lab.data import Dataset
from dropkit.lab.experiments._common import accuracy, log_loss, paired_se
from dropkit.lab.plots import BLUE, GREEN, GREY, ORANGE
from dropkit.lab.runner import Runner, Trial
from dropkit.lab.train import build_mlp, load_state
from dropkit.nn import Dropout

DEFAULT = True  # in the default set of experiments (else --full only)
NAME = "ensemble"
CLAIM = (
    "Dropout trains one net that acts like an ensemble of exponentially many thinned "
    "networks, and the (1-p) weight scaling at test time stands in for their average"
)
RULE = (  # the verdict's rule, in plain words
    """Weight scaling (one pass with every unit, scaled) must be as accurate as averaging many
randomly thinned nets (Monte Carlo) and, for a tiny net, as the exact average over all
its sub-networks; the dropout net must beat one net trained without dropout in
log-loss."""
)


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    train: TrainConfig
    p: float  # the dropout net's drop probability
    seed: int
    members: int  # independently trained nets (no dropout) in the explicit ensemble
    k_max: int  # most MC samples
    tiny_hidden: int  # dropout units of the tiny net (2^n sub-networks)

    @classmethod
    def from_lab(cls, lab: LabConfig) -> Config:
        return cls(lab.model, lab.train, lab.p_main, lab.seed, lab.ens_members, lab.ens_k,
                   lab.tiny_hidden)

    def tiny_model(self) -> ModelConfig:
        return replace(self.model, hidden=(self.tiny_hidden,), input_p=0.0)


def trials(cfg: Config, runner: Runner) -> list[TrialSpec]:
    main = runner.spec(cfg.model, cfg.train, cfg.p, cfg.seed)
    members = [runner.spec(cfg.model, cfg.train, 0.0, cfg.seed + m) for m in range(cfg.members)]
    tiny = runner.spec(cfg.tiny_model(), cfg.train, cfg.p, cfg.seed)
    return [main, *members, tiny]


def rebuild(trial: Trial, data: Dataset) -> nn.Sequential:
    """The trained network of a stored trial."""
    ds = data
    net = build_mlp(ds.n_features, ds.n_classes, trial.spec.model, trial.spec.p)
    return load_state(net, trial.arrays).eval()


def mc_curve(net: nn.Module, x: torch.Tensor, k_max: int, seed: int) -> np.ndarray:
    """Running MC averages: ``[k_max, N, C]`` probabilities after 1 .. k_max train-mode passes."""
    torch.manual_seed(seed)
    net.train()
    out = []
    total = torch.zeros(())
    with torch.no_grad():
        for k in range(1, k_max + 1):
            total = total + net(x).softmax(-1)  # [N, C]
            out.append((total / k).numpy())
    net.eval()
    return np.stack(out)


def exact_average(net: nn.Sequential, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Exact expectation over all dropout masks of a ``Linear-ReLU-Dropout-Linear`` net.

    Shape: ``x [N, D]`` -> ``[N, C]``.
    """
    lin1, _, drop, lin2 = net
    assert isinstance(drop, Dropout), "exact_average needs Linear, ReLU, Dropout, Linear"
    p, n = drop.p, lin1.out_features
    scale = 1.0 / (1.0 - p) if drop.scaling == "inverted" else 1.0
    with torch.no_grad():
        h = torch.relu(lin1(x))  # [N, n]
        bits = torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)))  # [2^n, n]
        weight = ((1 - p) ** bits.sum(1)) * (p ** (n - bits.sum(1)))  # [2^n]
        total = torch.zeros(x.shape[0], lin2.out_features, dtype=torch.float64)
        for i in range(0, len(bits), chunk):
            m = bits[i : i + chunk]  # [M, n]
            logits = lin2(h[None] * m[:, None] * scale)  # [M, N, C]
            total += (weight[i : i + chunk, None, None] * logits.softmax(-1)).sum(0).double()
    return total.float()


def _metrics(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"acc": accuracy(probs, y), "nll": log_loss(probs, y)}


def analyse(cfg: Config, got: Sequence[Trial], data: Dataset) -> dict[str, Any]:
    """MC curve, weight scaling, explicit ensemble, tiny-net exact average; the verdict."""
    main, members, tiny = got[0], got[1:-1], got[-1]
    ds = data
    x, y = torch.from_numpy(ds.x_test), ds.y_test
    net = rebuild(main, data)
    ws = main.arrays["test_probs"]
    mc = mc_curve(net, x, cfg.k_max, cfg.seed + 17)  # [K, N, C]
    mc_acc = [accuracy(m, y) for m in mc]
    mc_nll = [log_loss(m, y) for m in mc]
    member_probs = np.stack([t.arrays["test_probs"] for t in members])  # [M, N, C]
    ens = np.cumsum(member_probs, 0) / np.arange(1, len(members) + 1)[:, None, None]
    ens_acc = [accuracy(e, y) for e in ens]
    ens_nll = [log_loss(e, y) for e in ens]
    # The tiny net: exact average over 2^n masks, MC and weight scaling against it.
    tnet = rebuild(tiny, data)
    exact = exact_average(tnet, x).numpy()
    tmc = mc_curve(tnet, x, cfg.k_max, cfg.seed + 18)
    tws = tiny.arrays["test_probs"]
    tmc_dist = [float(np.abs(m - exact).sum(-1).mean() / 2) for m in tmc]  # total variation
    tws_dist = float(np.abs(tws - exact).sum(-1).mean() / 2)
    ws_m, mc_m = _metrics(ws, y), _metrics(mc[-1], y)
    # "Stands in for": weight scaling is at least as accurate as the average it replaces
    # (within 2 paired standard errors), on the big net (MC, k = K) and the tiny one (exact).
    tol = 2 * paired_se(ws.argmax(1), mc[-1].argmax(1), y) + 1 / len(y)
    ws_matches_mc = ws_m["acc"] >= mc_m["acc"] - tol
    single = _metrics(member_probs[0], y)
    beats_single = ws_m["nll"] < single["nll"]
    t_exact, t_ws = _metrics(exact, y), _metrics(tws, y)
    t_tol = 2 * paired_se(exact.argmax(1), tws.argmax(1), y) + 1 / len(y)
    ws_matches_exact = t_ws["acc"] >= t_exact["acc"] - t_tol
    mc_converges = tmc_dist[-1] < tmc_dist[0]
    holds = bool(ws_matches_mc and beats_single and mc_converges and ws_matches_exact)
    text = (
        f"p={cfg.p}: weight scaling acc {ws_m['acc']:.3f} / NLL {ws_m['nll']:.3f}, "
        f"MC k={cfg.k_max} {mc_m['acc']:.3f} / {mc_m['nll']:.3f}, "
        f"MC k=1 {mc_acc[0]:.3f} / {mc_nll[0]:.3f}; "
        f"one net without dropout {single['acc']:.3f} / {single['nll']:.3f}, ensemble of "
        f"{len(members)} {ens_acc[-1]:.3f} / {ens_nll[-1]:.3f}; tiny net (2^{cfg.tiny_hidden} "
        f"sub-networks): exact {t_exact['acc']:.3f} / {t_exact['nll']:.3f}, weight scaling "
        f"{t_ws['acc']:.3f} / {t_ws['nll']:.3f} (TV {tws_dist:.4f})"
    )
    return {
        "holds": holds,
        "claim": CLAIM,
        "summary": text,
        "p": cfg.p,
        "weight_scaling": ws_m,
        "mc": {"k": list(range(1, cfg.k_max + 1)), "acc": mc_acc, "nll": mc_nll},
        "ws_matches_mc": bool(ws_matches_mc),
        "ws_tolerance": tol,
        "single_no_dropout": single,
        "beats_single_net": bool(beats_single),
        "explicit_ensemble": {"m": list(range(1, len(members) + 1)), "acc": ens_acc,
                              "nll": ens_nll},
        "tiny": {
            "hidden": cfg.tiny_hidden,
            "subnetworks": 2 ** cfg.tiny_hidden,
            "exact": t_exact,
            "weight_scaling": t_ws,
            "mc_final": _metrics(tmc[-1], y),
            "mc_tv": tmc_dist,
            "ws_tv": tws_dist,
            "mc_converges": bool(mc_converges),
            "ws_matches_exact": bool(ws_matches_exact),
            "ws_tolerance": t_tol,
        },
    }


def plot(fig: Any, r: dict[str, Any]) -> None:
    """Draw this experiment's figure on ``fig`` from its stored result ``r``."""
    ax_acc, ax_nll, ax_tiny = fig.subplots(1, 3)
    k = r["mc"]["k"]
    for ax, key in ((ax_acc, "acc"), (ax_nll, "nll")):
        ax.plot(k, r["mc"][key], color=BLUE, label="MC average of k thinned nets")
        ax.axhline(r["weight_scaling"][key], color=ORANGE, label="weight scaling (1 pass)")
        ax.axhline(r["single_no_dropout"][key], color=GREY, ls=":", label="one net, no dropout")
        e = r["explicit_ensemble"]
        ax.plot(e["m"], e[key], marker="s", color=GREEN, label="ensemble of m nets (x = m)")
        ax.set_xscale("log")
        ax.set(xlabel="k (samples) or m (nets)", ylabel="test " + ("accuracy" if key == "acc"
               else "log-loss"), title=f"p={r['p']}: test {key}")
    ax_acc.legend(fontsize=9)
    t = r["tiny"]
    ax_tiny.plot(k, t["mc_tv"], color=BLUE, label="MC average vs exact")
    ax_tiny.axhline(t["ws_tv"], color=ORANGE, label="weight scaling vs exact")
    ax_tiny.plot(k, t["mc_tv"][0] / np.sqrt(k), color=GREY, ls=":", label="1/sqrt(k)")
    ax_tiny.set(xscale="log", yscale="log", xlabel="k", ylabel="mean total variation",
                title=f"tiny net: exact average of {t['subnetworks']} sub-nets")
    ax_tiny.legend(fontsize=9)


def _why(r: dict[str, Any]) -> str:
    """The verdict in words: which of its four parts failed."""
    failed = [text for ok, text in (
        (r["ws_matches_mc"], "the scaled pass is less accurate than the thinned nets' average"),
        (r["beats_single_net"], "its log-loss is not below one net's without dropout"),
        (r["tiny"]["mc_converges"], "the random average does not approach the exact one"),
        (r["tiny"]["ws_matches_exact"],
         "on the tiny net the scaled pass is less accurate than the exact average")) if not ok]
    if not failed:
        return "The claim holds."
    return "On this data the claim does not hold: " + "; ".join(failed) + "."


def explain(r: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A plain sentence on what the result shows, and the numbers behind it."""
    t = r["tiny"]
    text = (f"A dropout net is a cheap stand-in for averaging many thinned nets: one scaled "
            f"pass scores {r['weight_scaling']['acc']:.1%}, the average of "
            f"{r['mc']['k'][-1]} random thinned nets {r['mc']['acc'][-1]:.1%}. For a tiny net "
            f"with {t['subnetworks']} sub-networks the scaled pass differs from their exact "
            f"average by a total variation (the share of probability put elsewhere) of "
            f"{t['ws_tv']:.3f}. " + _why(r))
    table = [("model", "test accuracy", "test log-loss")]
    for label, m in (("weight scaling (1 pass)", r["weight_scaling"]),
                     (f"average of {r['mc']['k'][-1]} thinned nets", {
                         "acc": r["mc"]["acc"][-1], "nll": r["mc"]["nll"][-1]}),
                     ("one net without dropout", r["single_no_dropout"]),
                     ("tiny net: exact average", t["exact"]),
                     ("tiny net: weight scaling", t["weight_scaling"])):
        table.append((label, f"{m['acc']:.3f}", f"{m['nll']:.3f}"))
    return text, table
