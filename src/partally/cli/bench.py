"""``partally bench``: its arguments, checked before any work starts, and the run itself.

Every option is taken as text and checked here, so that a bad one gets a single line on stderr and
exit status 2 (argparse's own errors add a usage block). Exit status 1: some result was wrong.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

from partally import _format
from partally._machine import cores
from partally.bench import run as _bench
from partally.cli.args import BadArgument, check_writable, error
from partally.cli.args import workload_argument
from partally.workloads import Workload

GUIDE_TASKS, GUIDE_COUNTS = 4, 10**7  # the guide: 4 tasks of 10**7 counts
GUIDE_REPEAT, GUIDE_BUDGET_S = 3, 600.0  # the guide's rows must run: no practical budget


@dataclass
class _Plan:
    workloads: list[Workload]
    sizes: list[int]
    backends: list[str]
    unavailable: dict[str, str]
    repeat: int
    workers: int
    budget_s: float


def add_bench_command(commands: Any) -> None:
    """Register ``bench`` on the ``partally`` subcommands."""
    bench = commands.add_parser(
        "bench",
        help="time every backend on every workload and size, each result verified",
        description=(
            "Time every available backend (and backend='auto') on each workload and size, check "
            "every result against a reference, and print a table per workload. Exit status 1 "
            "if any result is wrong, 2 for bad arguments."
        ),
    )
    bench.add_argument(
        "--workload", nargs="+", action="extend", metavar="W",
        help="count, primes, pi or module:function (your own); repeatable or comma-separated; "
        "default: the three built-ins",
    )
    bench.add_argument("--sizes", metavar="N,N,...",
                       help="sizes such as 1e3,1e6,10**7 (default 1e3..1e7)")
    bench.add_argument("--backends", metavar="A,B",
                       help="backends to time, 'auto' included (default: every available one)")
    bench.add_argument("--repeat", metavar="K",
                       help=f"runs per size (default {_bench.DEFAULT_REPEAT})")
    bench.add_argument("--workers", metavar="K",
                       help="workers for parallel backends (default: every core)")
    bench.add_argument("--budget", metavar="SECONDS",
                       help="skip a run predicted to take longer than this "
                       f"(default {_bench.DEFAULT_BUDGET_S:g})")
    bench.add_argument("--json", metavar="FILE",
                       help="write every measurement and the machine as JSON")
    bench.add_argument("--plot", metavar="FILE",
                       help="time against n, log-log (needs partally[plot])")
    bench.add_argument("--quick", action="store_true", help="tiny sizes, few runs: a smoke test")
    bench.add_argument("--guide", action="store_true",
                       help="the guide's experiment: 4 tasks of 10**7 counts on every backend")
    bench.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        plan = _check(args)
    except BadArgument as exc:
        return error("bench", str(exc))
    return _run_counting(args, plan)


# ----------------------------------------------------------------------------- checks


def _check(args: argparse.Namespace) -> _Plan:
    from partally.cli.args import parse_size
    from partally.backends import names
    from partally.workloads import INDEX_LIMIT

    if args.guide and (args.workload or args.sizes):
        raise BadArgument("--guide fixes the workload (count) and the size (4 x 10**7)")

    workloads: list[Workload] = []
    for item in args.workload or (["count"] if args.guide else _bench.DEFAULT_WORKLOADS):
        for name in filter(None, (part.strip() for part in item.split(","))):
            try:
                chosen = workload_argument(name)
            except argparse.ArgumentTypeError as exc:
                raise BadArgument(f"--workload: {exc}") from None
            if chosen not in workloads:
                workloads.append(chosen)

    def number(text: str, what: str, low: int = 1) -> int:
        try:
            value = parse_size(text)
        except argparse.ArgumentTypeError as exc:
            raise BadArgument(f"{what}: {exc}") from None
        if value < low:
            raise BadArgument(f"{what}: {text!r} must be >= {low}")
        return value

    if args.guide:
        sizes = [GUIDE_TASKS * GUIDE_COUNTS]
    elif args.sizes is not None:
        parts = [part.strip() for part in args.sizes.split(",") if part.strip()]
        if not parts:
            raise BadArgument("--sizes: give at least one size, e.g. --sizes 1e3,1e6")
        sizes = sorted({number(part, "--sizes") for part in parts})
    else:
        sizes = list(_bench.QUICK_SIZES if args.quick else _bench.DEFAULT_SIZES)
    if sizes[-1] > INDEX_LIMIT:
        raise BadArgument(f"--sizes: {sizes[-1]} is past 2**63 - 1")
    for chosen in workloads:
        if sizes[-1] > chosen.limit:
            raise BadArgument(
                f"--sizes: {chosen.name} is exact only up to {_format.size(chosen.limit)}, "
                f"got {sizes[-1]}"
            )

    known = [*names(), _bench.AUTO]
    requested = None
    if args.backends is not None:
        requested = [part.strip() for part in args.backends.split(",") if part.strip()]
        if not requested:
            raise BadArgument(f"--backends: give at least one of {known}")
        for name in requested:
            if name not in known:
                raise BadArgument(f"unknown backend {name!r}; expected one of {known}")
    elif args.guide:
        requested = list(names())  # the ways of running, not the chooser

    repeat_default = _bench.QUICK_REPEAT if args.quick else _bench.DEFAULT_REPEAT
    repeat = number(args.repeat, "--repeat") if args.repeat else (
        GUIDE_REPEAT if args.guide else repeat_default)
    workers = number(args.workers, "--workers") if args.workers else (
        GUIDE_TASKS if args.guide else cores())
    budget = _budget(args)

    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None:
            check_writable(flag, path)
    if args.plot is not None:
        _check_plot(args.plot)

    backends, unavailable = _bench.select_backends(requested, workloads)
    return _Plan(workloads, sizes, backends, unavailable, repeat, workers, budget)


def _budget(args: argparse.Namespace) -> float:
    if args.budget is None:
        if args.guide:
            return GUIDE_BUDGET_S
        return _bench.QUICK_BUDGET_S if args.quick else _bench.DEFAULT_BUDGET_S
    try:
        budget = float(args.budget)
    except ValueError:
        budget = float("nan")
    if not budget > 0 or budget == float("inf"):
        raise BadArgument(f"--budget: {args.budget!r} is not a positive number of seconds")
    return budget


def _check_plot(path: str) -> None:
    from partally.bench.plot import PlotUnavailable, require_matplotlib

    try:
        require_matplotlib()
    except PlotUnavailable as exc:
        raise BadArgument(str(exc)) from None
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    if suffix not in formats:
        raise BadArgument(
            f"--plot: cannot tell the image format of {path!r}; end it in one of "
            f"{sorted(formats)} (e.g. bench.png)"
        )


# ----------------------------------------------------------------------------- running


def _run_counting(args: argparse.Namespace, plan: _Plan) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from partally.bench import report as _bench_report

    out, err = Console(), Console(stderr=True)
    if not out.is_terminal:  # a file or a pipe: wide enough that no cell wraps
        out.width = max(out.width, 120)
    if not plan.backends:
        err.print("partally bench: error: no backend to time: " + "; ".join(
            f"{name}: {reason}" for name, reason in plan.unavailable.items()),
            markup=False, highlight=False)
        return 2
    cells = len(plan.workloads) * len(plan.backends) * (1 + len(plan.sizes))
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=err, transient=True,
    )
    with progress:
        task = progress.add_task("bench", total=cells)

        def advance(description: str) -> None:
            progress.update(task, advance=1, description=description)

        def alarm(text: str) -> None:
            progress.console.print(text, style="bold red", markup=False, highlight=False,
                                   soft_wrap=True)

        bench = _bench.run_bench(
            plan.workloads, plan.sizes, plan.backends, plan.unavailable,
            repeat=plan.repeat, workers=plan.workers, budget_s=plan.budget_s,
            advance=advance, alarm=alarm, guide=args.guide,
        )
    data = _bench_report.report(bench)
    _bench_report.render(data, out)
    if args.json:
        _bench_report.write_json(data, args.json)
        err.print(f"wrote {args.json}", highlight=False)
    if args.plot:
        from partally.bench import plot as _bench_plot

        _bench_plot.plot(data, args.plot)
        err.print(f"wrote {args.plot}", highlight=False)
    for m in bench.failures:
        err.print(_bench.describe_failure(m), style="bold red", markup=False, highlight=False,
                  soft_wrap=True)
    return 0 if bench.ok else 1
