"""The httpx transports behind `partally.fetch_all`: aiohttp for asyncio, urllib3 for threads.

httpx's default transports (httpcore) lose their time in the connection pool: on every request and
response it scans its connections once per idle connection (quadratic in the pool size, 9.6
million `is_idle` calls for 1000 requests over 100 connections), under one lock that 100 threads
queue on. aiohttp's and urllib3's pools hand out connections in O(1). Requests and responses stay
httpx objects; only the bytes move through aiohttp or urllib3, and each request is handed over as
it is: its URL, already parsed and quoted by httpx, is not parsed again; its timeouts become the
pool's own objects once per client, not once per request.

aiohttp's and urllib3's errors become httpx's, most specific first (see `_AIOHTTP_ERRORS` and
`_URLLIB3_ERRORS`), so the retry policy in `partally.io.fetch` reads httpx's exceptions only.

Both transports behave as HTTP clients do where a server is within its rights: a pooled keep-alive
connection that the server closed meanwhile is retried once on another connection (idempotent
methods), header lines up to 64 KiB are read (as http.client reads them), and header bytes
>= 0x80 are kept as they came (latin-1), never an encoding error. Where a server is not within
its rights, a response is still read from its own bytes only, the same way in both: informational
(1xx) answers are skipped to the final one, bytes past a response's end are never read as the
next response (`_OneResponse`, `_framing`), and Content-Length with chunked is refused.

Proxies are chosen per request by `partally.io.proxy.Proxies` (httpx's rules): aiohttp's `proxy=`
argument, or a `urllib3.ProxyManager` for each proxy.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import http.client
import os
import re
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
import urllib3
import yarl
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_exceptions import HttpProcessingError
from urllib3.exceptions import (
    ConnectTimeoutError,
    IncompleteRead,
    LocationParseError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from partally.io.proxy import Proxies, proxy_authorization

__all__ = ["AiohttpTransport", "IDEMPOTENT_METHODS", "Urllib3Transport", "ssl_context"]

IDEMPOTENT_METHODS = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PUT", "TRACE"})  # urllib3's
WHOLE = 2**20  # bytes: a body no longer than this (by its Content-Length) is read in one go
MAX_HEADER_LINE = 65536  # bytes: what http.client (urllib3) reads; aiohttp's default was 8190


@functools.cache
def _ssl_context(trust_env: bool, cafile: str | None, capath: str | None) -> ssl.SSLContext:
    return httpx.create_ssl_context(trust_env=trust_env)


def ssl_context(trust_env: bool = True) -> ssl.SSLContext:
    """httpx's default TLS settings (with `trust_env`, the CA file or folder that SSL_CERT_FILE
    or SSL_CERT_DIR names, as httpx reads them), built once per setting: each build took 40 ms."""
    if not trust_env:
        return _ssl_context(False, None, None)
    return _ssl_context(True, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


def _mapped(exc: Exception, table: list[tuple[type[Exception], type[httpx.TransportError]]]) -> Exception:
    mapped = next(to for frm, to in table if isinstance(exc, frm))
    return mapped(str(exc) or type(exc).__name__)


def _timeouts(make: Any) -> Any:
    """`make(connect, read, pool)`, kept per distinct set of httpx timeouts (one per client)."""
    made: dict[tuple[Any, ...], Any] = {}

    def timeout(request: httpx.Request) -> Any:
        t = request.extensions.get("timeout") or {}
        key = (t.get("connect"), t.get("read"), t.get("pool"))
        try:
            return made[key]
        except KeyError:
            made[key] = result = make(*key)
            return result

    return timeout


# Most specific first: NewConnectionError is a subclass of ConnectTimeoutError.
_URLLIB3_ERRORS: list[tuple[type[Exception], type[httpx.TransportError]]] = [
    (NewConnectionError, httpx.ConnectError),
    (ConnectTimeoutError, httpx.ConnectTimeout),
    (ReadTimeoutError, httpx.ReadTimeout),
    (SSLError, httpx.ConnectError),
    (IncompleteRead, httpx.RemoteProtocolError),
    (ProtocolError, httpx.RemoteProtocolError),
    (LocationParseError, httpx.UnsupportedProtocol),
    (urllib3.exceptions.HTTPError, httpx.TransportError),
]


# A request sent on a pooled connection that the server had closed (its FIN not yet seen when the
# connection left the pool) fails before any answer, with one of these inside urllib3's error;
# BadStatusLine (RemoteDisconnected's base) too: bytes a server sent late after the connection's
# last response, read where this request's answer should start.
_STALE = (http.client.BadStatusLine, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class _Sent(threading.local):
    """Whether this thread's last request went out on a connection that had carried one before."""

    reused = False


_SENT = _Sent()


class _Reuse:
    """Mixed into urllib3's connections: records, per thread, whether a request reuses one.

    A request reuses the connection if it is open and no connect happened since the last
    request (plain HTTP connects inside `request`, TLS before it).
    """

    sock: Any
    _partally_connects = 0  # connects so far
    _partally_served = 0  # connects as of the last request

    def connect(self) -> None:
        self._partally_connects += 1
        super().connect()  # type: ignore[misc]

    def request(self, *args: Any, **kwargs: Any) -> None:
        _SENT.reused = self.sock is not None and self._partally_served == self._partally_connects
        super().request(*args, **kwargs)  # type: ignore[misc]
        self._partally_served = self._partally_connects


class _FinalResponse(http.client.HTTPResponse):
    """http.client's response, skipping every informational (1xx) response before the final one.

    http.client skips only 100 Continue: a 103 Early Hints (or a 102) was taken as the answer,
    with no body, and the real answer was left unread on the connection.
    """

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 101 < status < 200:  # 100 is skipped by http.client itself; 101 is final
                return version, status, reason
            http.client._read_headers(self.fp)  # type: ignore[attr-defined]


class _Connection(_Reuse, urllib3.connection.HTTPConnection):
    response_class = _FinalResponse


class _TLSConnection(_Reuse, urllib3.connection.HTTPSConnection):
    response_class = _FinalResponse


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


def _stale(exc: urllib3.exceptions.HTTPError) -> bool:
    """True if `exc` is a pooled connection found closed by the server before any answer."""
    if not (_SENT.reused and isinstance(exc, ProtocolError)):
        return False
    cause = exc.args[1] if len(exc.args) > 1 else exc.__context__
    return isinstance(cause, _STALE)


def _framing(method: str, response: urllib3.BaseHTTPResponse) -> bool:
    """Whether the response's connection may carry another; RemoteProtocolError for framing
    that is not to be trusted (Transfer-Encoding with Content-Length, refused as aiohttp refuses
    it: a body so framed may be smuggled past one reader of it and not another).

    A HEAD, 204 or 304 response has no body, but one whose headers announce a body may be
    followed by it anyway (aiohttp#820): its connection is not reused, so those bytes are never
    read as the next response.
    """
    headers = response.headers
    chunked = "transfer-encoding" in headers
    length = headers.get("content-length", "").strip()
    if chunked and length:
        response.close()
        raise httpx.RemoteProtocolError("Transfer-Encoding can't be present with Content-Length")
    if method == "HEAD" or response.status in (204, 304):
        return not chunked and length in ("", "0")
    return True


class _Stream(httpx.SyncByteStream):
    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._response.stream(65536, decode_content=False)
        except urllib3.exceptions.HTTPError as exc:
            raise _mapped(exc, _URLLIB3_ERRORS) from exc

    def close(self) -> None:
        if not self._response.isclosed():  # unread body: the connection can't be reused
            self._response.close()
        self._response.release_conn()


class Urllib3Transport(httpx.BaseTransport):
    """Send httpx requests through one `urllib3.PoolManager` of up to `limit` connections a host
    (a `urllib3.ProxyManager` for each proxy that `proxies` names)."""

    def __init__(self, limit: int, proxies: Proxies | None = None, trust_env: bool = True) -> None:
        self._limit = limit
        self._ssl = ssl_context(trust_env)
        self._pool = self._manager(None)
        self._proxies = proxies if proxies else None
        self._managers: dict[str, urllib3.PoolManager] = {}
        self._lock = threading.Lock()
        self._timeout = _timeouts(lambda connect, read, pool: urllib3.Timeout(connect, read))

    def _manager(self, proxy: httpx.Proxy | None) -> urllib3.PoolManager:
        manager: urllib3.PoolManager
        if proxy is None:
            manager = urllib3.PoolManager(maxsize=self._limit, ssl_context=self._ssl)
        else:
            headers = dict(proxy.headers.items())
            if (authorization := proxy_authorization(proxy)) is not None:
                headers["Proxy-Authorization"] = authorization
            manager = urllib3.ProxyManager(
                str(proxy.url), maxsize=self._limit, ssl_context=self._ssl,
                proxy_ssl_context=self._ssl if proxy.url.scheme == "https" else None,
                proxy_headers=headers,
            )
        manager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
        return manager

    def _route(self, url: httpx.URL) -> tuple[urllib3.PoolManager, str]:
        """The manager for `url` and the request target: its path, or the absolute URL for a
        plain http request through a proxy (a CONNECT tunnel carries https as it is)."""
        proxy = self._proxies.for_url(url) if self._proxies is not None else None
        if proxy is None:
            return self._pool, url.raw_path.decode("ascii")
        key = str(proxy.url)
        manager = self._managers.get(key)
        if manager is None:
            with self._lock:
                manager = self._managers.get(key)
                if manager is None:
                    manager = self._managers[key] = self._manager(proxy)
        target = url.raw_path.decode("ascii") if url.scheme == "https" else str(url)
        return manager, target

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        manager, target = self._route(url)
        # A stale pooled connection is retried on the next one, at most as many times as the pool
        # holds connections (each failure drops one), then once more on a new connection.
        stale_retries = self._limit + 1 if request.method in IDEMPOTENT_METHODS else 0
        while True:
            try:
                # What PoolManager.urlopen does, less parsing the URL again (the costliest step).
                pool = manager.connection_from_host(url.host, url.port, url.scheme)
                response = pool.urlopen(
                    request.method,
                    target,
                    body=request.read() or None,
                    headers=dict(request.headers.items()),
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    preload_content=False,
                    decode_content=False,
                    timeout=self._timeout(request),
                )
                break
            except urllib3.exceptions.HTTPError as exc:
                if stale_retries and _stale(exc):
                    stale_retries -= 1
                    continue
                raise _mapped(exc, _URLLIB3_ERRORS) from exc
        # http.client decoded the header bytes as latin-1: encode them back the same way (httpx
        # encodes a str as ASCII, and a UTF-8 Location failed the URL with UnicodeEncodeError).
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        reuse = _framing(request.method, response)
        if not reuse and response.connection is not None:  # before urllib3 pools it at the end
            response.connection.close()
        return httpx.Response(
            response.status,
            headers=headers,
            stream=_Stream(response),
            extensions={"reason_phrase": response.reason.encode() if response.reason else b""},
        )

    def close(self) -> None:
        self._pool.clear()
        for manager in self._managers.values():
            manager.clear()


# Most specific first: ClientConnectorError, ServerTimeoutError and ServerDisconnectedError are all
# ClientConnectionErrors.
_AIOHTTP_ERRORS: list[tuple[type[Exception], type[httpx.TransportError]]] = [
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    # Raised by aiohttp's parser for a bad status line, header or chunk (with status=400 of its
    # own making): a protocol error, retried as urllib3's BadStatusLine is in threads mode.
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientError, httpx.TransportError),
]


class _DaemonLookups:
    """getaddrinfo and getnameinfo as awaitables on daemon threads; anything else, the loop's.

    aiohttp's ThreadedResolver looks names up with `loop.getaddrinfo`, on the loop's default
    executor, whose threads the interpreter (and asyncio.run) wait for: Ctrl-C during a slow DNS
    lookup waited for the lookup (19 s with a 20 s resolver). On a daemon thread, nothing waits.
    """

    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> Any:
        return await _on_daemon_thread(socket.getaddrinfo, *args, **kwargs)

    async def getnameinfo(self, *args: Any) -> Any:
        return await _on_daemon_thread(socket.getnameinfo, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio.get_running_loop(), name)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled while the thread looked the name up
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


async def _on_daemon_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def run() -> None:
        try:
            outcome = (function(*args, **kwargs), None)
        except Exception as exc:  # handed to the awaiting task, which maps it per URL
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(_settle, future, *outcome)
        except RuntimeError:  # the loop closed meanwhile (Ctrl-C): nobody is waiting
            pass

    threading.Thread(target=run, name="partally-dns", daemon=True).start()
    return await future


def _resolver() -> aiohttp.abc.AbstractResolver:
    resolver = aiohttp.ThreadedResolver()
    resolver._loop = _DaemonLookups()  # type: ignore[assignment]  # its only use of the loop
    return resolver


# Whether this task's last request went out on a connection that had carried one before.
_REUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("partally_reused", default=False)
# Where a response's head ends: an empty line (aiohttp's parser takes a bare LF for CRLF).
_HEAD_END = re.compile(rb"\n\r?\n")
_BODYLESS_STATUSES = frozenset({204, 304})
_HEAD, _COUNTED, _PARSED, _DONE = range(4)  # where a connection is in the response it reads


class _OneResponse(ResponseHandler):
    """aiohttp's protocol, handing its parser the bytes of the response asked for and no more.

    aiohttp's parser reads whatever follows a response as the next one, at once: a body sent
    after a HEAD (aiohttp#820), after a 204 or 304, or past the Content-Length failed the
    response itself ("Bad status line"), and bytes arriving after it failed the next request on
    that connection. Here a response's head is handed over alone; then its body, as many bytes
    as its Content-Length says (a chunked or close-delimited body as it comes: its parser
    frames it); bytes past the response's end are dropped and the connection closed, never
    parsed. A HEAD, 204 or 304 response whose headers announce a body closes its connection
    too: the body may still come, and would be read as the next response.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._frame = _PARSED  # nothing asked yet: as aiohttp reads it
        self._left = 0  # body bytes still to come (_COUNTED)
        self._carry = b""  # the head's last bytes so far (_HEAD): its end may span two reads

    _served = 0  # requests sent on this connection so far

    def set_response_params(self, **kwargs: Any) -> None:
        self._frame, self._carry = _HEAD, b""  # a request goes out: its response comes next
        _REUSED.set(self._served > 0)  # in the sending task's context: read if the request fails
        self._served += 1
        super().set_response_params(**kwargs)

    def feed_data(self, data: Any, size: int = 0) -> None:
        """A parsed response head (and its payload) on its way to the response: what follows."""
        message = data[0]
        code = message.code
        if 100 <= code < 200 and code != 101:  # informational: the final head follows
            self._frame, self._carry = _HEAD, b""
        elif self._skip_payload or code in _BODYLESS_STATUSES:
            self._frame = _DONE
            length = message.headers.get("Content-Length", "0").strip()
            if message.chunked or length not in ("", "0"):
                self._should_close = True  # its announced body may follow: never reused
        elif message.chunked or code == 101:
            self._frame = _PARSED
        else:
            length = message.headers.get("Content-Length")
            if length is not None and length.strip().isdigit():
                self._frame, self._left = _COUNTED, int(length)
                if not self._left:
                    self._frame = _DONE
            else:
                self._frame = _PARSED  # till the server closes
        super().feed_data(data, size)

    def _parse(self, data: bytes) -> bool:
        """Hand `data` to aiohttp's parser; False if it failed, its error then on the body too
        (a head handed over alone has its response waiting on the body)."""
        super().data_received(data)
        exc = self._exception
        if exc is None:
            return True
        payload = self._payload
        if payload is not None and not payload.is_eof():
            payload.set_exception(exc)
        return False

    def data_received(self, data: bytes) -> None:
        while data:
            frame = self._frame
            if frame == _PARSED:
                self._parse(data)
                return
            if frame == _DONE:  # past the end of the response: nobody asked for these bytes
                self._should_close = True
                if self.transport is not None:
                    self.transport.close()
                return
            if frame == _COUNTED:
                if len(data) <= self._left:
                    self._left -= len(data)
                    if not self._left:
                        self._frame = _DONE
                    self._parse(data)
                    return
                piece, data = data[: self._left], data[self._left :]
                self._left, self._frame = 0, _DONE
                if not self._parse(piece):
                    return
                continue
            # _HEAD: hand over the head alone; feed_data (called by the parser) sets what follows.
            seen = self._carry + data
            end = _HEAD_END.search(seen)
            if end is None:
                self._carry = seen[-2:]
                self._parse(data)
                return
            cut = end.end() - len(self._carry)
            piece, data = data[:cut], data[cut:]
            self._carry = b""
            if not self._parse(piece):  # the parser failed: it said why, and closed
                return


class _AsyncStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        response = self._response
        try:
            if response.content_length is not None and response.content_length <= WHOLE:
                yield await response.read()  # one await for a small body, not one a piece
                return
            content = response.content
            while chunk := await content.readany():
                yield chunk
        except aiohttp.ClientError as exc:
            raise _mapped(exc, _AIOHTTP_ERRORS) from exc
        except HttpProcessingError as exc:  # the parser's, for a bad chunk (see _OneResponse)
            raise httpx.RemoteProtocolError(str(exc)) from exc

    async def aclose(self) -> None:
        self._response.release()  # closes the connection instead if the body was not all read


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests through one `aiohttp.ClientSession` of up to `max_connections`.

    The session keeps no cookies (`aiohttp.DummyCookieJar`): httpx's cookie policy is the only
    one, and aiohttp's own jar would carry one site's cookies to the next URL. An idempotent
    request whose pooled connection turns out closed by the server is sent once more, on a new
    connection (a second session's, closed after each request); one whose new connection drops
    is not (aiohttp's own retry, which resent it on any connection, is off).
    """

    def __init__(self, limits: httpx.Limits, proxies: Proxies | None = None, trust_env: bool = True) -> None:
        self._limits = limits
        self._proxies = proxies if proxies else None
        self._ssl = ssl_context(trust_env)
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None  # new connections only, for that retry
        self._timeout = _timeouts(
            lambda connect, read, pool: aiohttp.ClientTimeout(
                total=None, connect=pool, sock_connect=connect, sock_read=read
            )
        )

    def _new_session(self, force_close: bool) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            keepalive_timeout=None if force_close else self._limits.keepalive_expiry,
            force_close=force_close,
            ssl=self._ssl,
            resolver=_resolver(),
        )
        connector._factory = functools.partial(_OneResponse, loop=connector._loop)  # see _OneResponse
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            max_line_size=MAX_HEADER_LINE,
            max_field_size=MAX_HEADER_LINE,
        )
        # aiohttp resends an idempotent request once whenever its connection drops, new or
        # pooled: a server that closed a new connection unanswered got it twice, or four times
        # with the retry below. Only a pooled connection is retried, below, as in threads mode.
        session._retry_connection = False
        return session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._new_session(force_close=False)
        body = await request.aread()
        arguments: dict[str, Any] = {
            "headers": [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            "data": body or None,
            "allow_redirects": False,
            "compress": False,
            "timeout": self._timeout(request),
        }
        if self._proxies is not None and (proxy := self._proxies.for_url(request.url)) is not None:
            arguments["proxy"] = yarl.URL(str(proxy.url), encoded=True)
            headers = dict(proxy.headers.items())
            if (authorization := proxy_authorization(proxy)) is not None:
                headers["Proxy-Authorization"] = authorization
            if headers and request.url.scheme == "https":  # sent with the CONNECT
                arguments["proxy_headers"] = headers
            elif headers:  # aiohttp sends proxy_headers only with a CONNECT
                arguments["headers"] += headers.items()
        url = yarl.URL(str(request.url), encoded=True)  # quoted by httpx already
        try:
            try:
                _REUSED.set(False)
                response = await self._session.request(request.method, url, **arguments)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientResponseError) as exc:
                # A pooled connection the server closed, or one whose next bytes were not an
                # answer's start (a late stray, see _OneResponse; aiohttp's parser raises
                # ClientResponseError): sent once more on a new connection.
                if (
                    request.method not in IDEMPOTENT_METHODS
                    or isinstance(exc, aiohttp.ClientConnectorError)
                    or not _REUSED.get()  # a new connection: that was the server's answer
                ):
                    raise
                if self._fresh is None:
                    self._fresh = self._new_session(force_close=True)
                response = await self._fresh.request(request.method, url, **arguments)
        except aiohttp.ClientError as exc:
            raise _mapped(exc, _AIOHTTP_ERRORS) from exc
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_AsyncStream(response),
            extensions=extensions,
        )

    async def aclose(self) -> None:
        for session in (self._session, self._fresh):
            if session is not None:
                await session.close()
