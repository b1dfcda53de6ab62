"""`partally bench-io`: each fetch mode against a local server, beside its ideal time."""

from __future__ import annotations

import math
import statistics
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import rich.console

__all__ = ["run_io_bench"]

REPEATS = 5  # each mode's time is the median of this many runs after a warm-up
SEQUENTIAL_SECONDS = 2.0  # the sequential mode fetches only as many URLs as fit in this at the ideal


def _plan(requests: int, latency: float, limit: int) -> list[tuple[str, int, int]]:
    """(mode, requests, workers) for each mode: threads fetch 4 rounds of `limit`, as in the issue."""
    sequential = max(1, min(requests, int(SEQUENTIAL_SECONDS / latency) if latency else requests))
    return [
        ("asyncio", requests, limit),
        ("threads", min(requests, 4 * limit), limit),
        ("sequential", sequential, 1),
    ]


def run_io_bench(
    requests: int = 1000,
    latency: float = 0.05,
    limit: int = 100,
    size: int = 10240,
    keep: bool = True,
    console: rich.console.Console | None = None,
) -> list[dict[str, Any]]:
    """Start the local server (answers of `size` bytes), fetch in each mode, print a table and
    return its rows. `keep=False` counts the bodies without keeping them.

    The ideal is requests × latency for sequential and ceil(requests / limit) × latency for the
    concurrent modes. Sequential fetches at most as many URLs as take 2 s at the ideal; threads
    fetch at most 4 × limit.
    """
    from rich.console import Console
    from rich.table import Table

    from partally.io.fetch import fetch_all
    from partally.io.server import server_process

    console = console or Console()
    rows = []
    with server_process(latency=latency, size=size) as base:
        for mode, count, workers in _plan(requests, latency, limit):
            urls = [f"{base}/{i}" for i in range(count)]
            fetch_all(urls[:workers], mode, limit=limit, keep=keep)  # warm up: imports, connections
            times, failed = [], 0
            for _ in range(REPEATS):
                start = time.perf_counter()
                results = fetch_all(urls, mode, limit=limit, keep=keep)
                times.append(time.perf_counter() - start)
                failed += sum(not r.ok for r in results)
            seconds = statistics.median(times)
            ideal = math.ceil(count / workers) * latency
            rows.append(
                {
                    "mode": mode,
                    "requests": count,
                    "workers": workers,
                    "seconds": seconds,
                    "ideal": ideal,
                    "x_ideal": seconds / ideal if ideal else math.nan,
                    "requests_per_s": count / seconds,
                    "failed": failed,
                }
            )
    kept = "kept" if keep else "counted, not kept"
    table = Table(
        title=f"fetch_all against a local server, latency {latency * 1000:g} ms, "
        f"{size:,}-byte bodies ({kept})"
    )
    for name in ("mode", "requests", "workers", "time (s)", "ideal (s)", "× ideal", "requests/s"):
        table.add_column(name, justify="left" if name == "mode" else "right")
    for row in rows:
        table.add_row(
            row["mode"],
            str(row["requests"]),
            str(row["workers"]),
            f"{row['seconds']:.3f}",
            f"{row['ideal']:.3f}",
            f"{row['x_ideal']:.2f}",
            f"{row['requests_per_s']:.0f}",
        )
    console.print(table)
    console.print(f"median of {REPEATS} runs per mode; failed requests: {sum(r['failed'] for r in rows)}")
    return rows
