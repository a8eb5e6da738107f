"""dropkit: dropout done right for PyTorch.

Exact semantics (both scalings), reproducible counter-based masks (docs/mask-spec.md),
autograd without a stored mask, and drop-in ``torch.nn`` twins.
"""

from __future__ import annotations

from dropkit import errors, functional, keys, layers, mc, modes, nn, schedules
from dropkit.backends import available_backends, get_backend, set_backend, use_backend
from dropkit.errors import DistributedSeedWarning, DtypeError, SampleKeyError
from dropkit.mask import keep_mask
from dropkit.modes import active_dropout, convert, guard, mc_mode
from dropkit.recording import Recording, record, replay
from dropkit.sampling import IndexedDataset, sample_keys

__version__ = "0.1.0"

__all__ = [
    "DistributedSeedWarning",
    "DtypeError",
    "IndexedDataset",
    "Recording",
    "SampleKeyError",
    "__version__",
    "active_dropout",
    "available_backends",
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
