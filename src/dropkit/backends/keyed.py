"""The backend primitives for any :class:`dropkit.keys.Keys`: scalar or per-row, any offset.

A call with one scalar key and offset 0 (the common case) goes to the backend's own
``keep_mask`` / ``scale``. Other keys go to the backend's keyed primitives
(``keep_mask_keys``, ``scale_keys``, ``bits_keys``) when it has them, else to the
reference backend's: every backend computes the same function, so that never changes a bit.
The arrays are viewed as ``[rows, row_len]``: ``rows`` is the number of per-row keys (1 for
a scalar key), and element ``j`` of row ``r`` is element ``offset + j`` of row ``r``'s stream.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dropkit import rng
from dropkit.backends import resolve
from dropkit.backends.base import Backend
from dropkit.backends.reference import ReferenceBackend

__all__ = [
    "bits",
    "concrete",
    "gaussian",
    "keep_mask",
    "logistic",
    "normal",
    "rows_of",
    "scale",
    "scale_groups",
    "select_at",
    "select_pair",
]

_REFERENCE = ReferenceBackend()
_PROBES: dict[torch.device, torch.Tensor] = {}  # an empty float32 tensor per device


def _probe(device: torch.device) -> torch.Tensor:
    """What the backend dispatch looks at for a mask on ``device`` (cached: no allocation)."""
    probe = _PROBES.get(device)
    if probe is None:
        probe = _PROBES[device] = torch.empty(0, device=device)
    return probe


def rows_of(seed: torch.Tensor, numel: int) -> tuple[int, int]:
    """``(rows, row_len)`` of a call over ``numel`` elements keyed by ``seed``."""
    if seed.dim() == 0:
        return 1, numel
    rows = seed.shape[0]
    if rows == 0 or numel % rows:
        raise RuntimeError(
            f"{rows} per-row keys cannot key a mask of {numel} elements (not a multiple)"
        )
    return rows, numel // rows


def _simple(seed: torch.Tensor, offset: int) -> bool:
    return seed.dim() == 0 and offset == 0


def _keyed(backend: Backend, name: str) -> object:
    method = getattr(backend, name, None)
    return method if method is not None else getattr(_REFERENCE, name)


def keep_mask(
    seed: torch.Tensor, offset: int, numel: int, thresh: int, device: torch.device
) -> torch.Tensor:
    """Bool ``[numel]`` keep decisions (True = kept) of the call keyed by ``(seed, offset)``."""
    backend = resolve(_probe(device))
    if _simple(seed, offset):
        return backend.keep_mask(numel, int(seed), thresh, device)
    rows, row_len = rows_of(seed, numel)
    return _keyed(backend, "keep_mask_keys")(seed, offset, rows, row_len, thresh, device)


def scale(
    x: torch.Tensor,
    out: torch.Tensor,
    seed: torch.Tensor,
    offset: int,
    thresh: int,
    w_keep: float,
    w_drop: float,
) -> None:
    """``out[i] = x[i] * (w_keep if keep(i) else w_drop)``; contiguous ``x``/``out`` (may alias)."""
    backend = resolve(x)
    if _simple(seed, offset):
        backend.scale(x, out, int(seed), thresh, w_keep, w_drop)
        return
    rows, row_len = rows_of(seed, x.numel())
    _keyed(backend, "scale_keys")(x, out, seed, offset, rows, row_len, thresh, w_keep, w_drop)


def bits(seed: torch.Tensor, offset: int, numel: int, device: torch.device) -> torch.Tensor:
    """The raw uint32 draws ``[numel]`` of the call, as float64 (exact) for noise variants."""
    backend = resolve(_probe(device))
    rows, row_len = rows_of(seed, numel)
    return _keyed(backend, "bits_keys")(seed, offset, rows, row_len, device)


def scale_groups(
    x: torch.Tensor,
    out: torch.Tensor,
    seed: torch.Tensor,
    offset: int,
    mid: int,
    inner: int,
    thresh: int,
    weights: tuple[float, float, float, float],
) -> bool:
    """``out = x * w + b``, a mask ``[outer, inner]`` broadcast over ``x[outer, mid, inner]``.

    ``x`` is contiguous (``out`` may alias it); the mask's ``outer * inner`` decisions are
    numbered row-major. ``[N, C, 1, ..., 1]`` masks have ``inner == 1``, LockedDropout's
    ``[N, 1, F]`` has ``mid == T``, a full mask ``mid == 1``. ``weights`` is
    ``(w_keep, w_drop, b_keep, b_drop)``. False when the backend declines (the caller then
    takes the general path); the result is the same either way.
    """
    backend = resolve(x)
    rows, row_len = rows_of(seed, x.numel() // mid)
    method = getattr(backend, "scale_groups_keys", None)
    if method is None:
        return False
    return method(x, out, seed, offset, rows, row_len, mid, inner, thresh, weights)


def select_pair(
    seed: torch.Tensor,
    offset: int,
    numel: int,
    thresh: int,
    weights: tuple[float, float, float, float],
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(w, b)`` ``[numel]`` in ``dtype``: ``(w_keep, b_keep)`` where the call's mask keeps,
    else ``(w_drop, b_drop)`` (``weights`` in that order), from one draw where the backend
    can (a scalar key at offset 0); None otherwise (the caller selects each half)."""
    if not _simple(seed, offset):
        return None
    method = getattr(resolve(_probe(device)), "select_pair", None)
    return None if method is None else method(numel, int(seed), thresh, weights, dtype)


def select_at(
    seed: torch.Tensor,
    offset: int,
    indices: torch.Tensor,
    thresh: int,
    w_keep: float,
    w_drop: float,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``w_keep`` or ``w_drop`` (in ``dtype``) per entry of ``indices``, by the keep decision of
    stream element ``offset + indices[...]`` of the scalar key ``seed``; shaped like
    ``indices``. A backend without the primitive, or that declines, leaves it to the
    reference (torch ops, which also serve wrapped and batched ``indices``)."""
    if seed.dim() != 0:
        raise RuntimeError("select_at draws from one stream: it needs a scalar key")
    backend = resolve(_probe(indices.device))
    method = getattr(backend, "select_at_keys", None)
    if method is not None:
        out = method(seed, offset, indices, thresh, w_keep, w_drop, dtype)
        if out is not None:
            return out
    return _REFERENCE.select_at_keys(seed, offset, indices, thresh, w_keep, w_drop, dtype)


def normal(seed: torch.Tensor, offset: int, numel: int, device: torch.device) -> torch.Tensor:
    """Standard normals ``[numel]`` (float64) of the call: the noise spec (``dropkit.rng``)."""
    backend = resolve(_probe(device))
    rows, row_len = rows_of(seed, numel)
    return _keyed(backend, "normal_keys")(seed, offset, rows, row_len, device).to(device)


def logistic(seed: torch.Tensor, offset: int, numel: int, device: torch.device) -> torch.Tensor:
    """Logistic variates ``ln(1 - u) - ln u`` ``[numel]`` (float64) of the call."""
    backend = resolve(_probe(device))
    rows, row_len = rows_of(seed, numel)
    return _keyed(backend, "logistic_keys")(seed, offset, rows, row_len, device).to(device)


def concrete(
    seed: torch.Tensor,
    offset: int,
    numel: int,
    logit: torch.Tensor,
    temperature: float,
    dtype: torch.dtype,
    grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concrete dropout's multiplier and its derivative in ``logit`` ``[numel]`` (``dtype``,
    float32 or float64): :func:`dropkit.rng.relaxed_keep` of the call's logistic noise, in
    one backend pass where the backend has one (``dw`` None without ``grad``)."""
    if dtype not in (torch.float32, torch.float64):
        raise RuntimeError(f"concrete multipliers are float32 or float64, not {dtype}")
    backend = resolve(_probe(logit.device))
    rows, row_len = rows_of(seed, numel)
    method = _keyed(backend, "concrete_keys")
    return method(seed, offset, rows, row_len, logit, temperature, dtype, grad)


def gaussian(
    x: torch.Tensor, out: torch.Tensor, seed: torch.Tensor, offset: int, std: float
) -> bool:
    """``out = x * (1 + std z)`` in one backend pass (contiguous ``x``); False if the
    backend has no such pass or declines (the caller then multiplies in torch)."""
    method = getattr(resolve(x), "gaussian_keys", None)
    if method is None:
        return False
    rows, row_len = rows_of(seed, x.numel())
    return method(x, out, seed, offset, rows, row_len, std)


def derive_keys(
    seed: int | torch.Tensor, c0: torch.Tensor, c1: torch.Tensor, call: int, domain: int
) -> torch.Tensor:
    """Derived keys ``[*c0.shape]`` int64 (:func:`dropkit.rng.derive_keys`), in one backend
    pass where the backend has one (the numba kernel for CPU words), else torch ops (also
    when compiling: the graph then holds the derivation, with the seed as an input)."""
    if not torch.compiler.is_compiling():
        method = getattr(resolve(_probe(c0.device)), "derive_keys", None)
        if method is not None:
            out = method(int(seed), c0, c1, call, domain)
            if out is not None:
                return out
    return rng.derive_keys(seed, c0, c1, call, domain)


def derive_id_keys(
    seed: int | torch.Tensor, ids: torch.Tensor, call: int, domain: int
) -> torch.Tensor:
    """:func:`derive_keys` with the counter words ``(lo32(id), hi32(id))`` of 64-bit ids
    (torch ops when compiling: the graph then holds the derivation, the seed an input)."""
    if torch.compiler.is_compiling():
        return rng.derive_keys(seed, ids & rng.MASK32, ids >> 32, call, domain)
    return id_deriver(int(seed), ids, domain)(call)


def id_deriver(
    seed: int, ids: torch.Tensor, domain: int
) -> Callable[[int], torch.Tensor]:
    """``call -> derive_id_keys(seed, ids, call, domain)``, with the per-call work cut to one
    backend pass where the backend can (the ids' words split once)."""
    method = getattr(resolve(_probe(ids.device)), "id_deriver", None)
    derive = None if method is None else method(seed, ids, domain)
    if derive is not None:
        return derive
    c0, c1 = ids & rng.MASK32, ids >> 32
    return lambda call: rng.derive_keys(seed, c0, c1, call, domain)
