"""``partally calibrate``, the models part of ``partally info``, and ``compute --verbose``."""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from partally.workloads import WORKLOADS

_FOLDED_NOTE = (
    "count: numba and g++ fold the loop to `hi - lo`, so compiled times are call overhead only"
)


def _rate_words(rate: float) -> str:
    return "no growth" if math.isinf(rate) else f"{rate:.3g}/s"


def _seconds_words(t: float) -> str:
    from partally._dispatch import _seconds

    return _seconds(t) if t else "0"


def _skipped_words(skipped: dict[str, str]) -> str:
    """"cuda, numba-cuda (unavailable); threads, processes (cannot win)" from the reasons."""
    groups: dict[str, list[str]] = {}
    for name, why in skipped.items():
        short = (
            "unavailable" if why.startswith("unavailable")
            else "no RAY_ADDRESS" if "RAY_ADDRESS" in why
            else "cannot win" if "cannot beat" in why
            else "failed"
        )
        groups.setdefault(short, []).append(name)
    return "; ".join(f"{', '.join(names)} ({short})" for short, names in groups.items())


def _models_table(calibrations: dict[str, Any], title: str) -> Any:
    from rich.table import Table

    from partally import _calibrate

    table = Table(title=title)
    for column in ("workload", "backend", "overhead", "rate", "one-time start", "timed n"):
        table.add_column(column)
    for workload, calibration in calibrations.items():
        for name, model in calibration.models.items():
            words = _calibrate._size_words  # noqa: SLF001
            sizes = f"{words(model.sizes[0])} to {words(model.sizes[-1])} ({len(model.sizes)})"
            table.add_row(
                workload,
                name,
                _seconds_words(model.overhead),
                _rate_words(model.rate),
                _seconds_words(model.startup),
                sizes,
            )
        table.add_section()
    return table


def _crossover_lines(calibrations: dict[str, Any]) -> list[str]:
    """Who auto picks where, per workload, then which backends were not timed and why."""
    from partally import _calibrate

    lines = [f'backend="auto" picks (n < {_calibrate.TINY} always python):']
    skipped: dict[str, list[str]] = {}
    for workload, calibration in calibrations.items():
        words = _calibrate.crossover_words(calibration.models, _calibrate.limit(workload))
        lines.append(f"  {workload}: {words}")
        if calibration.skipped:
            skipped.setdefault(_skipped_words(calibration.skipped), []).append(workload)
    for words, workloads in skipped.items():
        lines.append(f"not timed ({', '.join(workloads)}): {words}")
    return lines


def print_models(console: Any) -> None:
    """The cached models and who auto picks where; never calibrates (``partally info``)."""
    from partally import _calibrate, _dispatch

    forced = os.environ.get("PARTALLY_BACKEND", "").strip()
    if forced and forced != "auto":
        console.print(f'backend="auto": forced to {forced!r} by PARTALLY_BACKEND')
        return
    if os.environ.get("PARTALLY_NO_CALIBRATE", "").strip().lower() not in ("", "0", "false", "no"):
        order = ", ".join(_dispatch.FIXED_ORDER)
        console.print(f'backend="auto": fixed order {order} (PARTALLY_NO_CALIBRATE is set)')
        return
    calibrations = {}
    missing = []
    for workload in WORKLOADS:
        found = _dispatch.calibration(workload, measure=False)
        if found is None:
            missing.append(workload)
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

    from partally import _calibrate, _dispatch

    console = Console()
    workloads = [args.workload] if args.workload else list(WORKLOADS)
    calibrations = {}
    for workload in workloads:
        with console.status(f"timing every backend on {workload} ..."):
            calibrations[workload] = _dispatch.recalibrate(workload)
    title = 'backend="auto": fitted t(n) = overhead + n / rate'
    console.print(_models_table(calibrations, title))
    for line in _crossover_lines(calibrations):
        console.print(line, highlight=False)
    if "count" in calibrations:
        console.print(f"[dim]{_FOLDED_NOTE}[/]")
    seconds = ", ".join(f"{w} {c.elapsed_s:.1f} s" for w, c in calibrations.items())
    console.print(f"[dim]took {seconds}; cached in {_calibrate.cache_dir()}[/]", highlight=False)
    return 0


def describe_choice(args: argparse.Namespace) -> str:
    """What ``partally compute --verbose`` prints to stderr before the count."""
    import partally

    if args.backend != "auto":
        return f"backend {args.backend!r} (named on the command line)"
    return str(partally.explain(args.n, workload=args.workload))


def add_dispatch_commands(commands: Any) -> None:
    """Register ``calibrate`` on the ``partally`` subcommand parser."""
    calibrate = commands.add_parser(
        "calibrate", help='time every backend and fit the models backend="auto" picks by'
    )
    calibrate.add_argument(
        "--workload", choices=WORKLOADS, default=None, help="default: every workload"
    )
    calibrate.set_defaults(func=_calibrate_command)
