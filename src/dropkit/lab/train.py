"""The lab's model (an MLP with dropkit's Dropout) and its training loop: one trial.

``run_trial(spec, data)`` is a pure function of the spec and the data: it seeds torch with
``spec.seed`` (initial weights, batch order and every dropout mask), trains with Adam on
the cross-entropy for ``spec.train.epochs`` epochs, and returns the per-epoch history and
the trained weights. ``torch.set_num_threads`` set by the caller is respected.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from dropkit.lab.config import ModelConfig, TrialSpec
from dropkit.lab.data import Dataset
from dropkit.nn import Dropout

__all__ = [
    "build_mlp",
    "evaluate",
    "load_state",
    "predict_proba",
    "run_trial",
    "save_state",
    "train_subset",
]

_EVAL_BATCH = 8192


def build_mlp(n_in: int, n_classes: int, model: ModelConfig, p: float) -> nn.Sequential:
    """``[Dropout(input_p)] -> (Linear -> ReLU -> Dropout(p)) per hidden width -> Linear``.

    Example:
        >>> from dropkit.lab.config import ModelConfig
        >>> net = build_mlp(40, 10, ModelConfig(hidden=(8,)), p=0.5)
        >>> [type(m).__name__ for m in net]
        ['Linear', 'ReLU', 'Dropout', 'Linear']
    """
    layers: list[nn.Module] = []
    if model.input_p > 0:
        layers.append(Dropout(model.input_p, scaling=model.scaling))
    width = n_in
    for h in model.hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), Dropout(p, scaling=model.scaling)]
        width = h
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def predict_proba(model: nn.Module, x: torch.Tensor, train_mode: bool = False) -> torch.Tensor:
    """Class probabilities ``[N, C]``, in eval mode (or one stochastic train-mode pass)."""
    was = model.training
    model.train(train_mode)
    with torch.no_grad():
        out = torch.cat([model(x[i : i + _EVAL_BATCH]) for i in range(0, len(x), _EVAL_BATCH)])
    model.train(was)
    return out.softmax(-1)


def evaluate(probs: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(log-loss, accuracy) of probabilities ``[N, C]`` against labels ``[N]``."""
    nll = -probs.clamp_min(1e-12).log().gather(1, y[:, None]).mean()
    acc = (probs.argmax(1) == y).double().mean()
    return float(nll), float(acc)


def train_subset(spec: TrialSpec, data: Dataset, regen: Dataset | None = None) -> np.ndarray:
    """Indices of the training examples of ``spec.subset`` (into ``regen`` for "regen:K")."""
    kind, _, arg = spec.subset.partition(":")
    n = len(data.y_train)
    if kind == "full":
        return np.arange(n)
    if kind == "boot":
        return np.random.default_rng([int(arg), 7919]).integers(0, n, size=n)
    if kind == "regen":
        assert regen is not None, "regen subsets need the regenerated data set"
        return np.arange(len(regen.y_train))
    if kind == "first":
        order = np.random.default_rng(12345).permutation(n)
        return np.sort(order[: min(int(arg), n)])
    raise ValueError(f"unknown subset {spec.subset!r}; use full, boot:K, regen:K or first:N")


def save_state(model: nn.Module) -> dict[str, np.ndarray]:
    """The weights as numpy arrays, named ``state.<parameter>``."""
    return {f"state.{k}": v.detach().numpy().copy() for k, v in model.state_dict().items()}


def load_state(model: nn.Module, arrays: dict[str, np.ndarray]) -> nn.Module:
    """Load ``save_state`` arrays back into ``model`` (returned)."""
    sd = {k.removeprefix("state."): torch.from_numpy(v) for k, v in arrays.items()
          if k.startswith("state.")}
    model.load_state_dict(sd)
    return model


class _Coverage:
    """Which hidden units received a gradient (kept by dropout and active), per step and pair.

    A unit behind ``ReLU -> Dropout`` gets a gradient from an example iff its dropout
    output is non-zero: kept by the mask and active. ``units`` is the running fraction of
    units trained at least once; ``pairs`` the fraction of (example, unit) pairs.
    """

    def __init__(self, model: nn.Sequential, n_examples: int) -> None:
        mods = list(model)
        self.drops = [m for prev, m in itertools.pairwise(mods) if isinstance(prev, nn.ReLU)]
        width = sum(int(w.shape[0]) for w in _hidden_weights(model))
        self.ever = torch.zeros(width, dtype=torch.bool)
        self.pairs = torch.zeros(n_examples, width, dtype=torch.bool)
        self.last: list[torch.Tensor] = []
        self.hooks = [d.register_forward_hook(self._hook) for d in self.drops]
        self.unit_curve: list[float] = []
        self.pair_curve: list[float] = []

    def _hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if module.training:
            self.last.append(output.detach() != 0)  # [B, H]

    def step(self, idx: torch.Tensor) -> None:
        trained = torch.cat(self.last, dim=1)  # [B, sum H]
        self.last.clear()
        self.ever |= trained.any(0)
        self.pairs[idx] |= trained
        self.unit_curve.append(float(self.ever.double().mean()))

    def epoch(self) -> None:
        self.pair_curve.append(float(self.pairs.double().mean()))

    def close(self) -> None:
        for h in self.hooks:
            h.remove()


def run_trial(
    spec: TrialSpec, data: Dataset, regen: Dataset | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Train one model; return (JSON-able results, arrays: test probabilities and weights).

    Results: ``history`` (per epoch: eval-mode train and test log-loss and accuracy),
    ``final`` (the last epoch's numbers), ``steps``, ``wall_s`` and, with
    ``record_coverage``, the coverage curves and the fraction of hidden units whose
    incoming weights changed.
    """
    start = time.perf_counter()
    idx_all = train_subset(spec, data, regen)
    src = regen if regen is not None else data
    x = torch.from_numpy(src.x_train[idx_all])
    y = torch.from_numpy(src.y_train[idx_all])
    xt, yt = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    torch.manual_seed(spec.seed)
    model = build_mlp(data.n_features, data.n_classes, spec.model, spec.p)
    init = [w.detach().clone() for w in _hidden_weights(model)]
    opt = torch.optim.Adam(
        model.parameters(), lr=spec.train.lr, weight_decay=spec.train.weight_decay
    )
    order_gen = torch.Generator().manual_seed(spec.seed + 1)
    cov = _Coverage(model, len(y)) if spec.record_coverage else None
    hist: dict[str, list[float]] = {k: [] for k in
                                    ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")}
    n, bs, steps = len(y), spec.train.batch_size, 0
    for epoch in range(1, spec.train.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=order_gen)
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            if cov is not None:
                cov.step(idx)
        if cov is not None:
            cov.epoch()
        tr = evaluate(predict_proba(model, x), y)
        te = evaluate(predict_proba(model, xt), yt)
        for k, v in zip(hist, (epoch, *tr, *te), strict=True):
            hist[k].append(v)
    probs = predict_proba(model, xt)
    result: dict[str, Any] = {
        "history": hist,
        "final": {k: v[-1] for k, v in hist.items()},
        "steps": steps,
        "n_train": n,
        "wall_s": time.perf_counter() - start,
    }
    if cov is not None:
        cov.close()
        moved = torch.cat([(w - w0).abs().amax(1) > 0 for w, w0 in
                           zip(_hidden_weights(model), init, strict=True)])
        result["coverage"] = {
            "units": cov.unit_curve,
            "pairs": cov.pair_curve,
            "batch_size": bs,
            "updated_fraction": float(moved.double().mean()),
        }
    arrays = {"test_probs": probs.numpy().astype(np.float32), **save_state(model)}
    return result, arrays


def _hidden_weights(model: nn.Sequential) -> list[torch.Tensor]:
    return [m.weight for m in model if isinstance(m, nn.Linear)][:-1]
