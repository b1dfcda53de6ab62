"""``partally bench-io``: fetch from the local test server sequentially, with threads and asyncio."""

from __future__ import annotations

import argparse
import math
from typing import Any

from partally.cli.args import BadArgument, check_writable, count_argument, error, positive


def _latency(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 60:
        raise argparse.ArgumentTypeError(f"{text!r} is not a latency in seconds in [0, 60]")
    return value


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from partally.bench import report
    from partally.bench.io import run_io_bench

    if args.json is not None:
        try:
            check_writable("--json", args.json)
        except BadArgument as exc:
            return error("bench-io", str(exc))
    config = {
        "requests": args.requests,
        "latency": args.latency,
        "limit": args.limit,
        "size": args.size,
        "keep": not args.discard_bodies,
    }
    rows = run_io_bench(console=Console(), **config)
    if args.json:
        data = {
            "schema": report.SCHEMA,
            "machine": report.machine(),
            "config": {"io": True, **config},
            "io": rows,
        }
        report.write_json(data, args.json)
        Console(stderr=True).print(f"wrote {args.json}", highlight=False)
    return 0


def add_command(commands: Any) -> None:
    bench_io = commands.add_parser(
        "bench-io",
        help="the IO bench: sequential, threads and asyncio fetches from a local server",
        description=(
            "Start the local test server, fetch from it sequentially, with threads and with "
            "asyncio, and print each mode's time beside its ideal."
        ),
    )
    bench_io.add_argument("--requests", type=positive, default=1000, help="URLs (default 1000)")
    bench_io.add_argument(
        "--latency", type=_latency, default=0.05, help="server latency, seconds (default 0.05)"
    )
    bench_io.add_argument(
        "--limit", type=positive, default=100, help="requests in flight (default 100)"
    )
    bench_io.add_argument(
        "--size", type=count_argument, default=10240, help="body size in bytes (default 10240)"
    )
    bench_io.add_argument(
        "--discard-bodies", action="store_true", help="count each body without keeping it"
    )
    bench_io.add_argument("--json", metavar="FILE", help="write the rows and the machine as JSON")
    bench_io.set_defaults(func=_run)
