"""Fetch many URLs with httpx: sequentially, with threads, or with asyncio.

`fetch_all` and `afetch_all` share one implementation. The retry policy is a generator free of
IO (`_attempts`) that a sync and an async driver run; a fixed set of at most `limit` workers pulls
URLs from one shared iterator, so a million URLs make `limit` tasks or threads, never a million,
and a body is counted as it streams in, never kept.

Requests and responses are httpx's, handed straight to an httpx transport: no `Client`, whose
merging, auth, redirect and stream layers cost more CPU a request than the transport itself.
Redirects are followed here as httpx's `follow_redirects=True` does, and the timeout goes in the
request's "timeout" extension as httpx's client puts it. The bytes move through aiohttp (asyncio)
and urllib3 (threads), whose pools stay O(1) per request where httpx's default one did not: see
`partally.io.transport`, and scripts/io_anchor.py for the numbers.
"""

from __future__ import annotations

import asyncio
import numbers
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["MODES", "FetchResult", "afetch_all", "fetch_all"]

MODES = ("asyncio", "threads", "sequential")
BACKOFF = 0.1  # seconds before the first retry; doubles with each further one
MAX_BACKOFF = 30.0  # ... up to this many seconds, however many retries
# A timeout longer than this (a year) means no timeout: the socket layer cannot wait ~1e10 s
# (urllib3 raised OverflowError for every request), and inf overflowed both transports.
MAX_TIMEOUT = 365 * 24 * 3600.0
MAX_THREADS = 256  # threads mode runs at most this many threads, whatever `limit` asks
MAX_REDIRECTS = 20  # as httpx's follow_redirects=True
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# httpx's default headers, with partally named; no cookies, so none carried to the next URL.
_HEADERS = httpx.Headers(
    {
        "Accept": "*/*",
        "Accept-Encoding": "gzip, deflate",
        "Connection": "keep-alive",
        "User-Agent": f"python-httpx/{httpx.__version__} partally",
    }
)
_EMPTY = httpx.ByteStream(b"")
_RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class FetchResult:
    """What fetching one URL gave: its status and body size, or why it failed."""

    url: str
    status: int | None
    bytes: int
    elapsed: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when a response came back with a status below 400."""
        return self.error is None


# One attempt's outcome: (status, bytes, error, worth retrying).
_Outcome = tuple[int | None, int, str | None, bool]


def _target(url: str) -> httpx.URL | str:
    """The URL parsed once, for every attempt, or why it can't be fetched."""
    try:
        parsed = httpx.URL(url)
        scheme, host = parsed.scheme, parsed.host  # .host decodes IDNA: it raises for xn--zz
    except (httpx.InvalidURL, ValueError) as exc:  # idna.IDNAError is a UnicodeError, a ValueError
        return f"invalid URL: {_text(exc)}"
    if scheme not in ("http", "https"):
        return f"unsupported scheme {scheme!r}: only http and https URLs are fetched"
    if not host:
        return "invalid URL: no host"
    return parsed


def _attempts(url: str, retries: int) -> Generator[float, _Outcome, FetchResult]:
    """The retry policy, free of IO: yields the pause before each attempt, gets its outcome."""
    start = time.perf_counter()
    for attempt in range(retries + 1):
        status, size, error, retry = yield _backoff(attempt)
        if not retry:
            break
    return FetchResult(url, status, size, time.perf_counter() - start, error)


def _backoff(attempt: int) -> float:
    """The pause before attempt `attempt` (0 for the first): doubling, capped at MAX_BACKOFF."""
    if not attempt:
        return 0.0
    return min(BACKOFF * 2.0 ** min(attempt - 1, 64), MAX_BACKOFF)  # 2.0**64: no float overflow


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not fail the batch either
        return ""


def _outcome(status: int, reason: str, size: int) -> _Outcome:
    if status < 400:
        return status, size, None, False
    return status, size, f"HTTP {status} {reason}".rstrip(), status >= 500


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_text(exc)}".rstrip(": ")


def _failure(exc: Exception) -> _Outcome:
    return None, 0, _describe(exc), isinstance(exc, _RETRYABLE)


def _request(url: httpx.URL, timeout: dict[str, float]) -> httpx.Request:
    """A GET of `url` with httpx's default headers, built without a client's merge step."""
    extensions = {"timeout": timeout}
    request = httpx.Request("GET", url, headers=_HEADERS, stream=_EMPTY, extensions=extensions)
    request.headers["Host"] = url.netloc.decode("ascii")
    request.read()  # the empty body, read once rather than on each attempt
    return request


def _redirect(request: httpx.Request, response: httpx.Response) -> httpx.Request | None:
    """The GET a 3xx with a Location asks for next, or None for any other answer."""
    if response.status_code not in _REDIRECTS or "location" not in response.headers:
        return None
    location = response.headers["location"]
    try:
        url = request.url.join(location)
        scheme, host = url.scheme, url.host  # .host decodes IDNA, and may raise
    except (httpx.InvalidURL, ValueError) as exc:
        raise httpx.RemoteProtocolError(f"Invalid URL in location header: {exc}.") from None
    if scheme not in ("http", "https") or not host:
        raise httpx.UnsupportedProtocol(f"Redirect to an unsupported URL: {location!r}")
    return _request(url, request.extensions["timeout"])


def _get(transport: httpx.BaseTransport, request: httpx.Request) -> _Outcome:
    try:
        for _ in range(MAX_REDIRECTS + 1):
            response = transport.handle_request(request)
            stream = response.stream
            try:
                size = sum(map(len, stream))  # type: ignore[arg-type]
            finally:
                stream.close()  # type: ignore[union-attr]
            follow = _redirect(request, response)
            if follow is None:
                return _outcome(response.status_code, response.reason_phrase, size)
            request = follow
        raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.")
    except Exception as exc:  # one bad URL never fails the batch
        return _failure(exc)


async def _aget(transport: httpx.AsyncBaseTransport, request: httpx.Request) -> _Outcome:
    try:
        for _ in range(MAX_REDIRECTS + 1):
            response = await transport.handle_async_request(request)
            stream = response.stream
            try:
                size = 0
                async for chunk in stream:  # type: ignore[union-attr]
                    size += len(chunk)
            finally:
                await stream.aclose()  # type: ignore[union-attr]
            follow = _redirect(request, response)
            if follow is None:
                return _outcome(response.status_code, response.reason_phrase, size)
            request = follow
        raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.")
    except Exception as exc:  # one bad URL never fails the batch
        return _failure(exc)


def _prepared(url: str, timeout: dict[str, float]) -> httpx.Request | FetchResult:
    """The request for `url`, built once and sent again on each retry; or why it cannot be sent."""
    target = _target(url)
    if isinstance(target, str):
        return FetchResult(url, None, 0, 0.0, target)
    return _request(target, timeout)


def _fetch(
    transport: httpx.BaseTransport, url: str, timeout: dict[str, float], retries: int
) -> FetchResult:
    start = time.perf_counter()
    try:
        request = _prepared(url, timeout)
        if isinstance(request, FetchResult):
            return request
        plan = _attempts(url, retries)
        try:
            pause = next(plan)
            while True:
                if pause:
                    time.sleep(pause)
                pause = plan.send(_get(transport, request))
        except StopIteration as done:
            return done.value
    except Exception as exc:  # whatever library raised it, one URL's failure is its own result
        return FetchResult(url, None, 0, time.perf_counter() - start, _describe(exc))


async def _afetch(
    transport: httpx.AsyncBaseTransport, url: str, timeout: dict[str, float], retries: int
) -> FetchResult:
    start = time.perf_counter()
    try:
        request = _prepared(url, timeout)
        if isinstance(request, FetchResult):
            return request
        plan = _attempts(url, retries)
        try:
            pause = next(plan)
            while True:
                if pause:
                    await asyncio.sleep(pause)
                pause = plan.send(await _aget(transport, request))
        except StopIteration as done:
            return done.value
    except Exception as exc:  # as in _fetch; CancelledError is a BaseException and goes on
        return FetchResult(url, None, 0, time.perf_counter() - start, _describe(exc))


def _checked(urls: Any, limit: Any, timeout: Any, retries: Any, on_result: Any = None) -> list[str]:
    if on_result is not None and not callable(on_result):  # not found out after the first fetch
        raise TypeError(f"on_result must be callable or None, not {type(on_result).__name__}")
    for name, value, low in (("limit", limit, 1), ("retries", retries, 0)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not timeout > 0:  # nan too
        raise ValueError(f"timeout must be > 0 seconds (inf for none), got {timeout}")
    if isinstance(urls, (str, bytes)) or not isinstance(urls, Iterable):
        raise TypeError(f"urls must be an iterable of str, not {type(urls).__name__}")
    urls = list(urls)
    for i, url in enumerate(urls):
        if not isinstance(url, str):
            raise TypeError(f"urls must be an iterable of str; urls[{i}] is {type(url).__name__}")
    return urls


def _timeouts(timeout: float) -> dict[str, float]:
    """The per-request timeout extension, as httpx's client sets it: every step bounded alike.

    inf, or anything past MAX_TIMEOUT, is no timeout at all (None for every step).
    """
    if timeout > MAX_TIMEOUT:
        return httpx.Timeout(None).as_dict()  # type: ignore[return-value]
    return httpx.Timeout(float(timeout)).as_dict()  # type: ignore[return-value]


async def afetch_all(
    urls: Iterable[str],
    *,
    limit: int = 50,
    timeout: float = 10.0,
    retries: int = 2,
    on_result: Callable[[FetchResult], None] | None = None,
) -> list[FetchResult]:
    """Fetch `urls` with at most `limit` in flight on asyncio; results in input order.

    `timeout` (seconds, > 0) bounds each step of a request (connect, each read, write);
    `float("inf")`, or anything longer than a year, means no timeout. Connection errors,
    timeouts and 5xx answers are retried `retries` times with backoff (0.1 s, doubling, at most
    30 s a pause); `on_result` is called with each result as it comes (an exception it raises
    stops the batch and propagates).

    Whatever goes wrong with one URL (a malformed or non-IDNA host, a refused connection, TLS,
    a protocol error, a cut body, ...) is that URL's error result; only bad arguments (TypeError,
    ValueError, before any request), cancellation, KeyboardInterrupt and SystemExit raise.
    """
    urls = _checked(urls, limit, timeout, retries, on_result)
    from partally.io.transport import AiohttpTransport

    results: list[FetchResult] = [None] * len(urls)  # type: ignore[list-item]
    todo = iter(enumerate(urls))
    connections = max(1, min(limit, len(urls)))  # never more than the workers
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    timeouts = _timeouts(timeout)
    async with AiohttpTransport(limits=limits) as transport:

        async def worker() -> None:
            for i, url in todo:
                results[i] = result = await _afetch(transport, url, timeouts, retries)
                if on_result:
                    on_result(result)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(urls)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:  # cancelled, or on_result raised: stop the others before closing
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
    return results


def fetch_all(
    urls: Iterable[str],
    mode: str = "asyncio",
    *,
    limit: int = 50,
    timeout: float = 10.0,
    retries: int = 2,
    on_result: Callable[[FetchResult], None] | None = None,
) -> list[FetchResult]:
    """Fetch `urls` and return a `FetchResult` for each, in input order.

    `mode` is one of "asyncio", "threads" (`limit` threads, at most MAX_THREADS) or
    "sequential" (one at a time). A bad URL, an error status or a failed connection gives an
    error result, never an exception. See `afetch_all` for the other arguments.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}, expected one of {list(MODES)}")
    urls = _checked(urls, limit, timeout, retries, on_result)
    if mode == "asyncio":
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "fetch_all(mode='asyncio') cannot run inside a running event loop; "
                "await afetch_all(...) instead"
            )
        coro = afetch_all(urls, limit=limit, timeout=timeout, retries=retries, on_result=on_result)
        try:
            return asyncio.run(coro)
        except KeyboardInterrupt as exc:  # asyncio.run chains the workers' CancelledError to it:
            exc.__suppress_context__ = True  # one traceback for one Ctrl-C, not two
            raise
    workers = 1 if mode == "sequential" else max(1, min(limit, len(urls), MAX_THREADS))
    return _fetch_threaded(urls, workers, limit, timeout, retries, on_result)


class _ThreadPool:
    """Daemon threads kept between calls, as many as the most ever busy at once.

    Starting 100 threads took 110 to 190 ms on a busy 2-core machine, most of the ideal 0.2 s of
    the thread benchmark. Daemon threads: after Ctrl-C the interpreter waits on no request.
    """

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):  # threads do not survive a fork
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], Callable[[], None]]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: Callable[[], None], done: Callable[[], None]) -> None:
        """Run `job` on a kept thread, then `done` once that thread counts as idle again."""
        with self._lock:
            start = not self._idle
            self._idle -= not start
        self._jobs.put((job, done))
        if start:
            threading.Thread(target=self._serve, name="partally-fetch", daemon=True).start()

    def _serve(self) -> None:
        while True:
            job, done = self._jobs.get()
            try:
                job()
            finally:
                # Idle before `done`: the next call, started as `done` returns, must find this
                # thread free, or it starts another (50 ms a thread on a busy 2-core machine).
                with self._lock:
                    self._idle += 1
                done()


_THREADS = _ThreadPool()


def _fetch_threaded(
    urls: list[str],
    workers: int,
    limit: int,
    timeout: float,
    retries: int,
    on_result: Callable[[FetchResult], None] | None,
) -> list[FetchResult]:
    from partally.io.transport import Urllib3Transport

    results: list[FetchResult] = [None] * len(urls)  # type: ignore[list-item]
    todo, lock = iter(enumerate(urls)), threading.Lock()
    failure: list[BaseException] = []

    def worker() -> None:
        try:
            while not failure:
                with lock:
                    item = next(todo, None)
                if item is None:
                    return
                results[item[0]] = result = _fetch(transport, item[1], timeouts, retries)
                if on_result:
                    on_result(result)
        except BaseException as exc:
            failure.append(exc)

    timeouts = _timeouts(timeout)
    # A pool as large as the threads that share it: urllib3 fills its queue up front, so
    # limit=10**9 took minutes and gigabytes before the first request.
    with Urllib3Transport(workers) as transport:
        if workers == 1:  # sequential: run in this thread, so Ctrl-C lands here directly
            worker()
        else:
            finished = threading.Semaphore(0)
            for _ in range(workers):
                _THREADS.submit(worker, finished.release)
            try:
                for _ in range(workers):
                    finished.acquire()
            except BaseException:
                failure.append(KeyboardInterrupt())  # tells the workers to stop taking URLs
                raise
    if failure:
        raise failure[0]
    return results
