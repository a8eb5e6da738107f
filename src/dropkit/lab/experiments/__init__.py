"""The lab's experiments, one module per claim, in report order.

Each module has ``NAME``, ``CLAIM``, a frozen ``Config`` with ``from_lab``,
``trials(config, runner)`` (the training runs it needs, shared where specs coincide) and
``run(config, runner)`` (a JSON-able result with ``holds``, ``claim``, ``summary`` and the
numbers behind its figure).
"""

from __future__ import annotations

from types import ModuleType

from dropkit.lab.experiments import (
    bias_variance,
    coverage,
    data_size,
    ensemble,
    eval_mode,
    overfitting,
    rate_sweep,
    scaling,
)

__all__ = ["REGISTRY"]

REGISTRY: dict[str, ModuleType] = {
    m.NAME: m
    for m in (overfitting, rate_sweep, bias_variance, ensemble, scaling, eval_mode, coverage,
              data_size)
}
