"""fetch_all / afetch_all against the local server (127.0.0.1 only), raw sockets and an injected
httpx.MockTransport (the `transport=` argument: no private name is patched)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import socket
import ssl
import sys
import textwrap
import threading
import time

import aiohttp
import h11
import httpcore
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from helpers import interrupt, start_python

from partally.io.fetch import MODES, FetchResult, afetch_all, fetch_all, file_name
from partally.io.server import running_server

QUICK = {"backoff": 0.001}  # retries wait a millisecond, not a tenth of a second and more


@pytest.fixture(scope="module")
def server():
    with running_server(latency=0.0, size=100) as running:
        yield running


@pytest.fixture
def app(server):
    settled(server.app)
    server.app.reset()
    return server.app


def settled(app, seconds: float = 30.0) -> None:
    """Wait until nothing is in flight on the server (a hang bound, not a speed check)."""
    deadline = time.monotonic() + seconds
    while app.in_flight and time.monotonic() < deadline:
        time.sleep(0.005)


@pytest.fixture
def refusing_port():
    """A port bound but not listening, kept bound for the test: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("mode", MODES)
def test_results_come_in_input_order_with_their_bodies(server, mode):
    # Later URLs answer sooner, so completion order is the reverse of input order.
    urls = [f"{server.url}/{i}?latency={0.002 * (20 - i)}&size={i}" for i in range(20)]
    results = fetch_all(urls, mode, limit=20)
    assert [r.url for r in results] == urls
    assert [r.bytes for r in results] == list(range(20))
    assert [r.content for r in results] == [b"x" * i for i in range(20)]
    assert all(r.ok and r.status == 200 and r.error is None for r in results)
    assert results[3].final_url == urls[3] and results[3].headers["content-type"] == "text/plain"
    assert results[3].text == "xxx"


@pytest.mark.parametrize("mode", MODES)
def test_status_codes_4xx_fail_without_retry_429_and_5xx_retry(server, app, mode):
    codes = [200, 204, 404, 410, 429, 500, 503]
    results = fetch_all([f"{server.url}/s?status={c}" for c in codes], mode, retries=2, **QUICK)
    assert [r.status for r in results] == codes
    assert [r.ok for r in results] == [True, True, False, False, False, False, False]
    assert results[2].error == "HTTP 404 Not Found"
    hits = {key.split("=")[1]: n for key, n in app.hits.items()}
    assert hits == {"200": 1, "204": 1, "404": 1, "410": 1, "429": 3, "500": 3, "503": 3}
    assert [r.attempts for r in results] == [1, 1, 1, 1, 3, 3, 3]


@pytest.mark.parametrize("mode", MODES)
def test_retries_until_success(server, app, mode):
    ok, short = fetch_all(
        [f"{server.url}/a?fail_first=2", f"{server.url}/b?fail_first=2"], mode, retries=2, **QUICK
    )[0], fetch_all([f"{server.url}/c?fail_first=2"], mode, retries=1, **QUICK)[0]
    assert ok.ok and ok.status == 200
    assert not short.ok and short.status == 503
    assert app.hits["/a?fail_first=2"] == 3 and app.hits["/c?fail_first=2"] == 2


def test_backoff_doubles(server):
    (result,) = fetch_all([f"{server.url}/x?status=500"], retries=2, backoff=0.05)
    assert result.elapsed >= 0.15  # 0.05 + 0.1 of backoff


@pytest.mark.parametrize("mode", MODES)
def test_timeout_is_an_error_result_and_retried(server, app, mode):
    (result,) = fetch_all([f"{server.url}/slow?latency=60"], mode, timeout=0.1, retries=1, **QUICK)
    assert result.status is None and "Timeout" in result.error
    assert result.elapsed < 30  # a hang bound: the answer would take 60 s
    assert app.hits["/slow?latency=60"] == 2


@pytest.mark.parametrize("mode", MODES)
def test_connection_refused_is_retried_even_for_a_post(refusing_port, mode):
    url = f"http://127.0.0.1:{refusing_port}/"
    get, post = fetch_all([url, httpx.Request("POST", url, content=b"x")], mode, retries=1, **QUICK)
    for result in (get, post):
        assert not result.ok and result.status is None and "ConnectError" in result.error
        assert result.attempts == 2  # never reached a server: safe to send again


@pytest.mark.parametrize("mode", MODES)
def test_server_closing_mid_response_is_an_error_and_retried(server, app, mode):
    (result,) = fetch_all([f"{server.url}/close?size=1000"], mode, retries=1, **QUICK)
    assert not result.ok and result.content is None
    assert app.hits["/close?size=1000"] == 2


BAD_URLS = ["", "not a url", "http://", "http://[::1", "http://exa mple.com/", "//no-scheme/x"]
OTHER_SCHEMES = ["ftp://127.0.0.1/x", "file:///etc/passwd", "mailto:someone@127.0.0.1", "ws://127.0.0.1/"]


@pytest.mark.parametrize("mode", MODES)
def test_malformed_urls_and_other_schemes_fail_alone(server, app, mode):
    urls = [*BAD_URLS, *OTHER_SCHEMES, f"{server.url}/good"]
    results = fetch_all(urls, mode)
    assert results[-1].ok
    for result in results[:-1]:
        assert not result.ok and result.status is None and result.bytes == 0, result
    for result in results[len(BAD_URLS) : -1]:
        assert "only http and https" in result.error and result.attempts == 1
    assert app.requests == 1  # nothing but the good URL reached the server


@pytest.mark.parametrize("mode", MODES)
def test_a_host_idna_rejects_fails_alone(server, app, mode):
    # httpx parses "xn--zz" lazily: .host raised idna.IDNAError, outside the per-URL guard, and
    # the whole batch failed with it.
    urls = [f"{server.url}/a", "http://xn--zz.localhost/", "http://a..b/", f"{server.url}/b"]
    first, bad, empty_label, last = fetch_all(urls, mode, retries=0)
    assert first.ok and last.ok
    assert bad.status is None and bad.error.startswith("invalid URL: ") and "A-label" in bad.error
    assert not empty_label.ok and empty_label.status is None
    assert app.requests == 2


class Boom(Exception):
    """What no transport maps: a library's own exception, raised for one URL."""


PER_URL_ERRORS = [
    Boom("odd"),
    UnicodeError("label"),
    ValueError("port"),
    ssl.SSLError(1, "bad handshake"),
    h11.LocalProtocolError("h11"),
    httpcore.RemoteProtocolError("httpcore"),
    aiohttp.ClientPayloadError("payload"),
    OSError(24, "Too many open files"),
    RuntimeError("Session is closed"),
]


def mock(handler):
    """An httpx.MockTransport calling `handler(request)` (sync) for both kinds of mode."""

    async def ahandler(request):
        return handler(request)

    return lambda mode: httpx.MockTransport(ahandler if mode == "asyncio" else handler)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("error", PER_URL_ERRORS, ids=lambda e: type(e).__name__)
def test_anything_a_transport_raises_for_one_url_is_its_error_result(mode, error):
    def handler(request):
        if request.url.path == "/bad":
            raise error
        return httpx.Response(200, content=b"ok")

    transport = mock(handler)(mode)
    ok, bad = fetch_all(["http://h/ok", "http://h/bad"], mode, retries=0, transport=transport)
    assert ok.ok and ok.content == b"ok"
    assert bad.status is None and bad.error.startswith(type(error).__name__), bad


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_exit_are_never_swallowed(mode, error):
    def handler(request):
        raise error()

    with pytest.raises(error):
        fetch_all([f"http://h/{i}" for i in range(4)], mode, limit=2, transport=mock(handler)(mode))


def test_cancelled_error_is_never_swallowed():
    async def handler(request):
        raise asyncio.CancelledError()

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(afetch_all(["http://h/a"], transport=httpx.MockTransport(handler)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("timeout", [float("inf"), 1e300, 1e10, 10**400, 30])
def test_infinite_and_huge_timeouts_mean_no_timeout(server, mode, timeout):
    # inf passed validation, then every request failed with OverflowError (1e10 too, in threads).
    results = fetch_all([f"{server.url}/a", f"{server.url}/b?latency=0.05"], mode, timeout=timeout)
    assert all(r.ok for r in results), results


@pytest.mark.parametrize("mode", ["threads", "sequential", "asyncio"])
def test_a_huge_limit_runs_no_more_workers_than_urls(server, app, mode):
    # urllib3 filled a pool of `limit` up front: limit=10**9 took minutes and gigabytes.
    before, seen = threading.active_count(), []
    results = fetch_all(
        [f"{server.url}/{i}" for i in range(3)], mode, limit=10**9,
        on_result=lambda _: seen.append(threading.active_count()),
    )
    assert all(r.ok for r in results)
    assert max(seen) <= before + 3


@pytest.mark.parametrize("mode", MODES)
def test_any_iterable_of_urls_and_requests(server, mode):
    urls = (f"{server.url}/{i}" for i in range(3))  # a generator, read once
    assert [r.ok for r in fetch_all(urls, mode)] == [True] * 3
    assert fetch_all((), mode) == [] and fetch_all(iter([]), mode) == []


@pytest.mark.parametrize("mode", MODES)
def test_a_generator_yielding_a_non_url_stops_the_batch(server, mode):
    def items():
        yield f"{server.url}/a"
        yield 5

    with pytest.raises(TypeError, match="str URLs or httpx.Request objects, not of int"):
        fetch_all(items(), mode)


# Raw answers from a socket server: what the test server (uvicorn) would never send.

GZIPPED = gzip.compress(b"x" * 100_008)
RAW_ANSWERS = {
    "close": b"",
    "garbage": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "short": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
    "status": b"HTTP/1.1 99999 Nope\r\nContent-Length: 0\r\n\r\n",
    "chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
    "idna": b"HTTP/1.1 302 Found\r\nLocation: http://xn--zz.localhost/\r\nContent-Length: 0\r\n\r\n",
    "header": b"HTTP/1.1 200 OK\r\nX: " + b"a" * 100_000 + b"\r\nContent-Length: 0\r\n\r\n",
    # The faults of issue 19, each answered by a server within its rights:
    "keepalive": b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    # Answers one request, keeps the connection open, and closes it unanswered at the next one.
    "oneshot": b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    "cookie": b"HTTP/1.1 200 OK\r\nSet-Cookie: s=" + b"c" * 9000 + b"\r\nContent-Length: 2\r\n\r\nok",
    "notgzip": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 12\r\n\r\nnot gzipped!",
    "gzip": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
    % (len(GZIPPED), GZIPPED),
    "utf8": "HTTP/1.1 302 Found\r\nLocation: /café\r\nContent-Length: 0\r\n\r\n".encode(),
    "caf%C3%A9": b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ncafe",
    "latin": b"HTTP/1.1 200 OK\r\nX-Odd: \xff\xfe caf\xc3\xa9\r\nContent-Length: 2\r\n\r\nok",
    "chunked-big": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"4000\r\n" + b"y" * 0x4000 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n",
}


@pytest.fixture(scope="module")
def raw_server():
    """A socket server that answers /NAME with RAW_ANSWERS[NAME], then closes; counts hits."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=512)
    hits: dict[str, int] = {}

    def handle(conn):
        with conn, contextlib.suppress(OSError):  # the client may hang up first
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            name = data.split(b" ")[1].decode().split("/", 2)[1]
            hits[name] = hits.get(name, 0) + 1
            conn.sendall(RAW_ANSWERS[name])
            if name == "oneshot":
                conn.recv(65536)  # the next request (or the client's close): closed unanswered
                return
            conn.shutdown(socket.SHUT_WR)

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", hits
    listener.close()


BROKEN = ["close", "garbage", "short", "status", "chunk", "idna", "header"]


@pytest.mark.parametrize("mode", MODES)
def test_a_broken_server_gives_error_results_retried_as_protocol_errors(raw_server, mode):
    url, hits = raw_server
    hits.clear()
    results = fetch_all([f"{url}/{name}" for name in BROKEN], mode, retries=1, timeout=5, **QUICK)
    for name, result in zip(BROKEN, results):
        assert not result.ok and result.status is None, (name, result)
    by_name = dict(zip(BROKEN, results))
    for name in ("garbage", "status", "chunk", "header"):  # aiohttp's were TransportError, once
        assert by_name[name].error.startswith("RemoteProtocolError"), by_name[name]
    assert hits["garbage"] >= 2  # retried (a retry may also die before the server reads it)
    assert by_name["idna"].error.startswith("RemoteProtocolError: Invalid URL in location header")


@pytest.mark.parametrize("mode", MODES)
def test_a_keep_alive_connection_the_server_closed_is_retried_whatever_retries_says(raw_server, mode):
    # Fault 1: threads lost 30-49% of 200 URLs, sequential 8-23%; with retries=2 sequential took
    # 3.3-4.3 s in backoff. Each answer promises keep-alive, then the server closes.
    url, _ = raw_server
    results = fetch_all([f"{url}/keepalive/{i}" for i in range(200)], mode, limit=10, retries=0)
    failed = [r.error for r in results if not r.ok]
    assert not failed, failed[:3]
    assert all(r.content == b"ok" and r.attempts == 1 for r in results)


def test_every_pooled_connection_found_closed_is_retried_asyncio(raw_server):
    # aiohttp retries a dropped idempotent request once: with two pooled connections that the
    # server closes at their next request, the third request failed.
    from partally.io.transport import AiohttpTransport

    url, _ = raw_server

    async def get(transport, path):
        response = await transport.handle_async_request(httpx.Request("GET", f"{url}/{path}"))
        return await response.aread()

    async def main():
        async with AiohttpTransport(httpx.Limits(max_connections=2)) as transport:
            first = await asyncio.gather(get(transport, "oneshot/1"), get(transport, "oneshot/2"))
            return [*first, await get(transport, "oneshot/3")]

    assert asyncio.run(main()) == [b"ok"] * 3


@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_every_pooled_connection_found_closed_is_retried_threads(raw_server, mode):
    url, _ = raw_server
    results = fetch_all([f"{url}/oneshot/{i}" for i in range(6)], mode, limit=2, retries=0)
    assert [r.error for r in results] == [None] * 6


@pytest.mark.parametrize("mode", MODES)
def test_a_9000_byte_header_is_read(raw_server, mode):
    # Fault 2: asyncio failed it ("Got more than 8190 bytes") and retried it twice.
    url, hits = raw_server
    hits.pop("cookie", None)
    (result,) = fetch_all([f"{url}/cookie"], mode, retries=2, **QUICK)
    assert result.ok and len(result.headers["set-cookie"]) == 9002
    assert hits["cookie"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_body_is_decoded_by_its_content_encoding_and_a_corrupt_one_fails(raw_server, mode):
    # Fault 3: a body labelled gzip that was not gzip was ok; a gzip body counted 241 bytes.
    url, _ = raw_server
    bad, good = fetch_all([f"{url}/notgzip", f"{url}/gzip"], mode, retries=0)
    assert not bad.ok and bad.error.startswith("DecodingError"), bad
    assert bad.status is None and bad.content is None
    assert good.ok and good.bytes == 100_008 and good.content == b"x" * 100_008


@pytest.mark.parametrize("mode", MODES)
def test_header_bytes_above_0x7f_never_fail_a_url(raw_server, mode):
    # Fault 4: a Location of raw UTF-8 bytes failed threads and sequential (UnicodeEncodeError).
    url, _ = raw_server
    redirected, odd = fetch_all([f"{url}/utf8", f"{url}/latin"], mode, retries=0)
    assert redirected.ok and redirected.content == b"cafe", redirected
    assert redirected.final_url == f"{url}/caf%C3%A9"
    assert odd.ok and odd.content == b"ok", odd


@pytest.mark.parametrize("mode", MODES)
def test_connections_are_bounded_by_the_open_file_limit(server, mode):
    # Fault 5: 600 URLs, limit=200, RLIMIT_NOFILE 64: asyncio lost ~20% ("Too many open files")
    # even after 2 retries. The connections are bounded by what the process can open.
    code = textwrap.dedent(
        f"""
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        from partally import fetch_all
        urls = [{server.url!r} + f"/{{i}}?latency=0.01" for i in range(600)]
        results = fetch_all(urls, {mode!r}, limit=200, retries=0)
        print(sum(r.ok for r in results), [r.error for r in results if not r.ok][:3])
        """
    )
    child = start_python(code)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    assert out.startswith("600 []"), out


@pytest.mark.parametrize("mode", MODES)
def test_a_body_over_max_body_is_an_error_result_not_retried(server, raw_server, app, mode):
    url, _ = raw_server
    declared, streamed, under = fetch_all(
        [f"{server.url}/big?size=5000", f"{url}/chunked-big", f"{server.url}/small?size=4000"],
        mode, max_body=4000, retries=2, **QUICK,
    )
    assert not declared.ok and "body too large: Content-Length says 5,000 bytes" in declared.error
    assert "max_body=4,000" in declared.error and declared.attempts == 1
    assert not streamed.ok and "body too large" in streamed.error
    assert under.ok and under.bytes == 4000
    assert app.hits["/big?size=5000"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_keep_false_counts_bodies_without_keeping_them(server, mode):
    (result,) = fetch_all([f"{server.url}/a?size=7"], mode, keep=False)
    assert result.ok and result.bytes == 7 and result.content is None
    with pytest.raises(ValueError, match="not kept"):
        result.text


@pytest.mark.parametrize("mode", MODES)
def test_requests_with_methods_headers_and_bodies(server, mode):
    post = httpx.Request("POST", f"{server.url}/echo", json={"a": 1}, headers={"X-Mine": "r"})
    put = httpx.Request("PUT", f"{server.url}/echo", content=b"raw")
    results = fetch_all([post, put, f"{server.url}/echo"], mode, headers={"X-Batch": "b", "X-Mine": "batch"})
    echoes = [r.json() for r in results]
    assert [e["method"] for e in echoes] == ["POST", "PUT", "GET"]
    assert echoes[0]["body"] == '{"a":1}' and echoes[1]["body"] == "raw"
    assert echoes[0]["headers"]["x-mine"] == "r"  # the request's own header wins
    assert all(e["headers"]["x-batch"] == "b" for e in echoes)
    assert echoes[2]["headers"]["x-mine"] == "batch"
    assert results[0].url == f"{server.url}/echo"


@pytest.mark.parametrize("mode", MODES)
def test_only_idempotent_methods_are_retried_after_reaching_the_server(server, app, mode):
    urls = [f"{server.url}/p?status=503", f"{server.url}/q?status=503"]
    post = httpx.Request("POST", urls[0])
    put = httpx.Request("PUT", urls[1])
    posted, put_result = fetch_all([post, put], mode, retries=2, **QUICK)
    assert posted.status == 503 and posted.attempts == 1 and app.hits["/p?status=503"] == 1
    assert put_result.attempts == 3 and app.hits["/q?status=503"] == 3
    app.reset()
    (again,) = fetch_all([httpx.Request("POST", urls[0])], mode, retries=2, retry_methods={"POST"}, **QUICK)
    assert again.attempts == 3 and app.hits["/p?status=503"] == 3


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_is_honoured_on_429_and_503(mode):
    answers = iter([httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(200)])
    transport = mock(lambda request: next(answers))(mode)
    (result,) = fetch_all(["http://h/x"], mode, retries=2, transport=transport, **QUICK)
    assert result.ok and result.attempts == 2
    assert result.elapsed >= 1.0  # the backoff alone would have been 1 ms


def test_retry_after_values():
    from partally.io.fetch import MAX_RETRY_AFTER, _retry_after

    now = 1_000_000_000.0
    assert _retry_after("3", now) == 3.0
    assert _retry_after(" 0 ", now) == 0.0
    assert _retry_after("99999999999999999999", now) == MAX_RETRY_AFTER
    assert _retry_after("Sun, 09 Sep 2001 01:46:50 GMT", now) == pytest.approx(10.0)
    assert _retry_after("Sun, 09 Sep 2001 01:46:00 GMT", now) == 0.0  # in the past
    assert _retry_after("soon", now) is None and _retry_after(None, now) is None
    assert _retry_after("-5", now) is None


@pytest.mark.parametrize("mode", MODES)
def test_per_host_bounds_the_requests_to_one_host(server, app, mode):
    if mode == "sequential":
        pytest.skip("one at a time anyway")
    urls = [f"{server.url}/{i}?latency=0.02" for i in range(20)]
    results = fetch_all(urls, mode, limit=10, per_host=3)
    assert all(r.ok for r in results) and app.max_in_flight == 3


@pytest.mark.parametrize("mode", MODES)
def test_rate_spaces_the_requests(server, mode):
    start = time.monotonic()
    results = fetch_all([f"{server.url}/{i}" for i in range(6)], mode, limit=6, rate=20.0)
    assert all(r.ok for r in results)
    assert time.monotonic() - start >= 5 * 0.05  # six starts, 1/20 s apart


@pytest.mark.parametrize("mode", MODES)
def test_downloads_stream_to_files_named_safely(server, tmp_path, mode):
    urls = [
        f"{server.url}/files/big.bin?size=300001",
        f"{server.url}/other/big.bin?size=3",  # the same name: made unique
        f"{server.url}/..%2f..%2fescape?size=2",
        f"{server.url}/?size=1",
    ]
    results = fetch_all(urls, mode, output=tmp_path, max_body=10)  # the bound is for memory
    assert all(r.ok and r.content is None for r in results), results
    paths = [r.path for r in results]
    assert all(os.path.dirname(p) == str(tmp_path) for p in paths)
    assert os.path.basename(paths[0]) == "big.bin" and os.path.basename(paths[3]) == "index"
    assert os.path.basename(paths[1]).startswith("big-") and paths[1].endswith(".bin")
    assert [os.path.getsize(p) for p in paths] == [300001, 3, 2, 1]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)  # no temporaries


def test_a_failed_download_leaves_no_file(server, tmp_path):
    (result,) = fetch_all([f"{server.url}/close?size=300000"], output=tmp_path, retries=0)
    assert not result.ok and result.path is None
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://h/a/b/report.pdf", "report.pdf"),
        ("http://h/a/", "index"),
        ("http://h", "index"),
        ("http://h/..%2f..%2fetc%2fpasswd", "passwd"),
        ("http://h/%2e%2e", "index"),
        ("http://h/..\\..\\x", "x"),
        ("http://h/.hidden", "hidden"),
        ("http://h/caf%C3%A9 menu.txt?q=1", "caf_menu.txt"),
        ("http://h/" + "a" * 500, "a" * 120),
    ],
)
def test_file_names_never_leave_the_folder(url, name):
    assert file_name(url) == name


@pytest.mark.parametrize(("mode", "limit"), [("asyncio", 7), ("threads", 7), ("sequential", 7)])
def test_in_flight_bound_counted_by_the_server(server, app, mode, limit):
    results = fetch_all([f"{server.url}/{i}?latency=0.02" for i in range(40)], mode, limit=limit)
    assert all(r.ok for r in results)
    assert app.max_in_flight == (1 if mode == "sequential" else limit)


def test_workers_are_bounded_not_one_task_per_url(server):
    seen = []

    async def main():
        await afetch_all(
            [f"{server.url}/{i}" for i in range(300)],
            limit=5,
            on_result=lambda _: seen.append(len(asyncio.all_tasks())),
        )

    asyncio.run(main())
    assert len(seen) == 300 and max(seen) <= 5 + 1  # the workers and main()


def test_threads_are_bounded(server):
    before, seen = threading.active_count(), []
    fetch_all(
        [f"{server.url}/{i}" for i in range(200)],
        "threads",
        limit=4,
        on_result=lambda _: seen.append(threading.active_count()),
    )
    assert max(seen) <= before + 4


def test_afetch_all_is_the_async_twin(server):
    urls = [f"{server.url}/{i}" for i in range(10)]
    results = asyncio.run(afetch_all(urls, limit=3))
    assert [r.url for r in results] == urls and all(r.ok for r in results)


def test_fetch_all_inside_an_event_loop_points_to_afetch_all():
    async def main():
        fetch_all(["http://127.0.0.1/"])

    with pytest.raises(RuntimeError, match="afetch_all"):
        asyncio.run(main())


def test_result_shape(server):
    (result,) = fetch_all([f"{server.url}/x?size=7"])
    assert isinstance(result, FetchResult) and result.bytes == 7 and result.elapsed > 0
    with pytest.raises(AttributeError):
        result.status = 1  # frozen
    assert fetch_all([]) == []


def test_text_follows_the_charset_and_json_parses():
    body = "café".encode("latin-1")

    def handler(request):
        if request.url.path == "/latin":
            return httpx.Response(200, headers={"content-type": "text/plain; charset=latin-1"}, content=body)
        return httpx.Response(200, json={"n": 1})

    latin, data = fetch_all(["http://h/latin", "http://h/json"], "sequential", transport=httpx.MockTransport(handler))
    assert latin.text == "café" and data.json() == {"n": 1}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "processes"}, ValueError, r"'asyncio', 'threads', 'sequential'"),
        ({"limit": 0}, ValueError, "limit must be >= 1"),
        ({"limit": True}, TypeError, "limit must be an int"),
        ({"limit": 2.0}, TypeError, "limit must be an int"),
        ({"timeout": 0}, ValueError, "timeout must be > 0"),
        ({"timeout": float("nan")}, ValueError, "timeout must be > 0"),
        ({"timeout": "1"}, TypeError, "timeout must be a number"),
        ({"timeout": True}, TypeError, "timeout must be a number"),
        ({"timeout": None}, TypeError, "timeout must be a number"),
        ({"timeout": -1}, ValueError, "timeout must be > 0"),
        ({"timeout": float("-inf")}, ValueError, "timeout must be > 0"),
        ({"mode": None}, ValueError, "unknown mode"),
        ({"mode": ["asyncio"]}, ValueError, "unknown mode"),
        ({"limit": -5}, ValueError, "limit must be >= 1"),
        ({"limit": None}, TypeError, "limit must be an int"),
        ({"retries": 1.5}, TypeError, "retries must be an int"),
        ({"requests": 5}, TypeError, "requests must be an iterable"),
        ({"requests": b"http://127.0.0.1/"}, TypeError, "requests must be an iterable"),
        ({"requests": [None]}, TypeError, r"requests\[0\] is NoneType"),
        ({"requests": [["http://127.0.0.1/"]]}, TypeError, r"requests\[0\] is list"),
        ({"on_result": 5}, TypeError, "on_result must be callable"),
        ({"retries": -1}, ValueError, "retries must be >= 0"),
        ({"requests": "http://127.0.0.1/"}, TypeError, "requests must be an iterable"),
        ({"requests": None}, TypeError, "requests must be an iterable"),
        ({"requests": ["http://127.0.0.1/", b"x"]}, TypeError, r"requests\[1\] is bytes"),
        ({"max_body": -1}, ValueError, "max_body must be >= 0"),
        ({"keep": "yes"}, TypeError, "keep must be True or False"),
        ({"output": "/dev/null/folder"}, ValueError, "output folder '/dev/null/folder' cannot be made"),
        ({"output": "/dev/null"}, ValueError, "output must be a folder"),
        ({"output": 5}, TypeError, "output must be a folder's path"),
        ({"proxy": "socks5://127.0.0.1:1080"}, ValueError, "socks5 proxies are not supported"),
        ({"proxy": "ftp://127.0.0.1:21"}, ValueError, "not a usable proxy URL"),
        ({"proxy": 5}, TypeError, "proxy must be a URL"),
        ({"trust_env": "no"}, TypeError, "trust_env must be True or False"),
        ({"proxy": "http://127.0.0.1:9", "transport": httpx.MockTransport(lambda r: None)}, ValueError,
         "give proxy= or transport=, not both"),
        ({"headers": 5}, TypeError, "headers must be a mapping"),
        ({"headers": {"x": 5}}, TypeError, "headers must be a mapping"),
        ({"per_host": 0}, ValueError, "per_host must be >= 1"),
        ({"rate": -1}, ValueError, "rate must be > 0"),
        ({"retry_methods": "GET"}, TypeError, "retry_methods must be a collection"),
        ({"transport": httpx.HTTPTransport()}, TypeError, "transport must be an httpx.AsyncBaseTransport"),
        ({"mode": "threads", "transport": httpx.AsyncHTTPTransport()}, TypeError, "httpx.BaseTransport"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {"requests": ["http://127.0.0.1/"], **kwargs}
    with pytest.raises(error, match=match):
        fetch_all(**kwargs)
    if "mode" not in kwargs:
        with pytest.raises(error, match=match):
            asyncio.run(afetch_all(**kwargs))


def test_cancelling_afetch_all_is_prompt_and_closes_the_connections(server, app):
    async def main():
        task = asyncio.ensure_future(afetch_all([f"{server.url}/{i}?latency=60" for i in range(20)]))
        while app.in_flight < 20:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)  # a hang bound: the answers would take 60 s

    asyncio.run(main())
    settled(app)  # the server sees the connections go (it would wait 60 s on an open one)
    assert app.in_flight == 0


@pytest.mark.parametrize("mode", MODES)
def test_no_cookies_carried_from_one_url_to_the_next(server, app, mode):
    # The real transports against the real server; "localhost", not an IP address: aiohttp's
    # own cookie jar would keep this cookie (it refuses those of IP hosts).
    port = server.url.rsplit(":", 1)[1]
    urls = [f"http://localhost:{port}/a?set_cookie=session%3D1", f"http://localhost:{port}/b"]
    results = fetch_all(urls, mode, limit=1)
    assert all(r.ok for r in results) and results[0].headers["set-cookie"] == "session=1"
    assert app.requests == 2 and app.cookies == []


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_stops_promptly(server, app, mode):
    script = textwrap.dedent(
        f"""
        from partally import fetch_all
        fetch_all([{server.url!r} + f"/{{i}}?latency=60" for i in range(50)], {mode!r})
        """
    )
    child = start_python(script)
    deadline = time.monotonic() + 60
    while app.in_flight < (1 if mode == "sequential" else 50) and time.monotonic() < deadline:
        time.sleep(0.01)
    stderr = interrupt(child, within=30)  # the answers would take 60 s
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr
    # One traceback: asyncio.run chained the workers' CancelledError to it, a second one.
    assert stderr.count("Traceback") == 1 and "CancelledError" not in stderr, stderr
    assert "Unclosed" not in stderr and "never retrieved" not in stderr
    settled(app)
    assert app.in_flight == 0


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_during_a_slow_name_lookup_stops_promptly(mode):
    # aiohttp looked names up on the loop's default executor, which asyncio.run waits for:
    # Ctrl-C waited out the lookup. No DNS here: getaddrinfo is made slow for one name.
    script = textwrap.dedent(
        f"""
        import socket, sys, time
        real = socket.getaddrinfo
        def slow(host, *args, **kwargs):
            if host == "slow.invalid":
                print("looking up", flush=True)
                time.sleep(120)
            return real(host, *args, **kwargs)
        socket.getaddrinfo = slow
        from partally import fetch_all
        fetch_all(["http://slow.invalid/"] * 3, {mode!r}, timeout=300)
        """
    )
    child = start_python(script)
    assert child.stdout.readline().startswith("looking up")  # inside the lookup (maybe 3 at once)
    stderr = interrupt(child, within=60)  # the lookup would take 120 s
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr


def test_names_are_still_looked_up(server):
    port = server.url.rsplit(":", 1)[1]
    (result,) = fetch_all([f"http://localhost:{port}/x?size=3"], "asyncio")
    assert result.ok and result.bytes == 3


# An injected httpx.MockTransport: the retry policy and redirects, exactly.


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("answer", "attempts", "error"),
    [
        (200, 1, None),
        (302, 1, None),
        (404, 1, "HTTP 404 Not Found"),
        (429, 3, "HTTP 429 Too Many Requests"),
        (502, 3, "HTTP 502 Bad Gateway"),
        (httpx.ConnectError("refused"), 3, "ConnectError: refused"),
        (httpx.ConnectTimeout("slow"), 3, "ConnectTimeout: slow"),
        (httpx.ReadTimeout("slow"), 3, "ReadTimeout: slow"),
        (httpx.RemoteProtocolError("cut"), 3, "RemoteProtocolError: cut"),
        (httpx.ReadError("reset"), 3, "ReadError: reset"),
        (httpx.UnsupportedProtocol("no"), 1, "UnsupportedProtocol: no"),
        (ValueError("odd"), 1, "ValueError: odd"),
    ],
)
def test_retry_policy(mode, answer, attempts, error):
    seen = []

    def handler(request):
        seen.append(request.url.path)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, content=b"abc")

    (result,) = fetch_all(["http://127.0.0.1/x"], mode, retries=2, transport=mock(handler)(mode), **QUICK)
    assert len(seen) == attempts and result.attempts == attempts
    assert result.error == error and result.ok is (error is None)
    assert result.bytes == (0 if isinstance(answer, Exception) else 3)


def redirecting(request: httpx.Request) -> httpx.Response:
    """/hop/N redirects to /hop/N-1; /hop/0 answers; /away redirects to ftp."""
    name, _, n = request.url.path.rpartition("/")
    if name == "/hop" and int(n):
        return httpx.Response(303 if int(n) % 2 else 307, headers={"location": f"{int(n) - 1}"})
    if name == "/away":
        return httpx.Response(302, headers={"location": "ftp://127.0.0.1/x"})
    if name == "/post":
        return httpx.Response(int(n), headers={"location": "/landed/0"})
    return httpx.Response(200, content=request.method.encode() + b" " + request.content)


@pytest.mark.parametrize("mode", MODES)
def test_redirects_are_followed_up_to_20(mode):
    seen = []

    def handler(request):
        seen.append((request.method, str(request.url)))
        return redirecting(request)

    ok, too_many, away = fetch_all(
        ["http://127.0.0.1/hop/20", "http://127.0.0.1/hop/21", "http://127.0.0.1/away/1"],
        mode,
        limit=1,
        transport=mock(handler)(mode),
    )
    assert ok.ok and ok.status == 200 and ok.content == b"GET "
    assert ok.final_url == "http://127.0.0.1/hop/0" and ok.url == "http://127.0.0.1/hop/20"
    assert seen[:21] == [("GET", f"http://127.0.0.1/hop/{n}") for n in range(20, -1, -1)]
    assert too_many.error == "TooManyRedirects: Exceeded maximum allowed redirects."
    assert len(seen) == 21 + 21 + 1  # not retried
    assert away.status is None and away.error.startswith("UnsupportedProtocol")


@pytest.mark.parametrize("mode", MODES)
def test_a_redirected_post_changes_method_as_httpx_does(mode):
    requests = [httpx.Request("POST", f"http://h/post/{s}", content=b"body") for s in (301, 302, 303, 307, 308)]
    results = fetch_all(requests, mode, transport=mock(redirecting)(mode))
    assert [r.content for r in results] == [b"GET ", b"GET ", b"GET ", b"POST body", b"POST body"]


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX")
def test_files_left_reads_the_limit():
    from partally.io.fetch import files_left

    left = files_left()
    assert left is None or left >= 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("encoding", "package"), [("br", "brotli"), ("zstd", "zstandard")])
def test_brotli_and_zstd_are_asked_for_and_decoded_where_installed(server, raw_server, mode, encoding, package):
    module = pytest.importorskip(package, reason=f"the decoders extra ({package}) is not installed")
    body = b"y" * 50_000
    packed = module.compress(body) if encoding == "br" else module.ZstdCompressor().compress(body)
    RAW_ANSWERS[f"enc-{encoding}"] = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        encoding.encode(), len(packed), packed,
    )
    url, _ = raw_server
    decoded, echo = fetch_all([f"{url}/enc-{encoding}", f"{server.url}/echo"], mode)
    assert decoded.ok and decoded.bytes == 50_000 and decoded.content == body
    assert encoding in echo.json()["headers"]["accept-encoding"].split(", ")


PLAIN = st.text(alphabet="abcz09AZ.-_~!$&'()*+,;=:@/?%#[] é", max_size=12)


@settings(max_examples=400)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "ftp"]),
    host=st.one_of(
        st.from_regex(r"[a-z0-9.-]{1,12}", fullmatch=True),
        st.from_regex(r"[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}", fullmatch=True),
        st.sampled_from(["localhost", "Example.com", "xn--zz", "a..b", "[::1]"]),
    ),
    port=st.one_of(st.none(), st.sampled_from(["80", "443", "8000", "0080", "", "99999"])),
    rest=PLAIN,
)
def test_parse_url_is_httpx_url(scheme, host, port, rest):
    from partally.io.fetch import parse_url

    url = f"{scheme}://{host}{'' if port is None else ':' + port}{rest}"
    try:
        expected = httpx.URL(url)
    except httpx.InvalidURL:
        with pytest.raises(httpx.InvalidURL):
            parse_url(url)
        return
    got = parse_url(url)
    assert got == expected and str(got) == str(expected) and got.raw_path == expected.raw_path
    assert (got.scheme, got.raw_host, got.port, got.netloc, got.query, got.fragment) == (
        expected.scheme, expected.raw_host, expected.port, expected.netloc, expected.query,
        expected.fragment,
    )
