"""0.1.0 path of ``GaussianDropout`` and ``ConcreteDropout`` (an alias for old checkpoints)."""

from dropkit.layers.concrete import ConcreteDropout
from dropkit.layers.gaussian import GaussianDropout

__all__ = ["ConcreteDropout", "GaussianDropout"]
