"""``partally compute N``: count (or sum, mean, min, max) on one backend, or the one auto picks."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from partally.cli.args import backend_choices, count_argument, parse_size, positive, workload_argument
from partally.workloads.reductions import NAMES


def _compute(args: argparse.Namespace) -> int:
    from partally._api import compute

    try:
        args.workload = workload_argument(args.workload, args.reduce)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"argument --workload: {exc}") from None
    if args.verbose:
        print(describe_choice(args), file=sys.stderr)
    with _Bar() as bar:
        result = compute(
            args.n, backend=args.backend, workload=args.workload, workers=args.workers,
            seed=args.seed, progress=bar.update,
        )
    print(shown(result, args))
    return 0


class _Bar:
    """A progress bar with an ETA on stderr, shown only on a terminal and only once a run has
    taken ``SHOW_AFTER_S`` (short runs print nothing but their result). Updated from compute's
    progress callback, in this thread; stopped (and erased) however the run ends, Ctrl-C too."""

    SHOW_AFTER_S = 2.0

    def __init__(self) -> None:
        self._began = time.monotonic()
        self._progress: Any = None
        self._task: Any = None
        self._terminal: bool | None = None

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, done: int, total: int) -> None:
        if self._progress is None:
            if time.monotonic() - self._began < self.SHOW_AFTER_S or self._terminal is False:
                return
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

            console = Console(stderr=True)
            self._terminal = console.is_terminal
            if not self._terminal:
                return
            self._progress = Progress(
                "computing", BarColumn(), TaskProgressColumn(), "ETA", TimeRemainingColumn(),
                console=console, transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("computing", total=total)
        self._progress.update(self._task, completed=done)


def shown(result: Any, args: argparse.Namespace) -> str:
    """The result as printed: floats by ``repr`` (they read back to the same float), a min or
    max as ``value at i = index``, pi's count with its estimate."""
    workload = args.workload
    if workload.name == "pi" and workload.builtin and args.n:
        return f"{result}  (pi ~ {4 * result / args.n:.10f})"
    if workload.reduce in ("min", "max"):
        return f"{result.value!r} at i = {result.index}"
    return repr(result)


def describe_choice(args: argparse.Namespace) -> str:
    """What ``partally compute --verbose`` prints to stderr before the count."""
    from partally.auto import explain

    if args.backend != "auto":
        return f"backend {args.backend!r} (named on the command line)"
    return str(explain(args.n, workload=args.workload))


def add_command(commands: Any) -> None:
    compute = commands.add_parser(
        "compute", help="count the i in [0, N) that satisfy a workload, or reduce its values"
    )
    compute.add_argument("n", type=count_argument, metavar="N", help="size: 1000, 1e9, 10**9 ...")
    compute.add_argument("--backend", default="auto", choices=backend_choices())
    compute.add_argument(
        "--workload",
        default="count",
        help="count, primes, pi, or module:function (your own; default count)",
    )
    compute.add_argument(
        "--reduce",
        choices=NAMES,
        default=None,
        help="how the values f(i, seed) combine: count (default), sum, mean, min, max "
        "(your own workload; a float prints by repr, exactly)",
    )
    compute.add_argument("--workers", type=positive, default=None,
                         help="default: every core (ray, celery: every CPU of the cluster)")
    compute.add_argument("--seed", type=parse_size, default=0, help="the workload's seed (default 0)")
    compute.add_argument("--verbose", "-v", action="store_true", help="say which backend runs, why")
    compute.set_defaults(func=_compute)
