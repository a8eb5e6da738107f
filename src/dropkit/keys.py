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
from collections.abc import Sequence
from typing import NamedTuple

import torch

from dropkit import _mc_context, rng
from dropkit.backends.seeded import fresh_seed

__all__ = [
    "CALL_DOMAIN",
    "ROW_DOMAIN",
    "FoldError",
    "Keys",
    "derive_call_key",
    "derive_row_keys",
    "resolve",
    "scalar_seed",
]

# Fourth Philox counter word of each derivation: keeps derivation streams apart from the
# mask stream itself (whose counters end in (0, 0)) and from each other.
CALL_DOMAIN = 0x4D435344  # "MCSD": one key for a whole call of MC sample t
ROW_DOMAIN = 0x4D435257  # "MCRW": one key per row b of MC sample t
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
        return torch.tensor(_as_int64(value), dtype=torch.int64)
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
    """A seed passed as a tensor: 0-d, integer (not bool), non-negative."""
    if torch._C._functorch.is_batchedtensor(seed):
        raise RuntimeError(
            "dropkit: vmap over the seed is not supported; vmap over the input and pass one "
            "seed (every vmapped slice then gets the same mask)"
        )
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
    if not torch.compiler.is_compiling() and not torch.jit.is_tracing() and int(seed) < 0:
        raise ValueError(
            f"seed must be in [0, 2**64), but got {int(seed)}; a tensor seed holds 0 .. "
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


def _derive(seed: int, c0: torch.Tensor, c1: torch.Tensor, call: int, domain: int) -> torch.Tensor:
    """Keys ``Philox(counter=(c0, c1, call, domain), key=seed)[0:2]`` as int64 (two's compl.)."""
    if not 0 <= call <= rng.MASK32:
        raise RuntimeError(f"too many random calls in one forward ({call}); at most 2**32")
    k0, k1 = rng.seed_key(seed)
    w0, w1, _, _ = rng.philox4x32(
        c0, c1, torch.full_like(c0, call), torch.full_like(c0, domain), k0, k1
    )
    # w1 read as a signed 32-bit int, times 2**32, is the high half of the int64 that holds
    # the unsigned key (two's complement); no intermediate leaves the int64 range.
    high = (w1 - ((w1 >> 31) << 32)) * (1 << 32)
    return high | w0


def resolve(
    seed: object,
    generator: object,
    mask_shape: Sequence[int],
    *,
    batched: bool = True,
) -> Keys:
    """The keys of one random call: the one place they are decided, then passed down.

    Args:
        seed, generator: the call's ``seed=`` / ``generator=`` arguments (checked here).
        mask_shape: the shape of the mask (or noise) the call draws.
        batched: whether dim 0 of ``mask_shape`` is the batch (False for weight masks
            and embedding rows): only then can rows get keys of their own.

    Outside ``mc_predict`` this is ``Keys(scalar_seed(seed, generator))``. Inside its
    forward, a batched mask whose dim 0 has the folded rows gets per-row keys
    (:func:`derive_row_keys`); with one sample per forward any other mask gets that
    sample's call key (:func:`derive_call_key`); with several, :class:`FoldError`.
    """
    fold = _mc_context.current()
    if fold is None:
        return Keys(scalar_seed(seed, generator))
    scalar_seed(seed, generator)  # still check the arguments (their value is overridden)
    call = fold.next_call()
    k = len(fold.samples)
    rows = k * fold.batch
    if batched and len(mask_shape) > 0 and mask_shape[0] == rows:
        return Keys(derive_row_keys(fold.seed, fold.samples, fold.batch, call))
    if k == 1:
        return Keys(derive_call_key(fold.seed, fold.samples[0], call))
    raise FoldError(
        f"random call {call} draws a mask of shape {tuple(mask_shape)}"
        f"{'' if batched else ' that is not per sample'}; folding {k} samples needs a "
        f"per-sample mask with {rows} rows in dim 0"
    )
