"""The seeded-op factory: every random dropkit variant is one compute function registered here.

A variant supplies a pure function of its keys; the factory registers, once, everything
torch needs around it:

- the ``torch.library`` custom op ``dropkit::<name>`` and its fake (for ``torch.compile``
  and ``torch.export``), with one uniform schema
  ``(Tensor x, Tensor seed, int offset, int[] ints, float[] floats, bool bias) -> Tensor``
  (``ints``/``floats`` carry the variant's parameters);
- its autograd: backward regenerates the multiplier from the keys (nothing per element is
  saved), through the same op, so double backward works too;
- the eager fast path: an ``autograd.Function`` with ``backward`` and ``jvp`` (forward-mode
  AD), its twin with ``setup_context`` and a ``vmap`` rule under ``torch.func`` transforms
  (``grad``, ``jvp``, ``vmap``), or, when no graph, tangent or transform is involved, a
  direct call; fake tensors, tensor subclasses, dispatch modes and the meta device go
  through the custom op instead, so that they see it;
- the in-place form, which bumps the input's version counter exactly once, as torch's
  in-place ops do, so autograd notices when a saved tensor is overwritten.

Two kinds of op:

- :class:`SeededMultiply`: ``y = x * w + b`` with ``(w, b) = multiplier(keys, params)``
  broadcast over ``x`` (dropout and its channel, alpha, drop-path, DropConnect and
  embedding forms; Gaussian dropout; DropBlock). Linear in ``x``: backward and the tangent
  are ``grad * w``. An optional ``fused`` function computes the whole output in one backend
  pass (no mask in memory).
- :class:`SeededSample`: a tensor drawn from the keys alone, with no differentiable input
  (the logistic noise of concrete dropout). The math around it is plain torch, so autograd,
  forward AD and ``torch.func`` need nothing more.

Under ``torch.func.vmap`` a seeded call gives every vmapped slice the same mask (the mask is
a function of the keys and the per-slice shape): the rule moves the vmapped dimension to the
front and broadcasts the multiplier over it. A vmapped seed (seeds passed in, or
``vmap(randomness="different")``, whose draw gives one seed per slice) gives slice ``v`` the
mask of its own seed: the slices become rows of per-row keys. ``torch.jit.trace`` records
the custom op, so a traced model draws a fresh seed (an ``aten::random_`` in the trace) and
a fresh mask per call; the trace records the mask shape as a constant, so the traced op
refuses an input of another shape (clearly, instead of broadcasting one sample's mask), and
a drawn sample (:class:`SeededSample`) refuses tracing.

To add a variant, see docs/design.md ("Adding a variant").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.autograd.forward_ad as _fwad

from dropkit.backends.base import opmath_dtype

__all__ = [
    "KEEP_BYTES",
    "BitsFn",
    "FusedFn",
    "MaskGeometry",
    "MultiplierFn",
    "SampleFn",
    "SeededMultiply",
    "SeededSample",
    "dispatched",
    "draw_seed",
    "draw_seed_ordered",
    "fresh_seed",
    "on_graph_draw",
    "seed_tensor",
    "unwrapped",
    "vmapped",
]

# (shape, seed, offset, ints, floats, device, opmath dtype) -> (weight, bias or None), each
# broadcastable to ``shape`` (the per-slice shape: under vmap, x has extra leading dims).
MultiplierFn = Callable[
    [tuple[int, ...], torch.Tensor, int, Sequence[int], Sequence[float], torch.device, torch.dtype],
    tuple[torch.Tensor, "torch.Tensor | None"],
]
# (x, out or None, seed, offset, ints, floats, bias) -> the output, or None to fall back to
# the multiplier. ``out`` is None (allocate) or ``x`` itself (in place).
FusedFn = Callable[
    [torch.Tensor, "torch.Tensor | None", torch.Tensor, int, Sequence[int], Sequence[float], bool],
    "torch.Tensor | None",
]
# (x, op, seed, offset, ints, floats, bias, inplace) -> the output, its node keeping bits.
BitsFn = Callable[..., torch.Tensor]
# (shape, seed, offset, ints, floats, device, dtype) -> a tensor of ``shape``.
SampleFn = Callable[
    [tuple[int, ...], torch.Tensor, int, Sequence[int], Sequence[float], torch.device, torch.dtype],
    torch.Tensor,
]


# Eager autograd keeps a multiplier of at most this many bytes (16 KiB: 4096 float32
# values; a bias the same again) and lets torch's C++ autograd multiply the gradient by
# it, which costs a fraction of a Python graph node's fixed overhead; larger ones keep
# nothing, and backward regenerates them from the keys (docs/design.md, "Backward").
KEEP_BYTES = 16 * 1024


# ---------------------------------------------------------------- seeds
@torch.library.custom_op(
    "dropkit::draw_seed", mutates_args=(), tags=(torch.Tag.nondeterministic_seeded,)
)
def draw_seed() -> torch.Tensor:
    """A fresh seed from torch's default CPU generator (advances it by one draw)."""
    _graph_draw()
    return _draw()


def _draw() -> torch.Tensor:
    """The draw itself, shared by eager calls and both seed ops (the same RNG consumption).

    A new 0-d CPU int64 tensor filled by ``random_()``: made like a fixed one (``empty_like``
    skips the shape and dtype parsing of ``torch.empty``, and ``torch.set_default_device``
    cannot move the draw off the CPU generator).
    """
    try:
        return _seed_like().random_()
    except RuntimeError as err:  # (free when nothing is raised)
        transformed = torch._C._are_functorch_transforms_active()
        if transformed and "different inplace randomness" in str(err):
            # vmap(randomness="different"): a factory draw gives one seed per slice, and the
            # op's vmap rule keys each slice's mask by its own seed.
            return torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64)
        raise


def _seed_like() -> torch.Tensor:
    """A new 0-d CPU int64 tensor: ``empty_like`` of a fixed one, or, under a dispatch mode
    (fake tensors) or when compiling, a factory call the mode or graph sees (a mode refuses
    real tensors as inputs)."""
    if torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack() > 0:
        return torch.empty((), dtype=torch.int64, device="cpu")
    return torch.empty_like(_SEED_LIKE)


_SEED_LIKE = torch.empty((), dtype=torch.int64, device="cpu")


def seed_tensor(value: int) -> torch.Tensor:
    """An int64 ``value`` as a 0-d CPU int64 tensor, made as the drawn seeds are."""
    if torch.compiler.is_compiling():
        return torch.tensor(value, dtype=torch.int64)
    return _seed_like().fill_(value)


@draw_seed.register_fake
def _draw_seed_fake() -> torch.Tensor:
    return torch.empty((), dtype=torch.int64)


# torch.compile: AOT autograd's CSE pass merges identical calls of a functional op (it
# spares only a fixed list of aten random ops, not ops tagged nondeterministic_seeded), so
# two dropouts in one compiled training graph would share one draw_seed() and one mask.
# Inside a compiled graph the draw goes through draw_seed_ordered instead: it declares that
# it writes a token tensor (it never does), which chains the draws (no merging, eager
# order kept) at the cost of a 0-d copy per draw in the compiled graph only.
_ORDER_TOKEN = torch.zeros(1, dtype=torch.int64)


@torch.library.custom_op(
    "dropkit::draw_seed_ordered",
    mutates_args=("token",),
    tags=(torch.Tag.nondeterministic_seeded,),
)
def draw_seed_ordered(token: torch.Tensor) -> torch.Tensor:
    """``draw_seed()`` for compiled graphs; ``token`` orders the draws and is left unchanged."""
    _graph_draw()
    return _draw()


_GRAPH_DRAW_HOOKS: list[Callable[[], None]] = []


def on_graph_draw(hook: Callable[[], None]) -> None:
    """Run ``hook()`` whenever a graph (compiled, traced) draws a seed, at run time: the
    eager checks a graph cannot hold (``dropkit.keys``'s once-per-process rank warning)."""
    _GRAPH_DRAW_HOOKS.append(hook)


def _graph_draw() -> None:
    for hook in _GRAPH_DRAW_HOOKS:
        hook()


@draw_seed_ordered.register_fake
def _draw_seed_ordered_fake(token: torch.Tensor) -> torch.Tensor:
    return torch.empty((), dtype=torch.int64)


def fresh_seed() -> torch.Tensor:
    """A fresh seed from torch's default CPU generator: ``draw_seed``, ordered when compiling.

    Eager calls skip the op dispatcher (tens of microseconds) and make the same draw.
    """
    if torch.compiler.is_compiling():
        return draw_seed_ordered(_ORDER_TOKEN)
    return _draw()


# ---------------------------------------------------------------- the eager graph node
def unwrapped(t: torch.Tensor) -> torch.Tensor:
    """``t`` without torch.func's wrappers (a seed made inside ``grad``/``jvp`` is wrapped)."""
    while torch._C._functorch.is_functorch_wrapped_tensor(t):
        t = torch._C._functorch.get_unwrapped(t)
    return t


def vmapped(t: torch.Tensor) -> bool:
    """Whether ``t`` is batched by a ``torch.func.vmap`` level (under any other wrappers)."""
    while torch._C._functorch.is_functorch_wrapped_tensor(t):
        if torch._C._functorch.is_batchedtensor(t):
            return True
        t = torch._C._functorch.get_unwrapped(t)
    return False


_is_legacy_batched = torch._C._functorch.is_legacy_batchedtensor
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _dispatched(x: torch.Tensor | None, device: torch.device | None = None) -> bool:
    """Whether a call must go through the custom op (the dispatcher) to be seen or served.

    torch.compile and torch.jit.trace record it; a tensor subclass (FakeTensor, DTensor,
    a ``__torch_dispatch__`` wrapper) or an active ``TorchDispatchMode`` must see the op, not
    a kernel reading memory behind it; the meta device has no memory (the op's fake serves).
    """
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return True
    if torch._C._len_torch_dispatch_stack() > 0:
        return True
    if x is None:
        return device is not None and torch.device(device).type == "meta"
    return type(x) not in _PLAIN or x.is_meta


def dispatched(x: torch.Tensor) -> bool:
    """Whether an eager call on ``x`` must go through a registered op (public
    :func:`_dispatched`: compiling, tracing, a dispatch mode, a subclass, the meta device)."""
    return _dispatched(x)


_INFERENCE_INPLACE = (
    "Inplace update to inference tensor outside InferenceMode is not allowed: dropkit "
    "would write it behind torch's back. Make a clone to get a normal tensor before the "
    "in-place dropout, or run it inside torch.inference_mode()"
)


# The last entry of a traced call's ``ints`` (every real entry is >= 0): the traced input's
# shape and its rank come before it, so that the traced graph can refuse another shape.
_TRACED = -0x7D5EED


def _traced_ints(ints: Sequence[int], shape: Sequence[int]) -> list[int]:
    """``ints`` for ``torch.jit.trace``: plain ints, then the input's shape, its rank and
    :data:`_TRACED`. The tracer records all of them as constants (the mask shape too)."""
    return [*(int(v) for v in ints), *(int(s) for s in shape), len(shape), _TRACED]


def _untraced_ints(ints: Sequence[int], shape: Sequence[int], name: str) -> list[int]:
    """The op's own ``ints`` of a traced call; RuntimeError if ``shape`` is not the traced
    input's (the recorded mask shape would broadcast one sample's mask over the batch, or
    not fit at all)."""
    rank = int(ints[-2])
    traced = [int(v) for v in ints[-2 - rank : -2]]
    if list(shape) != traced:
        raise RuntimeError(
            f"dropkit::{name} was traced (torch.jit.trace) with an input of shape {traced}, "
            f"and now gets {list(shape)}: a trace records dropkit's mask shape as a "
            "constant, so another shape would get a wrong mask. Trace with the shape you "
            "call with (one trace per shape), or use torch.compile (dynamic shapes)"
        )
    return [int(v) for v in ints[: -2 - rank]]


def _version(x: torch.Tensor) -> int | None:
    """``x``'s version counter (None for inference tensors, which have none)."""
    return None if x.is_inference() else x._version


def _set_version(x: torch.Tensor, version: int | None) -> None:
    """Leave ``x``'s version counter at ``version``, whatever the write path counted.

    An in-place write must count once, as one torch in-place op: a kernel writing through
    numpy or a pointer counts nothing, a fallback through ``copy_`` counts one, and inside
    the autograd Function ``mark_dirty`` adds its own one.
    """
    if version is not None and x._version != version:
        torch._C._autograd._unsafe_set_version_counter((x,), (version,))


def _forward(
    x: torch.Tensor,
    op: SeededMultiply,
    seed: torch.Tensor,
    offset: int,
    ints: list[int],
    floats: list[float],
    bias: bool,
    inplace: bool,
    lead: int,
) -> torch.Tensor:
    """The graph node's forward (grad mode off); in place leaves the count to mark_dirty."""
    if not inplace:
        return op.compute(x, seed, offset, ints, floats, bias, None, lead)
    before = _version(x)
    y = op.compute(x, seed, offset, ints, floats, bias, x, lead)
    _set_version(x, before)  # mark_dirty counts the write (once)
    return y


def _backward(ctx: Any, grad: torch.Tensor) -> tuple:
    op, seed, offset, ints, floats, lead = ctx.args
    grad_x = op.apply(grad, seed, offset, ints, floats, bias=False, lead=lead)
    return grad_x, None, None, None, None, None, None, None, None


def _jvp(ctx: Any, x_t: torch.Tensor, *_: object) -> torch.Tensor:
    op, seed, offset, ints, floats, lead = ctx.args
    return op.apply(x_t, seed, offset, ints, floats, bias=False, inplace=ctx.inplace, lead=lead)


def _remember(
    ctx: Any,
    x: torch.Tensor,
    op: SeededMultiply,
    seed: torch.Tensor,
    offset: int,
    ints: list[int],
    floats: list[float],
    inplace: bool,
    lead: int,
) -> None:
    """What backward and jvp need: the keys and the parameters, nothing per element."""
    ctx.args = (op, seed, offset, ints, floats, lead)
    ctx.inplace = inplace
    if inplace:
        ctx.mark_dirty(x)


class _Eager(torch.autograd.Function):
    """The eager graph node of every :class:`SeededMultiply` (out of place or in place).

    Written in the ``forward(ctx, ...)`` style: with a separate ``setup_context``,
    ``Function.apply`` binds the arguments through ``inspect.signature`` on every call (about
    50 us). :class:`_EagerFunc` is the same node in the style torch.func needs, used only
    under its transforms.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        op: SeededMultiply,
        seed: torch.Tensor,
        offset: int,
        ints: list[int],
        floats: list[float],
        bias: bool,
        inplace: bool,
        lead: int,
    ) -> torch.Tensor:
        _remember(ctx, x, op, seed, offset, ints, floats, inplace, lead)
        return _forward(x, op, seed, offset, ints, floats, bias, inplace, lead)

    backward = staticmethod(_backward)  # type: ignore[assignment]
    jvp = staticmethod(_jvp)  # type: ignore[assignment]


class _EagerFunc(torch.autograd.Function):
    """:class:`_Eager` for ``torch.func`` (``setup_context`` and a ``vmap`` rule)."""

    forward = staticmethod(_forward)  # type: ignore[assignment]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        x, op, seed, offset, ints, floats, _, inplace, lead = inputs
        _remember(ctx, x, op, seed, offset, ints, floats, inplace, lead)

    backward = staticmethod(_backward)  # type: ignore[assignment]
    jvp = staticmethod(_jvp)  # type: ignore[assignment]

    @staticmethod
    def vmap(  # type: ignore[override]
        info: Any,
        in_dims: tuple,
        x: torch.Tensor,
        op: SeededMultiply,
        seed: torch.Tensor,
        offset: int,
        ints: list[int],
        floats: list[float],
        bias: bool,
        inplace: bool,
        lead: int,
    ) -> tuple[torch.Tensor, int | None]:
        if in_dims[2] is not None:
            return _per_slice(in_dims, x, op, seed, offset, ints, floats, bias, inplace, lead)
        x_dim = in_dims[0]
        if x_dim is None:
            y = op.apply(x, seed, offset, ints, floats, bias=bias, inplace=inplace, lead=lead)
            return y, None
        front = x.movedim(x_dim, 0)  # [V, *slice shape]: the mask broadcasts over V
        y = op.apply(front, seed, offset, ints, floats, bias=bias, inplace=inplace, lead=lead + 1)
        return (x, x_dim) if inplace else (y, 0)


def _per_slice(
    in_dims: tuple,
    x: torch.Tensor,
    op: SeededMultiply,
    seed: torch.Tensor,
    offset: int,
    ints: list[int],
    floats: list[float],
    bias: bool,
    inplace: bool,
    lead: int,
) -> tuple[torch.Tensor, int]:
    """The vmap rule for a vmapped seed (``vmap(randomness="different")`` draws one per
    slice, or seeds passed in): slice ``v`` gets the mask of the seeded call with key
    ``seed[v]``. The slices become rows of per-row keys (docs/mask-spec.md: row ``r``'s
    elements are its key's stream), so each equals the unbatched call with its own seed."""
    if inplace or lead or seed.dim() != 1 or (op.mask is None and ints):
        raise RuntimeError(
            f"dropkit::{op.name}: a mask per vmapped slice (a vmapped seed, or "
            "vmap(randomness='different')) is supported for out-of-place calls of the "
            "element-wise and channel variants, Gaussian dropout and drop path, in one vmap "
            "level; pass one seed= (every slice gets its mask) or loop over the seeds"
        )
    keys = seed.movedim(in_dims[2], 0)  # [V]
    x_dim = in_dims[0]
    # [V, *slice shape]; an unbatched input: every slice drops its own units of it
    front = x.expand(keys.shape[0], *x.shape) if x_dim is None else x.movedim(x_dim, 0)
    if op.mask is not None:  # the mask gains the slices as its rows
        rows = [keys.shape[0], *op.mask.shape_of(front.shape[1:], ints)]
        _, ints = op.mask.with_shape(ints, rows)
    return op.apply(front, keys, offset, ints, floats, bias=bias), 0


# ---------------------------------------------------------------- the two kinds of op
class MaskGeometry(NamedTuple):
    """Where a :class:`SeededMultiply`'s multiplier lives, for sharded (DTensor) inputs.

    ``shape_of(x_shape, ints)``: the mask's shape for an input of ``x_shape`` (one entry per
    dim of ``x``; 1 where the mask broadcasts). ``with_shape(ints, mask_shape)``: the
    op's ``(shape, ints)`` arguments that make its multiplier draw a mask of
    ``mask_shape`` (the spec's elements ``offset ..`` of the stream, row-major), so that a
    shard can draw the flat range of the global mask that holds its elements.
    """

    shape_of: Callable[[Sequence[int], Sequence[int]], list[int]]
    with_shape: Callable[[Sequence[int], list[int]], tuple[tuple[int, ...], list[int]]]


class SeededMultiply:
    """``y = x * w + b``, ``(w, b)`` a pure function of the keys: one op, all of torch's hooks.

    Args:
        name: the op's name in the ``dropkit`` namespace (``torch.ops.dropkit.<name>``).
        multiplier: ``(shape, seed, offset, ints, floats, device, opmath dtype) -> (w, b)``;
            ``b`` may be None. ``w`` and ``b`` broadcast to ``shape``.
        fused: optional ``(x, out, seed, offset, ints, floats, bias) -> y or None``: the
            same result in one backend pass; None falls back to the multiplier.
        mask: where the multiplier lives, for sharded inputs (:class:`MaskGeometry`).
        bits: optional ``(x, op, seed, offset, ints, floats, bias, inplace) -> y``: the eager
            autograd node that keeps a 1-bit mask (``backward="bits"``); a two-valued
            multiplier only (``dropkit.backends.packed``).

    ``w`` is rounded to the opmath dtype (float32 for half types), the product is one
    multiply in it, ``+ b`` one add, rounded once to ``x.dtype``.
    """

    def __init__(
        self,
        name: str,
        multiplier: MultiplierFn,
        fused: FusedFn | None = None,
        *,
        mask: MaskGeometry | None = None,
        bits: BitsFn | None = None,
    ) -> None:
        self.name = name
        self._multiplier = multiplier
        self._fused = fused
        self.mask = mask
        self._bits = bits
        self._sharded = False  # the DTensor rule is registered on first use
        self.op = self._register()

    def _register(self) -> Any:
        compute = self.compute

        def impl(
            x: torch.Tensor,
            seed: torch.Tensor,
            offset: int,
            ints: list[int],
            floats: list[float],
            bias: bool,
        ) -> torch.Tensor:
            if ints and ints[-1] == _TRACED:
                ints = _untraced_ints(ints, x.shape, self.name)
            return compute(x, seed, offset, ints, floats, bias, None, 0)

        op = torch.library.custom_op(f"dropkit::{self.name}", impl, mutates_args=())

        def fake(
            x: torch.Tensor,
            seed: torch.Tensor,
            offset: int,
            ints: list[int],
            floats: list[float],
            bias: bool,
        ) -> torch.Tensor:
            return torch.empty_like(x)

        op.register_fake(fake)

        def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
            _, seed, offset, ints, floats, _ = inputs
            ctx.args = (seed, offset, list(ints), list(floats))

        def backward(ctx: Any, grad: torch.Tensor) -> tuple:
            seed, offset, ints, floats = ctx.args
            return op(grad, seed, offset, ints, floats, False), None, None, None, None, None

        op.register_autograd(backward, setup_context=setup_context)
        return op

    def apply(
        self,
        x: torch.Tensor,
        seed: torch.Tensor,
        offset: int,
        ints: list[int],
        floats: list[float],
        *,
        bias: bool = True,
        inplace: bool = False,
        lead: int = 0,
        backward: str = "auto",
    ) -> torch.Tensor:
        """Run the op on ``x``: through the dispatcher when something must see the op
        (compiling, tracing, a tensor subclass or fake tensor, a dispatch mode, the meta
        device), else the eager path. ``backward`` is what eager autograd keeps
        (``dropkit.backends.packed``): ``"auto"``, ``"seed"`` or ``"bits"``."""
        if _dispatched(x):
            if not self._sharded and type(x).__name__ == "DTensor":
                from dropkit.backends import sharded  # (imports torch.distributed.tensor)

                sharded.register(self)
                self._sharded = True
            # A compiled (or traced) graph is functional: in place computes out of place
            # and writes back. The op records the keys' tensor, so a traced seed draw stays
            # in the graph.
            if torch.jit.is_tracing():  # the tracer records shapes as constants
                ints = _traced_ints(ints, x.shape)
            y = self.op(x, seed, offset, ints, floats, bias)
            return x.copy_(y) if inplace else y
        if torch._C._are_functorch_transforms_active():
            return _EagerFunc.apply(x, self, seed, offset, ints, floats, bias, inplace, lead)
        if (x.requires_grad and torch.is_grad_enabled()) or _fwad._current_level >= 0:
            if backward == "bits" and self._bits is not None and _fwad._current_level < 0:
                return self._bits(x, self, seed, offset, ints, floats, bias, inplace)
            if backward == "auto" and self._keeps(x, ints):
                return self._kept(x, seed, offset, ints, floats, bias, inplace)
            return _Eager.apply(x, self, seed, offset, ints, floats, bias, inplace, lead)
        return self.compute(x, seed, offset, ints, floats, bias, x if inplace else None, lead)

    def _keeps(self, x: torch.Tensor, ints: list[int]) -> bool:
        """Whether the multiplier is small enough to keep for backward (:data:`KEEP_BYTES`)."""
        # (without a geometry, the multiplier broadcasts to x: x's size bounds it)
        n = x.numel() if self.mask is None else math.prod(self.mask.shape_of(x.shape, ints))
        return n * opmath_dtype(x.dtype).itemsize <= KEEP_BYTES

    def _kept(
        self,
        x: torch.Tensor,
        seed: torch.Tensor,
        offset: int,
        ints: list[int],
        floats: list[float],
        bias: bool,
        inplace: bool,
    ) -> torch.Tensor:
        """``x * w + b`` in torch's own ops around a small multiplier drawn without grad.

        Torch's C++ autograd keeps ``w`` (at most :data:`KEEP_BYTES`) and multiplies the
        gradient by it: the same bits as the regenerating node, without its Python cost.
        """
        dtype = opmath_dtype(x.dtype)
        # (no grad mode needed: the multiplier is made from the keys alone)
        weight, b = self._multiplier(tuple(x.shape), seed, offset, ints, floats, x.device, dtype)
        if not bias:
            b = None
        same = x.dtype == dtype
        if inplace and b is None and same:
            return _holding(x.mul_(weight), seed)  # one write, one version bump
        y = _holding((x if same else x.to(dtype)) * weight, seed)
        if b is not None:
            if _fwad._current_level < 0:
                # ``b`` is a constant: the gradient of ``x * w + b`` is the product's, so the
                # add goes into the product's storage (the same separate, rounded add) and
                # autograd keeps one node, not two.
                y.detach().add_(b)
            else:  # (forward AD: the dual tensor's own add)
                y = y + b
        if inplace:
            return x.copy_(y)
        return y if same else y.to(x.dtype)


    def compute(
        self,
        x: torch.Tensor,
        seed: torch.Tensor,
        offset: int,
        ints: Sequence[int],
        floats: Sequence[float],
        bias: bool,
        out: torch.Tensor | None,
        lead: int,
    ) -> torch.Tensor:
        """The math on plain tensors, into ``out`` (None: a new tensor; or ``x`` itself).

        ``lead`` leading dimensions of ``x`` (vmapped ones) share one multiplier.
        """
        if out is not None:  # in place: exactly one write counted, as torch's in-place ops
            if x.is_inference() and not torch.is_inference_mode_enabled():
                raise RuntimeError(_INFERENCE_INPLACE)  # (torch's check: the kernels skip it)
            before = _version(x)
            y = self._compute(x, seed, offset, ints, floats, bias, out, lead)
            _set_version(x, None if before is None else before + 1)
            return y
        return self._compute(x, seed, offset, ints, floats, bias, None, lead)

    def _compute(
        self,
        x: torch.Tensor,
        seed: torch.Tensor,
        offset: int,
        ints: Sequence[int],
        floats: Sequence[float],
        bias: bool,
        out: torch.Tensor | None,
        lead: int,
    ) -> torch.Tensor:
        if x.is_neg():  # a lazily negated view (torch._neg_view): kernels need its values
            y = self._compute(x.resolve_neg(), seed, offset, ints, floats, bias, None, lead)
            return y if out is None else out.copy_(y)
        # A kernel needs plain memory: torch's legacy vmap (gradcheck's batched-gradient
        # check runs backward under it) hands over batched tensors, which take the
        # multiplier path below, made of torch ops that have batching rules.
        if lead == 0 and self._fused is not None and not _is_legacy_batched(x):
            y = self._fused(x, out, seed, offset, ints, floats, bias)
            if y is not None:
                return y
        dtype = opmath_dtype(x.dtype)
        shape = tuple(x.shape[lead:])
        weight, b = self._multiplier(shape, seed, offset, ints, floats, x.device, dtype)
        y = x.to(dtype) * weight
        if bias and b is not None:
            y = y + b
        if out is not None:
            return out.copy_(y)
        return y.to(x.dtype)


def _holding(y: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """``y``, its graph node holding per-row keys (and what they keep alive, such as a
    sample-keys block for a recompute) while it lives. A scalar seed keeps nothing alive."""
    if seed.dim() and y.grad_fn is not None:
        y.grad_fn.metadata["dropkit_keys"] = seed
    return y


class SeededSample:
    """A tensor drawn from the keys alone (no differentiable input), as a registered op.

    Args:
        name: the op's name in the ``dropkit`` namespace.
        sample: ``(shape, seed, offset, ints, floats, device, dtype) -> tensor of shape``.
    """

    def __init__(self, name: str, sample: SampleFn) -> None:
        self.name = name
        self._sample = sample

        def impl(
            shape: list[int],
            seed: torch.Tensor,
            offset: int,
            ints: list[int],
            floats: list[float],
            dtype: torch.dtype,
            device: torch.device,
        ) -> torch.Tensor:
            return sample(tuple(shape), seed, offset, ints, floats, device, dtype)

        self.op = torch.library.custom_op(f"dropkit::{name}", impl, mutates_args=())

        def fake(
            shape: list[int],
            seed: torch.Tensor,
            offset: int,
            ints: list[int],
            floats: list[float],
            dtype: torch.dtype,
            device: torch.device,
        ) -> torch.Tensor:
            return torch.empty(shape, dtype=dtype, device=device)

        self.op.register_fake(fake)

    def apply(
        self,
        shape: Sequence[int],
        seed: torch.Tensor,
        offset: int,
        ints: list[int],
        floats: list[float],
        dtype: torch.dtype,
        device: torch.device,
    ) -> torch.Tensor:
        """Draw: through the op when something must see it (as ``SeededMultiply.apply``).

        ``torch.jit.trace`` is refused: the drawn shape would be a constant of the trace,
        and the product with an input of another shape would broadcast one sample's draw
        over the batch, silently."""
        if torch.jit.is_tracing():
            raise RuntimeError(
                f"dropkit::{self.name} cannot be traced with torch.jit.trace (the trace would "
                "fix the shape of its draw, and an input of another shape would silently "
                "get a broadcast draw); use torch.compile, or run the model eagerly"
            )
        if _dispatched(None, device):
            return self.op(list(shape), seed, offset, ints, floats, dtype, device)
        if torch._C._are_functorch_transforms_active():
            if vmapped(seed):
                raise RuntimeError(
                    f"dropkit::{self.name}: a draw per vmapped slice (a vmapped seed, or "
                    "vmap(randomness='different')) is not supported; pass one seed= (every "
                    "slice gets its draw) or loop over the seeds"
                )
            # No input is transformed: draw on plain tensors, outside torch.func's layers.
            with torch._C._DisableFuncTorch():
                seed = unwrapped(seed)
                return self._sample(tuple(shape), seed, offset, ints, floats, device, dtype)
        return self._sample(tuple(shape), seed, offset, ints, floats, device, dtype)
