"""Argument parsing shared by the subcommands: sizes, counts, workers, workloads."""

from __future__ import annotations

import argparse
import linecache
import os
import re
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from partally._errors import WorkloadError

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


def count_argument(text: str) -> int:
    value = parse_size(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; sizes are >= 0")
    return value


def positive(text: str) -> int:
    value = parse_size(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


class BadArgument(ValueError):
    """One line for stderr: what was wrong and what is accepted."""


def check_writable(flag: str, path: str) -> None:
    """``BadArgument`` unless a file can be written at ``path``: checked before any work, so
    that no result is lost to a path that cannot be written."""
    if not path:
        raise BadArgument(f"{flag}: give a file name")
    if os.path.isdir(path):
        raise BadArgument(f"{flag}: {path!r} is a directory; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise BadArgument(f"{flag}: cannot write {path!r}: folder {folder!r} does not exist")
    target = path if os.path.exists(path) else folder
    if not os.access(target, os.W_OK):
        raise BadArgument(f"{flag}: cannot write {path!r}: permission denied")


def error(command: str, message: str) -> int:
    """Print one line as argparse does for ``partally COMMAND`` (``partally COMMAND: error: ...``)
    and return the exit status for bad arguments, 2."""
    print(f"partally {command}: error: {message}", file=sys.stderr)
    return 2


def workload_error(command: str, failure: WorkloadError, function: Any = None) -> int:
    """``error``'s line for a workload's function that raised, then the user's frame where it
    raised (``  File "f.py", line 7, in f`` and that source line, as a traceback shows them),
    without partally's own frames; the exit status for bad arguments, 2. ``function``: the
    workload's function, which names the file of a frame from a function shipped by value to
    another process (cloudpickle names its file ``<dynamic-code>``)."""
    status = error(command, str(failure))
    if failure.frame is None:
        return status
    file, line, name, source = failure.frame
    code = getattr(function, "__code__", None)
    if file == "<dynamic-code>" and code is not None and code.co_name == name:
        file, source = code.co_filename, linecache.getline(code.co_filename, line).strip()
    print(f'  File "{file}", line {line}, in {name}', file=sys.stderr)
    if source:
        print(f"    {source}", file=sys.stderr)
    return status


def workload_argument(text: str, reduce: str | None = None) -> Any:
    """A workload on the command line: a built-in's name, or ``module:function`` (importable),
    reducing by ``reduce`` (None: its own)."""
    from partally.workloads import BUILTINS, names, resolve

    if ":" not in text:
        if text not in BUILTINS:
            raise argparse.ArgumentTypeError(
                f"unknown workload {text!r}; expected one of {names()} or module:function"
            )
        try:
            return resolve(text, reduce)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    from partally.workloads.user import from_import_path

    try:
        return from_import_path(text, reduce)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def backend_choices() -> tuple[str, ...]:
    from partally.backends import names

    return ("auto", *names())
