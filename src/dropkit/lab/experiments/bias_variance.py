r"""Bias and variance (claims 8, 9): K models per p, each on its own training set and seed.

Two exact decompositions of the expected test loss over training sets D, averaged over
test points x with label y (one-hot :math:`e_y`):

Squared error on the probability vector (the Brier score), the primary one:

.. math:: E_D\|f_D - e_y\|^2 = \underbrace{\|\bar f - e_y\|^2}_{\text{bias}^2 + \text{noise}}
          + \underbrace{E_D\|f_D - \bar f\|^2}_{\text{variance}},\quad \bar f = E_D f_D

Log-loss (Heskes 1998), with :math:`\tilde f \propto \exp E_D \log f_D`:

.. math:: E_D[-\log f_D(y)] = -\log \tilde f(y) + E_D\,\mathrm{KL}(\tilde f \,\|\, f_D)

The noise term (the Bayes error) cannot be separated with one label per test point; it
sits inside the bias term, the same for every p. Training sets are bootstrap resamples,
or MNIST-1D regenerated with other generator seeds ("regenerate").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dropkit.lab.config import LabConfig, ModelConfig, TrainConfig, TrialSpec
from dropkit.lab.data import Dataset
from dropkit.lab.plots import BLUE, ORANGE
from dropkit.lab.runner import Runner, Trial

DEFAULT = True  # in the default set of experiments (else --full only)
NAME = "bias-variance"
CLAIM = (
    "Dropout raises bias a little and cuts variance a lot, so the expected test loss "
    "falls"
)
RULE = (  # the verdict's rule, in plain words
    """Over several models trained on resampled training sets, the squared error on the
predicted probabilities splits into bias (the average model's error, noise included) and
variance (how much the models disagree); the claim holds if dropout raises the bias and
lowers the variance by more."""
)


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    train: TrainConfig
    ps: tuple[float, ...]  # drop probabilities compared (must include 0)
    models: int  # K training sets (and seeds) per p
    resample: str  # "bootstrap" or "regenerate"
    seed: int

    @classmethod
    def from_lab(cls, lab: LabConfig) -> Config:
        ps = tuple(sorted({0.0, *lab.bv_ps}))
        return cls(lab.model, lab.train, ps, lab.bv_models, lab.bv_resample, lab.seed)


def trials(cfg: Config, runner: Runner) -> list[TrialSpec]:
    kind = "boot" if cfg.resample == "bootstrap" else "regen"
    return [runner.spec(cfg.model, cfg.train, p, cfg.seed + 100 + k, f"{kind}:{k}")
            for p in cfg.ps for k in range(cfg.models)]


def decompose(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Both decompositions for ``probs [K, N, C]`` (K models) and labels ``y [N]``.

    Example:
        >>> import numpy as np
        >>> f = np.array([[[0.8, 0.2]], [[0.4, 0.6]]])  # K=2 models, N=1 point, C=2
        >>> d = decompose(f, np.array([0]))
        >>> round(d["sq_bias"] + d["sq_variance"] - d["sq_loss"], 12)
        0.0
        >>> round(d["log_bias"] + d["log_variance"] - d["log_loss"], 12)
        0.0
    """
    _, n, c = probs.shape
    onehot = np.eye(c)[y]  # [N, C]
    mean = probs.mean(0)  # [N, C]
    sq_loss = ((probs - onehot) ** 2).sum(-1).mean()
    sq_bias = ((mean - onehot) ** 2).sum(-1).mean()
    sq_var = ((probs - mean) ** 2).sum(-1).mean()
    logp = np.log(np.clip(probs, 1e-12, None))  # [K, N, C]
    geo = logp.mean(0)  # [N, C], log of the unnormalised geometric mean
    log_z = np.log(np.exp(geo).sum(-1))  # [N]
    log_tilde = geo - log_z[:, None]  # [N, C]
    log_loss = -logp[:, np.arange(n), y].mean()
    log_bias = -log_tilde[np.arange(n), y].mean()
    kl = (np.exp(log_tilde)[None] * (log_tilde[None] - logp)).sum(-1)  # [K, N]
    main = mean.argmax(-1)  # [N]
    return {
        "sq_loss": float(sq_loss), "sq_bias": float(sq_bias), "sq_variance": float(sq_var),
        "log_loss": float(log_loss), "log_bias": float(log_bias),
        "log_variance": float(kl.mean()),
        "err01": float((probs.argmax(-1) != y).mean()),
        "err01_main": float((main != y).mean()),
        "disagree01": float((probs.argmax(-1) != main).mean()),
    }


def analyse(cfg: Config, got: Sequence[Trial], data: Dataset) -> dict[str, Any]:
    """Both decompositions per p and the verdict (on the squared-error one)."""
    y = data.y_test
    rows = []
    for i, p in enumerate(cfg.ps):
        probs = np.stack([t.arrays["test_probs"] for t in
                          got[i * cfg.models : (i + 1) * cfg.models]]).astype(np.float64)
        rows.append({"p": p, **decompose(probs, y)})
    base = rows[0]
    best = min(rows[1:], key=lambda r: r["sq_loss"]) if len(rows) > 1 else base
    d_bias = best["sq_bias"] - base["sq_bias"]
    d_var = best["sq_variance"] - base["sq_variance"]
    bias_rises = d_bias > 0
    holds = bool(bias_rises and d_var < 0 and -d_var > d_bias)
    what = "rises" if bias_rises else "does not rise (it falls)"
    text = (
        f"squared error on probabilities, p=0 -> p={best['p']}: bias²+noise "
        f"{base['sq_bias']:.4f} -> {best['sq_bias']:.4f} ({what}), variance "
        f"{base['sq_variance']:.4f} -> {best['sq_variance']:.4f}, expected loss "
        f"{base['sq_loss']:.4f} -> {best['sq_loss']:.4f}; log-loss: bias "
        f"{base['log_bias']:.3f} -> {best['log_bias']:.3f}, variance "
        f"{base['log_variance']:.3f} -> {best['log_variance']:.3f}"
    )
    return {
        "holds": holds,
        "claim": CLAIM,
        "summary": text,
        "decomposition": "squared error on probability vectors (Brier); noise inside bias",
        "compared_p": best["p"],
        "bias_rises": bool(bias_rises),
        "variance_falls": bool(d_var < 0),
        "delta_bias": d_bias,
        "delta_variance": d_var,
        "models_per_p": cfg.models,
        "resample": cfg.resample,
        "rows": rows,
    }


def plot(fig: Any, r: dict[str, Any]) -> None:
    """Draw this experiment's figure on ``fig`` from its stored result ``r``."""
    ax_sq, ax_log = fig.subplots(1, 2)
    rows = r["rows"]
    labels = [f"p={x['p']}" for x in rows]
    pos = np.arange(len(rows))
    for ax, key, title in ((ax_sq, "sq", "squared error on probabilities"),
                           (ax_log, "log", "log-loss (Heskes)")):
        bias = np.array([x[f"{key}_bias"] for x in rows])
        var = np.array([x[f"{key}_variance"] for x in rows])
        ax.bar(pos, bias, color=BLUE, label="bias (+ noise)")
        ax.bar(pos, var, bottom=bias, color=ORANGE, label="variance")
        for i, (b, v) in enumerate(zip(bias, var, strict=True)):
            ax.text(i, b + v, f"{b:.3f}+{v:.3f}", ha="center", va="bottom", fontsize=9)
        ax.set_xticks(pos, labels)
        ax.set(ylabel="expected test loss", title=f"{title}, K={r['models_per_p']}")
        ax.legend(fontsize=9)


def explain(r: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A plain sentence on what the result shows, and the numbers behind it."""
    rise = "rises" if r["bias_rises"] else "falls"
    if r["holds"]:
        why = "it holds."
    elif not r["variance_falls"]:
        why = "on this data it does not hold: the variance did not fall."
    elif not r["bias_rises"]:
        why = "on this data it does not hold: dropout helped both parts."
    else:
        why = "on this data it does not hold: the variance fell by less than the bias rose."
    text = (f"Variance (how much nets trained on different samples of the data disagree) "
            f"{'falls' if r['variance_falls'] else 'does not fall'} with dropout, and bias "
            f"(the error of their average) {rise}. The claim needs bias to rise a little and "
            f"variance to fall by more, so " + why)
    table = [("p", "bias (+ noise)", "variance", "expected loss")]
    table += [(str(x["p"]), f"{x['sq_bias']:.4f}", f"{x['sq_variance']:.4f}",
               f"{x['sq_loss']:.4f}") for x in r["rows"]]
    return text, table
