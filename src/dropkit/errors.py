"""dropkit's exception classes (public, so that callers can catch them by name)."""

from __future__ import annotations

__all__ = ["DtypeError"]


class DtypeError(TypeError, NotImplementedError):
    """A random op was asked to drop units of a tensor that is not floating point.

    It is a ``TypeError`` (dropkit's rule for a bad type) and a ``RuntimeError`` /
    ``NotImplementedError`` (what torch raises for integer, bool and complex input to its
    dropouts), so code written to catch torch's error keeps working. When nothing is
    dropped (evaluation, ``p == 0``, an empty tensor) such inputs pass through untouched, as
    in torch.

    Example:
        >>> import torch, dropkit
        >>> try:
        ...     dropkit.functional.dropout(torch.ones(3, dtype=torch.long), 0.5)
        ... except RuntimeError as err:
        ...     isinstance(err, TypeError)
        True
    """
