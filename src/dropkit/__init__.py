"""dropkit: dropout done right for PyTorch.

Exact semantics (both scalings), reproducible counter-based masks (docs/mask-spec.md),
autograd without a stored mask, and drop-in ``torch.nn`` twins.
"""

from __future__ import annotations

from dropkit import errors, functional, keys, layers, mc, modes, nn, schedules
from dropkit.backends import available_backends, get_backend, set_backend, use_backend
from dropkit.errors import DistributedSeedWarning, DtypeError, SampleKeyError
from dropkit.mask import keep_mask
from dropkit.memory import LayerBytes, backward_bytes
from dropkit.modes import active_dropout, convert, guard, mc_mode
from dropkit.recording import Recording, record, replay

__version__ = "0.1.0"

__all__ = [
    "DistributedSeedWarning",
    "DtypeError",
    "IndexedDataset",
    "LayerBytes",
    "Recording",
    "SampleKeyError",
    "SampleKeys",
    "__version__",
    "active_dropout",
    "available_backends",
    "backward_bytes",
    "convert",
    "errors",
    "functional",
    "get_backend",
    "guard",
    "keep_mask",
    "keys",
    "layers",
    "mc",
    "mc_mode",
    "modes",
    "nn",
    "record",
    "replay",
    "sample_keys",
    "schedules",
    "set_backend",
    "use_backend",
]

# ``sample_keys`` and friends import torch._dynamo (their block is entered eagerly, also
# inside a compiled function): loaded on first use, so ``import dropkit`` stays light.
_LAZY = {"IndexedDataset", "SampleKeys", "sample_keys"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from dropkit import sampling

        return getattr(sampling, name)
    raise AttributeError(f"module 'dropkit' has no attribute {name!r}")
