"""dropkit lab: train small models, measure the seed document's claims about dropout, report.

Layout: :mod:`.config` (frozen settings), :mod:`.data` (loaders with validation),
:mod:`.train` (model and training loop), :mod:`.store` (SQLite results),
:mod:`.runner` (cached, parallel trials), ``experiments/`` (one claim each),
:mod:`.plots` and :mod:`.report` (from stored results only). The library never imports
this package; it needs the ``lab`` extra (``pip install dropkit[lab]``).
"""

from __future__ import annotations

__all__: list[str] = []
