"""The ``partally`` command line: compute, info, bench, calibrate, fetch, serve."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

_POWER = re.compile(r"^\s*(\d+)\s*\*\*\s*(\d+)\s*$")


def parse_size(text: str) -> int:
    """A size such as ``1000``, ``1_000``, ``1e9``, ``10**9`` or ``2**32`` as an int."""
    power = _POWER.match(text)
    if power:
        base, exponent = int(power.group(1)), int(power.group(2))
        if exponent > 64:
            raise argparse.ArgumentTypeError(f"{text!r} is too large")
        return base**exponent
    try:
        value = Decimal(text.replace("_", ""))
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value != value.to_integral_value():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number (use forms like 1000, 1e9 or 10**9)"
        )
    if value.adjusted() > 30:
        raise argparse.ArgumentTypeError(f"{text!r} is too large")
    return int(value)


def _count_argument(text: str) -> int:
    value = parse_size(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; sizes are >= 0")
    return value


def _positive(text: str) -> int:
    value = parse_size(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _compute(args: argparse.Namespace) -> int:
    import partally

    if args.verbose:
        from partally._dispatch_cli import describe_choice

        print(describe_choice(args), file=sys.stderr)
    result = partally.compute(
        args.n, backend=args.backend, workload=args.workload, workers=args.workers, seed=args.seed
    )
    if args.workload == "pi" and args.n:
        print(f"{result}  (pi ~ {4 * result / args.n:.10f})")
    else:
        print(result)
    return 0


def _info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    import partally

    table = Table(title=f"partally {partally.__version__}: backends on this machine")
    table.add_column("backend")
    table.add_column("available")
    table.add_column("device / why not")
    for info in partally.backends():
        if info.available:
            table.add_row(info.name, "[green]yes[/]", escape(info.device))
        else:
            table.add_row(info.name, "[red]no[/]", escape(info.reason or ""))  # keeps [cuda]
    console = Console()
    console.print(table)
    from partally._dispatch_cli import print_models

    print_models(console)  # auto's cached models; never calibrates
    return 0


def _parser() -> argparse.ArgumentParser:
    from partally import __version__
    from partally.backends import NAMES as BACKEND_NAMES
    from partally._bench_cli import add_bench_command
    from partally._dispatch_cli import add_dispatch_commands
    from partally._io_cli import add_io_commands
    from partally.workloads import WORKLOADS

    parser = argparse.ArgumentParser(
        prog="partally", description="Count with every backend Python has; fetch URLs concurrently."
    )
    parser.add_argument("--version", action="version", version=f"partally {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compute = commands.add_parser("compute", help="count the i in [0, N) that satisfy a workload")
    compute.add_argument("n", type=_count_argument, metavar="N", help="size: 1000, 1e9, 10**9 ...")
    compute.add_argument("--backend", default="auto", choices=("auto", *BACKEND_NAMES))
    compute.add_argument("--workload", default="count", choices=WORKLOADS)
    compute.add_argument("--workers", type=_positive, default=None, help="default: every core")
    compute.add_argument("--seed", type=parse_size, default=0, help="pi's seed (default 0)")
    compute.add_argument("--verbose", "-v", action="store_true", help="say which backend runs, why")
    compute.set_defaults(func=_compute)

    info = commands.add_parser("info", help="list every backend: available here, or why not")
    info.set_defaults(func=_info)

    # Each further command lives in its own module and registers itself here.
    add_bench_command(commands)
    add_io_commands(commands)
    add_dispatch_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad arguments)."""
    from partally._errors import BackendUnavailable

    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (TypeError, ValueError, BackendUnavailable) as exc:
        print(f"partally: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("partally: interrupted", file=sys.stderr)
        return 130
