"""Every dropkit variant as a function: validate -> identity fast path -> degenerate case -> kernel.

Papers:
    Hinton et al. 2012, "Improving neural networks by preventing co-adaptation of feature
    detectors"; Srivastava et al. 2014, "Dropout: a simple way to prevent neural networks
    from overfitting" (dropout, both scalings); Tompson et al. 2015, "Efficient object
    localization using convolutional networks" (channel dropout); Klambauer et al. 2017,
    "Self-normalizing neural networks" (alpha dropout). The rest of the family (Gaussian
    dropout, drop path, DropBlock, DropConnect, embedding dropout, concrete dropout, R-Drop)
    lives in ``dropkit._variants`` and is re-exported here; each docstring names its paper.

Naming: ``p`` is always the drop probability, ``training`` the mode flag, ``seed`` the key
of the mask stream (docs/mask-spec.md), ``scaling`` the convention:

- ``"inverted"`` (PyTorch's): training keeps with probability 1-p and scales kept units
  by 1/(1-p); evaluation is the identity.
- ``"classic"`` (the seed document's and the 2014 paper's): training keeps with
  probability 1-p unscaled; evaluation multiplies by (1-p).

Both give ``E[train output] == eval output``. Identity paths (eval with inverted scaling,
``p == 0``, empty input) return ``input`` itself, the same object, as torch does. Every
function defaults to ``training=True`` (one default policy; torch's ``alpha_dropout`` and
``feature_alpha_dropout`` default to False). ``p == 1`` returns ``input * 0``: zeros for
finite input, NaN where the input is NaN or infinite, exactly as torch.
"""

from __future__ import annotations

import warnings

import torch

from dropkit import rng
from dropkit._checks import check_input, check_p, check_scaling, seed_tensor
from dropkit._variants.broadcast import broadcast_mask_shape
from dropkit._variants.concrete import concrete_dropout, concrete_dropout_regularizer
from dropkit._variants.drop_block import drop_block2d
from dropkit._variants.drop_connect import drop_connect
from dropkit._variants.drop_path import drop_path
from dropkit._variants.embedding import embedding_dropout
from dropkit._variants.gaussian import gaussian_dropout
from dropkit._variants.rdrop import rdrop_loss
from dropkit.backends.ops import apply_mask_affine

__all__ = [
    "alpha_dropout",
    "concrete_dropout",
    "concrete_dropout_regularizer",
    "drop_block2d",
    "drop_connect",
    "drop_path",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "embedding_dropout",
    "feature_alpha_dropout",
    "gaussian_dropout",
    "rdrop_loss",
]

# SELU's negative saturation value -lambda * alpha, as torch's alpha dropout uses it.
_SELU_ALPHA = 1.7580993408473766


def _scaled(
    input: torch.Tensor,
    p: float,
    training: bool,
    inplace: bool,
    scaling: str,
    seed: int | None,
    generator: torch.Generator | None,
    mask_shape: list[int],
) -> torch.Tensor:
    """Plain (inverted or classic) dropout with a mask of ``mask_shape`` broadcast over input."""
    if not training:
        if scaling == "inverted" or p == 0.0:
            return input
        return input.mul_(1.0 - p) if inplace else input * (1.0 - p)
    if p == 0.0 or input.numel() == 0:
        return input
    if p == 1.0:
        return input.mul_(0.0) if inplace else input * 0.0
    w_keep = 1.0 / (1.0 - p) if scaling == "inverted" else 1.0
    seed_t = seed_tensor(seed, generator)
    return apply_mask_affine(
        input, seed_t, rng.threshold(p), mask_shape, w_keep, inplace=inplace
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
) -> torch.Tensor:
    r"""Zero each element with probability ``p`` during training. See :class:`dropkit.nn.Dropout`.

    .. math::
        y_i = m_i x_i / (1-p) \text{ (inverted)},\quad y_i = m_i x_i \text{ (classic)},
        \quad m_i = [\text{Philox}(seed, i) \ge \lfloor p 2^{32} \rceil]

    Args:
        input: a floating-point tensor of any shape.
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
    """
    p = check_p(p)
    check_scaling(scaling)
    check_input(input, inplace, "dropout")
    shape = broadcast_mask_shape(input, broadcast_dims, "dropout")
    return _scaled(input, p, training, inplace, scaling, seed, generator, shape)


def _draws(input: torch.Tensor, p: float, training: bool) -> bool:
    """Whether a call reaches the mask (torch checks channel ranks only then)."""
    return training and 0.0 < p < 1.0 and input.numel() > 0


def _channel_mask_shape(input: torch.Tensor) -> list[int]:
    """``[N, C, 1, ..., 1]``: one keep decision per (sample, channel)."""
    if input.dim() < 2:
        raise RuntimeError("Feature dropout requires at least 2 dimensions in the input")
    return [input.shape[0], input.shape[1]] + [1] * (input.dim() - 2)


def _feature_dropout(
    input: torch.Tensor,
    p: float,
    training: bool,
    inplace: bool,
    scaling: str,
    seed: int | None,
    generator: torch.Generator | None,
    batched: bool,
) -> torch.Tensor:
    """Channel dropout on a batched view; unbatched input gets a batch axis of 1 and loses it."""
    view = input if batched else input.unsqueeze(0)
    shape = _channel_mask_shape(view) if _draws(input, p, training) else []
    out = _scaled(view, p, training, inplace, scaling, seed, generator, shape)
    if out is view:
        return input
    return out if batched else out.squeeze(0)


def dropout1d(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    scaling: str = "inverted",
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Zero whole channels of ``(N, C, L)`` or ``(C, L)`` input. See :class:`dropkit.nn.Dropout1d`.

    .. math:: y_{n,c,:} = m_{n,c}\, x_{n,c,:} \cdot s,\quad s = 1/(1-p) \text{ or } 1

    Args: as :func:`dropout`; ``p`` is the probability of zeroing a channel.

    Shape: input ``(N, C, L)`` or ``(C, L)``; output the same.

    Example:
        >>> import torch
        >>> from dropkit.functional import dropout1d
        >>> y = dropout1d(torch.ones(2, 3, 4), 0.5, seed=1)
        >>> all(len(set(ch.tolist())) == 1 for ch in y.reshape(6, 4))
        True
    """
    p = check_p(p)
    check_scaling(scaling)
    check_input(input, inplace, "dropout1d")
    if input.dim() not in (2, 3):
        raise RuntimeError(
            f"dropout1d: Expected 2D or 3D input, but received a {input.dim()}D input. "
            "Note that dropout1d exists to provide channel-wise dropout on inputs with 1 "
            "spatial dimension, a channel dimension, and an optional batch dimension "
            "(i.e. 2D or 3D inputs)."
        )
    return _feature_dropout(
        input, p, training, inplace, scaling, seed, generator, batched=input.dim() == 3
    )


def dropout2d(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    scaling: str = "inverted",
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Zero whole channels of ``(N, C, H, W)`` input. See :class:`dropkit.nn.Dropout2d`.

    .. math:: y_{n,c,:,:} = m_{n,c}\, x_{n,c,:,:} \cdot s

    Like torch, a 3D input is read as ``(N, C, L)`` (with torch's warning) and other ranks
    warn that they are deprecated.

    Args: as :func:`dropout`; ``p`` is the probability of zeroing a channel.

    Shape: input ``(N, C, H, W)`` (or ``(N, C, L)``); output the same.

    Example:
        >>> import torch
        >>> from dropkit.functional import dropout2d
        >>> dropout2d(torch.ones(2, 3, 4, 4), 0.5, seed=3).shape
        torch.Size([2, 3, 4, 4])
    """
    p = check_p(p)
    check_scaling(scaling)
    check_input(input, inplace, "dropout2d")
    dim = input.dim()
    if dim not in (3, 4):
        warnings.warn(
            f"dropout2d: Received a {dim}-D input to dropout2d, which is deprecated "
            "and will result in an error in a future release. To retain the behavior "
            "and silence this warning, please use dropout instead. Note that dropout2d "
            "exists to provide channel-wise dropout on inputs with 2 spatial dimensions, "
            "a channel dimension, and an optional batch dimension (i.e. 3D or 4D inputs).",
            stacklevel=2,
        )
    if dim == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise "
            "1D dropout behavior is desired - input is interpreted as shape (N, C, L), where C "
            "is the channel dim. This behavior will change in a future release to interpret the "
            "input as one without a batch dimension, i.e. shape (C, H, W). To maintain the 1D "
            "channel-wise dropout behavior, please switch to using dropout1d instead.",
            stacklevel=2,
        )
    return _feature_dropout(input, p, training, inplace, scaling, seed, generator, batched=True)


def dropout3d(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    scaling: str = "inverted",
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Zero whole channels of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input.

    See :class:`dropkit.nn.Dropout3d`.

    .. math:: y_{n,c,:,:,:} = m_{n,c}\, x_{n,c,:,:,:} \cdot s

    Args: as :func:`dropout`; ``p`` is the probability of zeroing a channel.

    Shape: input ``(N, C, D, H, W)`` or ``(C, D, H, W)``; output the same.

    Example:
        >>> import torch
        >>> from dropkit.functional import dropout3d
        >>> dropout3d(torch.ones(3, 2, 2, 2), 0.5, seed=0).shape
        torch.Size([3, 2, 2, 2])
    """
    p = check_p(p)
    check_scaling(scaling)
    check_input(input, inplace, "dropout3d")
    dim = input.dim()
    if dim not in (4, 5):
        warnings.warn(
            f"dropout3d: Received a {dim}-D input to dropout3d, which is deprecated "
            "and will result in an error in a future release. To retain the behavior "
            "and silence this warning, please use dropout instead. Note that dropout3d "
            "exists to provide channel-wise dropout on inputs with 3 spatial dimensions, "
            "a channel dimension, and an optional batch dimension (i.e. 4D or 5D inputs).",
            stacklevel=2,
        )
    return _feature_dropout(
        input, p, training, inplace, scaling, seed, generator, batched=dim == 5
    )


def _alpha(
    input: torch.Tensor,
    p: float,
    training: bool,
    inplace: bool,
    seed: int | None,
    generator: torch.Generator | None,
    mask_shape: list[int],
) -> torch.Tensor:
    """Alpha dropout with torch's constants: kept ``a*x + alpha*a*p``, dropped ``alpha*a*(p-1)``."""
    if not training or p == 0.0 or input.numel() == 0:
        return input
    if p == 1.0:
        return input.mul_(0.0) if inplace else input * 0.0
    a = 1.0 / ((_SELU_ALPHA * _SELU_ALPHA * p + 1.0) * (1.0 - p)) ** 0.5
    return apply_mask_affine(
        input,
        seed_tensor(seed, generator),
        rng.threshold(p),
        mask_shape,
        w_keep=a,
        w_drop=0.0,
        b_keep=_SELU_ALPHA * a * p,
        b_drop=_SELU_ALPHA * a * (p - 1.0),
        inplace=inplace,
    )


def alpha_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Alpha dropout for SELU networks: keeps mean 0 and variance 1 (see ``nn.AlphaDropout``).

    .. math::
        y = a\,(m x + \alpha'(1 - m)) + b,\quad \alpha' = -1.7581,\quad
        a = ((1-p)(1 + p\alpha'^2))^{-1/2},\quad b = -a \alpha' p

    There is no ``scaling`` keyword: the affine correction is part of the method.

    Args: ``input``, ``p``, ``training``, ``inplace``, ``seed``, ``generator`` as :func:`dropout`.

    Shape: input ``(*)``, output ``(*)``.

    Example:
        >>> import torch
        >>> from dropkit.functional import alpha_dropout
        >>> x = torch.randn(10000)
        >>> abs(float(alpha_dropout(x, 0.2, seed=0).std()) - 1.0) < 0.05
        True
    """
    p = check_p(p)
    check_input(input, inplace, "alpha_dropout")
    return _alpha(input, p, training, inplace, seed, generator, list(input.shape))


def feature_alpha_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Alpha dropout of whole channels. See :class:`dropkit.nn.FeatureAlphaDropout`.

    .. math:: y_{n,c,\ldots} = a\,(m_{n,c} x_{n,c,\ldots} + \alpha'(1 - m_{n,c})) + b

    Args: as :func:`alpha_dropout`; ``p`` is the probability of masking a channel.

    Shape: input ``(N, C, *)``, output the same.

    Example:
        >>> import torch
        >>> from dropkit.functional import feature_alpha_dropout
        >>> feature_alpha_dropout(torch.zeros(2, 3, 5), 0.5, seed=0).shape
        torch.Size([2, 3, 5])
    """
    p = check_p(p)
    check_input(input, inplace, "feature_alpha_dropout")
    shape = _channel_mask_shape(input) if _draws(input, p, training) else []
    return _alpha(input, p, training, inplace, seed, generator, shape)
