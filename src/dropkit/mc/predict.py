"""``mc_predict``: T stochastic passes, draw t a pure function of (seed, t) (see ``dropkit.mc``).

Paper: Gal & Ghahramani 2016, "Dropout as a Bayesian approximation".
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from dropkit import _mc_context
from dropkit.keys import FoldError, scalar_seed
from dropkit.modes import dropout_layers, mc_mode

__all__ = ["mc_predict"]

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
    # Sample-major stack: rows j*B .. (j+1)*B - 1 are sample ts[j]. A copy of its own memory
    # either way, so an in-place first layer never writes into the caller's x (nor into a
    # stride-0 view: reshape of the expanded x is one when B == 1 or x is expanded itself).
    xin = x.clone() if k == 1 else x.expand(k, *x.shape).reshape(k * rows, *x.shape[1:])
    if xin.data_ptr() == x.data_ptr():
        xin = xin.clone(memory_format=torch.contiguous_format)
    with _mc_context.folding(seed, ts, rows):
        out = model(xin)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"mc_predict needs a model that returns a tensor, not {type(out).__name__}")
    if k == 1:
        return out.unsqueeze(0)
    if out.dim() == 0 or out.shape[0] != k * rows:
        raise FoldError(
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

    .. math:: y_t = f(x;\ \text{row } b \text{ masked by key } (seed, t, b, c)),\quad
              t = 0 \ldots T-1

    The model runs under :func:`dropkit.mc_mode` (only dropout samples, BatchNorm and the
    rest in eval) and ``torch.no_grad()``; every flag is restored after. ``chunk`` samples
    share one forward: their copies of ``x`` are stacked along dim 0 (sample-major), and
    every random call hands each row its own key derived from ``(seed, t, row, call index)``
    (:func:`dropkit.keys.resolve`; docs/mask-spec.md, "Keys"), so draw
    ``t`` depends only on ``(seed, t)``: a loop (``chunk=1``), one fold (``chunk=T``) and
    any chunking give bit-identical masks, hence identical samples whenever the model's
    other ops are batch-size invariant (elementwise ops, and on CPU the GEMMs and
    convolutions tested here; some GPU libraries pick kernels by batch size).

    Assumptions: dim 0 of ``x``, of every masked tensor and of the output is the batch
    (each row independent in eval mode); masks are drawn in the same order for every
    sample. A masked call whose dim 0 is not the folded batch (a weight mask, an embedding
    table, a sequence-first RNN; such a call gets the key ``(seed, t, c)``) makes
    ``chunk=None`` fall back to one sample per forward (an explicit ``chunk > 1`` raises).
    Explicit ``seed=`` of functional dropout calls inside the model is overridden (re-keyed
    the same way). torch.nn dropout modules cannot be re-keyed: a model containing one
    raises RuntimeError (run :func:`dropkit.convert` first); ``torch.nn.functional.dropout``
    calls inside ``forward`` cannot be detected and stay random. torch's global generator is
    left as it was, apart from one draw for ``seed=None``.

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
        if isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral):
            raise TypeError(
                f"chunk must be None or a positive int, but got {type(chunk).__name__} {chunk!r}"
            )
        if chunk < 1:
            raise ValueError(f"chunk must be None or a positive int, but got {chunk!r}")
        chunk = min(int(chunk), samples)
    _check_model(model)
    base = int(scalar_seed(seed, None)) % (1 << 64)
    with mc_mode(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
        if chunk is not None:
            return _run(model, x, base, samples, chunk)
        size = samples
        while True:
            try:
                return _run(model, x, base, samples, size)
            except FoldError:
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
