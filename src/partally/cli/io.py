"""The IO commands: ``partally fetch`` and ``partally serve``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import Any

MODES = ("asyncio", "threads", "sequential")  # partally.io.fetch.MODES, without importing httpx here
SHOWN_FAILURES = 20  # the summary lists this many failures; --json has them all


def _error(command: str, message: str) -> int:
    print(f"partally {command}: error: {message}", file=sys.stderr)
    return 2


def _read_urls(args: argparse.Namespace) -> list[str]:
    urls = list(args.urls)
    if args.file:
        with open(args.file, encoding="utf-8") as lines:
            urls += [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]
    return urls


def _fetch(args: argparse.Namespace) -> int:
    if args.limit < 1:
        return _error("fetch", f"--limit must be >= 1, got {args.limit}")
    try:
        urls = _read_urls(args)
    except OSError as exc:
        return _error("fetch", f"cannot read --file {args.file}: {exc.strerror or exc}")
    if not urls:
        return _error("fetch", "no URLs: give them as arguments or with --file FILE")

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from partally.io.fetch import fetch_all

    console = Console(soft_wrap=True)
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"fetching ({args.mode})", total=len(urls))
        start = time.perf_counter()
        results = fetch_all(
            urls, args.mode, limit=args.limit, on_result=lambda _: progress.advance(task)
        )
        elapsed = time.perf_counter() - start
    failures = [r for r in results if not r.ok]
    size = sum(r.bytes for r in results)
    console.print(
        f"[green]{len(results) - len(failures)} ok[/], [red]{len(failures)} failed[/]; "
        f"{size:,} bytes in {elapsed:.2f} s, {len(results) / elapsed:.0f} requests/s "
        f"({args.mode}, limit {args.limit})",
        highlight=False,
    )
    for result in failures[:SHOWN_FAILURES]:
        console.print(f"  [red]✗[/] {escape(result.url)}: {escape(str(result.error))}", highlight=False)
    if len(failures) > SHOWN_FAILURES:
        more = len(failures) - SHOWN_FAILURES
        console.print(f"  ... and {more} more" + ("" if args.json else " (--json FILE lists all)"))
    if args.json:
        rows: list[dict[str, Any]] = [{**asdict(r), "ok": r.ok} for r in results]
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=1)
            out.write("\n")
    return 1 if failures else 0


def _serve(args: argparse.Namespace) -> int:
    checks = [
        (0 <= args.port <= 65535, f"--port must be in 0..65535, got {args.port}"),
        (args.latency >= 0, f"--latency must be >= 0 seconds, got {args.latency}"),
        (args.jitter >= 0, f"--jitter must be >= 0 seconds, got {args.jitter}"),
        (0 <= args.fail_rate <= 1, f"--fail-rate must be in [0, 1], got {args.fail_rate}"),
        (args.size >= 0, f"--size must be >= 0 bytes, got {args.size}"),
    ]
    for ok, message in checks:
        if not ok:
            return _error("serve", message)
    from partally.io.server import serve

    print(
        f"serving http://{args.host}:{args.port}/ (latency {args.latency} s, jitter {args.jitter} s, "
        f"fail rate {args.fail_rate}, {args.size} bytes); Ctrl-C stops",
        file=sys.stderr,
    )
    serve(
        args.host,
        args.port,
        latency=args.latency,
        jitter=args.jitter,
        fail_rate=args.fail_rate,
        size=args.size,
    )
    return 0


def add_io_commands(subparsers: Any) -> None:
    """Register ``fetch`` and ``serve`` on the ``partally`` command's subparsers."""
    fetch = subparsers.add_parser(
        "fetch",
        help="fetch URLs concurrently with httpx: a progress bar, then a summary",
        description="Fetch URLs with httpx and summarise. Exit status 1 if any failed.",
    )
    fetch.add_argument("urls", nargs="*", metavar="URL", help="http or https URLs")
    fetch.add_argument("--file", metavar="FILE", help="read URLs from FILE, one a line ('#' comments)")
    fetch.add_argument("--mode", default="asyncio", choices=MODES, help="default: asyncio")
    fetch.add_argument("--limit", type=int, default=50, metavar="K", help="at most K in flight (50)")
    fetch.add_argument("--json", metavar="FILE", help="write every result to FILE as JSON")
    fetch.set_defaults(func=_fetch)

    serve = subparsers.add_parser(
        "serve",
        help="run the local test server (uvicorn) for demos and benchmarks",
        description="A local HTTP server that answers every path after a delay. See "
        "partally.io.server for ?latency=, ?size=, ?status=, /close and /stats.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (loopback only)")
    serve.add_argument("--port", type=int, default=8000, help="default: 8000")
    serve.add_argument("--latency", type=float, default=0.05, help="seconds before answering (0.05)")
    serve.add_argument("--jitter", type=float, default=0.0, help="up to this many more seconds (0)")
    serve.add_argument("--fail-rate", type=float, default=0.0, help="share answered with 500 (0)")
    serve.add_argument("--size", type=int, default=1024, help="body size in bytes (1024)")
    serve.set_defaults(func=_serve)
