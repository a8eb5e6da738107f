"""The Monte-Carlo fold state: which samples the current forward of ``mc_predict`` carries.

``dropkit.mc.mc_predict`` runs a model on ``k`` Monte-Carlo samples at once by stacking
``k`` copies of the batch along dim 0 (sample-major: rows ``j*B .. (j+1)*B - 1`` belong to
sample ``samples[j]``). This module only holds that fact for the duration of the forward;
:func:`dropkit.keys.resolve`, the one place keys are decided, reads it once per random call
and hands the op per-row keys derived from ``(seed, t, b, call)``. No op reads it.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["FoldError", "current", "folding"]

_UINT64 = 1 << 64


class FoldError(RuntimeError):
    """A random call inside a folded forward whose mask has no per-sample rows."""


@dataclass
class Fold:
    """One ``mc_predict`` forward: base seed, the samples stacked in dim 0, rows per sample."""

    seed: int  # base seed, in [0, 2**64)
    samples: tuple[int, ...]  # sample index of each block, in block order
    batch: int  # rows per sample
    calls: int = 0  # random calls so far in this forward

    def next_call(self) -> int:
        """The index of the next random call of this forward (0, 1, ...)."""
        call = self.calls
        self.calls += 1
        return call


_state: contextvars.ContextVar[Fold | None] = contextvars.ContextVar(
    "dropkit_mc_fold", default=None
)
# How many folds are open, in any thread. A plain global, read first, because torch.compile
# traces module globals (and guards on them) but graph-breaks on ContextVar.get: outside
# mc_predict, a compiled model never touches the ContextVar.
_OPEN = 0
_LOCK = threading.Lock()


@contextlib.contextmanager
def folding(seed: int, samples: Sequence[int], batch: int) -> Iterator[Fold]:
    """Within the block, random calls are keyed by ``(seed, samples[j], row, call)``."""
    fold = Fold(int(seed) % _UINT64, tuple(int(s) for s in samples), int(batch))
    global _OPEN
    token = _state.set(fold)
    with _LOCK:
        _OPEN += 1
    try:
        yield fold
    finally:
        with _LOCK:
            _OPEN -= 1
        _state.reset(token)


def current() -> Fold | None:
    """The fold in force in this context (inside ``mc_predict``'s forward), else None."""
    if _OPEN == 0:
        return None
    return _state.get()
