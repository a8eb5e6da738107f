"""dropkit's exception classes (public, so that callers can catch them by name)."""

from __future__ import annotations

__all__ = ["DistributedSeedWarning", "DtypeError", "SampleKeyError"]


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


class SampleKeyError(ValueError):
    """A random call inside :func:`dropkit.sample_keys` whose mask cannot be keyed by sample.

    Raised when dim 0 of the mask is not the batch the ids describe, or when the mask has
    no per-sample meaning (DropConnect's shared weight mask, embedding dropout's table
    rows). The message names the layer, the sizes and what to do.
    """


class DistributedSeedWarning(UserWarning):
    """Dropout masks drawn from torch's generator in a multi-process (torch.distributed) run.

    Ranks seeded alike draw the same masks for different samples, and the masks of a run
    change with the world size; :func:`dropkit.sample_keys` keys masks by sample instead.
    Shown once per process.
    """
