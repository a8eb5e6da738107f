"""Mask keys as values: what every random call is keyed by, and the one place keys are resolved.

A random dropkit op never looks anything up: it receives a :class:`Keys` value and is a pure
function of it. A ``Keys`` holds

- ``seed``: a 0-d int64 tensor (one stream for the whole call, today's scalar seed), or a
  1-d int64 tensor ``[R]`` (one stream per row of dim 0 of the masked shape: per-row keys);
- ``offset``: an int added to every element index (within the row, for per-row keys), so
  that a piece of a larger tensor can draw its part of the larger tensor's mask.

The spec of both forms, and of the key derivations below, is the "Keys" section of
docs/mask-spec.md (version 2).

:func:`resolve` is the one place a call's keys are decided, and every variant calls it where
it used to draw its seed: an explicit ``seed``, else one draw from ``generator``, else one
from torch's default CPU generator; inside :func:`dropkit.mc.mc_predict`'s forward, per-row
keys derived from ``(base seed, sample t, row b, call c)`` instead (so draw ``t`` does not
depend on how samples are batched).
"""

from __future__ import annotations

import numbers
import warnings
import weakref
from collections.abc import Sequence
from typing import NamedTuple

import torch

from dropkit import _mc_context, _sample_context, recording, rng
from dropkit.backends import keyed
from dropkit.backends.seeded import fresh_seed, on_graph_draw, seed_tensor, unwrapped
from dropkit.errors import DistributedSeedWarning, SampleKeyError

__all__ = [
    "CALL_DOMAIN",
    "MC_SAMPLE_DOMAIN",
    "ROW_DOMAIN",
    "SAMPLE_DOMAIN",
    "FoldError",
    "Keys",
    "derive_call_key",
    "derive_mc_sample_keys",
    "derive_row_keys",
    "derive_sample_keys",
    "resolve",
    "scalar_seed",
]

# Fourth Philox counter word of each derivation: keeps derivation streams apart from the
# mask stream itself (whose counters end in (0, 0)) and from each other.
CALL_DOMAIN = 0x4D435344  # "MCSD": one key for a whole call of MC sample t
ROW_DOMAIN = 0x4D435257  # "MCRW": one key per row b of MC sample t
SAMPLE_DOMAIN = 0x534B4559  # "SKEY": one key per sample id, per call (dropkit.sample_keys)
MC_SAMPLE_DOMAIN = 0x4D43534B  # "MCSK": the sample-keys seed of MC sample t
_UINT64 = 1 << 64
FoldError = _mc_context.FoldError


class Keys(NamedTuple):
    """The keys of one random call (see the module docstring and docs/mask-spec.md).

    An immutable value (a named tuple: cheap to make on every call).

    Example:
        >>> import torch
        >>> Keys(torch.tensor(7)).per_row, Keys(torch.tensor([1, 2]), offset=4).per_row
        (False, True)
    """

    seed: torch.Tensor  # 0-d int64 (one stream) or [R] int64 (a stream per row of dim 0)
    offset: int = 0  # added to every element index (within the row for per-row keys)

    @property
    def per_row(self) -> bool:
        """Whether each row of dim 0 has its own key."""
        return self.seed.dim() == 1


def _as_int64(value: int) -> int:
    """A key in [0, 2**64) as the int64 that holds the same bits (two's complement)."""
    return value - _UINT64 if value >= 1 << 63 else value


def scalar_seed(seed: object, generator: object) -> torch.Tensor:
    """The call's 64-bit seed as a 0-d int64 CPU tensor (two's complement for >= 2**63).

    ``seed`` given: that seed (an int in [0, 2**64), or a 0-d integer tensor holding a value
    in [0, 2**63)). Else a fresh one from ``generator``, or from torch's default CPU
    generator through the opaque ``dropkit::draw_seed`` op (so ``torch.manual_seed``,
    checkpoint replay and ``torch.compile`` all see the same draw).
    """
    if seed is not None:
        if generator is not None:
            raise ValueError("pass either seed or generator, not both")
        if isinstance(seed, torch.Tensor):
            return _tensor_seed(seed)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int, but got {type(seed).__name__} {seed!r}")
        value = int(seed)
        if not 0 <= value < _UINT64:
            raise ValueError(f"seed must be in [0, 2**64), but got {value}")
        return seed_tensor(_as_int64(value))
    if generator is None:
        return fresh_seed()
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator, but got {type(generator).__name__}"
        )
    return torch.empty((), dtype=torch.int64, device=generator.device).random_(
        generator=generator
    ).cpu()


def _tensor_seed(seed: torch.Tensor) -> torch.Tensor:
    """A seed passed as a tensor: 0-d, integer (not bool), non-negative.

    A vmapped seed (one per slice) is 0-d per slice; each slice's mask is then its own
    seed's (the op's vmap rule), and the values are checked on the seeds underneath.
    """
    plain = unwrapped(seed)  # (under vmap's and grad's levels)
    if seed.dim() != 0:
        raise ValueError(
            f"a seed tensor must be 0-d, but got shape {tuple(seed.shape)}; pass one int"
        )
    if seed.dtype == torch.bool or seed.is_floating_point() or seed.is_complex():
        raise TypeError(
            f"seed must be an int or an integer tensor, but got a {seed.dtype} tensor; "
            "pass e.g. seed=1234"
        )
    seed = seed.to(device="cpu", dtype=torch.int64)
    if not torch.compiler.is_compiling() and not torch.jit.is_tracing():
        low = int(seed) if plain is seed else (int(plain.min()) if plain.numel() else 0)
        if low < 0:
            raise ValueError(
                f"seed must be in [0, 2**64), but got {low}; a tensor seed holds 0 .. "
                "2**63 - 1 (pass larger seeds as a Python int)"
            )
    return seed


def derive_call_key(seed: int, sample: int, call: int) -> torch.Tensor:
    """MC key of call ``call`` of sample ``sample`` as a whole (0-d int64).

    ``Philox4x32-10(counter=(lo32(t), hi32(t), c, CALL_DOMAIN), key=seed)[0:2]``.

    Example:
        >>> int(derive_call_key(7, 0, 0)) != int(derive_call_key(7, 1, 0))
        True
    """
    t = torch.tensor([sample], dtype=torch.int64)
    return _derive(seed, t & rng.MASK32, t >> 32, call, CALL_DOMAIN).reshape(())


def derive_row_keys(seed: int, samples: Sequence[int], batch: int, call: int) -> torch.Tensor:
    """MC keys of call ``call`` for the rows of ``len(samples)`` stacked copies of a batch.

    Row ``j * batch + b`` (row ``b`` of sample ``t = samples[j]``) gets
    ``Philox4x32-10(counter=(t, b, c, ROW_DOMAIN), key=seed)[0:2]``, so a row's key depends
    only on ``(seed, t, b, c)``, never on which other samples share the forward.

    Shape: output ``[len(samples) * batch]`` int64.

    Example:
        >>> a = derive_row_keys(7, [0, 1, 2], batch=2, call=0)
        >>> b = derive_row_keys(7, [2], batch=2, call=0)
        >>> torch.equal(a[4:], b), a.shape
        (True, torch.Size([6]))
    """
    t = torch.tensor([int(s) for s in samples], dtype=torch.int64)  # [k]
    if len(t) and (int(t.min()) < 0 or int(t.max()) > rng.MASK32):
        raise ValueError("MC sample indices must be in [0, 2**32)")
    if batch > rng.MASK32 + 1:
        raise ValueError(f"batch of {batch} rows is too large for row keys (at most 2**32)")
    b = torch.arange(batch, dtype=torch.int64)  # [B]
    c0 = t.repeat_interleave(batch)  # [k*B]: sample of each row
    c1 = b.repeat(len(t))  # [k*B]: row within its sample
    return _derive(seed, c0, c1, call, ROW_DOMAIN)


def derive_sample_keys(seed: int | torch.Tensor, ids: torch.Tensor, call: int) -> torch.Tensor:
    """Sample keys of call ``call``: row ``r`` gets the key of sample ``ids[r]``.

    ``Philox4x32-10(counter=(lo32(id), hi32(id), c, SAMPLE_DOMAIN), key=seed)[0:2]``: a
    function of the seed, the id and the call alone (not of the row, the batch or the rank).

    Shape: ``ids`` ``[B]`` int64 (non-negative); output ``[B]`` int64.

    Example:
        >>> import torch
        >>> a = derive_sample_keys(7, torch.tensor([3, 9, 4]), call=0)
        >>> b = derive_sample_keys(7, torch.tensor([4, 3]), call=0)
        >>> bool(a[0] == b[1]) and bool(a[2] == b[0])
        True
    """
    if not 0 <= call <= rng.MASK32:
        raise RuntimeError(f"too many random calls in one block ({call}); at most 2**32")
    return keyed.derive_id_keys(seed, ids, call, SAMPLE_DOMAIN)


def derive_mc_sample_keys(
    mc_seed: int, samples: Sequence[int], seed: int, ids: torch.Tensor, call: int
) -> torch.Tensor:
    """Keys of call ``call`` for MC samples ``samples`` of sample-keyed rows, stacked.

    Block ``j`` (MC sample ``t = samples[j]``) is ``derive_sample_keys(s_t, ids, c)`` with
    ``s_t = Philox4x32-10(counter=(lo32(t), hi32(t), 0, MC_SAMPLE_DOMAIN), key=mc_seed)[0:2]
    XOR seed``: MC sample ``t`` of sample ``id`` depends on ``(mc_seed, seed, t, id, c)``
    only, not on the chunk, the batch or the row.

    Shape: output ``[len(samples) * B]`` int64.

    Example:
        >>> import torch
        >>> ids = torch.tensor([5, 6])
        >>> a = derive_mc_sample_keys(1, [0, 1], 2, ids, 0)
        >>> torch.equal(a[2:], derive_mc_sample_keys(1, [1], 2, ids, 0))
        True
    """
    t = torch.tensor([int(v) for v in samples], dtype=torch.int64)  # [k]
    base = _derive(mc_seed, t & rng.MASK32, t >> 32, 0, MC_SAMPLE_DOMAIN)  # [k]
    seed64 = _as_int64(int(seed) % _UINT64)
    blocks = [derive_sample_keys(int(b) ^ seed64, ids, call) for b in base.tolist()]
    return torch.cat(blocks) if blocks else torch.empty(0, dtype=torch.int64)


def _derive(seed: int, c0: torch.Tensor, c1: torch.Tensor, call: int, domain: int) -> torch.Tensor:
    """Keys ``Philox(counter=(c0, c1, call, domain), key=seed)[0:2]`` as int64 (two's compl.)."""
    if not 0 <= call <= rng.MASK32:
        raise RuntimeError(f"too many random calls in one forward ({call}); at most 2**32")
    return keyed.derive_keys(seed, c0, c1, call, domain)


def resolve(
    seed: object,
    generator: object,
    mask_shape: Sequence[int],
    *,
    batched: bool = True,
    name: str = "dropout",
    p: float | None = None,
    kind: str = "keep",
) -> Keys:
    """The keys of one random call: the one place they are decided, then passed down.

    Args:
        seed, generator: the call's ``seed=`` / ``generator=`` arguments (checked here).
        mask_shape: the shape of the mask (or noise) the call draws.
        batched: whether dim 0 of ``mask_shape`` is the batch (False for weight masks
            and embedding rows): only then can rows get keys of their own.
        name: the calling function, for error messages and :func:`dropkit.record`.
        p, kind: what the keys draw, for :func:`dropkit.record` (``kind`` one of
            ``recording.KINDS``; ``p`` the probability of the keep decisions).

    Outside ``mc_predict`` and ``sample_keys`` this is ``Keys(scalar_seed(seed,
    generator))``. Inside ``mc_predict``'s forward, a batched mask whose dim 0 has the
    folded rows gets per-row keys (:func:`derive_row_keys`); with one sample per forward
    any other mask gets that sample's call key (:func:`derive_call_key`); with several,
    :class:`FoldError`. Inside ``sample_keys``, row ``r`` gets the key of sample
    ``ids[r]`` (:func:`derive_sample_keys`; with ``mc_predict`` inside it,
    :func:`derive_mc_sample_keys`), and a mask without the batch in dim 0 is a
    :class:`~dropkit.errors.SampleKeyError`. An explicit ``seed`` is overridden in both.
    Inside :func:`dropkit.record`, the call and its keys are reported there.
    """
    if _mc_context.current() is None and not _sample_context.kept() and not recording.active():
        # (the common case in one frame: no fold, no sample keys, no recording)
        if seed is None and generator is None and not _WARNED:
            _check_distributed()
        return Keys(scalar_seed(seed, generator))
    key = _resolve(seed, generator, mask_shape, batched, name)
    if recording.active():
        recording.note(name, kind, key.seed, key.offset, mask_shape, p)
    return key


def _resolve(
    seed: object, generator: object, mask_shape: Sequence[int], batched: bool, name: str
) -> Keys:
    """:func:`resolve` without the recording."""
    fold = _mc_context.current()
    if fold is None and not _sample_context.kept():
        if seed is None and generator is None and not _WARNED:
            _check_distributed()
        return Keys(scalar_seed(seed, generator))
    block = _sample_context.active()
    if fold is not None:
        return _folded(fold, block, seed, generator, mask_shape, batched, name)
    compiling = torch.compiler.is_compiling()
    in_backward = not compiling and torch._C._current_graph_task_id() != -1
    if block is not None:
        key = None if seed is None and generator is None else scalar_seed(seed, generator)
        trackable = not compiling and _trackable()
        handle = _handle(key, generator, in_block=True) if trackable else None
        if handle is not None and in_backward:  # a recompute inside the block
            found = _sample_context.replayed_call(handle)
            if found is not None:
                return _sample_keyed(found[0], found[1], mask_shape, batched, name)
        return _sample_keyed(block, block.next_call(handle), mask_shape, batched, name)
    # No block open here, but blocks remembered. A call's handle names it across a
    # recompute (torch restored the RNG state, so a seed-less call draws the same value):
    # outside backward it is noted as a plain call's; inside backward the latest call with
    # that handle, in a block or not, is the one replayed.
    key = scalar_seed(seed, generator)  # (the draw of a seed-less call, as always)
    if seed is None and generator is None:
        _check_distributed_once()  # (a plain call after a block: the same warning as before)
    if compiling or not _trackable():
        return Keys(key)
    handle = _handle(key, generator, in_block=False, seedless=seed is None and generator is None)
    if handle is None:
        return Keys(key)
    if not in_backward:
        _sample_context.note_plain(handle)
        return Keys(key)
    found = _sample_context.replayed_call(handle)
    if found is not None:
        return _sample_keyed(found[0], found[1], mask_shape, batched, name)
    return Keys(key)


def _trackable() -> bool:
    """Whether a call's handle can be read: plain tensors, no transform, mode or tracer."""
    return not (
        torch._C._are_functorch_transforms_active()
        or torch._C._len_torch_dispatch_stack() > 0
        or torch.jit.is_tracing()
    )


def _handle(
    key: torch.Tensor | None,
    generator: object,
    *,
    in_block: bool,
    seedless: bool = False,
) -> tuple[str, int, int] | None:
    """What names a call across a recompute: for a seed-less call its draw from torch's
    default generator (in a block one is drawn for it; outside, its seed is that draw), for
    an explicit seed the seed (no draw), for a generator call in a block a default-generator
    draw (checkpointing restores only that one); None for a generator call outside. With
    the checkpoint region it runs in (:func:`_checkpoint_frame`), so that two calls of
    equal draws in two regions (torch.manual_seed repeated between them) stay apart."""
    frame = _checkpoint_frame()
    if in_block:
        if key is None or generator is not None:
            return ("draw", int(fresh_seed()), frame)
        return ("seed", int(key), frame)
    if generator is not None:
        return None
    return ("draw" if seedless else "seed", int(key), frame)  # type: ignore[arg-type]


def _checkpoint_frame() -> int:
    """The id of the non-reentrant ``torch.utils.checkpoint`` region this call runs in, in
    its forward and in its recompute alike (0 outside one, or where it cannot be read).

    The region's saved-tensor hooks are the innermost ones in both: in the forward
    ``_checkpoint_hook`` (its pack hook holds the frame), in the recompute
    ``_recomputation_hook`` (a weak reference to the same frame). Read from their closures;
    anything else (another torch, a user's hooks on top, reentrant checkpointing) gives 0,
    and matching falls back to the draw alone.
    """
    try:
        hooks = torch._C._autograd._top_saved_tensors_default_hooks(True)
    except Exception:  # (torch's private API moved: no frame)
        return 0
    if not hooks:
        return 0
    pack = getattr(hooks[0], "__wrapped__", hooks[0])  # (under torch._dynamo.disable)
    for cell in getattr(pack, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # (an empty cell)
            continue
        if isinstance(value, weakref.ref):
            value = value()
        if type(value).__name__ == "_CheckpointFrame":
            return id(value)
    return 0


def _folded(
    fold: _mc_context.Fold,
    block: _sample_context.SampleState | None,
    seed: object,
    generator: object,
    mask_shape: Sequence[int],
    batched: bool,
    name: str,
) -> Keys:
    """The keys of a call inside ``mc_predict``'s forward (and maybe a sample-keys block)."""
    scalar_seed(seed, generator)  # still check the arguments (their value is overridden)
    call = fold.next_call()
    k = len(fold.samples)
    rows = k * fold.batch
    if block is not None:
        _check_sample_shape(block, mask_shape, batched, name, rows)
        if fold.batch != block.ids.shape[0]:
            raise SampleKeyError(
                f"{name}: mc_predict runs a batch of {fold.batch} rows, but sample_keys was "
                f"given {block.ids.shape[0]} ids; pass one id per row of the batch"
            )
        seed = int(block.seed)
        return Keys(derive_mc_sample_keys(fold.seed, fold.samples, seed, block.ids, call))
    if batched and len(mask_shape) > 0 and mask_shape[0] == rows:
        return Keys(derive_row_keys(fold.seed, fold.samples, fold.batch, call))
    if k == 1:
        return Keys(derive_call_key(fold.seed, fold.samples[0], call))
    raise FoldError(
        f"random call {call} draws a mask of shape {tuple(mask_shape)}"
        f"{'' if batched else ' that is not per sample'}; folding {k} samples needs a "
        f"per-sample mask with {rows} rows in dim 0"
    )


def _check_sample_shape(
    block: _sample_context.SampleState,
    mask_shape: Sequence[int],
    batched: bool,
    name: str,
    rows: int | None = None,
) -> None:
    """SampleKeyError unless dim 0 of the mask is the block's batch (``rows`` of them)."""
    n = block.ids.shape[0] if rows is None else rows
    if not batched:
        raise SampleKeyError(
            f"{name}: inside dropkit.sample_keys every mask is keyed by sample, but this "
            f"call's mask (shape {tuple(mask_shape)}) is shared by the whole batch and has "
            "no per-sample meaning; "
            + (
                "use drop_connect(..., per_sample=True) / DropConnect(per_sample=True) for a "
                "mask per sample, "
                if name == "drop_connect"
                else ""
            )
            + "or make this call outside the sample_keys block"
        )
    if len(mask_shape) == 0 or mask_shape[0] != n:
        got = mask_shape[0] if len(mask_shape) else "no"
        raise SampleKeyError(
            f"{name}: sample_keys was given {block.ids.shape[0]} ids (one per row of the "
            f"batch), but this call's mask has shape {tuple(mask_shape)}: {got} rows in "
            f"dim 0{f' where mc_predict stacks {n}' if rows is not None else ''}; "
            "sample-keyed masks need the batch in dim 0 (e.g. batch_first=True), one id per row"
        )


def _sample_keyed(
    block: _sample_context.SampleState,
    call: int,
    mask_shape: Sequence[int],
    batched: bool,
    name: str,
) -> Keys:
    """The keys of call ``call`` of a sample-keys block: one per row, from the row's id."""
    _check_sample_shape(block, mask_shape, batched, name)
    if torch.compiler.is_compiling() or block.derive is None:
        return Keys(derive_sample_keys(block.seed, block.ids, call))
    if not 0 <= call <= rng.MASK32:
        raise RuntimeError(f"too many random calls in one block ({call}); at most 2**32")
    # The same keys, the ids' words split once per block; the op's graph node holds them,
    # and through them the block, for as long as a recompute may need it.
    return Keys(_sample_context.attach(block.derive(call), block))


_WARNED = False


def _check_distributed_once() -> None:
    if not _WARNED:
        _check_distributed()


on_graph_draw(_check_distributed_once)  # (a compiled call warns when its graph runs)


def _check_distributed() -> None:
    """Warn once when masks come from torch's generator in a multi-process run."""
    global _WARNED
    dist = torch.distributed
    if not dist.is_available() or not dist.is_initialized() or torch.compiler.is_compiling():
        return
    world = dist.get_world_size()
    if world <= 1:
        return
    _WARNED = True
    warnings.warn(
        f"dropkit: this process is rank {dist.get_rank()} of {world} (torch.distributed) and "
        "its dropout masks come from torch's default generator: ranks seeded alike draw the "
        "same masks for different samples, and a run's masks change with the world size. "
        "Key masks by sample with dropkit.sample_keys(ids) (docs/distributed.md), or seed "
        "each rank differently. (Shown once.)",
        DistributedSeedWarning,
        stacklevel=3,
    )
