"""Monte-Carlo dropout: reproducible stochastic passes, uncertainty and calibration.

:func:`mc_predict` runs ``T`` stochastic forward passes with only the dropout layers
sampling (:func:`dropkit.modes.mc_mode`). Draw ``t`` is a pure function of ``(seed, t)``:
every dropkit mask of the pass is keyed by ``(seed, t, call index)`` (see
``dropkit._mc_context``), so a loop, a fold of all samples into the batch, and any
chunking give bit-identical masks.

From the samples (class probabilities ``[T, B, C]``), with :math:`\\bar p = \\frac1T\\sum_t p_t`:

- predictive entropy :math:`H[\\bar p] = -\\sum_c \\bar p_c \\log \\bar p_c`
- expected entropy :math:`\\frac1T \\sum_t H[p_t]`
- mutual information (BALD) :math:`H[\\bar p] - \\frac1T \\sum_t H[p_t] \\ge 0`

and calibration (NLL, Brier score, ECE) of the MC mean versus one deterministic pass.

Papers: Gal & Ghahramani 2016, "Dropout as a Bayesian approximation"; Houlsby et al. 2011,
"Bayesian active learning for classification and preference learning" (BALD); Brier 1950,
"Verification of forecasts expressed in terms of probability"; Guo et al. 2017, "On
calibration of modern neural networks" (ECE); Naeini et al. 2015 (ECE binning).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch
from torch import nn

from dropkit import _mc_context
from dropkit._checks import seed_tensor
from dropkit.modes import dropout_layers, mc_mode

__all__ = [
    "Calibration",
    "CalibrationReport",
    "brier_score",
    "calibration_report",
    "expected_calibration_error",
    "expected_entropy",
    "mc_predict",
    "mutual_information",
    "negative_log_likelihood",
    "predictive_entropy",
    "predictive_mean",
    "variance",
]

_OOM = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, _OOM):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _check_samples(samples: object) -> int:
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral):
        raise TypeError(f"samples must be an int, but got {type(samples).__name__} {samples!r}")
    if samples < 1:
        raise ValueError(f"samples must be at least 1, but got {samples}")
    return int(samples)


def _check_model(model: nn.Module) -> None:
    torch_layers = [
        f"{name} ({type(m).__name__})"
        for name, m in dropout_layers(model)
        if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0
    ]
    if torch_layers:
        raise RuntimeError(
            "mc_predict cannot make torch.nn dropout layers reproducible (they draw from "
            f"torch's global generator whatever the seed): found {', '.join(torch_layers)}. "
            "Run dropkit.convert(model) first to swap them for their dropkit twins"
        )


def _forward(model: nn.Module, x: torch.Tensor, seed: int, ts: list[int]) -> torch.Tensor:
    """Samples ``ts`` in one forward: ``[len(ts), B, ...]``."""
    k, rows = len(ts), x.shape[0]
    # Sample-major stack: rows j*B .. (j+1)*B - 1 are sample ts[j]. A copy either way, so an
    # in-place first layer never writes into the caller's x.
    xin = x.clone() if k == 1 else x.expand(k, *x.shape).reshape(k * rows, *x.shape[1:])
    with _mc_context.folding(seed, ts, rows):
        out = model(xin)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"mc_predict needs a model that returns a tensor, not {type(out).__name__}")
    if k == 1:
        return out.unsqueeze(0)
    if out.dim() == 0 or out.shape[0] != k * rows:
        raise _mc_context.FoldError(
            f"the model maps {k * rows} folded rows to output shape {tuple(out.shape)}"
        )
    return out.reshape(k, rows, *out.shape[1:])


def _run(model: nn.Module, x: torch.Tensor, seed: int, samples: int, chunk: int) -> torch.Tensor:
    parts = []
    for start in range(0, samples, chunk):
        ts = list(range(start, min(start + chunk, samples)))
        parts.append(_forward(model, x, seed, ts))
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def mc_predict(
    model: nn.Module,
    x: torch.Tensor,
    samples: int = 30,
    seed: int | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    r"""``samples`` Monte-Carlo dropout passes of ``model`` on ``x``, sample axis first.

    .. math:: y_t = f(x;\ \text{masks keyed by } (seed, t, c)),\quad t = 0 \ldots T-1

    The model runs under :func:`dropkit.mc_mode` (only dropout samples, BatchNorm and the
    rest in eval) and ``torch.no_grad()``; every flag is restored after. ``chunk`` samples
    share one forward: their copies of ``x`` are stacked along dim 0 (sample-major), and
    each dropkit mask is cut per sample and keyed by ``(seed, t, call index)``, so draw
    ``t`` depends only on ``(seed, t)``: a loop (``chunk=1``), one fold (``chunk=T``) and
    any chunking give bit-identical masks, hence identical samples whenever the model's
    other ops are batch-size invariant (elementwise ops, and on CPU the GEMMs and
    convolutions tested here; some GPU libraries pick kernels by batch size).

    Assumptions: dim 0 of ``x``, of every masked tensor and of the output is the batch
    (each row independent in eval mode); masks are drawn in the same order for every
    sample. A masked call whose dim 0 is not the folded batch (a weight mask, a
    sequence-first RNN) makes ``chunk=None`` fall back to one sample per forward (an
    explicit ``chunk > 1`` raises). Explicit ``seed=`` of functional dropout calls inside
    the model is overridden (re-keyed by ``(seed, t, c)`` too). torch.nn dropout modules
    cannot be re-keyed: a model containing one raises RuntimeError (run
    :func:`dropkit.convert` first); ``torch.nn.functional.dropout`` calls inside ``forward``
    cannot be detected and stay random. torch's global generator is left as it was, apart
    from one draw for ``seed=None``.

    Args:
        model: the network; its output must be a tensor with dim 0 the batch.
        x: the input batch ``[B, ...]``.
        samples: ``T``, the number of stochastic passes. Default: 30.
        seed: base key in [0, 2**64); None draws one from torch's default generator (so
            ``torch.manual_seed`` reproduces the call).
        chunk: samples per forward. None: all ``T`` at once, halved on out-of-memory
            errors until it fits (or one at a time when the model cannot fold).

    Shape: ``x`` ``[B, *]``; output ``[T, B, *out]``.

    Example:
        >>> import torch, dropkit
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), dropkit.nn.Dropout(0.5),
        ...                           torch.nn.Linear(8, 3))
        >>> x = torch.randn(5, 4)
        >>> y = dropkit.mc.mc_predict(net, x, samples=10, seed=0)
        >>> y.shape
        torch.Size([10, 5, 3])
        >>> torch.equal(y, dropkit.mc.mc_predict(net, x, samples=10, seed=0, chunk=3))
        True
    """
    samples = _check_samples(samples)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"mc_predict expects a tensor input x, but got {type(x).__name__}")
    if x.dim() == 0:
        raise ValueError("mc_predict needs a batched input x of shape [B, ...], got a 0-d tensor")
    if chunk is not None:
        if isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or chunk < 1:
            raise ValueError(f"chunk must be None or a positive int, but got {chunk!r}")
        chunk = min(int(chunk), samples)
    _check_model(model)
    base = int(seed_tensor(seed, None)) % (1 << 64)
    with mc_mode(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
        if chunk is not None:
            return _run(model, x, base, samples, chunk)
        size = samples
        while True:
            try:
                return _run(model, x, base, samples, size)
            except _mc_context.FoldError:
                if size == 1:
                    raise
                size = 1
            except (RuntimeError, MemoryError) as err:
                if size == 1 or not (isinstance(err, MemoryError) or _is_oom(err)):
                    raise
                size = (size + 1) // 2
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()


# ---------------------------------------------------------------- uncertainty from samples


def _check_probs(probs: object, name: str) -> torch.Tensor:
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise TypeError(f"{name} expects a floating-point tensor of probabilities")
    if probs.dim() < 2:
        raise ValueError(
            f"{name} needs samples of shape [T, ..., C] (sample axis first), "
            f"got {tuple(probs.shape)}"
        )
    return probs


def _class_dim(probs: torch.Tensor, dim: int) -> int:
    if not -probs.dim() <= dim < probs.dim() or dim % probs.dim() == 0:
        raise ValueError(
            f"class axis dim={dim} must be a valid axis other than 0 (the sample axis) "
            f"of a {probs.dim()}-d tensor"
        )
    return dim % probs.dim()


def _entropy(probs: torch.Tensor, dim: int) -> torch.Tensor:
    return -torch.special.xlogy(probs, probs).sum(dim)


def predictive_mean(samples: torch.Tensor) -> torch.Tensor:
    r"""The MC estimate :math:`\bar y = \frac1T \sum_t y_t` (mean over the sample axis 0).

    Shape: ``[T, *]`` -> ``[*]``.

    Example:
        >>> import torch
        >>> predictive_mean(torch.tensor([[1.0, 3.0], [3.0, 5.0]])).tolist()
        [2.0, 4.0]
    """
    return samples.mean(0)


def variance(samples: torch.Tensor, correction: int = 0) -> torch.Tensor:
    r"""Per-element variance over the sample axis: :math:`\frac{1}{T - c}\sum_t (y_t - \bar y)^2`.

    ``correction=0`` (default) is Gal & Ghahramani's :math:`E[y^2] - E[y]^2` (add the
    model precision :math:`\tau^{-1}` yourself for regression); ``correction=1`` is the
    unbiased estimator.

    Shape: ``[T, *]`` -> ``[*]``.

    Example:
        >>> import torch
        >>> variance(torch.tensor([[1.0], [3.0]])).tolist()
        [1.0]
    """
    return samples.var(0, correction=correction)


def predictive_entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Entropy (nats) of the MC mean: :math:`-\sum_c \bar p_c \log \bar p_c`, with 0 log 0 = 0.

    Args:
        probs: class probabilities, sample axis first, classes along ``dim``.
        dim: the class axis. Default: -1.

    Shape: ``[T, B, C]`` -> ``[B]``.

    Example:
        >>> import torch
        >>> p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # two confident, opposite samples
        >>> round(float(predictive_entropy(p)[0]), 4)  # log 2
        0.6931
    """
    probs = _check_probs(probs, "predictive_entropy")
    dim = _class_dim(probs, dim)
    return _entropy(probs.mean(0), dim - 1)


def expected_entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Mean entropy of the samples: :math:`\frac1T\sum_t -\sum_c p_{t,c}\log p_{t,c}` (aleatoric).

    Shape: ``[T, B, C]`` -> ``[B]``.

    Example:
        >>> import torch
        >>> p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
        >>> expected_entropy(p).tolist()
        [0.0]
    """
    probs = _check_probs(probs, "expected_entropy")
    return _entropy(probs, _class_dim(probs, dim)).mean(0)


def mutual_information(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""BALD: :math:`I[y; w] = H[\bar p] - \frac1T\sum_t H[p_t]` (epistemic), clamped at 0.

    Non-negative by concavity of the entropy; the clamp only removes rounding residue.

    Shape: ``[T, B, C]`` -> ``[B]``.

    Example:
        >>> import torch
        >>> p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
        >>> round(float(mutual_information(p)[0]), 4)
        0.6931

    Paper: Houlsby et al. 2011, "Bayesian active learning for classification and
    preference learning".
    """
    mi = predictive_entropy(probs, dim) - expected_entropy(probs, dim)
    return mi.clamp_min(0.0)


# ---------------------------------------------------------------- calibration


def _check_pair(probs: object, target: object, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point() or probs.dim() != 2:
        raise TypeError(f"{name} expects probs as a floating-point tensor [N, C]")
    if not isinstance(target, torch.Tensor) or target.dtype not in (
        torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8
    ):
        raise TypeError(f"{name} expects target as an integer tensor [N] of class indices")
    if target.shape != probs.shape[:1]:
        raise ValueError(
            f"{name}: target shape {tuple(target.shape)} does not match probs {tuple(probs.shape)}"
        )
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= probs.shape[1]):
        raise ValueError(f"{name}: target holds class indices outside [0, {probs.shape[1]})")
    return probs, target.long()


def negative_log_likelihood(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Mean :math:`-\log p_{n, y_n}` (nats); ``inf`` where a true class got probability 0.

    Shape: probs ``[N, C]``, target ``[N]`` -> scalar.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
        >>> round(float(negative_log_likelihood(p, torch.tensor([0, 1]))), 4)
        0.4904
    """
    probs, target = _check_pair(probs, target, "negative_log_likelihood")
    return -probs.gather(1, target[:, None]).log().mean()


def brier_score(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Multi-class Brier score :math:`\frac1N \sum_n \sum_c (p_{n,c} - [y_n = c])^2`, in [0, 2].

    Shape: probs ``[N, C]``, target ``[N]`` -> scalar.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
        >>> float(brier_score(p, torch.tensor([0, 1])))
        0.3125

    Paper: Brier 1950, "Verification of forecasts expressed in terms of probability".
    """
    probs, target = _check_pair(probs, target, "brier_score")
    onehot = torch.nn.functional.one_hot(target, probs.shape[1]).to(probs.dtype)
    return (probs - onehot).square().sum(1).mean()


def expected_calibration_error(
    probs: torch.Tensor, target: torch.Tensor, n_bins: int = 15
) -> torch.Tensor:
    r"""Top-label ECE with equal-width bins: :math:`\sum_b \frac{|B_b|}{N}\,|acc(B_b) - conf(B_b)|`.

    Confidence is :math:`\max_c p_{n,c}`, the prediction its argmax (first on ties). Bin
    ``b`` holds confidences in :math:`[b/M, (b+1)/M)`, the last bin also 1.0 (torchmetrics'
    ``multiclass_calibration_error(norm="l1")`` binning, which could replace this function).

    Args:
        probs: class probabilities ``[N, C]``.
        target: class indices ``[N]``.
        n_bins: ``M``, the number of bins. Default: 15.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7]])
        >>> round(float(expected_calibration_error(p, torch.tensor([0, 1, 1]), 10)), 4)
        0.3667

    Paper: Guo et al. 2017, "On calibration of modern neural networks".
    """
    probs, target = _check_pair(probs, target, "expected_calibration_error")
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, but got {n_bins!r}")
    if target.numel() == 0:
        return probs.new_zeros(())
    conf, pred = probs.max(1)
    correct = (pred == target).to(probs.dtype)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=probs.dtype, device=probs.device)
    bins = (torch.bucketize(conf, edges, right=True) - 1).clamp(0, n_bins - 1)
    gap = probs.new_zeros(n_bins).index_add_(0, bins, correct - conf)
    return gap.abs().sum() / target.numel()


class Calibration(NamedTuple):
    """NLL (nats), Brier score and ECE of one set of predictions."""

    nll: float
    brier: float
    ece: float


class CalibrationReport(NamedTuple):
    """Calibration of the MC-dropout mean versus the single deterministic (eval) pass."""

    mc: Calibration
    deterministic: Calibration


def _calibration(probs: torch.Tensor, target: torch.Tensor, n_bins: int) -> Calibration:
    return Calibration(
        float(negative_log_likelihood(probs, target)),
        float(brier_score(probs, target)),
        float(expected_calibration_error(probs, target, n_bins)),
    )


def calibration_report(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    samples: int = 30,
    seed: int | None = None,
    *,
    logits: bool = True,
    n_bins: int = 15,
    chunk: int | None = None,
) -> CalibrationReport:
    r"""NLL, Brier and ECE of the MC mean :math:`\bar p` versus one deterministic pass.

    The deterministic pass runs the model in eval mode (every flag restored after); the MC
    mean averages the probabilities (softmax of each sample when ``logits``) of
    :func:`mc_predict`.

    Args:
        model: a classifier returning ``[N, C]`` logits (or probabilities: ``logits=False``).
        x: inputs ``[N, ...]``. target: class indices ``[N]``.
        samples, seed, chunk: as :func:`mc_predict`.
        logits: apply softmax over the last axis. Default: True.
        n_bins: ECE bins. Default: 15.

    Example:
        >>> import torch, dropkit
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), dropkit.nn.Dropout(0.3),
        ...                           torch.nn.Linear(16, 3))
        >>> r = dropkit.mc.calibration_report(net, torch.randn(8, 4), torch.arange(8) % 3,
        ...                                   samples=5, seed=0)
        >>> sorted(r.mc._fields)
        ['brier', 'ece', 'nll']
    """
    saved = [(m, m.training) for m in model.modules()]
    try:
        with torch.no_grad():
            det = model.eval()(x)
    finally:
        for module, flag in saved:
            module.training = flag
    mc = mc_predict(model, x, samples, seed, chunk)
    if logits:
        det, mc = det.softmax(-1), mc.softmax(-1)
    return CalibrationReport(
        _calibration(mc.mean(0), target, n_bins), _calibration(det, target, n_bins)
    )
