"""``partally calibrate``, the models part of ``partally info``, and ``compute --verbose``."""

from __future__ import annotations

import argparse
from typing import Any

from partally import _format
from partally.auto import dispatcher
from partally.auto.calibration import NOT_CONFIGURED, limit
from partally.auto.models import TINY, crossover_words
from partally.cli.args import workload_argument
from partally.workloads import BUILTINS

_FOLDED_NOTE = (
    "count: numba and g++ fold the loop to `hi - lo`, so compiled times are call overhead only"
)


def _seconds_words(t: float) -> str:
    return _format.seconds(t) if t else "0"


def _skipped_words(skipped: dict[str, str]) -> str:
    """"cuda, numba-cuda (unavailable); threads, processes (cannot win)" from the reasons."""
    groups: dict[str, list[str]] = {}
    for name, why in skipped.items():
        short = (
            "unavailable" if why.startswith("unavailable")
            else "not configured" if why.startswith(NOT_CONFIGURED)
            else "cannot win" if "cannot beat" in why
            else "failed"
        )
        groups.setdefault(short, []).append(name)
    return "; ".join(f"{', '.join(names)} ({short})" for short, names in groups.items())


def _models_table(calibrations: dict[str, Any], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in ("workload", "backend", "overhead", "rate", "one-time start", "timed n"):
        table.add_column(column)
    for workload, calibration in calibrations.items():
        for name, model in calibration.models.items():
            words = _format.size_words
            sizes = f"{words(model.sizes[0])} to {words(model.sizes[-1])} ({len(model.sizes)})"
            table.add_row(
                workload.name,
                name,
                _seconds_words(model.overhead),
                _format.rate(model.rate),
                _seconds_words(model.startup),
                sizes,
            )
        table.add_section()
    return table


def _crossover_lines(calibrations: dict[str, Any]) -> list[str]:
    """Who auto picks where, per workload, then which backends were not timed and why."""
    lines = [f'backend="auto" picks (n < {TINY} always python):']
    skipped: dict[str, list[str]] = {}
    for workload, calibration in calibrations.items():
        words = crossover_words(calibration.models, limit(workload))
        lines.append(f"  {workload.name}: {words}")
        if calibration.skipped:
            skipped.setdefault(_skipped_words(calibration.skipped), []).append(workload.name)
    for words, workloads in skipped.items():
        lines.append(f"not timed ({', '.join(workloads)}): {words}")
    return lines


def print_models(console: Any) -> None:
    """The cached models and who auto picks where; never calibrates (``partally info``)."""
    from partally.auto.dispatcher import FIXED_ORDER

    chooser = dispatcher()
    settings = chooser.settings  # ValueError for a PARTALLY_BACKEND that names no backend
    if settings.forced is not None:
        console.print(f'backend="auto": forced to {settings.forced!r} by PARTALLY_BACKEND')
        return
    if settings.no_calibrate:
        order = ", ".join(FIXED_ORDER)
        console.print(f'backend="auto": fixed order {order} (PARTALLY_NO_CALIBRATE is set)')
        return
    calibrations = {}
    missing = []
    for workload in BUILTINS.values():
        found = chooser.calibration(workload, measure=False)
        if found is None:
            missing.append(workload.name)
        else:
            calibrations[workload] = found
    if calibrations:
        console.print(_models_table(calibrations, 'backend="auto": fitted t(n) = overhead + n / rate'))
        for line in _crossover_lines(calibrations):
            console.print(line, highlight=False)
    if missing:
        console.print(
            f"{', '.join(missing)}: not calibrated; run `partally calibrate`", highlight=False
        )


def _calibrate_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    workloads = [args.workload] if args.workload else list(BUILTINS.values())
    calibrations = {}
    problems = set()
    for workload in workloads:
        with console.status(f"timing every backend on {workload.name} ..."):
            calibrations[workload], problem = dispatcher().recalibrate(workload)
        if problem is not None:
            problems.add(problem)
    title = 'backend="auto": fitted t(n) = overhead + n / rate'
    console.print(_models_table(calibrations, title))
    for line in _crossover_lines(calibrations):
        console.print(line, highlight=False)
    if any(workload.folds for workload in calibrations):
        console.print(f"[dim]{_FOLDED_NOTE}[/]")
    seconds = ", ".join(f"{w.name} {c.elapsed_s:.1f} s" for w, c in calibrations.items())
    path = dispatcher().cache.path
    if problems:
        console.print(
            f"took {seconds}; NOT cached: cannot write {path} ({'; '.join(sorted(problems))}): "
            "every new process will calibrate again",
            style="bold red", markup=False, highlight=False,
        )
        return 0
    console.print(f"[dim]took {seconds}; cached in {path}[/]", highlight=False)
    return 0


def add_dispatch_commands(commands: Any) -> None:
    """Register ``calibrate`` on the ``partally`` subcommand parser."""
    calibrate = commands.add_parser(
        "calibrate", help='time every backend and fit the models backend="auto" picks by'
    )
    calibrate.add_argument(
        "--workload",
        type=workload_argument,
        default=None,
        help="count, primes, pi or module:function (default: the three built-ins)",
    )
    calibrate.set_defaults(func=_calibrate_command)
