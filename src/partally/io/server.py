"""A local HTTP server for demos, tests and the IO benchmark: an ASGI app on uvicorn.

Every path answers after ``latency`` (+ up to ``jitter``) seconds with ``size`` bytes, or with a
500 at ``fail_rate``. A few paths and query parameters shape one answer:

- ``?latency=S``, ``?size=B``, ``?status=C``: override the defaults for this request;
- ``?fail_first=K``: answer 503 to the first K requests for this path and query;
- ``?set_cookie=V``: send ``Set-Cookie: V`` with the answer (the app lists every ``Cookie``
  header it is sent, in `cookies`: a client that keeps no cookies sends none);
- a query value out of range (a latency that is not a finite number >= 0, a size or fail_first
  that is not a whole number >= 0, a status outside 200..599) is answered at once with a 400
  that says which;
- ``/close``: promise ``size`` bytes, send half of them and close the connection;
- ``/echo``: JSON with the request's method, headers and body (as text), after ``latency``;
- ``/stats``: JSON with the requests seen, those in flight now and the most ever in flight.

The app counts in-flight requests itself, so tests can check a client's concurrency bound; a
client that disconnects while its answer waits stops counting at once (unless `watch_disconnects`
is off, as in benchmarks: the watch cost 40 µs a request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn

__all__ = ["RunningServer", "TestApp", "base_url", "bind", "running_server", "serve", "server_process"]

CHUNK = 65536  # bodies larger than this are sent in pieces of this size, never built whole


class _BadQuery(ValueError):
    """A query value the app cannot honour: answered with a 400 naming it."""


def _number(params: dict[str, str], name: str, default: float) -> float:
    if name not in params:
        return default
    try:
        value = float(params[name])
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise _BadQuery(f"{name} must be a finite number >= 0, got {params[name]!r}")
    return value


def _whole(params: dict[str, str], name: str, default: int, low: int = 0, high: int | None = None) -> int:
    if name not in params:
        return default
    text = params[name].strip()
    ok = text.isascii() and text.isdigit() and len(text) <= 30  # not "²", nor 5000 digits
    value = int(text) if ok else None
    if value is None or value < low or (high is not None and value > high):
        accepted = f"a whole number >= {low}" if high is None else f"a whole number in {low}..{high}"
        raise _BadQuery(f"{name} must be {accepted}, got {text!r}")
    return value


@dataclass
class TestApp:
    """The ASGI app: answers every path after a delay, counting what it sees."""

    __test__ = False  # not a pytest test class, despite the name

    latency: float = 0.05
    jitter: float = 0.0
    fail_rate: float = 0.0
    size: int = 1024
    watch_disconnects: bool = True
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    cookies: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("latency", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value}")
        if isinstance(self.fail_rate, bool) or not 0 <= self.fail_rate <= 1:
            raise ValueError(f"fail_rate must be in [0, 1], got {self.fail_rate!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"size must be a whole number of bytes >= 0, got {self.size!r}")

    def reset(self) -> None:
        """Forget the counts (between tests sharing one server); keeps what is in flight now."""
        self.requests = 0
        self.max_in_flight = self.in_flight
        self.hits.clear()
        self.cookies.clear()

    def stats(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, query = scope["path"], scope["query_string"].decode("latin-1")  # never fails
        if path == "/stats":
            await _respond(send, 200, json.dumps(self.stats()).encode(), "application/json")
            return
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.cookies += [v.decode("latin-1") for k, v in scope["headers"] if k == b"cookie"]
        try:
            if path == "/echo":
                await self._echo(scope, receive, send)
                return
            await self._answer(path, query, receive, send)
        finally:
            self.in_flight -= 1

    async def _echo(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.latency:
            await asyncio.sleep(self.latency)
        echo = {
            "method": scope["method"],
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            "body": body.decode("utf-8", "replace"),
        }
        await _respond(send, 200, json.dumps(echo).encode(), "application/json")

    async def _answer(self, path: str, query: str, receive: Any, send: Any) -> None:
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        key = f"{path}?{query}"
        self.hits[key] += 1
        try:  # a bad value was a 500 with a traceback (size=abc), or a dropped connection (status=999)
            delay = _number(params, "latency", self.latency)
            size = _whole(params, "size", self.size)
            status = _whole(params, "status", 200, 200, 599)
            fail_first = _whole(params, "fail_first", 0)
        except _BadQuery as exc:
            await _respond(send, 400, f"{exc}\n".encode())
            return
        if self.jitter:
            delay += random.uniform(0, self.jitter)
        if delay > 0:
            if not self.watch_disconnects:
                await asyncio.sleep(delay)
            elif await _client_left(receive, delay):
                return
        if self.hits[key] <= fail_first:
            status = 503
        elif self.fail_rate and random.random() < self.fail_rate:
            status = 500
        if path == "/close":
            await send(_start(200, "application/octet-stream", size))
            # Returning with the body unfinished makes uvicorn drop the connection.
            await _body(send, size // 2, more=True)
            return
        extra = ((b"set-cookie", params["set_cookie"].encode()),) if "set_cookie" in params else ()
        if status in (204, 304) or size <= CHUNK:
            await _respond(send, status, b"" if status in (204, 304) else b"x" * size, extra=extra)
            return
        await send(_start(status, "text/plain", size, extra))
        await _body(send, size)


async def _client_left(receive: Any, delay: float) -> bool:
    """Wait `delay` seconds; True, at once, if the client disconnects first."""

    async def disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(disconnect())
    done, _ = await asyncio.wait([watch], timeout=delay)
    watch.cancel()
    return bool(done)


def _start(
    status: int, content_type: str, length: int, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> dict[str, Any]:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(length).encode())]
    headers += list(extra)
    return {"type": "http.response.start", "status": status, "headers": headers}


async def _body(send: Any, size: int, more: bool = False) -> None:
    """`size` bytes of "x" in pieces of at most CHUNK (a huge ?size= never builds one bytes)."""
    piece = b"x" * min(size, CHUNK)
    while size > CHUNK:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        size -= CHUNK
    await send({"type": "http.response.body", "body": piece[:size], "more_body": more})


async def _respond(
    send: Any,
    status: int,
    body: bytes,
    content_type: str = "text/plain",
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    await send(_start(status, content_type, len(body), extra))
    await send({"type": "http.response.body", "body": body})


def _config(app: TestApp, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        backlog=4096,
        timeout_graceful_shutdown=1,
    )


@dataclass
class RunningServer:
    """A server running in a background thread: its app (for counts) and base URL."""

    app: TestApp
    url: str


def _free_socket(host: str, port: int = 0) -> socket.socket:
    """A TCP socket bound to `host` (an IPv4 or IPv6 address, or a name) and `port` (0: any free)."""
    # proto must say TCP: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets whose
    # proto is IPPROTO_TCP, and with it on every answer waited 40 ms for a delayed ACK.
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def bind(host: str, port: int) -> socket.socket:
    """A socket listening on `host`:`port` (0: a free port); OSError if it cannot be had."""
    sock = _free_socket(host, port)
    try:
        sock.listen(4096)
    except BaseException:
        sock.close()
        raise
    return sock


def base_url(host: str, port: int) -> str:
    """``http://host:port``, with an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server, calling `ready()` once it has started (the app answers from then on)."""

    def __init__(self, config: uvicorn.Config, ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit and self._ready is not None:
            self._ready()


@contextmanager
def running_server(
    *, host: str = "127.0.0.1", log_level: str = "critical", **settings: Any
) -> Iterator[RunningServer]:
    """Run a `TestApp(**settings)` on a free port in a background thread until the block ends."""
    app = TestApp(**settings)
    sock = _free_socket(host)
    port = sock.getsockname()[1]
    ready = threading.Event()
    server = _Server(_config(app, host, port, log_level), ready.set)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not ready.wait(0.05):
            if not thread.is_alive():
                raise RuntimeError(f"the test server on {host}:{port} failed to start")
        yield RunningServer(app, base_url(host, port))
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


@contextmanager
def server_process(*, latency: float = 0.05, size: int = 1024) -> Iterator[str]:
    """Run a `TestApp` in a child process on a free loopback port; yields its base URL.

    Benchmarks use this, so that the server does not share the client's GIL; it does not watch
    for disconnects.
    """
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    argv = [sys.executable, "-m", "partally.io.server", "--fd", str(sock.fileno())]
    argv += ["--latency", str(latency), "--size", str(size)]
    child = subprocess.Popen(argv, pass_fds=[sock.fileno()], stdout=subprocess.PIPE)
    hang = threading.Timer(60, child.kill)  # a child that never says "ready" is killed
    hang.start()
    try:
        if child.stdout.readline() != b"ready\n":  # type: ignore[union-attr]  # once it answers
            raise RuntimeError("the test server process failed to start")
        hang.cancel()
        yield url
    finally:
        hang.cancel()
        child.terminate()
        child.wait(10)
        child.stdout.close()  # type: ignore[union-attr]
        sock.close()


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    latency: float = 0.05,
    jitter: float = 0.0,
    fail_rate: float = 0.0,
    size: int = 1024,
    log_level: str = "warning",
    fd: int | None = None,
    sock: socket.socket | None = None,
    watch_disconnects: bool = True,
    ready: Callable[[], None] | None = None,
) -> None:
    """Serve a `TestApp` in the foreground until Ctrl-C.

    On the listening socket `sock` or file descriptor `fd` if given (see `bind`), else on
    `host`:`port`; `ready()` is called once the server answers.
    """
    app = TestApp(latency, jitter, fail_rate, size, watch_disconnects)
    # Not uvicorn's own `fd=`: it makes an AF_UNIX socket object of it, on which asyncio leaves
    # Nagle's algorithm on (see `_free_socket`). socket(fileno=) reads the real family and proto.
    if sock is None and fd is not None:
        sock = socket.socket(fileno=fd)
    sockets = None if sock is None else [sock]
    _Server(_config(app, host, port, log_level), ready).run(sockets=sockets)


def main(argv: list[str] | None = None) -> None:
    """``python -m partally.io.server --fd N``: what `server_process` runs, for benchmarks.

    Prints "ready" on stdout once the server answers."""
    parser = argparse.ArgumentParser(prog="python -m partally.io.server")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args(argv)
    serve(
        latency=args.latency,
        size=args.size,
        fd=args.fd,
        watch_disconnects=False,
        ready=lambda: print("ready", flush=True),
    )


if __name__ == "__main__":
    main()
