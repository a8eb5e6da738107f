"""Dropout: zero each unit with probability p in training; the seed document's algorithm.

During training each element is kept with probability ``1 - p`` (the mask spec's draw,
docs/mask-spec.md) and either rescaled by ``1/(1-p)`` (``"inverted"``, PyTorch's) or left
as is (``"classic"``, the 2014 paper's and the seed document's, which instead multiplies by
``1 - p`` at test time). Both give ``E[train output] == eval output``.

Papers: Hinton et al. 2012, "Improving neural networks by preventing co-adaptation of feature
detectors"; Srivastava et al. 2014, "Dropout: a simple way to prevent neural networks from
overfitting", JMLR 15.
"""

from __future__ import annotations

import numbers

import torch

from dropkit import keys, rng
from dropkit._checks import (
    check_dtype,
    check_input,
    check_p,
    check_scaling,
    check_training,
    check_writable,
    zeros_like_product,
)
from dropkit.backends.bernoulli import mask_affine
from dropkit.backends.packed import check_backward
from dropkit.layers.base import DropoutBase

__all__ = ["Dropout", "broadcast_mask_shape", "dropout", "scaled_dropout"]


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


def scaled_dropout(
    input: torch.Tensor,
    p: float,
    training: bool,
    inplace: bool,
    scaling: str,
    seed: int | None,
    generator: torch.Generator | None,
    mask_shape: list[int] | None,
    name: str,
    backward: str = "auto",
) -> torch.Tensor:
    """Inverted or classic dropout with a mask of ``mask_shape`` (None: ``input.shape``);
    ``backward``: what eager autograd keeps (``dropkit.backends.packed``).

    The order of every dropkit function: identity paths (returning ``input`` itself, any
    dtype, as torch), ``p == 1`` (``input * 0``, any dtype, as torch), the dtype and
    in-place checks, then the keys and the op.
    """
    if not training:
        if scaling == "inverted" or p == 0.0:
            return input
        check_writable(check_dtype(input, name), inplace, name)
        return input.mul_(1.0 - p) if inplace else input * (1.0 - p)
    if p == 0.0 or input.numel() == 0:
        return input
    check_writable(input, inplace, name)
    if p == 1.0:
        return zeros_like_product(input, inplace)
    check_dtype(input, name)
    shape = list(input.shape) if mask_shape is None else mask_shape
    key = keys.resolve(seed, generator, shape, name=name, p=p)
    w_keep = 1.0 / (1.0 - p) if scaling == "inverted" else 1.0
    return mask_affine(
        input, key.seed, key.offset, rng.threshold(p), shape, w_keep, inplace=inplace,
        backward=backward,
    )


def dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    scaling: str = "inverted",
    seed: int | None = None,
    generator: torch.Generator | None = None,
    broadcast_dims: tuple[int, ...] = (),
    backward: str = "auto",
) -> torch.Tensor:
    r"""Zero each element with probability ``p`` during training. See :class:`Dropout`.

    .. math::
        y_i = m_i x_i / (1-p) \text{ (inverted)},\quad y_i = m_i x_i \text{ (classic)},
        \quad m_i = [\text{Philox}(seed, i) \ge \lfloor p 2^{32} \rceil]

    Args:
        input: a tensor of any shape (floating point whenever units are dropped).
        p: drop probability in [0, 1]. Default: 0.5.
        training: apply dropout if True; otherwise the evaluation rule. Default: True.
        inplace: overwrite ``input``. Default: False.
        scaling: "inverted" (default) or "classic".
        seed: the mask's 64-bit key; the output is then a pure function of
            (input, p, seed) on every device. None draws one from ``generator``.
        generator: where a fresh seed comes from when ``seed`` is None (default: torch's
            default CPU generator, so ``torch.manual_seed`` reproduces a run).
        broadcast_dims: dimensions along which one mask is shared (negative allowed), as
            Flax's ``broadcast_dims`` and Keras' ``noise_shape``: the mask has ``input.shape``
            with these dimensions set to 1, drawn with the spec over that smaller shape.
            Default: ``()`` (one decision per element).
        backward: what eager autograd keeps for backward: ``"seed"`` (the key only, 0
            bytes per element: backward regenerates the mask), ``"bits"`` (the mask packed
            one bit per element, 0.125 bytes: backward unpacks it, no Philox) or ``"auto"``
            (default: a mask of at most 16 KiB as torch's own multiplier, larger ones as
            ``"seed"``). The same bits either way; forward AD, ``torch.func`` and compiled
            graphs always regenerate.

    Identity paths (inverted evaluation, ``p == 0``, empty input) return ``input`` itself,
    whatever its dtype, as torch does; ``p == 1`` returns ``input * 0``.

    Shape: input ``(*)``, output ``(*)`` (same shape, same memory format).

    Example:
        >>> import torch
        >>> from dropkit.functional import dropout
        >>> y = dropout(torch.ones(8), p=0.5, seed=0)
        >>> sorted(set(y.tolist())) in ([0.0, 2.0], [0.0], [2.0])
        True
        >>> torch.equal(y, dropout(torch.ones(8), p=0.5, seed=0))
        True
        >>> z = dropout(torch.ones(2, 5, 3), 0.5, seed=0, broadcast_dims=(1,))
        >>> bool((z == z[:, :1]).all())  # one mask for every step along dim 1
        True

    Paper: Srivastava et al. 2014, "Dropout: a simple way to prevent neural networks from
    overfitting", JMLR 15.
    """
    p = check_p(p)
    check_training(training, "dropout")
    check_scaling(scaling)
    check_backward(backward)
    check_input(input, inplace, "dropout")
    shape = broadcast_mask_shape(input, broadcast_dims, "dropout") if broadcast_dims else None
    return scaled_dropout(input, p, training, inplace, scaling, seed, generator, shape, "dropout",
                          backward)


class Dropout(DropoutBase):
    r"""During training, zero each element with probability ``p``; the seed's algorithm exactly.

    .. math::
        \text{training: } y = m \odot x \cdot s,\ m_i \sim \text{Bernoulli}(1-p);\quad
        \text{inverted: } s = \tfrac{1}{1-p},\ y_\text{eval} = x;\quad
        \text{classic: } s = 1,\ y_\text{eval} = (1-p)\,x

    Either way ``E[y_train] = y_eval``. ``Dropout(p, scaling="classic")`` is the original
    paper's (and the seed document's) formulation; the default is PyTorch's.

    Args:
        p: probability of an element to be zeroed. Default: 0.5
        inplace: If set to ``True``, will do this operation in-place. Default: ``False``
        scaling: "inverted" (default) or "classic".
        backward: what autograd keeps for backward, ``"auto"`` (default), ``"seed"`` (0
            bytes per element) or ``"bits"`` (a 1-bit mask): see
            :func:`dropkit.functional.dropout`. Keyword only.

    Every forward draws a fresh mask key from torch's default generator, so
    ``torch.manual_seed`` reproduces a run; pass ``seed=`` to the functional for a fixed key.

    Shape:
        - Input: :math:`(*)`. Output: :math:`(*)`, same shape.

    Example:
        >>> import torch
        >>> from dropkit.nn import Dropout
        >>> m = Dropout(p=0.2)
        >>> m(torch.randn(20, 16)).shape
        torch.Size([20, 16])
        >>> m.eval()(torch.ones(3)).tolist()
        [1.0, 1.0, 1.0]

    Paper: Srivastava et al. 2014, "Dropout: a simple way to prevent neural networks from
    overfitting", JMLR 15.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return dropout(input, self.p, self.training, self.inplace, scaling=self.scaling,
                       backward=self.backward)
