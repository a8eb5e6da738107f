"""The lab's model (an MLP with dropkit's Dropout) and its training loop: one trial.

``run_trial(spec, data)`` is a pure function of the spec and the data: it seeds torch with
``spec.seed`` (initial weights, batch order and every dropout mask), trains on the
cross-entropy on the training split (the training set less the validation split of
:func:`split_validation`), scores the validation split after every epoch, stops early when
it stops improving (``spec.train.patience``) or at the ``epochs`` cap, and returns the
per-epoch history and the weights of the best validation epoch. The test set is scored
for the curves only: nothing is chosen on it. ``torch.set_num_threads`` set by the caller
is respected.
"""

from __future__ import annotations

import copy
import itertools
import math
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
    "projected_gain",
    "run_trial",
    "save_state",
    "split_validation",
    "train_subset",
]

_EVAL_BATCH = 8192
_TRAIN_EVAL = 10_000  # training examples scored per epoch for the curves (a fixed subset)
_VAL_SEED = 0x56414C  # "VAL": the split's own seed, the same for every trial


def split_validation(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` indices into a training set of ``n``: a fixed random split.

    The same split for every trial, seed and p (its generator has its own seed), at least
    one example on each side.

    Example:
        >>> tr, va = split_validation(10, 0.2)
        >>> len(tr), len(va), sorted([*tr, *va]) == list(range(10))
        (8, 2, True)
    """
    n_val = min(max(1, round(n * fraction)), n - 1)
    order = np.random.default_rng(_VAL_SEED).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


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


def _example_losses(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``-log p(true class)`` per example ``[N]`` (probabilities clamped at 1e-12)."""
    return -probs.clamp_min(1e-12).log().gather(1, y[:, None]).squeeze(1)


def evaluate(probs: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(log-loss, accuracy) of probabilities ``[N, C]`` against labels ``[N]``."""
    nll = _example_losses(probs, y).mean()
    acc = (probs.argmax(1) == y).double().mean()
    return float(nll), float(acc)


def train_subset(spec: TrialSpec, data: Dataset, regen: Dataset | None = None) -> np.ndarray:
    """Indices of the training examples of ``spec.subset`` (into ``regen`` for "regen:K"),
    drawn from the training split only (never the validation split)."""
    kind, _, arg = spec.subset.partition(":")
    src = regen if kind == "regen" else data
    if kind == "regen":
        assert regen is not None, "regen subsets need the regenerated data set"
    pool, _ = split_validation(len(src.y_train), spec.train.val_fraction)
    n = len(pool)
    if kind in ("full", "regen"):
        return pool
    if kind == "boot":
        return pool[np.random.default_rng([int(arg), 7919]).integers(0, n, size=n)]
    if kind == "first":
        order = np.random.default_rng(12345).permutation(n)
        return pool[np.sort(order[: min(int(arg), n)])]
    raise ValueError(f"unknown subset {spec.subset!r}; use full, boot:K, regen:K or first:N")


def _optimizer(model: nn.Module, spec: TrialSpec) -> torch.optim.Optimizer:
    t = spec.train
    if t.lr is None:
        raise RuntimeError("a trial needs a resolved learning rate (lr=None is chosen first)")
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum,
                               weight_decay=t.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def _clip_norms(model: nn.Module, max_norm: float) -> None:
    """Scale each unit's incoming weights (a row of every Linear) to L2 norm <= ``max_norm``."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.renorm(m.weight, 2, 0, max_norm))


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

    Results: ``history`` (per epoch: eval-mode train, validation and test log-loss and
    accuracy; train on a fixed subset of at most 10,000 training examples), ``final`` (the
    numbers of the chosen epoch: the best validation log-loss), ``chosen_epoch``,
    ``stopped_epoch``, ``still_improving`` (the cap was reached while the validation
    log-loss was still falling by more than its standard error over the last ``patience``
    epochs: the budget ran out, not the model), ``steps``, ``wall_s`` and, with
    ``record_coverage``, the coverage curves and the fraction of hidden units whose
    incoming weights changed.
    """
    start = time.perf_counter()
    idx_all = train_subset(spec, data, regen)
    src = regen if regen is not None else data
    x = torch.from_numpy(src.x_train[idx_all])
    y = torch.from_numpy(src.y_train[idx_all])
    _, val_idx = split_validation(len(src.y_train), spec.train.val_fraction)
    xv, yv = torch.from_numpy(src.x_train[val_idx]), torch.from_numpy(src.y_train[val_idx])
    xt, yt = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    score = np.sort(np.random.default_rng(_VAL_SEED + 1).permutation(len(y))[:_TRAIN_EVAL])
    xs, ys = x[score], y[score]  # the training examples scored each epoch
    torch.manual_seed(spec.seed)
    model = build_mlp(data.n_features, data.n_classes, spec.model, spec.p)
    init = [w.detach().clone() for w in _hidden_weights(model)]
    opt = _optimizer(model, spec)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, spec.train.lr_decay)
    order_gen = torch.Generator().manual_seed(spec.seed + 1)
    cov = _Coverage(model, len(y)) if spec.record_coverage else None
    hist: dict[str, list[float]] = {k: [] for k in ("epoch", "train_loss", "train_acc",
                                                    "val_loss", "val_acc", "test_loss",
                                                    "test_acc")}
    n, bs, steps = len(y), spec.train.batch_size, 0
    patience, max_norm = spec.train.patience, spec.train.max_norm
    best_loss, best_epoch, best_state = math.inf, 0, None
    for epoch in range(1, spec.train.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=order_gen)
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if max_norm > 0:
                _clip_norms(model, max_norm)
            steps += 1
            if cov is not None:
                cov.step(idx)
        sched.step()
        if cov is not None:
            cov.epoch()
        tr = evaluate(predict_proba(model, xs), ys)
        va = evaluate(predict_proba(model, xv), yv)
        te = evaluate(predict_proba(model, xt), yt)
        for k, v in zip(hist, (epoch, *tr, *va, *te), strict=True):
            hist[k].append(v)
        if patience == 0:
            best_epoch = epoch  # no early stopping: the last epoch is the model
        elif va[0] < best_loss:  # (NaN never is: a diverged run keeps its best epoch)
            best_loss, best_epoch = va[0], epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    if best_epoch == 0:  # diverged from the first epoch: report the last one, flagged
        best_epoch = hist["epoch"][-1]
    probs = predict_proba(model, xt)
    chosen = hist["epoch"].index(best_epoch)
    stopped = hist["epoch"][-1]
    result: dict[str, Any] = {
        "history": hist,
        "final": {k: v[chosen] for k, v in hist.items()},
        "chosen_epoch": best_epoch,
        "stopped_epoch": stopped,
        **_still_improving(spec, hist, model, xv, yv),
        "steps": steps,
        "n_train": n,
        "n_val": len(yv),
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


def _still_improving(
    spec: TrialSpec, hist: dict[str, list[float]], model: nn.Module, xv: torch.Tensor,
    yv: torch.Tensor,
) -> dict[str, Any]:
    """Whether the cap stopped a run whose validation log-loss was still falling: by more
    than its standard error (over validation examples) across the last ``patience`` epochs.

    Also ``recent_gain`` (that fall; 0 when stopped early), ``val_loss_se`` and
    ``projected_gain``: how much further the best validation loss would fall if training
    went on. The best-so-far curve's fall over the last window of ``patience`` epochs
    (``g2``) against the window before (``g1``) gives its rate of slowing ``r = g2 / g1``;
    a curve slowing geometrically has ``g2 r / (1 - r)`` left. Where it is not slowing
    (``r >= 1``, or too few epochs to tell) the projection is the straight line at its
    recent pace for as long again as the whole cap, which bounds any slowing curve; the
    projection is never more than that line.
    """
    cap, patience = spec.train.epochs, spec.train.patience
    losses = hist["val_loss"]
    per_example = _example_losses(predict_proba(model, xv), yv).double()
    se = float(per_example.std() / math.sqrt(len(yv))) if len(yv) > 1 else 0.0
    if patience == 0 or len(losses) < cap or not all(map(math.isfinite, losses)):
        return {"still_improving": False, "recent_gain": 0.0, "projected_gain": 0.0,
                "val_loss_se": se}
    gain = losses[max(0, len(losses) - 1 - patience)] - min(losses)
    return {"still_improving": bool(gain > se), "recent_gain": gain,
            "projected_gain": projected_gain(losses, cap, patience), "val_loss_se": se}


def projected_gain(losses: list[float], cap: int, patience: int) -> float:
    """How much further the best of ``losses`` would fall (see :func:`_still_improving`).

    Example:
        >>> round(projected_gain([1.0, 0.8, 0.7, 0.65, 0.625], cap=5, patience=1), 4)
        0.025
    """
    n = len(losses)
    best = list(itertools.accumulate(losses, min))  # the best-so-far curve
    g2 = best[max(0, n - 1 - patience)] - best[-1]
    line = (losses[max(0, n - 1 - patience)] - best[-1]) * cap / patience
    if n > 2 * patience:
        g1 = best[n - 1 - 2 * patience] - best[n - 1 - patience]
        if g1 > 0 and g2 < g1:
            r = g2 / g1
            return min(line, g2 * r / (1 - r))
    return line


def _hidden_weights(model: nn.Sequential) -> list[torch.Tensor]:
    return [m.weight for m in model if isinstance(m, nn.Linear)][:-1]
