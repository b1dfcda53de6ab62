"""``partally info``: every backend, available here or why not, and auto's cached models."""

from __future__ import annotations

import argparse
from typing import Any


def _info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from partally._api import backends
    from partally._version import __version__
    from partally.cli.auto import print_models

    table = Table(title=f"partally {__version__}: backends on this machine")
    table.add_column("backend")
    table.add_column("available")
    table.add_column("device / why not")
    for info in backends():
        if info.available:
            table.add_row(info.name, "[green]yes[/]", escape(info.device))
        else:
            table.add_row(info.name, "[red]no[/]", escape(info.reason or ""))  # keeps [cuda]
    console = Console()
    console.print(table)
    print_models(console)  # auto's cached models; never calibrates
    return 0


def add_command(commands: Any) -> None:
    info = commands.add_parser("info", help="list every backend: available here, or why not")
    info.set_defaults(func=_info)
