"""The httpx transports behind `partally.fetch_all`: aiohttp for asyncio, urllib3 for threads.

httpx's default transports (httpcore) lose their time in the connection pool: on every request and
response it scans its connections once per idle connection (quadratic in the pool size, 9.6
million `is_idle` calls for 1000 requests over 100 connections), under one lock that 100 threads
queue on. aiohttp's and urllib3's pools hand out connections in O(1). Requests and responses stay
httpx objects; only the bytes move through aiohttp or urllib3.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx
import httpx_aiohttp
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    IncompleteRead,
    LocationParseError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

__all__ = ["AiohttpTransport", "Urllib3Transport", "ssl_context"]


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """httpx's default TLS settings, built once a process: each build took 40 ms here."""
    return httpx.create_ssl_context()

# Most specific first: NewConnectionError is a subclass of ConnectTimeoutError.
_ERRORS: list[tuple[type[Exception], type[httpx.TransportError]]] = [
    (NewConnectionError, httpx.ConnectError),
    (ConnectTimeoutError, httpx.ConnectTimeout),
    (ReadTimeoutError, httpx.ReadTimeout),
    (SSLError, httpx.ConnectError),
    (IncompleteRead, httpx.RemoteProtocolError),
    (ProtocolError, httpx.RemoteProtocolError),
    (LocationParseError, httpx.UnsupportedProtocol),
    (urllib3.exceptions.HTTPError, httpx.TransportError),
]


@contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except urllib3.exceptions.HTTPError as exc:
        mapped = next(to for frm, to in _ERRORS if isinstance(exc, frm))
        raise mapped(str(exc)) from exc


class _Stream(httpx.SyncByteStream):
    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        with _mapped_errors():
            yield from self._response.stream(65536, decode_content=False)

    def close(self) -> None:
        if not self._response.isclosed():  # unread body: the connection can't be reused
            self._response.close()
        self._response.release_conn()


class Urllib3Transport(httpx.BaseTransport):
    """Send httpx requests through one `urllib3.PoolManager` of up to `limit` connections a host."""

    def __init__(self, limit: int) -> None:
        self._pool = urllib3.PoolManager(maxsize=limit, ssl_context=ssl_context())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        with _mapped_errors():
            response = self._pool.urlopen(
                request.method,
                str(request.url),
                body=request.read() or None,
                headers=request.headers,
                retries=False,
                redirect=False,
                preload_content=False,
                decode_content=False,
                timeout=urllib3.Timeout(connect=timeout.get("connect"), read=timeout.get("read")),
            )
        return httpx.Response(
            response.status,
            headers=response.headers,
            stream=_Stream(response),
            extensions={"reason_phrase": response.reason.encode() if response.reason else b""},
        )

    def close(self) -> None:
        self._pool.clear()


class AiohttpTransport(httpx_aiohttp.AiohttpTransport):
    """`httpx_aiohttp.AiohttpTransport` on the shared TLS context, naming connection errors right.

    httpx-aiohttp 0.2 maps every `aiohttp.ClientConnectionError`, a refused connection included,
    to `httpx.ConnectTimeout`.
    """

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context(), limits=limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ClientConnectorError):
                raise httpx.ConnectError(str(exc)) from cause
            if isinstance(cause, aiohttp.ServerDisconnectedError):
                raise httpx.RemoteProtocolError(str(exc) or "server disconnected") from cause
            raise
