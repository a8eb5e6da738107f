"""``broadcast_dims``: one mask shared along some dimensions (Flax / Keras ``noise_shape``)."""

from __future__ import annotations

import numbers

import torch

__all__ = ["broadcast_mask_shape"]


def broadcast_mask_shape(input: torch.Tensor, broadcast_dims: object, name: str) -> list[int]:
    """``input.shape`` with every dimension of ``broadcast_dims`` set to 1 (negatives allowed).

    TypeError unless ``broadcast_dims`` is a tuple or list of ints; ValueError for a
    dimension out of range or named twice.

    Example:
        >>> import torch
        >>> broadcast_mask_shape(torch.empty(2, 3, 4), (-1, 0), "dropout")
        [1, 3, 1]
    """
    if not isinstance(broadcast_dims, (tuple, list)):
        raise TypeError(
            f"{name}: broadcast_dims must be a tuple of ints, but got "
            f"{type(broadcast_dims).__name__} {broadcast_dims!r}; e.g. broadcast_dims=(1,)"
        )
    shape = list(input.shape)
    rank = len(shape)
    seen: set[int] = set()
    for d in broadcast_dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(
                f"{name}: broadcast_dims entries must be ints, but got {type(d).__name__} {d!r}"
            )
        if not -rank <= int(d) < rank:
            raise ValueError(
                f"{name}: broadcast dimension {d} is out of range for a {rank}-D input "
                f"(valid: {-rank} .. {rank - 1})"
            )
        dim = int(d) % rank
        if dim in seen:
            raise ValueError(
                f"{name}: dimension {dim} appears twice in broadcast_dims {broadcast_dims!r}"
            )
        seen.add(dim)
        shape[dim] = 1
    return shape
