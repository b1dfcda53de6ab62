"""The IO commands: ``partally fetch`` and ``partally serve``.

Every argument is checked before any request is made or any port is bound, so that a bad one gets
one line on stderr, ``partally <command>: error: ...`` (the prefix argparse and ``partally bench``
use), and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from typing import Any

from partally.cli.args import BadArgument, check_writable, error

MODES = ("asyncio", "threads", "sequential")  # partally.io.engine.MODES, without importing it here
SHOWN_FAILURES = 20  # the summary lists this many failures; --results has them all
MAX_RETRIES = 100
PROGRESS_AFTER = 20  # a progress bar for batches of more URLs than this, on a terminal
_METHOD = re.compile(r"^[A-Za-z]+$")


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


def _rate(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise BadArgument(f"--rate must be a number of requests per second > 0, got {text!r}")
    return value


def _headers(lines: list[str]) -> list[tuple[str, str]]:
    headers = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or not name.strip().isascii() or " " in name.strip():
            raise BadArgument(f"--header must be 'Name: value', got {line!r}")
        headers.append((name.strip(), value.strip()))
    return headers


def _body(args: argparse.Namespace) -> tuple[bytes | None, str | None]:
    """(the request body, its Content-Type) from --data or --json; --data @FILE reads FILE."""
    if args.data is not None and args.json is not None:
        raise BadArgument("give --data or --json, not both")
    if args.json is not None:
        try:
            json.loads(args.json)
        except ValueError as exc:
            raise BadArgument(f"--json must be JSON text, got {args.json!r} ({exc})") from None
        return args.json.encode(), "application/json"
    if args.data is None:
        return None, None
    if args.data.startswith("@"):
        try:
            with open(args.data[1:], "rb") as file:
                return file.read(), None
        except OSError as exc:
            raise BadArgument(f"cannot read --data {args.data}: {exc.strerror or exc}") from None
    return args.data.encode(), None


def _requests(urls: list[str], method: str, body: bytes | None) -> list[Any]:
    """The URLs as they are (GETs), or as httpx requests when a method or body is asked for."""
    if method == "GET" and body is None:
        return urls
    import httpx

    requests: list[Any] = []
    for url in urls:
        try:
            requests.append(httpx.Request(method, url, content=body))
        except Exception:  # a malformed URL: passed on as it is, fetch_all says why it failed
            requests.append(url)
    return requests


def _proxies(proxy: str | None, trust_env: bool) -> None:
    """--proxy, and the environment's proxies with trust_env, checked as fetch_all reads them."""
    from partally.io.proxy import Proxies

    try:
        Proxies(proxy, trust_env)
    except ValueError as exc:
        where = "" if proxy is None else "--proxy: "
        raise BadArgument(where + str(exc).replace("pass trust_env=False", "give --no-trust-env")) from None


def _make_folder(path: str) -> None:
    """--output DIR, made with its parents if missing (as `wget -P` and `curl --create-dirs`)."""
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise BadArgument(f"--output must be a folder, got {path!r}: a file of that name exists") from None
    except OSError as exc:
        raise BadArgument(f"--output folder {path!r} cannot be made: {exc.strerror or exc}") from None


def _bodies(args: argparse.Namespace) -> str:
    """Where the response bodies went, for the summary."""
    if args.output is not None:
        return f"bodies written to {args.output}{os.sep}"
    return "bodies counted, not kept (--output DIR writes each to a file)"


def _row(result: Any) -> dict[str, Any]:
    return {
        "url": result.url,
        "ok": result.ok,
        "status": result.status,
        "bytes": result.bytes,
        "elapsed": result.elapsed,
        "attempts": result.attempts,
        "error": result.error,
        "final_url": result.final_url,
        "path": result.path,
    }


def _fetch(args: argparse.Namespace) -> int:
    try:
        if args.limit < 1:
            raise BadArgument(f"--limit must be >= 1, got {args.limit}")
        timeout, retries, rate = _timeout(args.timeout), _retries(args.retries), _rate(args.rate)
        headers = _headers(args.header)
        body, content_type = _body(args)
        if content_type and not any(name.lower() == "content-type" for name, _ in headers):
            headers.append(("Content-Type", content_type))
        method = (args.method or ("POST" if body is not None else "GET")).upper()
        if not _METHOD.match(method):
            raise BadArgument(f"--method must be a method name such as GET or POST, got {args.method!r}")
        if args.results is not None:
            check_writable("--results", args.results)
        urls = _read_urls(args)
        if not urls:
            raise BadArgument("no URLs: give them as arguments or with --file FILE")
        _proxies(args.proxy, not args.no_trust_env)
        if args.output is not None:
            _make_folder(args.output)
    except BadArgument as exc:
        return error("fetch", str(exc))

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from partally.io.fetch import fetch_all

    console, status = Console(soft_wrap=True), Console(stderr=True)
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    shown = status.is_terminal and len(urls) > PROGRESS_AFTER
    with Progress(*columns, console=status, transient=True, disable=not shown) as progress:
        task = progress.add_task(f"fetching ({args.mode})", total=len(urls))
        start = time.perf_counter()
        results = fetch_all(
            _requests(urls, method, body),
            args.mode,
            limit=args.limit,
            timeout=timeout,
            retries=retries,
            rate=rate,
            headers=headers or None,
            keep=False,
            output=args.output,
            proxy=args.proxy,
            trust_env=not args.no_trust_env,
            on_result=lambda _: progress.advance(task),
        )
        elapsed = time.perf_counter() - start
    failures = [r for r in results if not r.ok]
    size = sum(r.bytes for r in results)
    console.print(
        f"[green]{len(results) - len(failures)} ok[/], [red]{len(failures)} failed[/]; "
        f"{size:,} bytes in {elapsed:.2f} s, {len(results) / elapsed:.0f} requests/s "
        f"({args.mode}, limit {args.limit}); {escape(_bodies(args))}",
        highlight=False,
    )
    for result in failures[:SHOWN_FAILURES]:
        console.print(f"  [red]✗[/] {escape(result.url)}: {escape(str(result.error))}", highlight=False)
    if len(failures) > SHOWN_FAILURES:
        more = len(failures) - SHOWN_FAILURES
        console.print(f"  ... and {more} more" + ("" if args.results else " (--results FILE lists all)"))
    if args.results:
        try:
            with open(args.results, "w", encoding="utf-8") as out:
                for result in results:
                    out.write(json.dumps(_row(result)) + "\n")
        except OSError as exc:  # checked before the fetch, but a disk can fill or a folder go
            return error("fetch", f"--results: cannot write {args.results!r}: {exc.strerror or exc}")
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
        help="send HTTP requests concurrently with httpx: a progress bar, then a summary",
        description="Send a request to each URL with httpx and summarise; each body is counted, "
        "or written to a file with --output. Exit status 1 if any failed.",
    )
    fetch.add_argument("urls", nargs="*", metavar="URL", help="http or https URLs")
    fetch.add_argument("--file", metavar="FILE", help="read URLs from FILE, one a line ('#' comments)")
    fetch.add_argument("--mode", default="asyncio", choices=MODES, help="default: asyncio")
    fetch.add_argument("--limit", type=int, default=50, metavar="K", help="at most K in flight (50)")
    fetch.add_argument("--rate", metavar="R", help="at most R requests started per second, evenly")
    fetch.add_argument("--timeout", default="10", metavar="SECONDS",
                       help="bound on each step of a request, > 0; inf for none (10)")
    fetch.add_argument("--retries", default="2", metavar="K",
                       help=f"retries of a connection error, timeout, 429 or 5xx, 0..{MAX_RETRIES} (2)")
    fetch.add_argument("--method", metavar="METHOD", help="GET, or POST with --data/--json")
    fetch.add_argument("--header", "-H", action="append", default=[], metavar="'NAME: VALUE'",
                       help="a header sent with every request (repeat for more)")
    fetch.add_argument("--data", metavar="DATA", help="the request body (@FILE: FILE's bytes)")
    fetch.add_argument("--json", metavar="JSON", help="a JSON request body (Content-Type: application/json)")
    fetch.add_argument("--output", "-o", metavar="DIR",
                       help="write each body to a file in DIR (named from its URL), streamed; DIR "
                       "is made if missing")
    fetch.add_argument("--results", metavar="FILE", help="write every result to FILE as JSON lines")
    fetch.add_argument("--proxy", metavar="URL",
                       help="send every request through this http(s) proxy (user:password@ for Basic "
                       "credentials); by default HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY are "
                       "honoured, as httpx does")
    fetch.add_argument("--no-trust-env", action="store_true",
                       help="ignore the environment's proxy variables (and SSL_CERT_FILE/SSL_CERT_DIR)")
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
