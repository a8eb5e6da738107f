"""Every dropkit variant as a function (re-exported from :mod:`dropkit.layers`).

The torch twins (``dropout``, ``dropout1d/2d/3d``, ``alpha_dropout``,
``feature_alpha_dropout``) keep torch's signatures and defaults, ``training=False`` for the
two alpha functions included, and add keyword-only arguments: ``scaling``, ``seed``,
``generator`` (and ``broadcast_dims`` for ``dropout``).

Naming: ``p`` is always the drop probability, ``training`` the mode flag, ``seed`` the key
of the mask stream (docs/mask-spec.md), ``scaling`` the convention:

- ``"inverted"`` (PyTorch's): training keeps with probability 1-p and scales kept units
  by 1/(1-p); evaluation is the identity.
- ``"classic"`` (the seed document's and the 2014 paper's): training keeps with
  probability 1-p unscaled; evaluation multiplies by (1-p).

Both give ``E[train output] == eval output``. Identity paths (eval with inverted scaling,
``p == 0``, empty input) return ``input`` itself, the same object, whatever its dtype, as
torch does; dropping units of a non-floating tensor raises
:class:`dropkit.errors.DtypeError` (a ``RuntimeError``, as torch's). ``p == 1`` returns
``input * 0``: zeros for finite input, NaN where the input is NaN or infinite, exactly as
torch. Each function's module in :mod:`dropkit.layers` names its paper.
"""

from __future__ import annotations

from dropkit.layers.alpha import alpha_dropout, feature_alpha_dropout
from dropkit.layers.channel import dropout1d, dropout2d, dropout3d
from dropkit.layers.concrete import concrete_dropout, concrete_dropout_regularizer
from dropkit.layers.drop_block import drop_block2d
from dropkit.layers.drop_connect import drop_connect
from dropkit.layers.drop_path import drop_path
from dropkit.layers.dropout import dropout
from dropkit.layers.embedding import embedding_dropout
from dropkit.layers.gaussian import gaussian_dropout
from dropkit.layers.locked import locked_dropout
from dropkit.layers.rdrop import rdrop_loss

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
    "locked_dropout",
    "rdrop_loss",
]
