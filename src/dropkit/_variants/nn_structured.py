"""0.1.0 path of ``LockedDropout``, ``DropPath``, ``DropBlock2d`` (alias for old checkpoints)."""

from dropkit.layers.drop_block import DropBlock2d
from dropkit.layers.drop_path import DropPath, drop_path_rates
from dropkit.layers.locked import LockedDropout

__all__ = ["DropBlock2d", "DropPath", "LockedDropout", "drop_path_rates"]
