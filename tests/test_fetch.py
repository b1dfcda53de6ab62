"""fetch_all / afetch_all against the local server (127.0.0.1 only) and httpx.MockTransport."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import aiohttp
import h11
import httpcore
import httpx
import pytest

from partally.io import fetch as _fetch
from partally.io import transport as _transport
from partally.io.fetch import MODES, FetchResult, afetch_all, fetch_all
from partally.io.server import running_server


pytestmark = pytest.mark.usefixtures("quick_backoff")

@pytest.fixture(scope="module")
def server():
    with running_server(latency=0.0, size=100) as running:
        yield running



@pytest.fixture
def app(server):
    settled(server.app)
    server.app.reset()
    return server.app


def settled(app, seconds: float = 2.0) -> None:
    """Wait until nothing is in flight on the server."""
    deadline = time.monotonic() + seconds
    while app.in_flight and time.monotonic() < deadline:
        time.sleep(0.005)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("mode", MODES)
def test_results_come_in_input_order(server, mode):
    # Later URLs answer sooner, so completion order is the reverse of input order.
    urls = [f"{server.url}/{i}?latency={0.002 * (20 - i)}&size={i}" for i in range(20)]
    results = fetch_all(urls, mode, limit=20)
    assert [r.url for r in results] == urls
    assert [r.bytes for r in results] == list(range(20))
    assert all(r.ok and r.status == 200 and r.error is None for r in results)


@pytest.mark.parametrize("mode", MODES)
def test_status_codes_4xx_fail_without_retry_5xx_retry(server, app, mode):
    codes = [200, 204, 404, 410, 500, 503]
    results = fetch_all([f"{server.url}/s?status={c}" for c in codes], mode, retries=2)
    assert [r.status for r in results] == codes
    assert [r.ok for r in results] == [True, True, False, False, False, False]
    assert results[2].error == "HTTP 404 Not Found"
    hits = {key.split("=")[1]: n for key, n in app.hits.items()}
    assert hits == {"200": 1, "204": 1, "404": 1, "410": 1, "500": 3, "503": 3}


@pytest.mark.parametrize("mode", MODES)
def test_retries_until_success(server, app, mode):
    ok, short = fetch_all(
        [f"{server.url}/a?fail_first=2", f"{server.url}/b?fail_first=2"], mode, retries=2
    )[0], fetch_all([f"{server.url}/c?fail_first=2"], mode, retries=1)[0]
    assert ok.ok and ok.status == 200
    assert not short.ok and short.status == 503
    assert app.hits["/a?fail_first=2"] == 3 and app.hits["/c?fail_first=2"] == 2


def test_backoff_doubles(server, monkeypatch):
    monkeypatch.setattr(_fetch, "BACKOFF", 0.05)
    (result,) = fetch_all([f"{server.url}/x?status=503"], retries=2)
    assert 0.15 <= result.elapsed < 1.0  # 0.05 + 0.1 of backoff


@pytest.mark.parametrize("mode", MODES)
def test_timeout_is_an_error_result_and_retried(server, app, mode):
    start = time.perf_counter()
    (result,) = fetch_all([f"{server.url}/slow?latency=2"], mode, timeout=0.1, retries=1)
    assert time.perf_counter() - start < 1.5
    assert result.status is None and "Timeout" in result.error
    assert app.hits["/slow?latency=2"] == 2


@pytest.mark.parametrize("mode", MODES)
def test_connection_refused(mode):
    (result,) = fetch_all([f"http://127.0.0.1:{closed_port()}/"], mode, retries=1)
    assert not result.ok and result.status is None
    assert "ConnectError" in result.error


@pytest.mark.parametrize("mode", MODES)
def test_server_closing_mid_response_is_an_error_and_retried(server, app, mode):
    (result,) = fetch_all([f"{server.url}/close?size=1000"], mode, retries=1)
    assert not result.ok
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
        assert "only http and https" in result.error
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


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("error", PER_URL_ERRORS, ids=lambda e: type(e).__name__)
def test_anything_raised_for_one_url_is_its_error_result(server, monkeypatch, mode, error):
    # Raised while the request is built, outside the transport's own guard (as IDNAError was).
    build = _fetch._request

    def request(url, timeout):
        if url.path == "/bad":
            raise error
        return build(url, timeout)

    monkeypatch.setattr(_fetch, "_request", request)
    ok, bad = fetch_all([f"{server.url}/ok", f"{server.url}/bad"], mode, retries=0)
    assert ok.ok
    assert bad.status is None and bad.error.startswith(type(error).__name__), bad


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_exit_are_never_swallowed(server, monkeypatch, mode, error):
    def request(url, timeout):
        raise error()

    monkeypatch.setattr(_fetch, "_request", request)
    with pytest.raises(error):
        fetch_all([f"{server.url}/{i}" for i in range(4)], mode, limit=2)


def test_cancelled_error_is_never_swallowed(server, monkeypatch):
    def request(url, timeout):
        raise asyncio.CancelledError()

    monkeypatch.setattr(_fetch, "_request", request)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(afetch_all([f"{server.url}/a"]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("timeout", [float("inf"), 1e300, 1e10, 10**400, 30])
def test_infinite_and_huge_timeouts_mean_no_timeout(server, mode, timeout):
    # inf passed validation, then every request failed with OverflowError (1e10 too, in threads).
    results = fetch_all([f"{server.url}/a", f"{server.url}/b?latency=0.05"], mode, timeout=timeout)
    assert all(r.ok for r in results), results


def test_timeout_steps():
    assert set(_fetch._timeouts(float("inf")).values()) == {None}
    assert set(_fetch._timeouts(_fetch.MAX_TIMEOUT * 2).values()) == {None}
    assert set(_fetch._timeouts(2).values()) == {2.0}


def test_backoff_is_capped_and_never_overflows():
    # 0.1 * 2 ** 1024 raised OverflowError, outside the per-URL guard, after 1025 retries.
    plan = _fetch._attempts("u", 2000)
    pauses = [next(plan)] + [plan.send((None, 0, "e", True)) for _ in range(1500)]
    assert pauses[:3] == [0.0, _fetch.BACKOFF, 2 * _fetch.BACKOFF]
    assert max(pauses) == _fetch.MAX_BACKOFF


@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_a_huge_limit_makes_a_pool_of_the_threads_it_runs(server, monkeypatch, mode):
    # urllib3 fills its pool's queue up front: limit=10**9 took minutes and gigabytes.
    sizes = []
    real = _transport.Urllib3Transport

    def recording(limit):
        sizes.append(limit)
        return real(limit)

    monkeypatch.setattr(_transport, "Urllib3Transport", recording)
    results = fetch_all([f"{server.url}/{i}" for i in range(3)], mode, limit=10**9)
    assert all(r.ok for r in results)
    assert sizes == [3 if mode == "threads" else 1]


def test_threads_are_capped(server, monkeypatch):
    monkeypatch.setattr(_fetch, "MAX_THREADS", 3)
    before, seen = threading.active_count(), []
    fetch_all(
        [f"{server.url}/{i}?latency=0.02" for i in range(12)],
        "threads",
        limit=10**9,
        on_result=lambda _: seen.append(threading.active_count()),
    )
    assert len(seen) == 12 and max(seen) <= before + 3


def test_a_huge_limit_on_asyncio(server, app):
    results = fetch_all([f"{server.url}/{i}" for i in range(5)], "asyncio", limit=10**9)
    assert all(r.ok for r in results)


@pytest.mark.parametrize("mode", MODES)
def test_any_iterable_of_str(server, mode):
    urls = (f"{server.url}/{i}" for i in range(3))  # a generator, read once
    assert [r.ok for r in fetch_all(urls, mode)] == [True] * 3
    assert fetch_all((), mode) == [] and fetch_all(iter([]), mode) == []


RAW_ANSWERS = {
    "close": b"",
    "garbage": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "short": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
    "status": b"HTTP/1.1 99999 Nope\r\nContent-Length: 0\r\n\r\n",
    "chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
    "idna": b"HTTP/1.1 302 Found\r\nLocation: http://xn--zz.localhost/\r\nContent-Length: 0\r\n\r\n",
    "header": b"HTTP/1.1 200 OK\r\nX: " + b"a" * 100_000 + b"\r\nContent-Length: 0\r\n\r\n",
}


@pytest.fixture(scope="module")
def raw_server():
    """A socket server that answers /NAME with RAW_ANSWERS[NAME], then closes; counts hits."""
    listener = socket.create_server(("127.0.0.1", 0))
    hits: dict[str, int] = {}

    def handle(conn):
        with conn, contextlib.suppress(OSError):  # the client may hang up first
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            name = data.split(b" ")[1].decode().strip("/")
            hits[name] = hits.get(name, 0) + 1
            conn.sendall(RAW_ANSWERS[name])
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


@pytest.mark.parametrize("mode", MODES)
def test_a_broken_server_gives_error_results_retried_as_protocol_errors(raw_server, mode):
    url, hits = raw_server
    hits.clear()
    results = fetch_all([f"{url}/{name}" for name in RAW_ANSWERS], mode, retries=1, timeout=5)
    for name, result in zip(RAW_ANSWERS, results):
        assert not result.ok and result.status is None, (name, result)
    by_name = dict(zip(RAW_ANSWERS, results))
    for name in ("garbage", "status", "chunk", "header"):  # aiohttp's were TransportError, once
        assert by_name[name].error.startswith("RemoteProtocolError"), by_name[name]
    assert hits["garbage"] >= 2  # retried (a retry may also die before the server reads it)
    assert by_name["idna"].error.startswith("RemoteProtocolError: Invalid URL in location header")


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
        ({"urls": 5}, TypeError, "iterable of str"),
        ({"urls": b"http://127.0.0.1/"}, TypeError, "iterable of str"),
        ({"urls": [None]}, TypeError, r"urls\[0\] is NoneType"),
        ({"urls": [["http://127.0.0.1/"]]}, TypeError, r"urls\[0\] is list"),
        ({"on_result": 5}, TypeError, "on_result must be callable"),
        ({"retries": -1}, ValueError, "retries must be >= 0"),
        ({"urls": "http://127.0.0.1/"}, TypeError, "iterable of str"),
        ({"urls": None}, TypeError, "iterable of str"),
        ({"urls": ["http://127.0.0.1/", b"http://127.0.0.1/"]}, TypeError, r"urls\[1\] is bytes"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {"urls": ["http://127.0.0.1/"], **kwargs}
    with pytest.raises(error, match=match):
        fetch_all(**kwargs)
    if "mode" not in kwargs:
        with pytest.raises(error, match=match):
            asyncio.run(afetch_all(**kwargs))


def test_cancelling_afetch_all_is_prompt_and_closes_the_pool(server, app, monkeypatch):
    closed = []
    aclose = _transport.AiohttpTransport.aclose

    async def recording_aclose(self):
        closed.append(self)
        await aclose(self)

    monkeypatch.setattr(_transport.AiohttpTransport, "aclose", recording_aclose)

    async def main():
        task = asyncio.ensure_future(afetch_all([f"{server.url}/{i}?latency=5" for i in range(20)]))
        while app.in_flight < 20:
            await asyncio.sleep(0.01)
        start = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.perf_counter() - start

    assert asyncio.run(main()) < 0.5
    assert len(closed) == 1
    settled(app)  # the server sees the connections go
    assert app.in_flight == 0


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_stops_promptly(server, app, mode):
    script = textwrap.dedent(
        f"""
        from partally.io import fetch as _fetch
        _fetch.fetch_all([{server.url!r} + f"/{{i}}?latency=10" for i in range(50)], {mode!r})
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 20
    while app.in_flight < (1 if mode == "sequential" else 50) and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.perf_counter()
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=10)
    assert time.perf_counter() - start < 2
    assert child.returncode != 0 and b"KeyboardInterrupt" in stderr
    # One traceback: asyncio.run chained the workers' CancelledError to it, a second one.
    assert stderr.count(b"Traceback") == 1 and b"CancelledError" not in stderr, stderr.decode()
    assert b"Unclosed" not in stderr and b"never retrieved" not in stderr
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
                time.sleep(30)
            return real(host, *args, **kwargs)
        socket.getaddrinfo = slow
        from partally.io import fetch as _fetch
        print("start", flush=True)
        _fetch.fetch_all(["http://slow.invalid/"] * 3, {mode!r}, timeout=60)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert child.stdout.readline() == b"start\n"
        time.sleep(1)  # inside the lookup
        start = time.perf_counter()
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=20)
    finally:
        child.kill()
    assert time.perf_counter() - start < 3
    assert child.returncode != 0 and b"KeyboardInterrupt" in stderr


def test_names_are_still_looked_up(server):
    port = server.url.rsplit(":", 1)[1]
    (result,) = fetch_all([f"http://localhost:{port}/x?size=3"], "asyncio")
    assert result.ok and result.bytes == 3


# httpx.MockTransport in place of the network: the retry policy, exactly.


@pytest.fixture
def mock(monkeypatch):
    """Route every mode through one MockTransport handler; returns the list of requests seen."""
    seen: list[str] = []
    answers: dict[str, object] = {}
    cookies: list[str | None] = []

    def answer(request: httpx.Request) -> int:
        seen.append(request.url.path)
        cookies.append(request.headers.get("cookie"))
        answer = answers[request.url.path]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def handler(request: httpx.Request) -> httpx.Response:
        status = answer(request)  # a stream, unread:
        return httpx.Response(status, headers=SET_COOKIE, content=iter([b"ab", b"c"]))

    async def ahandler(request: httpx.Request) -> httpx.Response:
        async def body():
            yield b"abc"

        return httpx.Response(answer(request), headers=SET_COOKIE, content=body())

    monkeypatch.setattr(_transport, "Urllib3Transport", lambda limit: httpx.MockTransport(handler))
    monkeypatch.setattr(_transport, "AiohttpTransport", lambda **_: httpx.MockTransport(ahandler))
    return seen, answers, cookies


SET_COOKIE = {"set-cookie": "session=1; Path=/"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("answer", "attempts", "error"),
    [
        (200, 1, None),
        (302, 1, None),
        (404, 1, "HTTP 404 Not Found"),
        (429, 1, "HTTP 429 Too Many Requests"),
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
def test_retry_policy(mock, mode, answer, attempts, error):
    seen, answers, _ = mock
    answers["/x"] = answer
    (result,) = fetch_all(["http://127.0.0.1/x"], mode, retries=2)
    assert len(seen) == attempts
    assert result.error == error and result.ok is (error is None)
    assert result.bytes == (0 if isinstance(answer, Exception) else 3)


@pytest.mark.parametrize("mode", MODES)
def test_no_cookies_carried_from_one_url_to_the_next(mock, mode):
    _, answers, cookies = mock
    answers["/a"] = answers["/b"] = 200
    results = fetch_all(["http://127.0.0.1/a", "http://127.0.0.1/b"], mode, limit=1)
    assert all(r.ok for r in results) and cookies == [None, None]


@pytest.fixture
def redirects(monkeypatch):
    """Every mode through a MockTransport: /hop/N redirects to /hop/N-1; /hop/0 answers."""
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url)))
        name, _, n = request.url.path.rpartition("/")
        if name == "/hop" and int(n):
            return httpx.Response(303 if int(n) % 2 else 307, headers={"location": f"{int(n) - 1}"})
        if name == "/away":
            return httpx.Response(302, headers={"location": "ftp://127.0.0.1/x"})
        return httpx.Response(200, content=b"done")

    async def ahandler(request: httpx.Request) -> httpx.Response:
        return handler(request)

    monkeypatch.setattr(_transport, "Urllib3Transport", lambda limit: httpx.MockTransport(handler))
    monkeypatch.setattr(_transport, "AiohttpTransport", lambda **_: httpx.MockTransport(ahandler))
    return seen


@pytest.mark.parametrize("mode", MODES)
def test_redirects_are_followed_up_to_20(redirects, mode):
    ok, too_many, away = fetch_all(
        ["http://127.0.0.1/hop/20", "http://127.0.0.1/hop/21", "http://127.0.0.1/away/1"],
        mode,
        limit=1,
    )
    assert ok.ok and ok.status == 200 and ok.bytes == 4
    assert redirects[:21] == [("GET", f"http://127.0.0.1/hop/{n}") for n in range(20, -1, -1)]
    assert too_many.error == "TooManyRedirects: Exceeded maximum allowed redirects."
    assert len(redirects) == 21 + 21 + 1  # not retried
    assert away.status is None and away.error.startswith("UnsupportedProtocol")
