"""Lazy imports of the ``lab`` extra, with one error message that says how to install it."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["need"]


def need(module: str, extra: str = "lab") -> ModuleType:
    """Import ``module`` or raise ImportError naming ``pip install "dropkit[<extra>]"``.

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
            f"install the {extra} extra: pip install dropkit[{extra}]"
        ) from err
