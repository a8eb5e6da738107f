"""Trials on demand: read from the store, train what is missing (in N processes), store it.

Experiments ask the runner for a list of :class:`TrialSpec`; the runner returns every
result, training only the ones not yet in the store and writing each as soon as it
finishes. ``trained`` counts the trainings this runner actually did (a resumed run that
finds everything stored trains nothing).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dropkit.functional import dropout
from dropkit.lab.config import ModelConfig, TrainConfig, TrialSpec
from dropkit.lab.data import Dataset, load_data, load_mnist1d
from dropkit.lab.numerics import Kernels, check_kernels, kernel_settings
from dropkit.lab.store import Store, pack, unpack
from dropkit.lab.train import run_trial

__all__ = ["Runner", "Trial", "work_anywhere"]

# What a worker process holds: the data set, loaded once by the initializer.
_WORKER: dict[str, Any] = {}
# One trial at a time per process: a trial seeds torch's global generator and sets its
# thread count, both process-wide, so two trials in two threads of one worker (a Dask worker
# with --nthreads 2) would draw from each other's random stream.
_ONE_AT_A_TIME = threading.Lock()


@dataclass
class Trial:
    """A stored trial: its spec, JSON result and (lazily unpacked) arrays."""

    spec: TrialSpec
    result: dict[str, Any]
    blob: bytes = field(repr=False)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        return unpack(self.blob)


def _regen(spec: TrialSpec, cache_dir: str | None) -> Dataset | None:
    kind, _, arg = spec.subset.partition(":")
    return load_mnist1d(1000 + int(arg), cache_dir) if kind == "regen" else None


def _warm_up() -> None:
    """Pay the one-time cost of dropkit's first op call (torch's lazy imports) up front."""
    dropout(torch.ones(4, requires_grad=True), 0.5).sum().backward()


def _die_with(parent: int) -> None:
    """End this worker when the driver ``parent`` dies, however it dies (Linux: the kernel's
    parent-death signal), instead of training on as an orphan; elsewhere nothing. (The
    signal follows the thread that started the worker: the pool lives inside one
    ``Runner``, used from one thread, and is shut down before that thread ends.)"""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl: a worker may outlive its driver
        return
    if os.getppid() != parent:  # the driver died before the signal was armed
        os._exit(1)


def _init_worker(
    data: str, cache_dir: str | None, threads: int, kernels: Kernels, parent: int | None = None
) -> None:
    """Set up a worker: the local pool's (``parent``: the driver's pid) or any executor's;
    torch runs the driver's CPU ``kernels`` (numerics.py)."""
    if parent is not None:
        _die_with(parent)
    check_kernels(kernels)  # before any kernel runs here
    torch.set_num_threads(threads)
    _warm_up()
    _WORKER["data"] = load_data(data, cache_dir)
    _WORKER["cache_dir"] = cache_dir


def _work(spec: TrialSpec) -> tuple[dict[str, Any], bytes]:
    result, arrays = run_trial(spec, _WORKER["data"], _regen(spec, _WORKER["cache_dir"]))
    return result, pack(arrays)


def work_anywhere(
    spec: TrialSpec, data: str, cache_dir: str | None, threads: int, kernels: Kernels
) -> tuple[dict[str, Any], bytes]:
    """One trial in any worker process (a Dask worker, any ``Executor``): the data set is
    loaded on first use and kept, torch runs on ``threads`` threads with the CPU ``kernels``
    the driver runs. A pure function of its arguments, so a trial rerun elsewhere (its worker
    died) gives the same bits. A process runs one trial at a time, whatever its threads."""
    with _ONE_AT_A_TIME:
        if _WORKER.get("key") != (data, cache_dir):
            _init_worker(data, cache_dir, threads, kernels)  # checks the kernels too
            _WORKER["key"] = (data, cache_dir)
        else:
            check_kernels(kernels)  # (another driver may ask for another set)
        torch.set_num_threads(threads)
        return _work(spec)


class Runner:
    """Serves trials for one data set from ``store``, training missing ones.

    Args:
        store: where results live.
        data: the data set name or path (as ``--data``).
        workers: processes for independent trials (1: in this process).
        threads: torch threads per worker.
        cache_dir: where generated data are cached (default ``~/.cache/dropkit``).
        on_progress: called as ``on_progress(label, done, total)`` while trials finish.
        dataset: ``data`` already loaded (default: load it here).
        executor: any ``concurrent.futures.Executor`` to train on (e.g. a Dask cluster's,
            ``distributed.Client(address).get_executor()``); its workers must see ``data``
            (a built-in name, or a path on a shared file system). Default: ``workers``
            local processes (or this process).

    Every worker runs the CPU kernel set this process runs (``kernels``; numerics.py), so
    where a trial ran never changes its bits.
    """

    def __init__(
        self,
        store: Store,
        data: str,
        *,
        workers: int = 1,
        threads: int = 1,
        cache_dir: str | Path | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
        dataset: Dataset | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.data_name = data
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.dataset = load_data(data, self.cache_dir) if dataset is None else dataset
        self.workers = workers
        self.threads = threads
        self.on_progress = on_progress
        self.trained = 0
        self.kernels = kernel_settings()  # the workers run these too
        self._pool: ProcessPoolExecutor | None = None

    def spec(
        self, model: ModelConfig, train: TrainConfig, p: float, seed: int, subset: str = "full",
        record_coverage: bool = False,
    ) -> TrialSpec:
        """A trial spec on this runner's data set."""
        return TrialSpec(self.data_name, self.dataset.fingerprint, model, train, float(p),
                         int(seed), subset, record_coverage)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")  # no fork after torch's thread pools
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=ctx, initializer=_init_worker,
                initargs=(self.data_name, self.cache_dir, self.threads, self.kernels,
                          os.getpid()),
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def run(
        self,
        experiment: str | Mapping[TrialSpec, str],
        specs: Sequence[TrialSpec],
        label: str = "",
    ) -> list[Trial]:
        """Every spec's trial, in order; missing ones are trained and stored as they finish.

        ``experiment`` names who asked (stored with each new trial): one name, or one per spec.
        """
        unique = list(dict.fromkeys(specs))
        done: dict[TrialSpec, Trial] = {}
        for s in unique:
            got = self.store.get_trial(s)
            if got is not None:
                done[s] = Trial(s, *got)
        todo = [s for s in unique if s not in done]
        total = len(unique)
        label = label or (experiment if isinstance(experiment, str) else "trials")
        if todo:  # a bar only where something is trained
            self._report(label, len(done), total)

        def finish(s: TrialSpec, result: dict[str, Any], blob: bytes) -> None:
            owner = experiment if isinstance(experiment, str) else experiment[s]
            self.store.put_trial(owner, s, result, blob)
            done[s] = Trial(s, result, blob)
            self.trained += 1
            self._report(label, len(done), total)

        if self.executor is not None and todo:
            args = (self.data_name, self.cache_dir, self.threads, self.kernels)
            futures = {self.executor.submit(work_anywhere, s, *args): s for s in todo}
            while futures:  # each result stored as it arrives: a killed driver resumes
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in finished:
                    finish(futures.pop(fut), *fut.result())
        elif self.workers > 1 and len(todo) > 1:
            pool = self._executor()
            futures = {pool.submit(_work, s): s for s in todo}
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in finished:
                    finish(futures.pop(fut), *fut.result())
        else:
            if todo:
                _warm_up()
            for s in todo:
                old = torch.get_num_threads()
                torch.set_num_threads(self.threads)
                try:
                    result, arrays = run_trial(s, self.dataset, _regen(s, self.cache_dir))
                finally:
                    torch.set_num_threads(old)
                finish(s, result, pack(arrays))
        return [done[s] for s in specs]

    def _report(self, label: str, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(label, done, total)
