"""The ``partally`` command line: compute, info, bench, bench-io, calibrate, fetch, serve.

One module per subcommand (or pair of them), each with ``add_command(s)`` registering itself.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from partally.cli.args import error, workload_error



def _parser() -> argparse.ArgumentParser:
    from partally._version import __version__
    from partally.cli import auto, bench, bench_io, compute, info, io

    parser = argparse.ArgumentParser(
        prog="partally", description="Count with every backend Python has; fetch URLs concurrently."
    )
    parser.add_argument("--version", action="version", version=f"partally {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    compute.add_command(commands)
    info.add_command(commands)
    bench.add_bench_command(commands)
    bench_io.add_command(commands)
    io.add_io_commands(commands)
    auto.add_dispatch_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad arguments)."""
    from partally._errors import BackendUnavailable, WorkloadError

    try:
        args = _parser().parse_args(argv)
        return args.func(args)
    except (TypeError, ValueError, BackendUnavailable) as exc:
        return error(args.command, str(exc))
    except WorkloadError as exc:  # the user's function raised: its own frame, not partally's
        return workload_error(args.command, exc, getattr(getattr(args, "workload", None), "function", None))
    except KeyboardInterrupt:
        print("partally: interrupted", file=sys.stderr)
        return 130
