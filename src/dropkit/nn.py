"""Thin ``nn.Module`` shells over :mod:`dropkit.functional`, re-exported from ``dropkit.layers``.

Each module stores its settings, validates them once, and calls its function with
``self.training``. The torch.nn twins (``Dropout``, ``Dropout1d/2d/3d``, ``AlphaDropout``,
``FeatureAlphaDropout``) match torch.nn's constructor signatures, defaults, attributes,
``repr`` and error messages; ``scaling`` is an extra keyword (shown in the repr only when
not at its default). Each class lives in its variant's module under :mod:`dropkit.layers`,
a public path (what ``torch.save`` writes into a checkpoint).
"""

from __future__ import annotations

from dropkit.layers.alpha import AlphaDropout, FeatureAlphaDropout
from dropkit.layers.base import DropoutBase, StochasticModule
from dropkit.layers.channel import Dropout1d, Dropout2d, Dropout3d
from dropkit.layers.concrete import ConcreteDropout
from dropkit.layers.drop_block import DropBlock2d
from dropkit.layers.drop_connect import DropConnect
from dropkit.layers.drop_path import DropPath, drop_path_rates
from dropkit.layers.dropout import Dropout
from dropkit.layers.embedding import EmbeddingDropout
from dropkit.layers.gaussian import GaussianDropout
from dropkit.layers.locked import LockedDropout

__all__ = [
    "AlphaDropout",
    "ConcreteDropout",
    "DropBlock2d",
    "DropConnect",
    "DropPath",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "DropoutBase",
    "EmbeddingDropout",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "LockedDropout",
    "StochasticModule",
    "drop_path_rates",
]
