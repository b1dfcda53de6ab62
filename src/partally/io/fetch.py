"""Send many HTTP requests with httpx: sequentially, with threads, or with asyncio.

`fetch_all` and `afetch_all` are the IO engine (`partally.io.engine`) with one request as the IO
function: a URL or an `httpx.Request`, redirects followed, the body decoded (gzip, deflate; brotli
and zstd where their packages are installed, as httpx decodes them) and kept up to a bound, or
streamed to a file. Each batch gets its own retry policy (`_FetchRetry`: connection errors,
timeouts, 429 and 5xx answers; `Retry-After` honoured) and result type (`FetchResult`).

Requests and responses are httpx's, handed straight to an httpx transport: no `Client`, whose
merging, auth, redirect and stream layers cost more CPU a request than the transport itself.
Redirects are followed here as httpx's `follow_redirects=True` does, and the timeout goes in the
request's "timeout" extension as httpx's client puts it. The bytes move through aiohttp (asyncio)
and urllib3 (threads), whose pools stay O(1) per request where httpx's default one did not: see
`partally.io.transport`, and scripts/io_anchor.py for the numbers. A `transport=` argument takes
any httpx transport instead (`httpx.MockTransport` in tests), as httpx's clients do.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import importlib.util
import json
import numbers
import os
import re
import secrets
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import Any, NamedTuple

import httpx

try:
    from httpx._urlparse import ParseResult as _ParseResult  # what an httpx.URL holds
except ImportError:  # another httpx: every URL goes through httpx.URL
    _ParseResult = None

from partally.io import engine
from partally.io.engine import MODES, Plan, Retry, check_plan, run_async, run_coroutine, run_sync
from partally.io.proxy import Proxies
from partally.io.transport import IDEMPOTENT_METHODS

__all__ = ["MAX_BODY", "MODES", "FetchResult", "afetch_all", "fetch_all"]

MAX_BODY = 8 * 2**20  # bytes of decoded body kept per response, by default
MAX_RETRY_AFTER = 60.0  # seconds: a longer Retry-After is waited this long
# A timeout longer than this (a year) means no timeout: the socket layer cannot wait ~1e10 s
# (urllib3 raised OverflowError for every request), and inf overflowed both transports.
MAX_TIMEOUT = 365 * 24 * 3600.0
MAX_REDIRECTS = 20  # as httpx's follow_redirects=True
FILES_KEPT_FREE = 16  # file descriptors left to the rest of the process beside the connections
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_EMPTY = httpx.ByteStream(b"")
_RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # never reached a server


def _accept_encoding() -> str:
    """gzip and deflate, and br and zstd where httpx can decode them (their packages installed)."""
    names = ["gzip", "deflate"]
    if importlib.util.find_spec("brotli") or importlib.util.find_spec("brotlicffi"):
        names.append("br")
    if importlib.util.find_spec("zstandard"):
        names.append("zstd")
    return ", ".join(names)


# httpx's default headers, with partally named; no cookies, so none carried to the next URL.
_HEADERS = httpx.Headers(
    {
        "Accept": "*/*",
        "Accept-Encoding": _accept_encoding(),
        "Connection": "keep-alive",
        "User-Agent": f"python-httpx/{httpx.__version__} partally",
    }
)


@dataclass(frozen=True)
class FetchResult:
    """What one request gave: its status, headers and body, or why it failed.

    `url` is the URL asked for, `final_url` the one answered after redirects. `bytes` counts the
    decoded body (after Content-Encoding: what `content` holds), not the bytes on the wire.
    `content` is the body when kept (`keep=True`, under `max_body`), else None; `path` is the
    file it was written to with `output=`. `elapsed` is seconds from the first attempt to the
    last one's end; `attempts` counts the requests sent for it (redirects not counted).
    """

    url: str
    status: int | None
    bytes: int
    elapsed: float
    error: str | None = None
    content: bytes | None = None
    headers: httpx.Headers | None = None
    final_url: str | None = None
    path: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        """True when a response came back with a status below 400, its body read whole."""
        return self.error is None

    @property
    def text(self) -> str:
        """The body decoded by the response's charset (UTF-8 if none; undecodable bytes replaced).

        ValueError if the body was not kept.
        """
        content = self._kept()
        content_type = self.headers.get("content-type") if self.headers is not None else None
        headers = {"content-type": content_type} if content_type else {}
        return httpx.Response(200, headers=headers, content=content).text

    def json(self) -> Any:
        """The body parsed as JSON (json.JSONDecodeError if it is not); ValueError if not kept."""
        return json.loads(self._kept())

    def _kept(self) -> bytes:
        if self.content is None:
            why = self.error or ("written to " + self.path if self.path else "not kept (keep=False)")
            raise ValueError(f"no body for {self.url}: {why}")
        return self.content


class _Answer(NamedTuple):
    """One attempt's final response, read: what a `FetchResult` is made of."""

    status: int
    reason: str
    headers: httpx.Headers
    final_url: str
    size: int
    content: bytes | None
    path: str | None


class _Status(Exception):
    """A response whose status is retried (429, 5xx); the last one is the item's result."""

    def __init__(self, answer: _Answer) -> None:
        super().__init__(f"HTTP {answer.status}")
        self.answer = answer


class _Refused(Exception):
    """An item that is never sent (a malformed URL, an unsupported scheme): its message says why."""


class _TooLarge(Exception):
    """A body over `max_body`: the item's error result, not retried."""


@dataclass(frozen=True)
class _Job:
    """One item, prepared once for every attempt: the request, or why it can't be sent."""

    url: str
    request: httpx.Request | None
    refusal: str | None = None
    path: str | None = None  # where the body goes, with output=

    @property
    def host(self) -> str:
        return self.request.url.host if self.request is not None else ""


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds a `Retry-After` value asks to wait (a number of seconds or an HTTP date), capped
    at MAX_RETRY_AFTER; None if absent or unreadable (then the usual backoff applies)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(int(value[:12]))
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT
            return None
        seconds = when.timestamp() - now
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class _FetchRetry(Retry):
    """What HTTP clients retry: a request that never reached a server, whatever its method; an
    idempotent one (`methods`) after a timeout, a network or protocol error, or a 429 or 5xx
    answer, waiting as `Retry-After` says on 429 and 503."""

    def __init__(self, retries: int, backoff: float, methods: frozenset[str]) -> None:
        super().__init__(retries, (), backoff)
        self.methods = methods

    def pause(self, error: Exception, attempt: int, item: Any = None) -> float | None:
        if attempt > self.retries:
            return None
        job: _Job = item
        if isinstance(error, _UNSENT):
            return self.delay(attempt)
        if job.request is None or job.request.method not in self.methods:
            return None
        if isinstance(error, _Status):
            answer = error.answer
            if answer.status in _RETRY_AFTER_STATUSES:
                wait = _retry_after(answer.headers.get("retry-after"), time.time())
                if wait is not None:
                    return wait
            return self.delay(attempt)
        if isinstance(error, _RETRYABLE):
            return self.delay(attempt)
        return None


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not fail the batch either
        return ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (_Refused, _TooLarge)):
        return _text(exc)
    return f"{type(exc).__name__}: {_text(exc)}".rstrip(": ")


def _result(job: _Job, answer: Any, error: Exception | None, attempts: int, elapsed: float) -> FetchResult:
    """The engine's result maker for fetches: an `_Answer`, or the exception that ended the item."""
    message = None
    if isinstance(error, _Status):
        answer = error.answer
    elif error is not None:
        return FetchResult(job.url, None, 0, elapsed, _describe(error), attempts=attempts)
    if answer.status >= 400:
        message = f"HTTP {answer.status} {answer.reason}".rstrip()
    return FetchResult(
        job.url, answer.status, answer.size, elapsed, message, answer.content, answer.headers,
        answer.final_url, answer.path, attempts,
    )


# A URL of this shape parses to exactly what httpx.URL makes of it (tests/test_fetch.py checks
# that), without httpx's scan of each character, which was half of the CPU partally spent on a
# request besides the transport's: http(s), a lower-case ASCII host name or IPv4 address, no user
# info, no percent-escapes, no dot segments, no fragment. Anything else goes to httpx.URL.
_PLAIN_URL = re.compile(
    r"(https?)://([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)(?::([0-9]{1,5}))?"
    r"(/[A-Za-z0-9._~!$&'()*+,;=:@/-]*)?(?:\?([A-Za-z0-9._~!$&'()*+,;=:@/?-]*))?"
)
_IPV4_STYLE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_url(url: str) -> httpx.URL:
    """`httpx.URL(url)`, made directly for a plain URL (see _PLAIN_URL); httpx.InvalidURL."""
    match = _PLAIN_URL.fullmatch(url)
    if match is None or _ParseResult is None:
        return httpx.URL(url)
    scheme, host, port, path, query = match.groups()
    if (path and "/." in path) or ".." in host:  # dot segments: httpx removes them
        return httpx.URL(url)
    if _IPV4_STYLE.fullmatch(host) and not all(
        octet == "0" or (octet[0] != "0" and int(octet) <= 255) for octet in host.split(".")
    ):
        return httpx.URL(url)  # httpx says why it is not an IPv4 address
    number = int(port) if port else None
    parsed = httpx.URL.__new__(httpx.URL)
    parsed._uri_reference = _ParseResult(
        scheme, "", host, None if number == _DEFAULT_PORTS[scheme] else number, path or "", query, None
    )
    return parsed


def _target(url: str) -> httpx.URL:
    """The URL parsed once, for every attempt; _Refused if it can't be fetched."""
    try:
        parsed = parse_url(url)
        scheme, host = parsed.scheme, parsed.host  # .host decodes IDNA: it raises for xn--zz
    except (httpx.InvalidURL, ValueError) as exc:  # idna.IDNAError is a UnicodeError, a ValueError
        raise _Refused(f"invalid URL: {_text(exc)}") from None
    if scheme not in ("http", "https"):
        raise _Refused(f"unsupported scheme {scheme!r}: only http and https URLs are fetched")
    if not host:
        raise _Refused("invalid URL: no host")
    return parsed


class _Spec:
    """One batch's settings for each request: headers, timeout, body bound, the output folder."""

    def __init__(
        self,
        headers: httpx.Headers,
        timeout: dict[str, float | None],
        keep: bool,
        max_body: int | None,
        output: str | None,
    ) -> None:
        self.headers, self.timeout, self.keep = headers, timeout, keep
        self.max_body = None if output is not None else max_body
        self.output = output
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def job(self, item: Any) -> _Job:
        """`item` (a str URL or an httpx.Request) ready to send; TypeError for anything else."""
        if isinstance(item, str):
            try:
                job = _Job(item, self._get(_target(item)))
            except _Refused as exc:
                return _Job(item, None, str(exc))
            except Exception as exc:  # whatever a library raised for one URL is its own result
                return _Job(item, None, _describe(exc))
        elif isinstance(item, httpx.Request):
            job = self._own(item)
        else:
            raise TypeError(
                f"requests must be an iterable of str URLs or httpx.Request objects, "
                f"not of {type(item).__name__}"
            )
        if self.output is None or job.request is None:
            return job
        # Named in input order (the same names however the requests finish).
        return _Job(job.url, job.request, path=os.path.join(self.output, self._name(job.url)))

    def _get(self, url: httpx.URL) -> httpx.Request:
        """A GET of `url` with the batch's headers, built without a client's merge step."""
        extensions = {"timeout": self.timeout}
        request = httpx.Request("GET", url, headers=self.headers, stream=_EMPTY, extensions=extensions)
        request.headers["Host"] = url.netloc.decode("ascii")
        request.read()  # the empty body, read once rather than on each attempt
        return request

    def _own(self, given: httpx.Request) -> _Job:
        url = str(given.url)
        try:
            _target(url)
            content = given.read()  # sent again on each retry
        except _Refused as exc:
            return _Job(url, None, str(exc))
        except Exception as exc:
            return _Job(url, None, _describe(exc))
        headers = httpx.Headers(self.headers)
        headers.update(given.headers)  # the request's own headers win over the batch's
        extensions = {"timeout": self.timeout, **given.extensions}
        request = httpx.Request(given.method, given.url, headers=headers, content=content, extensions=extensions)
        request.read()
        return _Job(url, request)

    def sink(self, job: _Job, response: httpx.Response) -> _Sink:
        """Where this response's body goes: memory (bounded), a file, or only its count."""
        # A HEAD's Content-Length is the GET's, and a 204 or 304 has no body: none is too large.
        bodyless = response.request.method == "HEAD" or response.status_code in (204, 304)
        if self.max_body is not None and self.keep and not bodyless:
            length = _header(response, b"content-length").decode("latin-1")
            if length.isdigit() and int(length) > self.max_body:
                raise _TooLarge(_over(int(length), self.max_body, "Content-Length says"))
        return _Sink(self.keep and job.path is None, self.max_body, job.path)

    def _name(self, url: str) -> str:
        """A file name for `url`, unique in this batch (a digest of the URL added to a name taken);
    see `file_name`."""
        name = file_name(url)
        with self._lock:
            if name in self._names:
                stem, dot, ext = name.rpartition(".") if "." in name[1:] else (name, "", "")
                digest = hashlib.sha256(url.encode()).hexdigest()[:10]
                name = f"{stem}-{digest}{dot}{ext}"
            self._names.add(name)
        return name

    def answer(self, job: _Job, request: httpx.Request, response: httpx.Response, sink: _Sink) -> _Answer:
        size, content, path = sink.finish()
        answer = _Answer(
            response.status_code, response.reason_phrase, response.headers, str(request.url),
            size, content, path,
        )
        if response.status_code == 429 or response.status_code >= 500:
            raise _Status(answer)
        return answer


def _header(response: httpx.Response, name: bytes) -> bytes:
    """The first `name` header's raw value, b"" if none: read without decoding every header
    (what `response.headers.get` does first, a tenth of partally's CPU a request)."""
    for key, value in response.headers.raw:
        if key.lower() == name:
            return value
    return b""


def _over(size: int, bound: int, says: str) -> str:
    return f"body too large: {says} {size:,} bytes, over max_body={bound:,} (raise it, or use output=)"


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 120  # characters of a file name taken from a URL


def file_name(url: str) -> str:
    """A safe file name for the body of `url`: the last segment of its percent-decoded path
    (split at '/' and '\\'), with anything but letters, digits, '.', '_' and '-' replaced by
    '_', no leading dot, at most MAX_NAME characters; "index" if nothing is left. Never a path:
    a hostile URL ('/..%2f..%2fetc%2fpasswd') names a file inside the output folder
    ('passwd'). Content-Disposition is not read."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    segment = re.split(r"[/\\]", path)[-1]
    name = _SAFE.sub("_", segment).lstrip(".")
    return name[-MAX_NAME:] or "index"


def _new_file_beside(path: str) -> tuple[int, str]:
    """A new temporary file in ``path``'s folder, open for writing, and its path. Its mode is
    the usual one for new files, 0o666 less the umask, as ``curl -o`` and ``wget`` give (not
    mkstemp's 0o600): the kernel applies the umask, which a threaded program cannot read
    safely itself (``os.umask`` sets it to read it)."""
    folder, name = os.path.split(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.partial")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:  # O_EXCL: never an existing file or a planted link
            continue


class _Sink:
    """Takes a response's decoded body as it streams in: kept (up to a bound), written to a
    temporary file renamed into place when whole, or only counted."""

    def __init__(self, keep: bool, bound: int | None, path: str | None) -> None:
        self.size, self.bound, self.path = 0, bound, path
        self.parts: list[bytes] | None = [] if keep else None
        self.file = None
        if path is not None:
            fd, self.temporary = _new_file_beside(path)
            self.file = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.bound is not None and self.size > self.bound:
            raise _TooLarge(_over(self.size, self.bound, "at least"))
        if self.parts is not None:
            self.parts.append(chunk)
        elif self.file is not None:
            self.file.write(chunk)

    def finish(self) -> tuple[int, bytes | None, str | None]:
        """(decoded size, content if kept, the file's path if written)."""
        if self.file is not None:
            self.file.close()
            os.replace(self.temporary, self.path)  # atomic: a reader never sees half a file
            self.file = None
        content = b"".join(self.parts) if self.parts is not None else None
        return self.size, content, self.path

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
            try:
                os.unlink(self.temporary)
            except OSError:
                pass


class _Unzip:
    """A gzip or deflate body decoded as httpx decodes it, but whole or not at all: a stream cut
    before its end marker is a DecodingError (httpx returned the part it had, as the body), and
    a gzip body of several members (RFC 1952; `cat a.gz b.gz`) gives every member, as Python's
    gzip module, urllib3 and curl read it (httpx stopped after the first). Bytes after the last
    member that are not one are ignored, as urllib3 does."""

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._members = 0  # gzip members decoded whole
        self._raw = False  # deflate: raw DEFLATE rather than zlib-wrapped, as httpx falls back
        self._fed = False
        self._unzip = self._new()

    @classmethod
    def of(cls, encoding: bytes) -> _Unzip | None:
        """The decoder for a Content-Encoding of gzip or deflate alone; None for any other."""
        name = encoding.strip().lower()
        if name in (b"gzip", b"x-gzip"):
            return cls(True)
        if name == b"deflate":
            return cls(False)
        return None

    def _new(self) -> Any:
        if self._gzip:
            return zlib.decompressobj(zlib.MAX_WBITS | 16)
        return zlib.decompressobj(-zlib.MAX_WBITS if self._raw else zlib.MAX_WBITS)

    def decode(self, data: bytes) -> bytes:
        out = []
        while data:
            if self._unzip.eof:  # past the end of the stream
                if not self._gzip:
                    return b"".join(out)
                self._members += 1
                self._unzip = self._new()
            try:
                out.append(self._unzip.decompress(data))
            except zlib.error as exc:
                if not self._gzip and not self._fed and not self._raw:
                    self._raw = True  # httpx's fallback: a raw DEFLATE stream
                    self._unzip = self._new()
                    continue
                if self._members:  # trailing bytes that are not another member
                    self._unzip = _Spent()
                    return b"".join(out)
                raise httpx.DecodingError(str(exc)) from exc
            self._fed = True
            data = self._unzip.unused_data if self._unzip.eof else b""
        return b"".join(out)

    def flush(self) -> bytes:
        """What is left; DecodingError if the stream stopped before its end."""
        if self._fed and not self._unzip.eof:
            name = "gzip" if self._gzip else "deflate"
            raise httpx.DecodingError(f"{name} body cut short: its stream ends before its end marker")
        return b""


class _Spent:
    """A finished decoder that ignores what follows."""

    eof = True
    unused_data = b""


def _redirect(request: httpx.Request, response: httpx.Response) -> httpx.Request | None:
    """The request a 3xx with a Location asks for next (as httpx's client builds it), or None."""
    status = response.status_code
    if status not in _REDIRECTS or "location" not in response.headers:
        return None
    location = response.headers["location"]
    try:
        url = request.url.join(location)
        scheme, host = url.scheme, url.host  # .host decodes IDNA, and may raise
    except (httpx.InvalidURL, ValueError) as exc:
        raise httpx.RemoteProtocolError(f"Invalid URL in location header: {exc}.") from None
    if scheme not in ("http", "https") or not host:
        raise httpx.UnsupportedProtocol(f"Redirect to an unsupported URL: {location!r}")
    method = request.method
    if (status in (302, 303) and method != "HEAD") or (status == 301 and method == "POST"):
        method = "GET"
    headers = httpx.Headers(request.headers)
    if (url.scheme, url.host, url.port) != (request.url.scheme, request.url.host, request.url.port):
        headers.pop("Authorization", None)
        headers.pop("Cookie", None)
    headers["Host"] = url.netloc.decode("ascii")
    content = request.content
    if method != request.method and method == "GET":
        headers.pop("Content-Length", None)
        headers.pop("Transfer-Encoding", None)
        content = b""
    follow = httpx.Request(method, url, headers=headers, content=content, extensions=request.extensions)
    follow.read()
    return follow


MAX_DRAINED = 65536  # bytes: a redirect's body up to this long is read, keeping its connection


def _small(response: httpx.Response) -> bool:
    """True if the response's body is announced (Content-Length) and at most MAX_DRAINED bytes."""
    length = _header(response, b"content-length").strip()
    return length.isdigit() and int(length) <= MAX_DRAINED


def _send(transport: httpx.BaseTransport, spec: _Spec, job: _Job) -> _Answer:
    """One attempt at `job`, redirects followed, the body read: the engine's sync IO function."""
    if job.request is None:
        raise _Refused(job.refusal)
    request = job.request
    for _ in range(MAX_REDIRECTS + 1):
        response = transport.handle_request(request)
        response.request = request
        try:
            follow = _redirect(request, response)
            if follow is None:
                sink = spec.sink(job, response)
                encoding = _header(response, b"content-encoding")  # see _asend
                try:
                    if not encoding:
                        for chunk in response.stream:  # type: ignore[union-attr]
                            sink.write(chunk)
                    elif (unzip := _Unzip.of(encoding)) is not None:
                        for chunk in response.iter_raw():
                            sink.write(unzip.decode(chunk))
                        sink.write(unzip.flush())
                    else:
                        for chunk in response.iter_bytes():
                            sink.write(chunk)
                except BaseException:
                    sink.abort()
                    raise
                return spec.answer(job, request, response, sink)
            if _small(response):  # read, so that its connection carries the next request
                with contextlib.suppress(httpx.TransportError):  # a cut one: closed, followed
                    for _ in response.stream:  # type: ignore[union-attr]
                        pass
        finally:
            response.close()
        request = follow
    raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.")


async def _asend(transport: httpx.AsyncBaseTransport, spec: _Spec, job: _Job) -> _Answer:
    """`_send` on asyncio: the engine's async IO function."""
    if job.request is None:
        raise _Refused(job.refusal)
    request = job.request
    for _ in range(MAX_REDIRECTS + 1):
        response = await transport.handle_async_request(request)
        response.request = request
        try:
            follow = _redirect(request, response)
            if follow is None:
                sink = spec.sink(job, response)
                # No Content-Encoding: the raw stream is the body (httpx's decoding machinery
                # cost more CPU a request than the rest of the request's handling here).
                encoding = _header(response, b"content-encoding")
                try:
                    if not encoding:
                        async for chunk in response.stream:  # type: ignore[union-attr]
                            sink.write(chunk)
                    elif (unzip := _Unzip.of(encoding)) is not None:
                        async for chunk in response.aiter_raw():
                            sink.write(unzip.decode(chunk))
                        sink.write(unzip.flush())
                    else:
                        async for chunk in response.aiter_bytes():
                            sink.write(chunk)
                except BaseException:
                    sink.abort()
                    raise
                return spec.answer(job, request, response, sink)
            if _small(response):  # read, so that its connection carries the next request
                with contextlib.suppress(httpx.TransportError):  # a cut one: closed, followed
                    async for _ in response.stream:  # type: ignore[union-attr]
                        pass
        finally:
            await response.aclose()
        request = follow
    raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.")


def _timeouts(timeout: float) -> dict[str, float | None]:
    """The per-request timeout extension, as httpx's client sets it: every step bounded alike.

    inf, or anything past MAX_TIMEOUT, is no timeout at all (None for every step).
    """
    if timeout > MAX_TIMEOUT:
        return httpx.Timeout(None).as_dict()
    return httpx.Timeout(float(timeout)).as_dict()


def files_left() -> int | None:
    """How many more files (sockets) this process may open, less FILES_KEPT_FREE; None if unbounded.

    From `resource.getrlimit(RLIMIT_NOFILE)` and the descriptors open now (/proc/self/fd or
    /dev/fd); at least 1.
    """
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            used = len(os.listdir(folder))
            break
        except OSError:
            continue
    else:
        used = FILES_KEPT_FREE
    return max(1, soft - used - FILES_KEPT_FREE)


def _folder(given: Any) -> str:
    """`given` (a path), made with its parents if missing, as `wget -P` and `curl --create-dirs`
    do; ValueError if it is not a folder or cannot be made."""
    path = os.fspath(given) if isinstance(given, (str, os.PathLike)) else None
    if not isinstance(path, str):
        raise TypeError(f"output must be a folder's path (str or os.PathLike), not {type(given).__name__}")
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"output must be a folder, got {path!r}: a file of that name exists") from None
    except OSError as exc:
        raise ValueError(f"output folder {path!r} cannot be made: {exc.strerror or exc}") from None
    return path


class _Args(NamedTuple):
    plan: Plan[FetchResult]
    spec: _Spec
    jobs: Iterator[_Job]
    connections: int  # the most connections the batch may open
    proxies: Proxies | None  # None with a transport= of the caller's


def _checked(
    requests: Any,
    *,
    limit: Any,
    timeout: Any,
    retries: Any,
    backoff: Any,
    rate: Any,
    per_host: Any,
    headers: Any,
    keep: Any,
    max_body: Any,
    output: Any,
    retry_methods: Any,
    on_result: Any,
    proxy: Any = None,
    trust_env: Any = True,
    transport: Any = None,
) -> _Args:
    """Every argument checked before any request (TypeError/ValueError saying what is accepted)."""
    check_plan(
        requests, limit=limit, retries=retries, rate=rate, key=None, key_limit=None,
        order="input", on_result=on_result, backoff=backoff, what="requests",
    )
    engine.whole("per_host", per_host, 1, none=True)
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not timeout > 0:  # nan too
        raise ValueError(f"timeout must be > 0 seconds (inf for none), got {timeout}")
    if not isinstance(keep, bool):
        raise TypeError(f"keep must be True or False, not {keep!r}")
    engine.whole("max_body", max_body, 0, none=True)
    if output is not None:
        output = _folder(output)
    try:
        merged = httpx.Headers(_HEADERS)
        if headers is not None:
            if not isinstance(headers, (Mapping, list, tuple, httpx.Headers)):
                raise TypeError
            merged.update(headers)
    except (TypeError, ValueError, UnicodeError):
        raise TypeError(
            "headers must be a mapping (or a list of pairs) of str to str, "
            f"not {type(headers).__name__}"
        ) from None
    if isinstance(retry_methods, str) or not isinstance(retry_methods, Collection):
        raise TypeError("retry_methods must be a collection of method names, e.g. {'GET', 'PUT'}")
    methods = frozenset(str(m).upper() for m in retry_methods)
    if not isinstance(trust_env, bool):
        raise TypeError(f"trust_env must be True or False, not {trust_env!r}")
    proxies = None
    if transport is not None:
        if proxy is not None:  # the caller's transport sends as it likes: no proxy of ours
            raise ValueError("give proxy= or transport=, not both (a transport routes its own requests)")
    else:
        proxies = Proxies(proxy, trust_env)  # the environment read once, as httpx's client does
    spec = _Spec(merged, _timeouts(timeout), keep, max_body, output)
    if isinstance(requests, (list, tuple)):  # checked up front; a generator's items as they come
        for i, item in enumerate(requests):
            if not isinstance(item, (str, httpx.Request)):
                raise TypeError(
                    "requests must be an iterable of str URLs or httpx.Request objects; "
                    f"requests[{i}] is {type(item).__name__}"
                )
    count = len(requests) if isinstance(requests, Sized) else limit
    budget = files_left()
    connections = max(1, min(limit, count, budget if budget is not None else limit))
    plan: Plan[FetchResult] = Plan(
        limit,
        _FetchRetry(retries, backoff, methods),
        _result,
        rate,
        (lambda job: job.host) if per_host is not None else None,
        per_host,
        on_result=on_result,
    )
    return _Args(plan, spec, map(spec.job, requests), connections, proxies)


_DOCS = """
    Each item of `requests` is a URL (str: a GET) or an `httpx.Request` (any method, headers and
    body). `headers` (a mapping) is sent with every request, over partally's defaults (Accept,
    Accept-Encoding, User-Agent) and under a request's own. Bodies are decoded by their
    Content-Encoding and kept whole (`keep=True`) up to `max_body` bytes (a larger one is an error
    result that says so); with `output=FOLDER` each body streams to a file there instead (named
    by `file_name(url)`, written to a temporary name and renamed when whole), never held whole;
    FOLDER is made, with its parents, if missing (as `wget -P` and `curl --create-dirs` do).

    `timeout` (seconds, > 0) bounds each step of a request (connect, each read, write);
    `float("inf")`, or anything longer than a year, means no timeout. A request that never
    reached a server (connection refused) is retried `retries` times whatever its method; one of
    `retry_methods` (by default the idempotent ones: GET, HEAD, PUT, DELETE, OPTIONS, TRACE) also
    after a timeout, a network or protocol error, or a 429 or 5xx answer, after `backoff` seconds,
    doubling, at most 30 s; on 429 and 503 after what `Retry-After` says instead (at most 60 s).
    A pooled connection the server had closed is retried once on another, whatever `retries` is.
    `rate` bounds the requests started per second, `per_host` the requests in flight to one host;
    at most `limit` are in flight, over no more connections than the process can open
    (RLIMIT_NOFILE). `on_result` is called with each result as it comes (an exception it raises
    stops the batch and propagates). `transport` is an httpx transport to send with instead of
    partally's (an `httpx.AsyncBaseTransport` for asyncio, an `httpx.BaseTransport` otherwise;
    the caller closes it).

    Proxies are chosen as `httpx.Client` chooses them: `proxy` (a URL such as
    "http://user:pass@proxy:3128", or an `httpx.Proxy`) for every request; else, with
    `trust_env=True` (the default), the environment's HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and
    NO_PROXY (lower-case forms too), read when the batch starts; `trust_env=False` goes direct
    and ignores SSL_CERT_FILE and SSL_CERT_DIR too. http and https proxies are supported (https
    URLs through a CONNECT tunnel); a SOCKS proxy is a ValueError, never bypassed. With your own
    `transport`, the environment is not read (as with httpx) and `proxy` is a ValueError.

    Whatever goes wrong with one request (a malformed or non-IDNA host, a refused connection, TLS,
    a protocol error, a cut or undecodable body, ...) is that request's error result; only bad
    arguments (TypeError, ValueError), cancellation, KeyboardInterrupt and SystemExit raise.
"""


async def afetch_all(
    requests: Iterable[str | httpx.Request],
    *,
    limit: int = 50,
    timeout: float = 10.0,
    retries: int = 2,
    backoff: float = engine.BACKOFF,
    rate: float | None = None,
    per_host: int | None = None,
    headers: Mapping[str, str] | None = None,
    keep: bool = True,
    max_body: int | None = MAX_BODY,
    output: str | os.PathLike[str] | None = None,
    retry_methods: Collection[str] = IDEMPOTENT_METHODS,
    transport: httpx.AsyncBaseTransport | None = None,
    on_result: Callable[[FetchResult], None] | None = None,
    proxy: str | httpx.URL | httpx.Proxy | None = None,
    trust_env: bool = True,
) -> list[FetchResult]:
    args = _checked(
        requests, limit=limit, timeout=timeout, retries=retries, backoff=backoff, rate=rate,
        per_host=per_host, headers=headers, keep=keep, max_body=max_body, output=output,
        retry_methods=retry_methods, on_result=on_result, proxy=proxy, trust_env=trust_env,
        transport=transport,
    )
    if transport is not None:
        if not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(f"transport must be an httpx.AsyncBaseTransport, not {type(transport).__name__}")
        return await run_async(lambda job: _asend(transport, args.spec, job), args.jobs, args.plan)
    from partally.io.transport import AiohttpTransport

    pool = httpx.Limits(max_connections=args.connections, max_keepalive_connections=args.connections)
    async with AiohttpTransport(pool, args.proxies, trust_env) as own:
        return await run_async(lambda job: _asend(own, args.spec, job), args.jobs, args.plan)


afetch_all.__doc__ = (
    "Send `requests` on asyncio, at most `limit` in flight; a `FetchResult` each, in input order.\n"
    + _DOCS
)


def fetch_all(
    requests: Iterable[str | httpx.Request],
    mode: str = "asyncio",
    *,
    limit: int = 50,
    timeout: float = 10.0,
    retries: int = 2,
    backoff: float = engine.BACKOFF,
    rate: float | None = None,
    per_host: int | None = None,
    headers: Mapping[str, str] | None = None,
    keep: bool = True,
    max_body: int | None = MAX_BODY,
    output: str | os.PathLike[str] | None = None,
    retry_methods: Collection[str] = IDEMPOTENT_METHODS,
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    on_result: Callable[[FetchResult], None] | None = None,
    proxy: str | httpx.URL | httpx.Proxy | None = None,
    trust_env: bool = True,
) -> list[FetchResult]:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}, expected one of {list(MODES)}")
    settings = dict(
        limit=limit, timeout=timeout, retries=retries, backoff=backoff, rate=rate,
        per_host=per_host, headers=headers, keep=keep, max_body=max_body, output=output,
        retry_methods=retry_methods, on_result=on_result, proxy=proxy, trust_env=trust_env,
    )
    if mode == "asyncio":
        _checked(requests, transport=transport, **settings)  # type: ignore[arg-type]  # bad arguments before the loop check
        return run_coroutine(afetch_all(requests, transport=transport, **settings), "afetch_all")  # type: ignore[arg-type]
    args = _checked(requests, transport=transport, **settings)  # type: ignore[arg-type]
    workers = 1 if mode == "sequential" else min(args.connections, engine.MAX_THREADS)
    if transport is not None:
        if not isinstance(transport, httpx.BaseTransport):
            raise TypeError(f"transport must be an httpx.BaseTransport, not {type(transport).__name__}")
        return run_sync(lambda job: _send(transport, args.spec, job), args.jobs, args.plan, workers)
    from partally.io.transport import Urllib3Transport

    with Urllib3Transport(workers, args.proxies, trust_env) as own:
        return run_sync(lambda job: _send(own, args.spec, job), args.jobs, args.plan, workers)


fetch_all.__doc__ = (
    "Send `requests` and return a `FetchResult` for each, in input order.\n\n"
    '    `mode` is "asyncio" (on aiohttp), "threads" (`limit` threads, at most 256, on urllib3) or\n'
    '    "sequential" (one at a time, in this thread).\n' + _DOCS
)
