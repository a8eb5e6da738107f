"""The lab's settings as frozen dataclasses: presets, a TOML file, then flags (last wins).

``LabConfig`` is the resolved whole; each experiment derives its own small config from it.
``TrialSpec`` is one training run, the unit that the store caches: its ``key()`` hashes every
field that changes the result (data fingerprint included), so a rerun recomputes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dropkit._checks import check_p, check_scaling

__all__ = [
    "LabConfig",
    "ModelConfig",
    "TrainConfig",
    "TrialSpec",
    "digest",
    "load_toml",
    "resolve_config",
]



def _registry() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(every experiment, the default set), in report order: the experiments' registry
    (imported here lazily: the experiment modules import this one)."""
    from dropkit.lab import experiments

    return experiments.NAMES, experiments.DEFAULTS


def __getattr__(name: str) -> Any:
    if name == "EXPERIMENTS":  # every experiment's name, in report order (the registry's)
        return _registry()[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-able object (sorted keys), e.g. a config as a dict."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelConfig:
    """The MLP: ``input -> [Dropout(input_p)] -> (Linear -> ReLU -> Dropout(p)) * L -> Linear``."""

    hidden: tuple[int, ...] = (256, 256)  # widths of the hidden ReLU layers
    input_p: float = 0.0  # drop probability on the input features (0: no input dropout)
    scaling: str = "inverted"  # "inverted" (PyTorch's) or "classic" (the seed's, claim 11)


@dataclass(frozen=True)
class TrainConfig:
    """The optimiser and the stopping rule of every trial (a model is judged at its best).

    A validation split (``val_fraction`` of the training set, the same examples for every
    trial, never the test set) is scored after every epoch. Training stops after
    ``patience`` epochs without a lower validation log-loss, or at the ``epochs`` cap, and
    the weights of the best validation epoch are the trial's model (``patience = 0``: no
    early stopping, the last epoch's weights). ``lr = None`` means "chosen on validation"
    (``LabConfig.lr_grid``); a trial always holds the resolved value.
    """

    epochs: int = 40  # the cap: at most this many passes over the training split
    batch_size: int = 100  # examples per step
    lr: float | None = None  # learning rate; None: chosen on the validation split
    weight_decay: float = 0.0  # L2 penalty (0: dropout is the only regulariser)
    patience: int = 8  # epochs without a better validation log-loss before stopping
    val_fraction: float = 0.1  # share of the training set held out for validation
    optimizer: str = "adam"  # "adam", or "sgd" (with momentum)
    momentum: float = 0.9  # SGD momentum (sgd only)
    max_norm: float = 0.0  # cap on the L2 norm of each unit's incoming weights (0: none)
    lr_decay: float = 1.0  # the learning rate is multiplied by this after every epoch


@dataclass(frozen=True)
class TrialSpec:
    """One training run. ``subset`` picks the training set:

    ``"full"``; ``"boot:K"`` (bootstrap resample number K); ``"regen:K"`` (MNIST-1D
    regenerated with generator seed 1000 + K, same test set); ``"first:N"`` (N examples).
    """

    data: str  # data set name or path, as given
    fingerprint: str  # hash of the arrays, so edited files are not mistaken for cached ones
    model: ModelConfig
    train: TrainConfig
    p: float  # drop probability of the hidden layers
    seed: int  # torch seed: initial weights, batch order and dropout masks
    subset: str = "full"
    record_coverage: bool = False  # also record which hidden units were trained, per step

    def config_hash(self) -> str:
        """Hash of everything but ``p`` and ``seed`` (one of the store's key columns)."""
        d = dataclasses.asdict(self)
        d.pop("p")
        d.pop("seed")
        return digest(d)

    def key(self) -> str:
        """The store's primary key: a hash of every field."""
        return digest(dataclasses.asdict(self))


@dataclass(frozen=True)
class LabConfig:
    """Everything one ``dropkit lab`` run uses; written as ``config.json`` in the output folder."""

    data: str = "mnist1d"  # mnist1d | digits | fashion-mnist | PATH (.npz or IDX folder)
    mode: str = "quick"  # "quick" or "full": which preset fills the unset fields
    out: str = "lab-out"  # output folder: results.sqlite, config.json, report.*
    workers: int = 1  # processes for independent trials
    threads: int = 1  # torch threads per worker process
    seed: int = 0  # base seed; trial seeds are seed, seed + 1, ...
    experiments: tuple[str, ...] = field(default_factory=lambda: _registry()[1])
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ps: tuple[float, ...] = (0.0, 0.2, 0.5, 0.8)  # rate-sweep grid
    seeds: int = 1  # seeds per p in the sweep (error bars need >= 2)
    p_main: float = 0.5  # the dropout model of overfitting, ensemble, scaling, eval-mode
    bv_ps: tuple[float, ...] = (0.0, 0.5)  # bias-variance grid
    bv_models: int = 3  # K training sets (and seeds) per p in bias-variance
    bv_resample: str = "bootstrap"  # "bootstrap" or "regenerate" (MNIST-1D only)
    ens_members: int = 3  # independently trained nets in the explicit ensemble
    ens_k: int = 100  # largest number of MC samples
    tiny_hidden: int = 10  # hidden units of the exactly enumerated network (2^n masks)
    coverage_ps: tuple[float, ...] = (0.5, 0.9)
    coverage_epochs: int = 2
    sizes: tuple[int, ...] = (250, 500, 1000, 2000, 4000)  # data-size grid
    recipe: str = "default"  # "default", or "srivastava2014" (the dropout paper's recipe)
    lr_grid: tuple[float, ...] = (3e-3, 1e-3, 3e-4)  # searched when lr is None
    lr_epochs: int = 3  # epochs of each learning-rate search run

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# The dropout paper's recipe (Srivastava et al. 2014, appendix B): SGD with momentum, a
# max-norm constraint on every unit's incoming weights, a decaying learning rate, input
# p 0.2 and hidden p 0.5. Its lr is the recipe's (no search); flags still override.
_RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "srivastava2014": {
        "optimizer": "sgd",
        "momentum": 0.95,
        "lr": 0.05,
        "lr_decay": 0.98,
        "max_norm": 3.0,
        "input_p": 0.2,
        "p_main": 0.5,
    },
}

_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "full": {
        "ps": tuple(round(0.1 * i, 1) for i in range(10)),
        "seeds": 3,
        "bv_ps": (0.0, 0.2, 0.5, 0.8),
        "bv_models": 8,
        "ens_members": 5,
        "tiny_hidden": 12,
        "coverage_ps": (0.5, 0.8, 0.9),
        "coverage_epochs": 5,
        "epochs": 100,
        "hidden": (256, 256),
    },
}
# Per data set and mode, applied after the mode preset.
_DATA_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("mnist1d", "full"): {"bv_resample": "regenerate"},
    ("fashion-mnist", "quick"): {"sizes": (1000, 5000, 20000, 60000)},
    # Sized to fit one session of 2 cores: the 1024x1024 MLP of the checks, 2 seeds,
    # a 6-point grid, 4 bias-variance models at p 0 and 0.5 (instead of 3 seeds, 10 points,
    # 8 models at 4 p): 52 models in 1 h 7 min on 2 cores (docs/lab-fashion-mnist-full.md).
    ("fashion-mnist", "full"): {
        "hidden": (1024, 1024),
        "bv_ps": (0.0, 0.5),
        "input_p": 0.2,
        "epochs": 50,
        "batch_size": 128,
        "sizes": (1000, 5000, 20000, 60000),
        "seeds": 2,
        "bv_models": 4,
        "ps": (0.0, 0.2, 0.4, 0.5, 0.6, 0.8),
    },
    ("digits", "quick"): {"sizes": (100, 300, 600, 1297)},
    ("digits", "full"): {"sizes": (100, 300, 600, 1297)},
}
_MODEL_KEYS = {f.name for f in fields(ModelConfig)}
_TRAIN_KEYS = {f.name for f in fields(TrainConfig)}
_LAB_KEYS = {f.name for f in fields(LabConfig)} - {"model", "train"}
_POSITIVE = ("epochs", "batch_size", "seeds", "bv_models", "ens_members", "ens_k", "workers",
             "threads", "coverage_epochs", "tiny_hidden", "lr_epochs")
_ALIASES = {"fashion": "fashion-mnist", "mnist-1d": "mnist1d"}


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a lab config file: flat keys named like the flags (``hidden = [512, 512]``).

    Uses ``tomllib`` (Python 3.11+), else the ``tomli`` package if installed.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        try:
            import tomli as tomllib
        except ImportError as err:
            raise RuntimeError(
                "--config needs Python 3.11+ (tomllib) or the tomli package: pip install tomli"
            ) from err
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as err:
        raise ValueError(f"config file {str(path)!r} does not exist") from err
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {err}") from err
    flat: dict[str, Any] = {}
    for key, value in raw.items():  # allow [model] / [train] tables as well as flat keys
        if isinstance(value, dict) and key in ("model", "train", "lab"):
            flat.update({k.replace("-", "_"): v for k, v in value.items()})
        else:
            flat[key.replace("-", "_")] = value
    return flat


_BUILTIN_DATA = ("mnist1d", "digits", "fashion-mnist")


def _canonical_data(data: str) -> str:
    """A built-in name in canonical form (any case, aliases); anything else, a path, as given."""
    name = _ALIASES.get(data.lower(), data.lower())
    if name in _BUILTIN_DATA or name.startswith("mnist1d-seed"):
        return name
    return data  # a path keeps its case: MyData.npz and mydata.npz are two files


# The flag a setting is typed as (the TOML key is the setting's own name).
_FLAGS = {"p_main": "p"}


def _name(key: str) -> str:
    """``--flag`` (and the config-file key when it differs) for error messages."""
    flag = "--" + _FLAGS.get(key, key).replace("_", "-")
    return flag if _FLAGS.get(key, key) == key and "_" not in key else f"{flag} ({key})"


def _coerce(key: str, value: Any) -> Any:
    """Check one setting's type and range; lists become tuples."""
    known = _MODEL_KEYS | _TRAIN_KEYS | _LAB_KEYS
    if key not in known:
        raise ValueError(f"unknown lab setting {key!r}; known: {', '.join(sorted(known))}")
    if key in ("hidden", "ps", "bv_ps", "coverage_ps", "sizes", "experiments", "lr_grid"):
        if isinstance(value, (str, int, float)):
            value = [value]
        value = tuple(value)
    if key in ("hidden", "sizes") and (
        not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
    ):
        raise ValueError(f"{_name(key)} must be positive integers, but got {list(value)}")
    if key in ("ps", "bv_ps", "coverage_ps"):
        value = tuple(check_p(v, f"{_name(key)} entry") for v in value)
        if any(v >= 1.0 for v in value) or not value:
            raise ValueError(
                f"{key} needs drop probabilities in [0, 1), but got {list(value)} ({_name(key)})"
            )
        if key in ("ps", "bv_ps") and len(set(value)) < 2:
            raise ValueError(
                f"{_name(key)} is a grid to compare drop probabilities on, but got one value "
                f"{list(value)}; give at least two, e.g. 0,0.2,0.5,0.8"
            )
    if key in ("input_p", "p_main"):
        value = check_p(value, _name(key))
        if value >= 1.0:
            raise ValueError(f"{_name(key)} must be below 1, but got {value}")
    if key == "scaling":
        value = check_scaling(value)
    if key == "experiments":
        names = _registry()[0]
        bad = [e for e in value if e not in names]
        if bad:
            raise ValueError(f"unknown experiment(s) {bad}; choose from {', '.join(names)}")
    if key in _POSITIVE and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{_name(key)} must be a positive integer, but got {value!r}")
    if key == "tiny_hidden" and value > 16:
        raise ValueError(f"tiny_hidden={value} means 2^{value} sub-networks; use at most 16")
    if key == "lr" and value in (None, "auto"):
        return None
    if key == "lr_grid":
        value = tuple(_coerce("lr", v) for v in value)
        if not value or None in value:
            raise ValueError(f"--lr-grid needs learning rates, but got {list(value)}")
        return value
    if key == "patience" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(
            f"--patience must be an integer >= 0 (0: no early stopping), but got {value!r}"
        )
    if key == "val_fraction":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 0.5:
            raise ValueError(f"--val-fraction must be a number in (0, 0.5), but got {value!r}")
        value = float(value)
    if key == "optimizer" and value not in ("adam", "sgd"):
        raise ValueError(f"--optimizer must be 'adam' or 'sgd', but got {value!r}")
    if key == "recipe" and value not in _RECIPES:
        raise ValueError(f"--recipe must be one of {', '.join(_RECIPES)}, but got {value!r}")
    if key in ("momentum", "max_norm", "lr_decay"):
        number = not isinstance(value, bool) and isinstance(value, (int, float))
        if not number or not math.isfinite(value):
            raise ValueError(f"{_name(key)} must be a finite number, but got {value!r}")
        value = float(value)
        if value < 0 or (key == "momentum" and value >= 1) or (key == "lr_decay" and not
                                                               0 < value <= 1):
            raise ValueError(f"{_name(key)} is out of range: {value!r}")
    if key in ("lr", "weight_decay"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{_name(key)} must be a number, but got {value!r}")
        value = float(value)
        if not math.isfinite(value) or value < 0 or (key == "lr" and value == 0):
            bound = "positive" if key == "lr" else "non-negative"
            raise ValueError(f"{_name(key)} must be a finite {bound} number, but got {value!r}")
    if key == "seed":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"--seed must be an integer, but got {value!r}")
        if not 0 <= value < 2**63:
            raise ValueError(f"--seed must be in [0, 2**63), but got {value}")
    if key == "mode" and value not in _PRESETS:
        raise ValueError(f"mode must be 'quick' or 'full', but got {value!r}")
    if key == "bv_resample" and value not in ("bootstrap", "regenerate"):
        raise ValueError(f"bv_resample must be 'bootstrap' or 'regenerate', but got {value!r}")
    return value


def resolve_config(*layers: dict[str, Any]) -> LabConfig:
    """Merge settings: mode preset, data preset, then each layer in order (None = unset).

    Example:
        >>> cfg = resolve_config({"mode": "quick"}, {"hidden": [64], "epochs": 2})
        >>> cfg.model.hidden, cfg.train.epochs, cfg.ps
        ((64,), 2, (0.0, 0.2, 0.5, 0.8))
    """
    given: dict[str, Any] = {}
    for layer in layers:
        given.update({k.replace("-", "_"): v for k, v in layer.items() if v is not None})
    mode = _coerce("mode", given.get("mode", "quick"))
    data = _canonical_data(str(given.get("data", "mnist1d")))
    merged: dict[str, Any] = {}
    recipe = _coerce("recipe", given.get("recipe", "default"))
    names, defaults = _registry()
    merged["experiments"] = names if mode == "full" else defaults
    merged.update(_PRESETS[mode])
    merged.update(_DATA_PRESETS.get((data, mode), {}))
    merged.update(_RECIPES[recipe])
    merged.update(given)
    merged["mode"], merged["data"] = mode, data
    if merged.get("bv_resample") == "regenerate" and data != "mnist1d":
        merged["bv_resample"] = "bootstrap" if "bv_resample" not in given else "regenerate"
        if merged["bv_resample"] == "regenerate":
            raise ValueError("bv_resample='regenerate' needs --data mnist1d; use 'bootstrap'")
    clean = {k: _coerce(k, v) for k, v in merged.items()}
    model = ModelConfig(**{k: v for k, v in clean.items() if k in _MODEL_KEYS})
    train = TrainConfig(**{k: v for k, v in clean.items() if k in _TRAIN_KEYS})
    lab = {k: v for k, v in clean.items() if k in _LAB_KEYS}
    lab["seed"] = lab.get("seed", 0)
    lab["out"] = str(lab.get("out", "lab-out"))
    return LabConfig(model=model, train=train, **lab)
