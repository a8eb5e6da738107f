"""The sample-keys state: which sample ids key the rows of the batch (``dropkit.sample_keys``).

This module only holds that fact while a ``sample_keys`` block is open, and for a while
after (activation checkpointing recomputes a forward during backward, usually after the
block has closed); :func:`dropkit.keys.resolve`, the one place keys are decided, reads it
once per random call and hands the op per-row keys derived from ``(seed, ids[r], call)``.
No op reads it.

Recomputation. A checkpointed segment runs its forward a second time inside backward, with
torch's RNG state restored to what it was when the segment first ran. Each random call
inside a block draws one value from torch's default generator (the draw a call without a
seed makes anyway); the block remembers which call index each draw belonged to. A call made
inside backward that draws a remembered value is that call, replayed: it gets that call's
index again, so the recomputed mask is the original one.
"""

from __future__ import annotations

import collections
import itertools
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = [
    "SampleState",
    "active",
    "attach",
    "closed",
    "kept",
    "note_plain",
    "open_block",
    "replayed_call",
]

# Blocks kept (strongly) after they close, for recomputes whose forward left no graph node
# behind (reentrant checkpointing runs its forward without grad). Blocks whose masks a
# graph still holds stay alive through the graph itself (``attach``), however many.
KEPT_BLOCKS = 16
_PLAIN_KEPT = 4096  # draws of recent calls made outside any block (see ``note_plain``)
_SEQ = itertools.count()  # the order of every remembered handle
# What names a call across a recompute: ("draw", a value drawn from torch's default
# generator) or ("seed", an explicit seed); see dropkit.keys._handle.
Handle = tuple[str, int, int]  # (kind, the draw or seed, the checkpoint frame's id or 0)


@dataclass(eq=False)  # identity: blocks live in weak sets
class SampleState:
    """One ``sample_keys`` block: the seed, the id of each row, the calls made so far."""

    seed: torch.Tensor  # 0-d int64 (two's complement of the 64-bit seed)
    ids: torch.Tensor  # [B] int64 on the CPU (a copy: later edits of the caller's ids do not count)
    owner: int  # the thread that opened the block
    derive: Callable[[int], torch.Tensor] | None = None  # call -> the rows' keys (eager)
    calls: int = 0
    handles: dict[Handle, tuple[int, int]] = field(default_factory=dict)  # -> (call, seq)
    ambiguous: set[Handle] = field(default_factory=set)  # handles seen twice in one block
    replayed: set[Handle] = field(default_factory=set)  # handles a recompute has matched

    def next_call(self, handle: Handle | None) -> int:
        """The index of the next random call (0, 1, ...), remembered under ``handle``."""
        call = self.calls
        self.calls += 1
        if handle is not None:
            if handle in self.handles:
                self.ambiguous.add(handle)
            self.handles[handle] = (call, next(_SEQ))
            self.replayed.discard(handle)
        return call


# The open blocks, one per thread. torch.compile reads ``_ACTIVE`` (the block opened last:
# a plain global, traced and guarded; ContextVar.get would graph-break), eager code the
# calling thread's entry.
_ACTIVE: SampleState | None = None
_BY_THREAD: dict[int, SampleState] = {}
_KEPT: collections.deque[SampleState] = collections.deque(maxlen=KEPT_BLOCKS)
_LIVE: weakref.WeakSet[SampleState] = weakref.WeakSet()
_PLAIN: dict[Handle, int] = {}  # handle -> seq, oldest first
_PLAIN_REPLAYED: set[Handle] = set()  # plain handles a recompute has matched
_LOCK = threading.Lock()


def active() -> SampleState | None:
    """The calling thread's open block, if any (when compiling: the block opened last)."""
    if torch.compiler.is_compiling():
        return _ACTIVE
    return _BY_THREAD.get(threading.get_ident()) if _BY_THREAD else None


def open_block(state: SampleState) -> None:
    """Make ``state`` the calling thread's open block; RuntimeError if it has one already."""
    global _ACTIVE
    with _LOCK:
        if state.owner in _BY_THREAD:
            raise RuntimeError(
                "dropkit.sample_keys blocks do not nest: this thread has one open already "
                "(close it first; every call inside one block is keyed by that block's ids)"
            )
        _BY_THREAD[state.owner] = state
        _LIVE.add(state)
        _ACTIVE = state


def closed(state: SampleState) -> None:
    """Close ``state``, keeping it for recomputes inside a later backward."""
    global _ACTIVE
    with _LOCK:
        _BY_THREAD.pop(state.owner, None)
        _KEPT.append(state)
        _ACTIVE = next(reversed(_BY_THREAD.values()), None)


def attach(keys: torch.Tensor, state: SampleState) -> torch.Tensor:
    """Let ``keys`` (held by the autograd graph of the op that uses them) keep ``state``
    alive until that graph is freed, so its recompute can still find the block."""
    keys._dropkit_block = state  # type: ignore[attr-defined]
    return keys


def note_plain(handle: Handle) -> None:
    """Remember the draw of a call made outside any block (while blocks are remembered):
    a later recompute that draws it again is that plain call, not a block's call whose
    draw happened to be the same (torch.manual_seed repeated across runs)."""
    _PLAIN.pop(handle, None)  # (each dict operation is atomic under the GIL: no lock)
    _PLAIN[handle] = next(_SEQ)
    _PLAIN_REPLAYED.discard(handle)  # (a new forward call: not replayed yet)
    if len(_PLAIN) > 2 * _PLAIN_KEPT:  # trim, now and then, to the newest _PLAIN_KEPT
        with _LOCK:
            for old in list(_PLAIN)[: len(_PLAIN) - _PLAIN_KEPT]:
                _PLAIN.pop(old, None)
                _PLAIN_REPLAYED.discard(old)


def replayed_call(handle: Handle) -> tuple[SampleState, int] | None:
    """The block and call index whose forward drew ``handle``; None when that call was made
    outside any block, or nothing remembers the draw.

    Of every call remembered with that draw (in blocks, and outside any block), the latest
    one no recompute has matched yet, else the latest: each forward is recomputed once per
    backward, latest first, so calls of one draw (torch.manual_seed repeated between
    micro-batches, their backward together) are matched one by one, and a step's recompute
    still finds its own forward after earlier steps'. RuntimeError if one block drew it
    twice (which of its calls is replayed cannot be told)."""
    with _LOCK:
        blocks = set(_LIVE) | set(_KEPT)
        plain_seq = _PLAIN.get(handle)
        plain_done = handle in _PLAIN_REPLAYED
    # (fresh first, then the latest seq): a plain call is the candidate ``None``
    candidates: list[tuple[bool, int, SampleState | None]] = []
    if plain_seq is not None:
        candidates.append((not plain_done, plain_seq, None))
    for state in blocks:
        entry = state.handles.get(handle)
        if entry is not None:
            candidates.append((handle not in state.replayed, entry[1], state))
    if not candidates:
        return None
    _, _, state = max(candidates, key=lambda c: (c[0], c[1]))
    if state is None:
        _PLAIN_REPLAYED.add(handle)
        return None
    state.replayed.add(handle)
    if handle in state.ambiguous:
        raise RuntimeError(
            "dropkit.sample_keys: a recomputed random call cannot be matched to its forward "
            "call (torch's RNG state repeated inside one block, e.g. torch.manual_seed "
            "between layers, or one explicit seed passed to two calls); do not reseed "
            "inside the block"
        )
    return state, state.handles[handle][0]


def kept() -> bool:
    """Whether any block is open or remembered (a cheap test before any lookup)."""
    # (``_LIVE.data``, the weak set's own set: C-level, where ``len(_LIVE)`` runs Python;
    # a dead entry not yet swept only sends a call down the slower, equal path)
    return bool(_BY_THREAD) or bool(_KEPT) or bool(_LIVE.data)
