"""An httpx transport over urllib3, for the thread modes of `partally.fetch_all`.

httpx's own sync pool (httpcore) serialises every request on one pool lock and, while holding it,
scans its connections once per connection (quadratic in the pool size): shared by 100 threads it
spent half its samples waiting for that lock. urllib3's pool hands out connections from a queue
in O(1). Requests and responses stay httpx objects; only the bytes move through urllib3.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
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

__all__ = ["Urllib3Transport"]

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
        self._pool = urllib3.PoolManager(maxsize=limit, ssl_context=httpx.create_ssl_context())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        with _mapped_errors():
            response = self._pool.urlopen(
                request.method,
                str(request.url),
                body=request.read() or None,
                headers=urllib3.HTTPHeaderDict(request.headers.multi_items()),
                retries=False,
                redirect=False,
                preload_content=False,
                decode_content=False,
                timeout=urllib3.Timeout(connect=timeout.get("connect"), read=timeout.get("read")),
            )
        return httpx.Response(
            response.status,
            headers=list(response.headers.items()),
            stream=_Stream(response),
            extensions={"reason_phrase": response.reason.encode() if response.reason else b""},
        )

    def close(self) -> None:
        self._pool.clear()
