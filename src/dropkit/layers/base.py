"""What every dropkit module shares: the marker base class, settings checks and ``extra_repr``.

A dropkit module stores its settings, validates them once here, and calls its function
with ``self.training``; its ``forward`` is one line (timm's ``DropPath``, torch's
``_DropoutNd``).
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from dropkit._checks import check_p, check_scaling
from dropkit.backends.packed import check_backward

__all__ = ["DropoutBase", "StochasticModule"]


class StochasticModule(nn.Module):
    """Marker base of every dropkit module that samples in training mode.

    ``dropkit.mc_mode``, ``guard``, ``active_dropout`` and the rate schedules find dropkit's
    layers through it. Subclasses list their settings in ``_repr_fields`` (shown by
    ``extra_repr``), with ``scaling`` shown only when not at its default.
    """

    _repr_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check_rate(cls, p: object) -> float:
        """``p`` as a rate this layer accepts (ValueError/TypeError otherwise): what its
        constructor checks, and what a rate schedule checks before it sets ``p``."""
        return check_p(p)

    def extra_repr(self) -> str:
        parts = [f"{name}={getattr(self, name)}" for name in self._repr_fields]
        scaling = getattr(self, "scaling", "inverted")
        if scaling != "inverted":
            parts.append(f"scaling={scaling!r}")
        return ", ".join(parts)


class DropoutBase(StochasticModule):
    """Settings, checks and repr of the torch.nn twins (like torch's ``_DropoutNd``).

    Args:
        p: the drop probability, in [0, 1]. Default: 0.5.
        inplace: overwrite the input. Default: False.
        scaling: "inverted" (default) or "classic" (keyword only).
        backward: what eager autograd keeps for backward, ``"auto"`` (default), ``"seed"``
            or ``"bits"`` (keyword only; see :func:`dropkit.functional.dropout`).
    """

    __constants__: ClassVar[list[str]] = ["p", "inplace"]
    _repr_fields = ("p", "inplace")
    p: float
    inplace: bool
    backward: str = "auto"  # (the class default serves modules pickled before it existed)

    def __init__(
        self, p: float = 0.5, inplace: bool = False, *, scaling: str = "inverted",
        backward: str = "auto",
    ) -> None:
        super().__init__()
        check_p(p)
        self.p = p
        self.inplace = inplace
        self.scaling = check_scaling(scaling)
        self.backward = check_backward(backward)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.backward == "auto" else f"{text}, backward={self.backward!r}"
