"""Seeded ops on sharded tensors (``torch.distributed.tensor.DTensor``), without communication.

A mask is a function of (keys, global element index), so each shard can draw its own part of
the global mask (a ``Partial`` tensor's summands are each multiplied by the mask, which is
exact for a mask without bias, as in the backward of a column-parallel layer's input; with a
bias, alpha dropout's, it is refused): from the mesh and the placements it knows which
global indices its local elements hold (uneven shards and 2-D meshes included), draws the
smallest flat range of the global mask stream that covers them, and picks its elements out
of it. The result is a DTensor with the input's placements whose full tensor equals the op
on the full tensor, bit for bit; backward (the same op on the gradient) works the same way.

Registered through ``torch.library``'s extension point for tensor subclasses
(``CustomOpDef.register_torch_dispatch``), once per :class:`SeededMultiply` that declares its
:class:`~dropkit.backends.seeded.MaskGeometry`, on the first DTensor call (so importing
dropkit does not import ``torch.distributed.tensor``).

Cost: a shard whose local block is one contiguous run of the global mask (``Shard(0)``,
``Replicate``, shards of leading dims) draws exactly its own elements; a shard along an inner
dim draws the flat range from its first to its last element (up to the mesh size times its
own share), then gathers.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dropkit.backends.base import opmath_dtype
from dropkit.backends.seeded import SeededMultiply

__all__ = ["register", "sharded_apply"]


def register(op: SeededMultiply) -> None:
    """Register ``op``'s DTensor rule (idempotent per op)."""
    from torch.distributed.tensor import DTensor

    def rule(mode: Any, func: Any, types: Any, args: tuple, kwargs: dict) -> torch.Tensor:
        return sharded_apply(op, *args, **kwargs)

    op.op.register_torch_dispatch(DTensor, rule)


def _block(
    mask_shape: list[int], local_shape: tuple[int, ...], offset: tuple[int, ...]
) -> tuple[list[int], list[int]]:
    """Start and length of the local block of the mask, per dim (a broadcast dim: 0, 1)."""
    starts = [0 if m == 1 else o for m, o in zip(mask_shape, offset, strict=True)]
    lens = [1 if m == 1 else n for m, n in zip(mask_shape, local_shape, strict=True)]
    return starts, lens


def _flat_indices(
    shape: list[int], starts: list[int], lens: list[int], device: torch.device
) -> torch.Tensor:
    """Row-major flat indices into ``shape`` of the block ``starts + [0, lens)``: ``[*lens]``."""
    idx = torch.zeros(lens, dtype=torch.int64, device=device)
    stride = 1
    for k in range(len(shape) - 1, -1, -1):
        view = [1] * len(shape)
        view[k] = lens[k]
        idx += (torch.arange(lens[k], dtype=torch.int64, device=device) + starts[k]).view(
            view
        ) * stride
        stride *= shape[k]
    return idx


def sharded_apply(
    op: SeededMultiply,
    x: Any,
    seed: torch.Tensor,
    offset: int,
    ints: list[int],
    floats: list[float],
    bias: bool,
) -> Any:
    """``op`` on a DTensor ``x``: each shard computes its part of the global result."""
    from torch.distributed.tensor import DTensor, Partial
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    if op.mask is None:
        raise NotImplementedError(
            f"dropkit::{op.name} has no rule for sharded tensors (its mask is not elementwise "
            "over a fixed shape); call it on x.full_tensor() or on the local tensor"
        )
    partial = any(isinstance(p, Partial) for p in x.placements)
    if isinstance(seed, DTensor):
        seed = seed.full_tensor()
    local = x.to_local()
    global_shape = list(x.shape)
    local_shape, global_offset = compute_local_shape_and_global_offset(
        x.shape, x.device_mesh, x.placements
    )
    mask_shape = op.mask.shape_of(global_shape, ints)
    dtype = opmath_dtype(local.dtype)
    if local.numel() == 0:
        y = local.clone()
    else:
        starts, lens = _block(mask_shape, tuple(local_shape), tuple(global_offset))
        if seed.dim() == 1:  # per-row keys: the rows are dim 0 of the mask
            keys = seed[starts[0] : starts[0] + lens[0]]
            inner, i_starts, i_lens = mask_shape[1:], starts[1:], lens[1:]
        else:
            keys, inner, i_starts, i_lens = seed, mask_shape, starts, lens
        idx = _flat_indices(inner, i_starts, i_lens, torch.device("cpu"))
        lo = int(idx.min()) if idx.numel() else 0
        hi = int(idx.max()) if idx.numel() else -1
        run = [hi - lo + 1] if seed.dim() == 0 else [lens[0], hi - lo + 1]
        shape, op_ints = op.mask.with_shape(ints, run)
        w, b = op._multiplier(shape, keys, offset + lo, op_ints, floats, local.device, dtype)
        if partial and bias and b is not None:
            raise ValueError(
                f"dropkit::{op.name}: a DTensor with a Partial placement ({x.placements}) "
                "holds summands, and this mask adds a bias, which summands cannot share; "
                "redistribute it to Replicate or Shard first (x.redistribute(mesh, "
                "[Replicate()]))"
            )
        pick = (idx - lo).reshape(-1).to(local.device)
        w = _gather(w, run, pick, lens)
        y = local.to(dtype) * w
        if bias and b is not None:
            y = y + _gather(b, run, pick, lens)
        y = y.to(local.dtype)
    return DTensor.from_local(
        y, x.device_mesh, x.placements, shape=x.shape, stride=x.stride(), run_check=False
    )


def _gather(t: torch.Tensor, run: list[int], pick: torch.Tensor, lens: list[int]) -> torch.Tensor:
    """The local block's entries of a multiplier drawn over ``run``, shaped ``lens``."""
    flat = t.reshape(math.prod(run[:-1]), run[-1])  # [rows (1 for scalar keys), run]
    return flat[:, pick].reshape(lens)
