"""The IO commands: ``partally fetch`` and ``partally serve``.

Every argument is checked before any request is made or any port is bound, so that a bad one gets
one line on stderr, ``partally <command>: error: ...`` (the prefix argparse and ``partally bench``
use), and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from typing import Any

from partally.cli.args import BadArgument, check_writable, error

MODES = ("asyncio", "threads", "sequential")  # partally.io.fetch.MODES, without importing httpx here
SHOWN_FAILURES = 20  # the summary lists this many failures; --json has them all
MAX_RETRIES = 100


def _read_urls(args: argparse.Namespace) -> list[str]:
    urls = list(args.urls)
    if args.file:
        try:
            with open(args.file, encoding="utf-8") as lines:
                urls += [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]
        except OSError as exc:
            raise BadArgument(f"cannot read --file {args.file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise BadArgument(f"cannot read --file {args.file}: not UTF-8 text ({exc})") from None
    return urls


def _timeout(text: str) -> float:
    """--timeout: seconds > 0; inf (or none) for no timeout."""
    try:
        value = math.inf if text.strip().lower() == "none" else float(text)
    except ValueError:
        value = math.nan
    if not value > 0:  # nan too
        raise BadArgument(f"--timeout must be a number of seconds > 0 (or inf), got {text!r}")
    return value


def _retries(text: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_RETRIES:
        raise BadArgument(f"--retries must be a whole number in 0..{MAX_RETRIES}, got {text!r}")
    return int(text)


def _fetch(args: argparse.Namespace) -> int:
    try:
        if args.limit < 1:
            raise BadArgument(f"--limit must be >= 1, got {args.limit}")
        timeout, retries = _timeout(args.timeout), _retries(args.retries)
        if args.json is not None:
            check_writable("--json", args.json)
        urls = _read_urls(args)
        if not urls:
            raise BadArgument("no URLs: give them as arguments or with --file FILE")
    except BadArgument as exc:
        return error("fetch", str(exc))

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
            urls,
            args.mode,
            limit=args.limit,
            timeout=timeout,
            retries=retries,
            on_result=lambda _: progress.advance(task),
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
        try:
            with open(args.json, "w", encoding="utf-8") as out:
                json.dump(rows, out, indent=1)
                out.write("\n")
        except OSError as exc:  # checked before the fetch, but a disk can fill or a folder go
            return error("fetch", f"--json: cannot write {args.json!r}: {exc.strerror or exc}")
    return 1 if failures else 0


def _serve(args: argparse.Namespace) -> int:
    finite = math.isfinite
    checks = [
        (0 <= args.port <= 65535, f"--port must be in 0..65535, got {args.port}"),
        (finite(args.latency) and args.latency >= 0,
         f"--latency must be a finite number of seconds >= 0, got {args.latency}"),
        (finite(args.jitter) and args.jitter >= 0,
         f"--jitter must be a finite number of seconds >= 0, got {args.jitter}"),
        (0 <= args.fail_rate <= 1, f"--fail-rate must be in [0, 1], got {args.fail_rate}"),
        (args.size >= 0, f"--size must be >= 0 bytes, got {args.size}"),
    ]
    for ok, message in checks:
        if not ok:
            return error("serve", message)
    from partally.io.server import base_url, bind, serve

    try:  # bound here, so that a taken port is one clear line, and --port 0 says which it got
        sock = bind(args.host, args.port)
    except (OSError, UnicodeError) as exc:
        where = base_url(args.host, args.port).removeprefix("http://")
        return error("serve", f"cannot listen on {where}: {getattr(exc, 'strerror', None) or exc}")
    url = base_url(args.host, sock.getsockname()[1])

    def ready() -> None:  # once uvicorn answers, not before
        print(
            f"serving {url}/ (latency {args.latency} s, jitter {args.jitter} s, "
            f"fail rate {args.fail_rate}, {args.size} bytes); Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )

    with sock:
        serve(
            args.host,
            sock.getsockname()[1],
            latency=args.latency,
            jitter=args.jitter,
            fail_rate=args.fail_rate,
            size=args.size,
            sock=sock,
            ready=ready,
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
    fetch.add_argument("--timeout", default="10", metavar="SECONDS",
                       help="bound on each step of a request, > 0; inf for none (10)")
    fetch.add_argument("--retries", default="2", metavar="K",
                       help=f"retries of a timeout, connection error or 5xx, 0..{MAX_RETRIES} (2)")
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
