"""Channel dropout: zero whole channels (feature maps) of 1D, 2D and 3D inputs.

One keep decision per (sample, channel), the mask ``[N, C]`` (element index ``n*C + c``)
broadcast over the spatial dimensions. Ranks, warnings and errors follow torch's
``dropout1d`` / ``dropout2d`` / ``dropout3d`` exactly.

Paper: Tompson et al. 2015, "Efficient object localization using convolutional networks".
"""

from __future__ import annotations

import warnings

import torch

from dropkit._checks import check_input, check_p, check_scaling, check_training
from dropkit.backends.packed import check_backward
from dropkit.layers.base import DropoutBase
from dropkit.layers.dropout import scaled_dropout

__all__ = [
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "channel_mask_shape",
    "draws",
    "dropout1d",
    "dropout2d",
    "dropout3d",
]


def draws(input: torch.Tensor, p: float, training: bool) -> bool:
    """Whether a call reaches the mask (torch checks channel ranks only then)."""
    return training and 0.0 < p < 1.0 and input.numel() > 0


def channel_mask_shape(input: torch.Tensor) -> list[int]:
    """``[N, C, 1, ..., 1]``: one keep decision per (sample, channel).

    Example:
        >>> import torch
        >>> channel_mask_shape(torch.empty(2, 3, 4, 5))
        [2, 3, 1, 1]
    """
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
    name: str,
    backward: str,
) -> torch.Tensor:
    """Channel dropout on a batched view; unbatched input gets a batch axis of 1 and loses it."""
    view = input if batched else input.unsqueeze(0)
    shape = channel_mask_shape(view) if draws(input, p, training) else None
    out = scaled_dropout(view, p, training, inplace, scaling, seed, generator, shape, name,
                         backward)
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
    backward: str = "auto",
) -> torch.Tensor:
    r"""Zero whole channels of ``(N, C, L)`` or ``(C, L)`` input. See :class:`Dropout1d`.

    .. math:: y_{n,c,:} = m_{n,c}\, x_{n,c,:} \cdot s,\quad s = 1/(1-p) \text{ or } 1

    Args: as :func:`dropkit.functional.dropout`; ``p`` is the probability of zeroing a
    channel.

    Shape: input ``(N, C, L)`` or ``(C, L)``; output the same.

    Example:
        >>> import torch
        >>> from dropkit.functional import dropout1d
        >>> y = dropout1d(torch.ones(2, 3, 4), 0.5, seed=1)
        >>> all(len(set(ch.tolist())) == 1 for ch in y.reshape(6, 4))
        True

    Paper: Tompson et al. 2015, "Efficient object localization using convolutional networks".
    """
    p = check_p(p)
    check_training(training, "dropout1d")
    check_scaling(scaling)
    check_backward(backward)
    check_input(input, inplace, "dropout1d")
    if input.dim() not in (2, 3):
        raise RuntimeError(
            f"dropout1d: Expected 2D or 3D input, but received a {input.dim()}D input. "
            "Note that dropout1d exists to provide channel-wise dropout on inputs with 1 "
            "spatial dimension, a channel dimension, and an optional batch dimension "
            "(i.e. 2D or 3D inputs)."
        )
    batched = input.dim() == 3
    return _feature_dropout(
        input, p, training, inplace, scaling, seed, generator, batched, "dropout1d", backward
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
    backward: str = "auto",
) -> torch.Tensor:
    r"""Zero whole channels of ``(N, C, H, W)`` input. See :class:`Dropout2d`.

    .. math:: y_{n,c,:,:} = m_{n,c}\, x_{n,c,:,:} \cdot s

    Like torch, a 3D input is read as ``(N, C, L)`` (with torch's warning) and other ranks
    warn that they are deprecated.

    Args: as :func:`dropkit.functional.dropout`; ``p`` is the probability of zeroing a
    channel.

    Shape: input ``(N, C, H, W)`` (or ``(N, C, L)``); output the same.

    Example:
        >>> import torch
        >>> from dropkit.functional import dropout2d
        >>> dropout2d(torch.ones(2, 3, 4, 4), 0.5, seed=3).shape
        torch.Size([2, 3, 4, 4])

    Paper: Tompson et al. 2015, "Efficient object localization using convolutional networks".
    """
    p = check_p(p)
    check_training(training, "dropout2d")
    check_scaling(scaling)
    check_backward(backward)
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
    return _feature_dropout(
        input, p, training, inplace, scaling, seed, generator, True, "dropout2d", backward
    )


def dropout3d(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    scaling: str = "inverted",
    seed: int | None = None,
    generator: torch.Generator | None = None,
    backward: str = "auto",
) -> torch.Tensor:
    r"""Zero whole channels of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input.

    See :class:`Dropout3d`.

    .. math:: y_{n,c,:,:,:} = m_{n,c}\, x_{n,c,:,:,:} \cdot s

    Args: as :func:`dropkit.functional.dropout`; ``p`` is the probability of zeroing a
    channel.

    Shape: input ``(N, C, D, H, W)`` or ``(C, D, H, W)``; output the same.

    Example:
        >>> import torch
        >>> from dropkit.functional import dropout3d
        >>> dropout3d(torch.ones(3, 2, 2, 2), 0.5, seed=0).shape
        torch.Size([3, 2, 2, 2])

    Paper: Tompson et al. 2015, "Efficient object localization using convolutional networks".
    """
    p = check_p(p)
    check_training(training, "dropout3d")
    check_scaling(scaling)
    check_backward(backward)
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
        input, p, training, inplace, scaling, seed, generator, dim == 5, "dropout3d", backward
    )


class Dropout1d(DropoutBase):
    r"""Zero whole channels (1D feature maps) of ``(N, C, L)`` or ``(C, L)`` input.

    .. math:: y_{n,c,:} = m_{n,c}\, x_{n,c,:}\, s

    Args: as :class:`dropkit.nn.Dropout`; ``p`` is the probability of zeroing a channel.

    Shape:
        - Input: :math:`(N, C, L)` or :math:`(C, L)`. Output: same shape.

    Example:
        >>> import torch
        >>> from dropkit.nn import Dropout1d
        >>> Dropout1d(p=0.2)(torch.randn(20, 16, 32)).shape
        torch.Size([20, 16, 32])

    Paper: Tompson et al. 2015, "Efficient object localization using convolutional networks".
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return dropout1d(input, self.p, self.training, self.inplace, scaling=self.scaling,
                         backward=self.backward)


class Dropout2d(DropoutBase):
    r"""Zero whole channels (2D feature maps) of ``(N, C, H, W)`` input.

    .. math:: y_{n,c,:,:} = m_{n,c}\, x_{n,c,:,:}\, s

    Args: as :class:`dropkit.nn.Dropout`; ``p`` is the probability of zeroing a channel.

    Shape:
        - Input: :math:`(N, C, H, W)` (a 3D input is read as :math:`(N, C, L)`, with
          torch's warning). Output: same shape.

    Example:
        >>> import torch
        >>> from dropkit.nn import Dropout2d
        >>> Dropout2d(p=0.2)(torch.randn(20, 16, 32, 32)).shape
        torch.Size([20, 16, 32, 32])

    Paper: Tompson et al. 2015, "Efficient object localization using convolutional networks".
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return dropout2d(input, self.p, self.training, self.inplace, scaling=self.scaling,
                         backward=self.backward)


class Dropout3d(DropoutBase):
    r"""Zero whole channels (3D feature maps) of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input.

    .. math:: y_{n,c,:,:,:} = m_{n,c}\, x_{n,c,:,:,:}\, s

    Args: as :class:`dropkit.nn.Dropout`; ``p`` is the probability of zeroing a channel.

    Shape:
        - Input: :math:`(N, C, D, H, W)` or :math:`(C, D, H, W)`. Output: same shape.

    Example:
        >>> import torch
        >>> from dropkit.nn import Dropout3d
        >>> Dropout3d(p=0.2)(torch.randn(2, 4, 3, 3, 3)).shape
        torch.Size([2, 4, 3, 3, 3])

    Paper: Tompson et al. 2015, "Efficient object localization using convolutional networks".
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return dropout3d(input, self.p, self.training, self.inplace, scaling=self.scaling,
                         backward=self.backward)
