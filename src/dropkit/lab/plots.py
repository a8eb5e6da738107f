"""One matplotlib figure per experiment, drawn from its stored result only (Agg, no pyplot).

``figure(name, result)`` returns a Figure; ``png_bytes`` renders it without a timestamp or
version in the metadata, so the same stored result always gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from dropkit.lab._deps import need

__all__ = ["figure", "png_bytes"]

_Plot = Callable[[Any, dict[str, Any]], None]
_BLUE, _ORANGE, _GREEN, _GREY, _RED = "#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f", "#d62728"


def _overfitting(fig: Any, r: dict[str, Any]) -> None:
    ax_acc, ax_loss = fig.subplots(1, 2)
    for tag, color in (("no_dropout", _BLUE), ("dropout", _ORANGE)):
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
    ax_acc.legend(fontsize=8)
    ax_loss.legend(fontsize=8)


def _rate_sweep(fig: Any, r: dict[str, Any]) -> None:
    ax_err, ax_loss = fig.subplots(1, 2)
    rows = r["rows"]
    p = np.array([x["p"] for x in rows])
    err = np.array([x["test_err"] for x in rows])
    se = np.array([x["test_err_se"] for x in rows])
    ax_err.errorbar(p, err, yerr=se, marker="o", color=_BLUE, capsize=3, label="test error")
    ax_err.plot(p, [x["train_err"] for x in rows], marker=".", ls="--", color=_GREY,
                label="train error")
    best = r["best_p"]
    ax_err.axvspan(p.min() - 0.02, best, color=_RED, alpha=0.08, label="overfitting side")
    ax_err.axvspan(best, p.max() + 0.02, color=_BLUE, alpha=0.08, label="underfitting side")
    ax_err.axvline(best, color="k", lw=0.8, ls=":")
    ax_err.annotate(f"best p={best}", (best, err.min()), textcoords="offset points",
                    xytext=(4, -12), fontsize=8)
    ax_err.set(xlabel="drop probability p", ylabel="error",
               title=f"error vs p ({r['seeds']} seed(s), {r['epochs']} epochs)")
    ax_err.legend(fontsize=7)
    ax_loss.errorbar(p, [x["test_loss"] for x in rows], yerr=[x["test_loss_se"] for x in rows],
                     marker="o", color=_ORANGE, capsize=3, label="test")
    ax_loss.plot(p, [x["train_loss"] for x in rows], marker=".", ls="--", color=_GREY,
                 label="train")
    ax_loss.axvline(best, color="k", lw=0.8, ls=":")
    ax_loss.set(xlabel="drop probability p", ylabel="log-loss", title="log-loss vs p (±1 SE)")
    ax_loss.legend(fontsize=7)


def _bias_variance(fig: Any, r: dict[str, Any]) -> None:
    ax_sq, ax_log = fig.subplots(1, 2)
    rows = r["rows"]
    labels = [f"p={x['p']}" for x in rows]
    pos = np.arange(len(rows))
    for ax, key, title in ((ax_sq, "sq", "squared error on probabilities"),
                           (ax_log, "log", "log-loss (Heskes)")):
        bias = np.array([x[f"{key}_bias"] for x in rows])
        var = np.array([x[f"{key}_variance"] for x in rows])
        ax.bar(pos, bias, color=_BLUE, label="bias (+ noise)")
        ax.bar(pos, var, bottom=bias, color=_ORANGE, label="variance")
        for i, (b, v) in enumerate(zip(bias, var, strict=True)):
            ax.text(i, b + v, f"{b:.3f}+{v:.3f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(pos, labels)
        ax.set(ylabel="expected test loss", title=f"{title}, K={r['models_per_p']}")
        ax.legend(fontsize=8)


def _ensemble(fig: Any, r: dict[str, Any]) -> None:
    ax_acc, ax_nll, ax_tiny = fig.subplots(1, 3)
    k = r["mc"]["k"]
    for ax, key in ((ax_acc, "acc"), (ax_nll, "nll")):
        ax.plot(k, r["mc"][key], color=_BLUE, label="MC average of k thinned nets")
        ax.axhline(r["weight_scaling"][key], color=_ORANGE, label="weight scaling (1 pass)")
        ax.axhline(r["single_no_dropout"][key], color=_GREY, ls=":", label="one net, no dropout")
        e = r["explicit_ensemble"]
        ax.plot(e["m"], e[key], marker="s", color=_GREEN, label="ensemble of m nets (x = m)")
        ax.set_xscale("log")
        ax.set(xlabel="k (samples) or m (nets)", ylabel="test " + ("accuracy" if key == "acc"
               else "log-loss"), title=f"p={r['p']}: test {key}")
    ax_acc.legend(fontsize=7)
    t = r["tiny"]
    ax_tiny.plot(k, t["mc_tv"], color=_BLUE, label="MC average vs exact")
    ax_tiny.axhline(t["ws_tv"], color=_ORANGE, label="weight scaling vs exact")
    ax_tiny.plot(k, t["mc_tv"][0] / np.sqrt(k), color=_GREY, ls=":", label="1/sqrt(k)")
    ax_tiny.set(xscale="log", yscale="log", xlabel="k", ylabel="mean total variation",
                title=f"tiny net: exact average of {t['subnetworks']} sub-nets")
    ax_tiny.legend(fontsize=7)


def _scaling(fig: Any, r: dict[str, Any]) -> None:
    ax_acc, ax_z = fig.subplots(1, 2)
    names = ("inverted", "classic")
    means = [r[n]["acc"]["mean"] for n in names]
    ax_acc.bar(names, means, yerr=[r["tolerance"] / 3] * 2, color=[_BLUE, _ORANGE], capsize=4)
    for i, m in enumerate(means):
        ax_acc.text(i, m, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
    ax_acc.set(ylabel="test accuracy", title=f"p={r['p']}: same seed, two scalings",
               ylim=(min(means) - 0.1, min(1.0, max(means) + 0.05)))
    edges = np.linspace(-8, 8, 42)
    centers = (edges[:-1] + edges[1:]) / 2
    for n, color in zip(names, (_BLUE, _ORANGE), strict=True):
        ax_z.step(centers, r[n]["z_hist"], where="mid", color=color, label=n)
    ax_z.axvline(-6, color=_RED, ls=":")
    ax_z.axvline(6, color=_RED, ls=":", label="|z| = 6")
    ax_z.set(xlabel="z = (mean of train outputs - eval output) / SE", ylabel="elements",
             title=f"E[train output] = eval output ({r['samples']} masks)")
    ax_z.legend(fontsize=8)


def _eval_mode(fig: Any, r: dict[str, Any]) -> None:
    ax_acc, ax_nll = fig.subplots(1, 2)
    rows = r["rows"]
    pos = np.arange(len(rows))
    for ax, key, label in ((ax_acc, "acc", "test accuracy"), (ax_nll, "nll", "test log-loss")):
        ev = [x[f"eval_{key}"] for x in rows]
        tr = [x[f"train_{key}"]["mean"] for x in rows]
        sd = [x[f"train_{key}"]["sd"] for x in rows]
        ax.bar(pos - 0.2, ev, 0.4, color=_BLUE, label="model.eval()")
        ax.bar(pos + 0.2, tr, 0.4, yerr=sd, color=_RED, capsize=3, label="forgot eval()")
        ax.set_xticks(pos, [f"p={x['p']}" for x in rows])
        ax.set(ylabel=label, title=label)
        ax.legend(fontsize=8)


def _coverage(fig: Any, r: dict[str, Any]) -> None:
    ax_u, ax_p = fig.subplots(1, 2)
    colors = [_GREY, _BLUE, _ORANGE, _GREEN, _RED]
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
    ax_u.legend(fontsize=8)
    ax_p.legend(fontsize=7)


def _data_size(fig: Any, r: dict[str, Any]) -> None:
    ax_err, ax_gain = fig.subplots(1, 2)
    rows = r["rows"]
    n = [x["n"] for x in rows]
    ax_err.plot(n, [x["err_no_dropout"] for x in rows], marker="o", color=_BLUE, label="p=0")
    ax_err.plot(n, [x["err_dropout"] for x in rows], marker="o", color=_ORANGE,
                label=f"p={r['p']}")
    ax_err.set(xscale="log", xlabel="training examples", ylabel="test error",
               title="test error vs data size")
    ax_err.legend(fontsize=8)
    ax_gain.errorbar(n, [x["gain"] for x in rows], yerr=[x["gain_se"] for x in rows],
                     marker="o", color=_GREEN, capsize=3)
    ax_gain.axhline(0, color="k", lw=0.8)
    ax_gain.set(xscale="log", xlabel="training examples", ylabel="error(p=0) - error(dropout)",
                title="gain from dropout")


_PLOTS: dict[str, _Plot] = {
    "overfitting": _overfitting,
    "rate-sweep": _rate_sweep,
    "bias-variance": _bias_variance,
    "ensemble": _ensemble,
    "scaling": _scaling,
    "eval-mode": _eval_mode,
    "coverage": _coverage,
    "data-size": _data_size,
}


def figure(name: str, result: dict[str, Any]) -> Any:
    """The figure of experiment ``name`` from its stored ``result``; the verdict in the title."""
    mfig = need("matplotlib.figure")
    width = 15.0 if name == "ensemble" else 11.0
    fig = mfig.Figure(figsize=(width, 4.2), dpi=100, layout="constrained")
    _PLOTS[name](fig, result)
    verdict = "HOLDS" if result["holds"] else "DOES NOT HOLD"
    fig.suptitle(f"{name}: {verdict}", fontsize=12,
                 color=_GREEN if result["holds"] else _RED)
    return fig


def png_bytes(fig: Any) -> bytes:
    """PNG of ``fig`` (Agg), with no software version or date in the metadata."""
    need("matplotlib.backends.backend_agg").FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
