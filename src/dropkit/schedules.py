"""Dropout-rate schedules: one ``step()`` per iteration sets ``p`` on every dropkit layer.

Shaped like torch's LR schedulers: a schedule records each layer's base rate when it is
built, applies step 0 at once, and each ``step()`` advances one iteration and sets
``p = base_p * factor(step)`` on every layer. The schedule carries its own state
(``state_dict()`` / ``load_state_dict()``: the step count and the base rates), so a resumed
run continues where it stopped, while the dropout modules stay stateless: a schedule adds
no buffer or parameter, and a model's ``state_dict`` keys are those of plain dropout.

The layers are the :class:`dropkit.nn.StochasticModule` instances with a plain float ``p``
attribute (every dropkit dropout module and variant; :class:`dropkit.nn.ConcreteDropout`
learns its ``p`` and is left alone).

Papers: Liu et al. 2023, "Dropout reduces underfitting", ICML (early and late dropout);
Morerio et al. 2017, "Curriculum dropout" (rates that change during training).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping
from typing import Any

from torch import nn

from dropkit._checks import check_p
from dropkit.nn import StochasticModule

__all__ = ["ConstantDropout", "DropoutSchedule", "EarlyDropout", "LateDropout", "LinearWarmup"]


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every scheduled layer of ``model`` by qualified name (a plain float ``p``)."""
    found = {}
    for name, module in model.named_modules():
        rate = module.__dict__.get("p")
        if isinstance(module, StochasticModule) and isinstance(rate, numbers.Real):
            found[name] = module
    return found


def _check_steps(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int number of steps, but got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, but got {value}")
    return int(value)


def _check_rate(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{what} must be a real number in [0, 1], but got {type(value).__name__} {value!r}"
        )
    rate = float(value)
    if not 0.0 <= rate <= 1.0:  # NaN too
        raise ValueError(f"{what} is a dropout rate: it must be between 0 and 1, but got {value!r}")
    return rate


def _check_early_schedule(value: object, where: str = "") -> str:
    if not isinstance(value, str) or value not in ("constant", "linear"):
        raise ValueError(
            f"unknown early-dropout schedule {value!r}{where}; use 'constant' or 'linear'"
        )
    return value


class DropoutSchedule:
    """Base class: subclasses define ``factor(step)`` in [0, 1]; ``p = base_p * factor``.

    Args:
        model: the model whose dropkit layers are scheduled.
        p: one base rate for every layer; None keeps each layer's own ``p``. Default: None.
    """

    def __init__(self, model: nn.Module, p: float | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"a dropout schedule needs an nn.Module, got {type(model).__name__}")
        self.model = model
        layers = _layers(model)
        if not layers:
            raise ValueError(
                "this model has no dropkit dropout layer to schedule; convert its torch "
                "dropouts first (dropkit.convert) or build it with dropkit.nn modules"
            )
        base = None if p is None else check_p(p, "scheduled dropout rate")
        self.base_ps = {n: float(m.p if base is None else base) for n, m in layers.items()}
        self.last_step = 0
        self._apply()

    def factor(self, step: int) -> float:
        """The multiplier of the base rates at ``step`` (0-based), in [0, 1]."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance one iteration and set every layer's ``p`` (a refused rate: no change)."""
        self.last_step += 1
        try:
            self._apply()
        except Exception:
            self.last_step -= 1
            raise

    def get_last_p(self) -> dict[str, float]:
        """The rate each layer got at the last step, by qualified name."""
        f = self.factor(self.last_step)
        return {name: base * f for name, base in self.base_ps.items()}

    def _apply(self) -> None:
        layers = _layers(self.model)
        missing = sorted(set(self.base_ps) - set(layers))
        if missing:
            raise ValueError(f"the schedule's layers {missing} are not dropkit layers of the model")
        rates = self.get_last_p()
        for name, rate in rates.items():  # (every rate checked before any is set)
            try:
                type(layers[name]).check_rate(rate)
            except ValueError as err:
                raise ValueError(
                    f"{type(self).__name__} at step {self.last_step} would set layer {name!r} "
                    f"to p={rate}, which it refuses: {err}"
                ) from None
        for name, rate in rates.items():
            layers[name].p = rate

    def state_dict(self) -> dict[str, Any]:
        """The schedule's state (everything but the model), as torch's LR schedulers."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "model"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` and set the layers' rates for its step.

        Every value is checked first (``last_step`` an int >= 0; ``base_ps`` one rate in
        [0, 1] for each scheduled layer of the model, no more, no less; the subclass's own
        hyperparameters as its constructor checks them); keys left out keep their value,
        as in torch's LR schedulers. A failed load (TypeError, ValueError, or an error of
        ``factor``) leaves the schedule and the layers' rates as they were.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"load_state_dict expects a dict from DropoutSchedule.state_dict(), but got "
                f"{type(state_dict).__name__} {state_dict!r}"
            )
        known = set(self.state_dict())
        unknown = sorted(repr(k) for k in state_dict if k != "model" and k not in known)
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join(unknown)} in a {type(self).__name__} state_dict; "
                f"expected some of {sorted(known)} (a state saved by another schedule class?)"
            )
        checked = {k: self._check_state(k, v) for k, v in state_dict.items() if k != "model"}
        saved = dict(self.__dict__)
        rates = {name: layer.p for name, layer in _layers(self.model).items()}
        self.__dict__.update(checked)
        try:
            self._apply()
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            layers = _layers(self.model)
            for name, rate in rates.items():
                layers[name].p = rate
            raise

    def _check_state(self, key: str, value: object) -> object:
        """One ``state_dict`` value, checked (TypeError/ValueError); ``base_ps`` copied.

        Subclasses with hyperparameters check theirs and pass every other key to
        ``super()._check_state``; a key no class checks is taken as it is.
        """
        if key == "last_step":
            return _check_steps(value, "state_dict['last_step']")
        if key == "base_ps":
            return self._check_base_ps(value)
        return value

    def _check_base_ps(self, value: object) -> dict[str, float]:
        if not isinstance(value, Mapping):
            raise TypeError(
                "state_dict['base_ps'] must be a dict {layer name: base rate}, but got "
                f"{type(value).__name__} {value!r}"
            )
        bad_names = [name for name in value if not isinstance(name, str)]
        if bad_names:
            raise TypeError(
                f"state_dict['base_ps'] has keys {bad_names!r}; its keys must be layer names "
                "(str), the qualified names of model.named_modules()"
            )
        layers = _layers(self.model)
        extra = sorted(set(value) - set(layers))
        if extra:
            raise ValueError(
                f"state_dict['base_ps'] names {extra}, which are not dropkit layers of the "
                f"model; the model's scheduled layers are {sorted(layers)}"
            )
        missing = sorted(set(layers) - set(value))
        if missing:
            raise ValueError(
                f"state_dict['base_ps'] is missing a base rate for the model's layers "
                f"{missing}; load a state saved for this model, or build a new schedule"
            )
        return {
            name: _check_rate(rate, f"state_dict['base_ps'][{name!r}]")
            for name, rate in value.items()
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_step={self.last_step}, layers={len(self.base_ps)})"


class ConstantDropout(DropoutSchedule):
    """Every layer keeps its base rate (Liu et al.'s "standard" dropout).

    Example:
        >>> import torch, dropkit
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), dropkit.nn.Dropout(0.3))
        >>> dropkit.schedules.ConstantDropout(model).get_last_p()
        {'1': 0.3}
    """

    def factor(self, step: int) -> float:
        return 1.0


class LinearWarmup(DropoutSchedule):
    """Rates rise linearly from 0 to the base rate over ``warmup_steps``, then stay there.

    ``factor(t) = min(1, t / warmup_steps)``.

    Example:
        >>> import torch, dropkit
        >>> model = torch.nn.Sequential(dropkit.nn.Dropout(0.4))
        >>> s = dropkit.schedules.LinearWarmup(model, warmup_steps=4)
        >>> s.step(); s.step(); model[0].p
        0.2
    """

    def __init__(self, model: nn.Module, warmup_steps: int, p: float | None = None) -> None:
        self.warmup_steps = _check_steps(warmup_steps, "warmup_steps")
        super().__init__(model, p)

    def factor(self, step: int) -> float:
        return 1.0 if step >= self.warmup_steps else step / self.warmup_steps

    def _check_state(self, key: str, value: object) -> object:
        if key == "warmup_steps":
            return _check_steps(value, "state_dict['warmup_steps']")
        return super()._check_state(key, value)


class EarlyDropout(DropoutSchedule):
    """Dropout only for the first ``cutoff`` steps, then none (Liu et al. 2023).

    ``schedule="constant"``: the base rate before ``cutoff``; ``"linear"``: decaying
    linearly from the base rate to 0 at ``cutoff``. Rate 0 from ``cutoff`` on. For
    underfitting models.

    Example:
        >>> import torch, dropkit
        >>> model = torch.nn.Sequential(dropkit.nn.Dropout(0.1))
        >>> s = dropkit.schedules.EarlyDropout(model, cutoff=2)
        >>> s.step(); s.step(); model[0].p
        0.0

    Paper: Liu et al. 2023, "Dropout reduces underfitting", ICML.
    """

    def __init__(
        self, model: nn.Module, cutoff: int, p: float | None = None, schedule: str = "constant"
    ) -> None:
        schedule = _check_early_schedule(schedule)
        self.cutoff = _check_steps(cutoff, "cutoff")
        self.schedule = schedule
        super().__init__(model, p)

    def factor(self, step: int) -> float:
        if step >= self.cutoff:
            return 0.0
        return 1.0 if self.schedule == "constant" else 1.0 - step / self.cutoff

    def _check_state(self, key: str, value: object) -> object:
        if key == "cutoff":
            return _check_steps(value, "state_dict['cutoff']")
        if key == "schedule":
            return _check_early_schedule(value, " in state_dict['schedule']")
        return super()._check_state(key, value)


class LateDropout(DropoutSchedule):
    """No dropout for the first ``cutoff`` steps, then the base rate (Liu et al. 2023).

    For overfitting models.

    Example:
        >>> import torch, dropkit
        >>> model = torch.nn.Sequential(dropkit.nn.Dropout(0.1))
        >>> s = dropkit.schedules.LateDropout(model, cutoff=1)
        >>> model[0].p, (s.step(), model[0].p)[1]
        (0.0, 0.1)

    Paper: Liu et al. 2023, "Dropout reduces underfitting", ICML.
    """

    def __init__(self, model: nn.Module, cutoff: int, p: float | None = None) -> None:
        self.cutoff = _check_steps(cutoff, "cutoff")
        super().__init__(model, p)

    def factor(self, step: int) -> float:
        return 0.0 if step < self.cutoff else 1.0

    def _check_state(self, key: str, value: object) -> object:
        if key == "cutoff":
            return _check_steps(value, "state_dict['cutoff']")
        return super()._check_state(key, value)
