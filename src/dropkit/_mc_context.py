"""The Monte-Carlo fold context: inside it every dropkit mask is keyed by (seed, t, call).

``dropkit.mc.mc_predict`` runs a model on ``k`` Monte-Carlo samples at once by stacking
``k`` copies of the batch along dim 0 (sample-major: rows ``j*B .. (j+1)*B - 1`` belong to
sample ``t_j``). For draw ``t`` to depend only on ``(seed, t)``, whatever the batching,
:func:`dropkit.backends.ops.apply_mask_affine` asks :func:`blocks` how to cut its input:
block ``j`` gets the mask key

    key(seed, t, c) = Philox4x32-10(counter=(lo32(t), hi32(t), c, DOMAIN),
                                     key=(lo32(seed), hi32(seed)))[0:2]     (64 bits)

where ``c`` counts the masked calls of the current forward (0, 1, ...). The seed the caller
drew (or passed) is ignored. So sample ``t``'s ``c``-th mask is the same whether ``t`` runs
alone (a loop), with others (a fold) or in any chunk. A call whose dim 0 is not the folded
batch (a weight mask, a sequence-first tensor) raises :class:`FoldError`, and the caller
falls back to one sample per forward, where no cut is needed.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from dropkit import rng

__all__ = ["DOMAIN", "FoldError", "active", "blocks", "derive_seeds", "folding"]

# Fourth Philox counter word of every derived key ("MCSD"): keeps the derivation stream
# apart from the mask stream itself, whose counters end in (0, 0).
DOMAIN = 0x4D435344
_UINT64 = 1 << 64


class FoldError(RuntimeError):
    """A masked call inside a folded forward whose dim 0 is not ``k * batch``."""


@dataclass
class _Fold:
    seed: int  # base seed, in [0, 2**64)
    samples: tuple[int, ...]  # sample index of each block, in block order
    batch: int  # rows per sample
    calls: int = 0  # masked calls so far in this forward


_state: contextvars.ContextVar[_Fold | None] = contextvars.ContextVar(
    "dropkit_mc_fold", default=None
)
# How many folds are open, in any thread. A plain global, read first, because torch.compile
# traces module globals (and guards on them) but graph-breaks on ContextVar.get: outside
# mc_predict, a compiled model never touches the ContextVar.
_OPEN = 0
_LOCK = threading.Lock()


def derive_seeds(seed: int, samples: Sequence[int], call: int) -> list[torch.Tensor]:
    """The mask keys of call ``call`` for each sample index, as 0-d int64 CPU tensors.

    Example:
        >>> a = derive_seeds(7, [0, 1, 2], call=0)
        >>> b = derive_seeds(7, [2], call=0)
        >>> int(a[2]) == int(b[0]) and int(a[0]) != int(a[1])
        True
    """
    if not 0 <= call <= rng.MASK32:
        raise RuntimeError(f"too many masked calls in one forward ({call}); at most 2**32")
    t = torch.tensor([int(s) for s in samples], dtype=torch.int64)
    k0, k1 = rng.seed_key(seed)
    c2 = torch.full_like(t, call)
    c3 = torch.full_like(t, DOMAIN)
    w0, w1, _, _ = rng.philox4x32(t & rng.MASK32, t >> 32, c2, c3, k0, k1)
    out = []
    for lo, hi in zip(w0.tolist(), w1.tolist(), strict=True):
        value = lo | (hi << 32)  # Python ints: no overflow; stored as two's complement int64
        out.append(torch.tensor(value - _UINT64 if value >= 1 << 63 else value))
    return out


@contextlib.contextmanager
def folding(seed: int, samples: Sequence[int], batch: int) -> Iterator[None]:
    """Within the block, key masks by ``(seed, samples[j], call)``; one forward per block."""
    global _OPEN
    token = _state.set(_Fold(int(seed) % _UINT64, tuple(int(s) for s in samples), int(batch)))
    with _LOCK:
        _OPEN += 1
    try:
        yield
    finally:
        with _LOCK:
            _OPEN -= 1
        _state.reset(token)


def active() -> bool:
    """Whether a fold is in force (i.e. we are inside ``mc_predict``'s forward)."""
    return _OPEN > 0 and _state.get() is not None


def blocks(
    x: torch.Tensor, mask_shape: Sequence[int]
) -> list[tuple[int, int, torch.Tensor]] | None:
    """How to cut a masked call: ``[(start, rows, key), ...]`` along dim 0, or None (no fold).

    With one sample per forward the single block is the whole input (any mask shape works).
    With ``k > 1`` the input and the mask must both have ``k * batch`` rows, else FoldError.
    """
    if _OPEN == 0:
        return None
    state = _state.get()
    if state is None:
        return None
    call = state.calls
    state.calls += 1
    keys = derive_seeds(state.seed, state.samples, call)
    k = len(state.samples)
    if k == 1:
        return [(0, x.shape[0] if x.dim() else 1, keys[0])]
    rows = k * state.batch
    if x.dim() == 0 or x.shape[0] != rows or len(mask_shape) == 0 or mask_shape[0] != rows:
        raise FoldError(
            f"masked call {call} has input shape {tuple(x.shape)} and mask shape "
            f"{tuple(mask_shape)}; folding {k} samples needs both to have {rows} rows in dim 0"
        )
    return [(j * state.batch, state.batch, keys[j]) for j in range(k)]
