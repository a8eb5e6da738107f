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
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = ["SampleState", "active", "closed", "kept", "open_block", "replayed_call"]

# Blocks kept after they close, for recomputation inside a later backward.
KEPT_BLOCKS = 16


@dataclass
class SampleState:
    """One ``sample_keys`` block: the seed, the id of each row, the calls made so far."""

    seed: torch.Tensor  # 0-d int64 (two's complement of the 64-bit seed)
    ids: torch.Tensor  # [B] int64 on the CPU
    owner: int  # the thread that opened the block
    derive: Callable[[int], torch.Tensor] | None = None  # call -> the rows' keys (eager)
    calls: int = 0
    handles: dict[int, int] = field(default_factory=dict)  # draw -> call index
    ambiguous: set[int] = field(default_factory=set)  # draws seen twice in one block

    def next_call(self, handle: int | None) -> int:
        """The index of the next random call (0, 1, ...), remembered under ``handle``."""
        call = self.calls
        self.calls += 1
        if handle is not None:
            if handle in self.handles:
                self.ambiguous.add(handle)
            self.handles[handle] = call
        return call


# A plain global, not a ContextVar: torch.compile traces module globals (and guards on
# them) but graph-breaks on ContextVar.get. One block at a time per process.
_ACTIVE: SampleState | None = None
_KEPT: collections.deque[SampleState] = collections.deque(maxlen=KEPT_BLOCKS)
_LOCK = threading.Lock()


def active() -> SampleState | None:
    """The open block, if any, of the calling thread (another thread's block is an error,
    except inside backward: autograd's device threads recompute checkpointed segments, and
    :func:`replayed_call` finds their calls)."""
    state = _ACTIVE
    if state is None or torch.compiler.is_compiling():
        return state
    if state.owner != threading.get_ident():
        if torch._C._current_graph_task_id() != -1:
            return None
        raise RuntimeError(
            "dropkit.sample_keys is open in another thread; a block keys the calls of the "
            "thread that opened it (open one block per thread, one at a time)"
        )
    return state


def open_block(state: SampleState) -> None:
    """Make ``state`` the open block; RuntimeError if one is open already."""
    global _ACTIVE
    with _LOCK:
        if _ACTIVE is not None:
            raise RuntimeError(
                "dropkit.sample_keys blocks do not nest: one is open already (close it "
                "first; every call inside one block is keyed by that block's ids)"
            )
        _ACTIVE = state


def closed(state: SampleState) -> None:
    """Close the open block, keeping it for recomputation inside a later backward."""
    global _ACTIVE
    with _LOCK:
        _ACTIVE = None
        _KEPT.append(state)


def replayed_call(handle: int) -> tuple[SampleState, int] | None:
    """The block and call index that first drew ``handle``, newest block first; None if
    no kept block drew it. RuntimeError if that block drew it twice (which call it replays
    cannot be told)."""
    with _LOCK:
        blocks = ([_ACTIVE] if _ACTIVE is not None else []) + list(reversed(_KEPT))
    for state in blocks:
        if handle in state.handles:
            if handle in state.ambiguous:
                raise RuntimeError(
                    "dropkit.sample_keys: a recomputed random call cannot be matched to its "
                    "forward call (torch's RNG state repeated inside one block, e.g. "
                    "torch.manual_seed between layers); do not reseed inside the block"
                )
            return state, state.handles[handle]
    return None


def kept() -> bool:
    """Whether any block is open or kept (a cheap test before any lookup)."""
    return _ACTIVE is not None or len(_KEPT) > 0
