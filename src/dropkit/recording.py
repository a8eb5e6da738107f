"""Record, replay, telemetry: what every random call drew, without storing a mask.

``with dropkit.record(model) as rec:`` notes, for every dropkit random call in the block,
the layer, its keys, ``p``, the mask shape and (for keep/drop masks) the kept fraction. The
keys suffice to regenerate a mask exactly: :func:`replay` does, anywhere, later (to debug
one rank, or to compare two). :meth:`Recording.keep_rates` gives per-layer keep-rate
statistics for logging, so that a wrongly set ``p`` shows.

:func:`dropkit.keys.resolve`, the one place keys are decided, reports each call here; no op
reads the recorder. Calls inside a ``torch.compile``d region are not recorded (the graph
holds no Python); a checkpointed segment's recomputation is recorded again, flagged
``recomputed``.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from dropkit import rng
from dropkit.backends import keyed

__all__ = ["KINDS", "KeepRate", "RandomCall", "Recording", "record", "replay"]

# What a call's keys draw: "keep" (Bernoulli keep decisions at threshold(p)), "normal"
# (Gaussian dropout's standard normals), "logistic" (concrete dropout's logistic noise).
KINDS = ("keep", "normal", "logistic")


@dataclass(frozen=True)
class RandomCall:
    """One random call: enough to regenerate its mask (:func:`replay`), and its keep rate.

    ``seed``/``offset`` are the call's keys (see :class:`dropkit.keys.Keys`): a 0-d int64
    tensor, or ``[R]`` per-row keys. ``p`` is the probability the keep decisions are drawn
    at (DropBlock: the block-centre rate ``gamma``; None when not a float, e.g. concrete
    dropout's learned rate). ``kept`` is the number of kept entries of the mask (``keep``
    kind only), ``numel`` its size.
    """

    index: int  # order within the recording
    layer: str  # qualified module name (or class name), else the function's name
    function: str  # the dropkit function that drew it
    kind: str  # one of KINDS
    seed: torch.Tensor
    offset: int
    mask_shape: tuple[int, ...]
    p: float | None
    kept: int | None
    numel: int
    recomputed: bool  # drawn again by a checkpointed segment inside backward

    @property
    def kept_fraction(self) -> float | None:
        """``kept / numel`` (None for noise kinds or an empty mask)."""
        return None if self.kept is None or self.numel == 0 else self.kept / self.numel


@dataclass(frozen=True)
class KeepRate:
    """Keep-rate statistics of one layer over a recording.

    ``z`` is ``(kept - n q) / sqrt(n q (1 - q))`` for the expected keep probability
    ``q = 1 - p`` (the binomial's standard score): ``|z| > 5`` means the layer's masks do
    not keep what its ``p`` says.
    """

    layer: str
    calls: int
    kept: int
    numel: int
    p: float | None

    @property
    def fraction(self) -> float:
        return self.kept / self.numel if self.numel else float("nan")

    @property
    def z(self) -> float:
        if self.p is None or self.numel == 0 or self.p in (0.0, 1.0):
            return float("nan")
        q = 1.0 - self.p
        return (self.kept - self.numel * q) / math.sqrt(self.numel * q * (1.0 - q))


@dataclass(eq=False)  # (identity: nested blocks that recorded the same calls are two blocks)
class Recording:
    """The calls recorded by one :func:`record` block, in order."""

    calls: list[RandomCall] = field(default_factory=list)
    _names: dict[int, str] = field(default_factory=dict, repr=False)
    _stack: list[nn.Module] = field(default_factory=list, repr=False)
    _owner: int = field(default_factory=threading.get_ident, repr=False)

    def __len__(self) -> int:
        return len(self.calls)

    def __getitem__(self, index: int) -> RandomCall:
        return self.calls[index]

    def keep_rates(self) -> dict[str, KeepRate]:
        """Per layer (keep masks only): calls, kept entries, mask entries, ``p``.

        Example:
            >>> import torch, dropkit
            >>> net = torch.nn.Sequential(dropkit.nn.Dropout(0.2))
            >>> with dropkit.record(net) as rec:
            ...     _ = net(torch.ones(100, 100))
            >>> rate = rec.keep_rates()["0"]
            >>> rate.calls, abs(rate.fraction - 0.8) < 0.02, abs(rate.z) < 5
            (1, True, True)
        """
        out: dict[str, KeepRate] = {}
        for c in self.calls:
            if c.kept is None or c.recomputed:
                continue
            prev = out.get(c.layer)
            if prev is None:
                out[c.layer] = KeepRate(c.layer, 1, c.kept, c.numel, c.p)
            else:
                p = prev.p if prev.p == c.p else None  # a schedule changed it: no z
                out[c.layer] = KeepRate(c.layer, prev.calls + 1, prev.kept + c.kept,
                                        prev.numel + c.numel, p)
        return out

    def _layer(self, function: str) -> str:
        if not self._stack:
            return function
        module = self._stack[-1]
        return self._names.get(id(module), type(module).__name__)


# Recorded calls are plain data (names, ints, the keys' tensor): saved with torch.save, they
# load with torch.load's default weights_only=True (docs/distributed.md compares ranks so).
torch.serialization.add_safe_globals([RandomCall])

_RECORDERS: list[Recording] = []  # open blocks (a plain global: one test per call)
_LOCK = threading.Lock()


def active() -> bool:
    """Whether any record block is open (the cheap test before :func:`note`)."""
    return bool(_RECORDERS)


def note(
    function: str,
    kind: str,
    seed: torch.Tensor,
    offset: int,
    mask_shape: Sequence[int],
    p: float | None,
) -> None:
    """Report one random call to the open blocks of this thread (called by keys.resolve)."""
    if torch.compiler.is_compiling():
        return
    me = threading.get_ident()
    recs = [r for r in _RECORDERS if r._owner == me]
    if not recs:
        return
    shape = tuple(int(s) for s in mask_shape)
    numel = math.prod(shape)
    kept = None
    if kind == "keep" and p is not None:
        mask = keyed.keep_mask(seed, offset, numel, rng.threshold(p), torch.device("cpu"))
        kept = int(mask.sum())
    recomputed = torch._C._current_graph_task_id() != -1
    for rec in recs:
        rec.calls.append(RandomCall(len(rec.calls), rec._layer(function), function, kind,
                                    seed, offset, shape, p, kept, numel, recomputed))


def replay(call: RandomCall, device: torch.device | str = "cpu") -> torch.Tensor:
    """Regenerate a recorded call's draws exactly, from its keys alone.

    Returns the mask of ``call.mask_shape``: bool keep decisions (True = kept) for the
    ``keep`` kind, else the float64 noise (standard normals, logistic variates) the
    call's multiplier was made from. For ``drop_block2d`` the keep decisions are the
    block-centre draws at ``gamma`` (``call.p``), from which the op grows its blocks, not
    the dropped-unit mask itself.

    Example:
        >>> import torch, dropkit
        >>> with dropkit.record() as rec:
        ...     y = dropkit.functional.dropout(torch.ones(3, 4), 0.5)
        >>> torch.equal(dropkit.replay(rec[0]), y != 0)
        True
    """
    if not isinstance(call, RandomCall):
        raise TypeError(
            f"replay expects a RandomCall (an entry of a dropkit.record() block), but got "
            f"{type(call).__name__}"
        )
    if call.kind not in KINDS:
        raise ValueError(f"unknown kind {call.kind!r}; a recorded call has one of {KINDS}")
    dev = torch.device(device)
    if call.kind == "keep":
        if call.p is None:
            raise ValueError("this call's p was not recorded; its keep mask cannot be replayed")
        out = keyed.keep_mask(call.seed, call.offset, call.numel, rng.threshold(call.p), dev)
    elif call.kind == "normal":
        out = keyed.normal(call.seed, call.offset, call.numel, dev)
    else:
        out = keyed.logistic(call.seed, call.offset, call.numel, dev)
    return out.reshape(call.mask_shape).to(dev)


def _push(rec: Recording) -> tuple[Callable[..., None], Callable[..., None]]:
    """Global module hooks that keep ``rec``'s stack of running modules (its thread's)."""
    def pre(module: nn.Module, args: object) -> None:
        if rec._owner == threading.get_ident():
            rec._stack.append(module)

    def post(module: nn.Module, args: object, out: object) -> None:
        if rec._owner == threading.get_ident() and rec._stack and rec._stack[-1] is module:
            rec._stack.pop()

    return pre, post


@contextlib.contextmanager
def record(model: nn.Module | None = None) -> Iterator[Recording]:
    """Record every dropkit random call in the block (this thread's), with its keys.

    Args:
        model: names layers by their qualified name in ``model`` (else the class name of
            the innermost module running, or the function's name outside modules).

    Yields:
        the :class:`Recording`, filled as calls are made.

    Recording regenerates each keep mask once to count it (telemetry costs a mask
    generation per call; nothing is stored but the keys).

    Example:
        >>> import torch, dropkit
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), dropkit.nn.Dropout(0.5))
        >>> with dropkit.record(net) as rec:
        ...     _ = net(torch.randn(2, 4))
        >>> rec[0].layer, rec[0].p, rec[0].mask_shape
        ('1', 0.5, (2, 4))
    """
    rec = Recording()
    if model is not None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"record(model): expected an nn.Module, got {type(model).__name__}")
        rec._names = {id(m): name or type(m).__name__ for name, m in model.named_modules()}
    pre, post = _push(rec)
    handles = [nn.modules.module.register_module_forward_pre_hook(pre),
               nn.modules.module.register_module_forward_hook(post, always_call=True)]
    with _LOCK:
        _RECORDERS.append(rec)
    try:
        yield rec
    finally:
        with _LOCK:
            _RECORDERS.remove(rec)
        for h in handles:
            h.remove()
