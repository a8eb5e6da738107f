"""Lazy imports of the ``lab`` extra, with one error message that says how to install it."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["need"]


def need(module: str) -> ModuleType:
    """Import ``module`` or raise ImportError naming ``pip install dropkit[lab]``.

    Example:
        >>> need("json").__name__
        'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        raise ImportError(
            f"dropkit lab needs {top!r}, which is not installed; "
            "install the lab extra: pip install dropkit[lab]"
        ) from err
