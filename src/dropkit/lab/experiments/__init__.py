"""The lab's experiments: one module per claim, and the one ordered registry of them.

Each module is an :class:`Experiment`: ``NAME``, ``CLAIM``, ``DEFAULT`` (in the default
set, else ``--full`` only), a frozen ``Config`` with ``from_lab``, ``trials(config, specs)``
(the training runs it needs, shared where specs coincide), a pure
``analyse(config, trials, data)`` (a JSON-able result with ``holds``, ``claim``,
``summary`` and the numbers behind its figure; it never trains), ``plot(fig, result)``,
``RULE`` (the verdict's rule in plain words) and ``explain(result)`` (a plain sentence on
what the result shows, and the rows of a small table of the numbers behind it), and
optionally ``ANALYSIS`` (an int, default 1: raise it when ``analyse`` changes, and stored
results are analysed again from their stored trials).
:data:`REGISTRY` is their order: the CLI's choices, the default set and the report all
read it. To add an experiment, write its module and add it to the tuple below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from dropkit.lab.config import LabConfig, TrialSpec
from dropkit.lab.data import Dataset
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
from dropkit.lab.runner import Runner, Trial

__all__ = ["DEFAULTS", "NAMES", "REGISTRY", "Experiment"]


class Experiment(Protocol):
    """What an experiment module provides (see the module docstring)."""

    NAME: str
    CLAIM: str
    DEFAULT: bool
    Config: Any  # a frozen dataclass with ``from_lab(lab: LabConfig)``

    def trials(self, cfg: Any, specs: Runner) -> list[TrialSpec]: ...

    def analyse(self, cfg: Any, got: Sequence[Trial], data: Dataset) -> dict[str, Any]: ...

    def plot(self, fig: Any, result: dict[str, Any]) -> None: ...

    RULE: str

    def explain(self, result: dict[str, Any]) -> tuple[str, list[tuple[str, ...]]]: ...


_ORDER: tuple[Any, ...] = (overfitting, rate_sweep, bias_variance, ensemble, scaling, eval_mode,
                           coverage, data_size)
REGISTRY: dict[str, Experiment] = {m.NAME: m for m in _ORDER}
NAMES: tuple[str, ...] = tuple(REGISTRY)
DEFAULTS: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if m.DEFAULT)


def configs(lab: LabConfig) -> dict[str, Any]:
    """Each chosen experiment's own config, in registry order."""
    return {n: REGISTRY[n].Config.from_lab(lab) for n in NAMES if n in lab.experiments}
