"""0.1.0 path of ``DropConnect`` and ``EmbeddingDropout`` (an alias for old checkpoints)."""

from dropkit.layers.drop_connect import DropConnect
from dropkit.layers.embedding import EmbeddingDropout

__all__ = ["DropConnect", "EmbeddingDropout"]
