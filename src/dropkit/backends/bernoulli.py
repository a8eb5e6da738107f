"""The Bernoulli mask op ``dropkit::mask_affine``: the op under every keep/drop variant.

``y = x * w + b`` with ``(w, b) = (w_keep, b_keep)`` where the spec's mask keeps and
``(w_drop, b_drop)`` where it drops. The mask has ``mask_shape`` (``x.shape`` with some
dimensions set to 1, broadcast along them) and follows docs/mask-spec.md for any keys
(scalar or per-row, any offset). When the mask has ``x``'s shape and there is no bias, the
backend draws and scales in one pass (no mask in memory). Registered through
:class:`dropkit.backends.seeded.SeededMultiply`: backward regenerates the mask from the
keys, and nothing per element is saved.

Its parameters travel as ``ints = [thresh, *mask_shape]`` and
``floats = [w_keep, w_drop, b_keep, b_drop]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dropkit.backends import keyed, packed
from dropkit.backends.seeded import MaskGeometry, SeededMultiply

__all__ = ["MASK_AFFINE", "mask_affine"]


def _multiplier(
    shape: tuple[int, ...],
    seed: torch.Tensor,
    offset: int,
    ints: Sequence[int],
    floats: Sequence[float],
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    thresh, mask_shape = int(ints[0]), [int(s) for s in ints[1:]]
    w_keep, w_drop, b_keep, b_drop = floats

    def select(a: float, b: float) -> torch.Tensor:
        # ``1 * (a if keep else b)`` through the fused kernel: exactly the selected value,
        # rounded to ``dtype`` as torch.tensor(a, dtype) would, with no mask in memory.
        out = torch.ones(mask_shape, dtype=dtype, device=device)
        keyed.scale(out, out, seed, offset, thresh, a, b)
        return out

    if b_keep == 0.0 and b_drop == 0.0:
        return select(w_keep, w_drop), None
    pair = keyed.select_pair(seed, offset, math.prod(mask_shape), thresh, tuple(floats),
                             dtype, device)  # (both halves from one draw, where it can)
    if pair is not None:
        return pair[0].view(mask_shape), pair[1].view(mask_shape)
    return select(w_keep, w_drop), select(b_keep, b_drop)


def _fused(
    x: torch.Tensor,
    out: torch.Tensor | None,
    seed: torch.Tensor,
    offset: int,
    ints: Sequence[int],
    floats: Sequence[float],
    bias: bool,
) -> torch.Tensor | None:
    """One backend pass, no mask in memory, when the mask covers leading dimensions of ``x``.

    A per-element mask without bias runs the (parallel) scale kernel; a mask
    ``[N, C, 1, ..., 1]`` (channel dropout, drop path) or any bias (alpha dropout) runs the
    grouped kernel when the backend takes it. Anything else: None (the multiplier path).
    """
    w_keep, w_drop, b_keep, b_drop = floats
    if not bias:
        b_keep = b_drop = 0.0
    thresh = int(ints[0])
    shape, mask_shape = tuple(x.shape), tuple(ints[1:])  # (tuples: compared in C)
    if b_keep == 0.0 and b_drop == 0.0 and mask_shape == shape:  # the common case
        return _per_element(x, out, seed, offset, thresh, w_keep, w_drop)
    dims = len(shape)
    if len(mask_shape) != dims:
        return None
    # The mask must read [outer dims, broadcast dims (1), inner dims] against x's shape.
    lead = 0
    while lead < dims and mask_shape[lead] == shape[lead]:
        lead += 1
    end = lead
    while end < dims and mask_shape[end] == 1:
        end += 1
    if mask_shape[end:] != shape[end:]:
        return None  # more than one broadcast block: the multiplier path
    if lead < dims or b_keep != 0.0 or b_drop != 0.0:
        if not x.is_contiguous() or x.numel() == 0:
            return None
        target = torch.empty_like(x) if out is None else x
        weights = (w_keep, w_drop, b_keep, b_drop)
        mid, inner = math.prod(shape[lead:end]), math.prod(shape[end:])
        if keyed.scale_groups(x, target, seed, offset, mid, inner, thresh, weights):
            return target
        return None
    return _per_element(x, out, seed, offset, thresh, w_keep, w_drop)


def _per_element(
    x: torch.Tensor,
    out: torch.Tensor | None,
    seed: torch.Tensor,
    offset: int,
    thresh: int,
    w_keep: float,
    w_drop: float,
) -> torch.Tensor:
    """A per-element mask without bias: the backend's fused (parallel) scale kernel."""
    if x.is_contiguous():
        target = torch.empty_like(x) if out is None else x
        keyed.scale(x, target, seed, offset, thresh, w_keep, w_drop)
        return target
    xc = x.contiguous()  # logical order: element i of the spec is xc.view(-1)[i]
    res = torch.empty_like(xc)
    keyed.scale(xc, res, seed, offset, thresh, w_keep, w_drop)
    return (torch.empty_like(x) if out is None else out).copy_(res)


MASK_AFFINE = SeededMultiply(
    "mask_affine",
    _multiplier,
    _fused,
    mask=MaskGeometry(
        shape_of=lambda x_shape, ints: [int(m) for m in ints[1:]],
        with_shape=lambda ints, shape: (tuple(shape), [int(ints[0]), *shape]),
    ),
    bits=packed.mask_affine_bits,
)


def mask_affine(
    x: torch.Tensor,
    seed: torch.Tensor,
    offset: int,
    thresh: int,
    mask_shape: Sequence[int],
    w_keep: float,
    w_drop: float = 0.0,
    b_keep: float = 0.0,
    b_drop: float = 0.0,
    *,
    inplace: bool = False,
    backward: str = "auto",
) -> torch.Tensor:
    """Apply the masked affine map with the call's keys ``(seed, offset)``; ``backward``
    is what eager autograd keeps (``dropkit.backends.packed``).

    Example:
        >>> import torch
        >>> y = mask_affine(torch.ones(8), torch.tensor(0), 0, 2**31, [8], 2.0)
        >>> sorted(set(y.tolist())) == [0.0, 2.0]
        True
    """
    ints = [thresh, *mask_shape]
    floats = [w_keep, w_drop, b_keep, b_drop]
    return MASK_AFFINE.apply(x, seed, offset, ints, floats, inplace=inplace, backward=backward)
