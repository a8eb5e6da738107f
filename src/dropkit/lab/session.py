"""One ``dropkit lab`` run: resolve, train every missing trial, analyse, report.

Order: write ``config.json``; choose the learning rate on the validation split when it is
not set (:mod:`dropkit.lab.protocol`); collect the trials of every experiment whose stored result is
missing or was made under another config; train the missing ones (all experiments
together, in ``workers`` processes, each stored as it finishes); analyse each experiment
and store its result; build the report from the store.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import torch

from dropkit.lab import experiments, protocol
from dropkit.lab.config import LabConfig, digest
from dropkit.lab.data import load_data
from dropkit.lab.experiments import REGISTRY
from dropkit.lab.report import build_report
from dropkit.lab.runner import Runner
from dropkit.lab.store import Store

__all__ = ["LabRun", "check_out", "run_lab"]

Progress = Callable[[str, int, int], None]


@dataclasses.dataclass
class LabRun:
    """What a run did: results per experiment, trainings done now, the report's path."""

    results: dict[str, dict[str, Any]]
    trained: int
    report: Path
    wall_s: float


# Settings that do not change any result: one folder may be rerun with other values.
_EXECUTION_ONLY = ("experiments", "workers", "threads", "out", "mode")


def check_out(out: Path, cfg: LabConfig) -> None:
    """Refuse, before anything is written, an ``--out`` that holds another configuration.

    Results are stored per experiment; a report must not show sections trained under
    different settings under one header. The same settings (other experiments, workers or
    threads included) resume; anything else needs its own folder.
    """
    if out.exists() and not out.is_dir():
        raise RuntimeError(f"--out {str(out)!r} is a file, not a folder; choose another --out")
    saved = out / "config.json"
    if not saved.is_file():
        return
    try:
        old = json.loads(saved.read_text())
    except (OSError, ValueError) as err:
        raise RuntimeError(
            f"{saved} is not a dropkit lab config ({err}); use another --out, or move the "
            "folder away"
        ) from err
    new = cfg.to_dict()
    changed = sorted(k for k in set(old) | set(new)
                     if k not in _EXECUTION_ONLY and old.get(k) != new.get(k))
    if changed:
        diffs = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise RuntimeError(
            f"--out {str(out)!r} holds results made with other settings ({diffs}); a report "
            "mixes nothing, so use another --out for this configuration (or delete the folder "
            "to start over)"
        )


def _experiment_hash(config: Any, fingerprint: str, analysis: int = 1) -> str:
    """The key of an experiment's stored result: its config, the data and the version of its
    analysis (``ANALYSIS`` of its module, 1 if absent), so a changed analysis is run again
    on the stored trials instead of serving an old verdict."""
    key = {"config": dataclasses.asdict(config), "data": fingerprint}
    if analysis != 1:  # (version 1 keeps the keys results were stored under before)
        key["analysis"] = analysis
    return digest(key)


def run_lab(
    cfg: LabConfig,
    progress: Progress | None = None,
    cache_dir: str | Path | None = None,
    executor: Executor | None = None,
) -> LabRun:
    """Run the experiments of ``cfg`` into ``cfg.out``, resuming from what is stored.

    ``executor``: train on it (e.g. a Dask cluster's) instead of ``cfg.workers`` local
    processes; the results are the same bits either way.
    """
    start = time.perf_counter()
    dataset = load_data(cfg.data, cache_dir)  # bad data fails before anything is written
    out = Path(cfg.out)
    check_out(out, cfg)  # so does a folder that holds another configuration's results
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK):
            raise PermissionError(13, "permission denied", str(out))
        store = Store(out)
        (out / "config.json").write_text(
            json.dumps(cfg.to_dict(), indent=1, sort_keys=True) + "\n"
        )
    except OSError as err:
        raise RuntimeError(
            f"cannot write to --out {str(out)!r} ({err.strerror or err}); choose a folder "
            "you can write to"
        ) from err
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)  # the analyses too: no oversubscribed cores
    runner = Runner(store, cfg.data, workers=cfg.workers, threads=cfg.threads,
                    cache_dir=cache_dir, on_progress=progress, dataset=dataset,
                    executor=executor)
    try:
        cfg, choice = protocol.choose_lr(cfg, runner)  # on validation, before any experiment
        kernels = dict(runner.kernels)["ATEN_CPU_CAPABILITY"].upper()
        store.put_experiment("protocol", digest(choice), {}, {"lr": choice,
                             "cpu_kernels": kernels}, 0.0)
        configs = experiments.configs(cfg)
        hashes = {n: _experiment_hash(c, runner.dataset.fingerprint,
                                      getattr(REGISTRY[n], "ANALYSIS", 1))
                  for n, c in configs.items()}
        results: dict[str, dict[str, Any]] = {}
        owners: dict[Any, str] = {}
        for name, c in configs.items():
            stored = store.get_experiment(name, hashes[name])
            if stored is not None:
                results[name] = stored
            else:
                for spec in REGISTRY[name].trials(c, runner):
                    owners.setdefault(spec, name)
        if owners:
            runner.run(owners, list(owners), label="training")
        pending = [n for n in configs if n not in results]
        for i, name in enumerate(pending):
            if progress is not None:
                progress("analysis", i, len(pending))
            t0 = time.perf_counter()
            module, c = REGISTRY[name], configs[name]
            trials = runner.run(name, module.trials(c, runner))  # all stored by now
            res = module.analyse(c, trials, runner.dataset)  # pure: never trains
            analysis_s = time.perf_counter() - t0
            res["train_s"] = sum(t.result["wall_s"] for t in trials)
            res["analysis_s"] = analysis_s
            res["config"] = json.loads(json.dumps(dataclasses.asdict(c)))
            wall = analysis_s + res["train_s"]
            store.put_experiment(name, hashes[name], res["config"], res, wall)
            results[name] = {**res, "wall_s": wall}
        if progress is not None and pending:
            progress("analysis", len(pending), len(pending))
        trained = runner.trained
    finally:
        torch.set_num_threads(threads)
        runner.close()
        store.close()
    report = build_report(out)
    return LabRun(results, trained, report, time.perf_counter() - start)
