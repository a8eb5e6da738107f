"""The ``dropkit`` command (the only module that parses argv).

Commands:
    ``dropkit lab [EXPERIMENTS...] [--data NAME|PATH] [--quick|--full] [--out DIR]
    [--workers N] [--seed S] [--config lab.toml] [model and training flags]``: train, measure
    the seed document's claims, write the report.
    ``dropkit lab report DIR``: rebuild the report of DIR from its stored results.
    ``dropkit info``: versions and backends. ``dropkit --version``: the version.

Results go to stdout, progress bars and errors to stderr; the exit status is 0 on success, 2
for a usage or input error, 130 when interrupted (finished trials are kept).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

__all__ = ["main"]


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from err


def _lab_parser() -> argparse.ArgumentParser:
    from dropkit.lab.experiments import DEFAULTS, NAMES

    p = argparse.ArgumentParser(
        prog="dropkit lab",
        description="Train small models, measure the claims about dropout, write a report "
        "(report.html, report.md, verdicts.json). `dropkit lab report DIR` rebuilds a report.",
    )
    p.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                   help=f"which to run (default: {', '.join(DEFAULTS)}; --full: all): "
                        f"{', '.join(NAMES)}")
    p.add_argument("--data", help="mnist1d (default), digits, fashion-mnist, a .npz with "
                   "x_train/y_train/x_test/y_test, or a folder of MNIST-format IDX files")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="small settings, minutes on 2 cores (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="paper-grade settings: more p values, seeds and epochs")
    p.add_argument("--out", help="output folder (default: lab-out); rerun to resume")
    p.add_argument("--workers", type=int, help="processes for independent trials "
                   "(default: number of cores, at most 4)")
    p.add_argument("--threads", type=int, help="torch threads per worker (default 1)")
    p.add_argument("--seed", type=int, help="base seed (default 0)")
    p.add_argument("--config", help="TOML file with any of these settings (flags override it)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="train on a Dask distributed cluster (the cluster extra) instead of "
                        "local processes; its workers must see --data")
    g = p.add_argument_group("model and training")
    g.add_argument("--hidden", type=_ints, help="hidden widths, e.g. 1024,1024,1024")
    g.add_argument("--input-p", type=float, help="dropout on the inputs (default 0)")
    g.add_argument("--p", dest="p_main", type=float,
                   help="drop probability of the main dropout model (default 0.5)")
    g.add_argument("--ps", type=_floats, help="rate-sweep grid, e.g. 0,0.1,0.5")
    g.add_argument("--seeds", type=int, help="seeds per p in the sweep")
    g.add_argument("--epochs", type=int, help="epoch cap of every model (default 40)")
    g.add_argument("--patience", type=int, help="stop after this many epochs without a better "
                   "validation log-loss (default 8; 0: no early stopping)")
    g.add_argument("--val-fraction", type=float,
                   help="share of the training set held out for validation (default 0.1)")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="learning rate (default: chosen on validation "
                   "from --lr-grid)")
    g.add_argument("--lr-grid", type=_floats, help="learning rates searched when --lr is unset "
                   "(default 0.003,0.001,0.0003)")
    g.add_argument("--lr-epochs", type=int, help="epochs of each learning-rate search run")
    g.add_argument("--optimizer", choices=("adam", "sgd"), help="default adam")
    g.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    g.add_argument("--max-norm", type=float,
                   help="cap on the L2 norm of each unit's incoming weights (default: none)")
    g.add_argument("--lr-decay", type=float, help="learning rate factor per epoch (default 1)")
    g.add_argument("--recipe", choices=("default", "srivastava2014"),
                   help="srivastava2014: the dropout paper's recipe (SGD with momentum 0.95, "
                        "lr 0.05 decaying x0.98 per epoch, max-norm 3, input p 0.2, p 0.5)")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--bv-models", type=int, help="models per p in bias-variance")
    g.add_argument("--ens-members", type=int, help="nets in the explicit ensemble")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _run_lab(argv: Sequence[str]) -> int:
    from dropkit.lab.numerics import pin_reproducible

    pin_reproducible()  # before torch runs anything: the same bits on any x86-64 machine
    from dropkit.lab.config import load_toml, resolve_config
    from dropkit.lab.session import run_lab

    args = _lab_parser().parse_args(argv)
    if args.experiments[:1] == ["report"]:  # `dropkit lab [flags] report DIR`
        return _report(args.experiments[1:])
    flags: dict[str, Any] = {k: v for k, v in vars(args).items()
                             if k not in ("config", "quiet", "scheduler") and v is not None}
    if not flags.get("experiments"):
        flags.pop("experiments", None)
    file_layer = load_toml(args.config) if args.config else {}
    mode = {"mode": flags.pop("mode", None) or file_layer.pop("mode", None) or "quick"}
    workers = flags.get("workers", file_layer.get("workers"))
    defaults = {"workers": min(os.cpu_count() or 1, 4) if workers is None else workers}
    cfg = resolve_config(mode, defaults, file_layer, flags)
    with contextlib.ExitStack() as stack:
        executor = _cluster(args.scheduler, stack) if args.scheduler else None
        with _Progress(_console(stderr=True), args.quiet) as update:  # progress on stderr
            run = run_lab(cfg, progress=update, executor=executor)
    _summary(_console(stderr=False), run)  # results on stdout
    return 0


def _cluster(address: str, stack: contextlib.ExitStack) -> Any:
    """An executor on the Dask scheduler at ``address`` (closed with ``stack``)."""
    from dropkit.lab._deps import need

    distributed = need("distributed", extra="cluster")
    try:
        client = stack.enter_context(distributed.Client(address, timeout="20s"))
    except (OSError, TimeoutError) as err:
        raise RuntimeError(f"--scheduler {address}: cannot reach a Dask scheduler ({err})") from err
    return client.get_executor()


def _console(stderr: bool) -> Any:
    from dropkit.lab._deps import need

    return need("rich.console").Console(stderr=stderr)


class _Progress:
    """A rich progress display: one bar per label (training, analysis)."""

    def __init__(self, console: Any, quiet: bool) -> None:
        from dropkit.lab._deps import need

        rp = need("rich.progress")
        self.bars = None if quiet else rp.Progress(
            rp.TextColumn("{task.description:>10}"), rp.BarColumn(), rp.MofNCompleteColumn(),
            rp.TimeElapsedColumn(), console=console, transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Any:
        if self.bars is not None:
            self.bars.__enter__()
        return self.update

    def __exit__(self, *exc: object) -> None:
        if self.bars is not None:
            self.bars.__exit__(*exc)

    def update(self, label: str, done: int, total: int) -> None:
        if self.bars is None:
            return
        if label not in self.tasks:
            self.tasks[label] = self.bars.add_task(label, total=total)
        self.bars.update(self.tasks[label], completed=done, total=total)


def _summary(console: Any, run: Any) -> None:
    from dropkit.lab._deps import need

    escape = need("rich.markup").escape
    table = need("rich.table").Table(title="dropkit lab: verdicts")
    for col in ("experiment", "verdict", "numbers", "time"):
        table.add_column(col, overflow="fold")
    for name, r in run.results.items():
        verdict = "[green]holds[/]" if r["holds"] else "[red]does not hold[/]"
        table.add_row(name, verdict, escape(r["summary"]), f"{r.get('wall_s', 0):.1f} s")
    console.print(table)
    console.print(f"trained {run.trained} model(s) in this run; wall time {run.wall_s:.1f} s")
    console.print(f"report: {run.report}")


def _report(argv: Sequence[str]) -> int:
    from dropkit.lab.report import build_report

    p = argparse.ArgumentParser(prog="dropkit lab report",
                                description="Rebuild the report of DIR from its stored results.")
    p.add_argument("dir", help="output folder of an earlier dropkit lab run")
    args = p.parse_args(argv)
    from pathlib import Path

    if not (Path(args.dir) / "results.sqlite").is_file():
        raise ValueError(f"{args.dir!r} holds no lab results (no results.sqlite there)")
    path = build_report(args.dir)
    print(f"report: {path}")
    return 0


def _info() -> int:
    import torch

    import dropkit

    print(f"dropkit {dropkit.__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    print(f"torch {torch.__version__} (threads: {torch.get_num_threads()}, "
          f"cuda: {torch.cuda.is_available()}, CPU kernels: "
          f"{torch.backends.cpu.get_cpu_capability()}; `dropkit lab` asks for AVX2 on x86-64)")
    for dist in ("numpy", "numba", "triton", "scikit-learn", "mnist1d", "matplotlib", "rich"):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "not installed"
        print(f"{dist} {version}")
    print(f"backend in force: {dropkit.get_backend()}")
    for name, why in dropkit.available_backends().items():
        print(f"  {name}: {'available' if why is None else 'unavailable (' + why + ')'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dropkit`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(prog="dropkit", description="dropkit: dropout done right.")
    top.add_argument("--version", action="store_true", help="print the version and exit")
    top.add_argument("command", choices=("lab", "info"),
                     help="lab: run the lab (lab report DIR: rebuild a report); info: versions")
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):
        from dropkit import __version__

        print(f"dropkit {__version__}")
        return 0
    cmd, rest = argv[0], argv[1:]
    try:
        if cmd == "info":
            return _info()
        if cmd == "lab":
            return _report(rest[1:]) if rest[:1] == ["report"] else _run_lab(rest)
        top.parse_args([cmd])  # prints the usage error and exits 2
    except (ValueError, RuntimeError, ImportError) as err:
        print(f"dropkit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dropkit: interrupted; every finished trial is stored: rerun with the same "
              "--out to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dropkit info | head`: the reader left; no traceback
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # the shell's code for a process ended by SIGPIPE
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
