"""The local test server (127.0.0.1 only): its paths, its counts, and its two ways to run."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from helpers import has_ipv6_loopback, raw_get

from partally.io.server import TestApp, base_url, bind, running_server, server_process


@pytest.fixture(scope="module")
def server():
    with running_server(latency=0.0, size=10) as running:
        yield running


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def settled(app: TestApp, seconds: float = 30.0) -> None:
    """Wait until nothing is in flight on `app` (a hang bound, not a speed check)."""
    deadline = time.monotonic() + seconds
    while app.in_flight and time.monotonic() < deadline:
        time.sleep(0.005)


def test_binds_loopback_on_a_free_port(server):
    assert server.url.startswith("http://127.0.0.1:")
    assert get(server.url + "/") == (200, b"x" * 10)


def test_query_sets_size_status_and_latency(server):
    assert get(server.url + "/a?size=3") == (200, b"xxx")
    assert get(server.url + "/a?status=418&size=1") == (418, b"x")
    assert get(server.url + "/a?status=204") == (204, b"")
    start = time.perf_counter()
    get(server.url + "/a?latency=0.2")
    assert time.perf_counter() - start >= 0.2


def test_fail_first_then_succeed(server):
    statuses = [get(server.url + "/f?fail_first=2")[0] for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_close_sends_half_then_drops_the_connection(server):
    received = raw_get(server.url, b"GET /close?size=100 HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"content-length: 100" in head.lower()
    assert body == b"x" * 50


def test_counts_requests_and_in_flight(server):
    server.app.reset()
    port = int(server.url.rsplit(":", 1)[1])
    clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(5)]
    try:
        for sock in clients:
            sock.sendall(b"GET /c?latency=60 HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 30
        while server.app.in_flight < 5 and time.monotonic() < deadline:  # all five arrived
            time.sleep(0.005)
        status, body = get(server.url + "/stats")
        assert status == 200
        assert json.loads(body) == {"requests": 5, "in_flight": 5, "max_in_flight": 5}
    finally:
        for sock in clients:
            sock.close()  # the app stops waiting for a client that left
    settled(server.app)
    assert server.app.stats() == {"requests": 5, "in_flight": 0, "max_in_flight": 5}
    server.app.reset()
    assert server.app.stats() == {"requests": 0, "in_flight": 0, "max_in_flight": 0}


def test_a_client_that_leaves_is_no_longer_in_flight(server):
    server.app.reset()
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /gone?latency=30 HTTP/1.1\r\nHost: x\r\n\r\n")
        while server.app.in_flight == 0:
            time.sleep(0.01)
    settled(server.app)
    assert server.app.stats() == {"requests": 1, "in_flight": 0, "max_in_flight": 1}


def test_fail_rate_and_jitter():
    with running_server(latency=0.0, jitter=0.05, fail_rate=1.0) as failing:
        assert [get(failing.url + f"/{i}")[0] for i in range(4)] == [500] * 4
    assert TestApp().latency == 0.05  # the documented defaults
    assert (TestApp().size, TestApp().fail_rate, TestApp().jitter) == (1024, 0.0, 0.0)


def test_server_process_starts_answers_and_stops():
    with server_process(latency=0.0, size=5) as url:
        assert url.startswith("http://127.0.0.1:")
        assert get(url + "/") == (200, b"xxxxx")
    with pytest.raises(OSError):
        get(url + "/")


def test_stopping_frees_the_thread():
    before = threading.active_count()
    with running_server() as running:
        assert get(running.url + "/?latency=0")[0] == 200
    assert threading.active_count() == before


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("size=abc", "size must be a whole number >= 0, got 'abc'"),  # was a 500 and a traceback
        ("size=-1", "size must be a whole number >= 0"),
        ("size=1.5", "size must be a whole number >= 0"),
        ("size=%C2%B2", "size must be a whole number >= 0"),  # "²" is a digit to str.isdigit
        ("size=" + "9" * 5000, "size must be a whole number >= 0"),
        ("status=999", "status must be a whole number in 200..599"),  # the connection was dropped
        ("status=99", "status must be a whole number in 200..599"),
        ("status=100", "status must be a whole number in 200..599"),
        ("status=x", "status must be a whole number in 200..599"),
        ("latency=abc", "latency must be a finite number >= 0"),
        ("latency=inf", "latency must be a finite number >= 0"),
        ("latency=nan", "latency must be a finite number >= 0"),
        ("latency=-1", "latency must be a finite number >= 0"),
        ("fail_first=x", "fail_first must be a whole number >= 0"),
    ],
)
def test_a_bad_query_value_is_a_400_that_names_it(server, query, message):
    status, body = get(f"{server.url}/q?{query}")
    assert status == 400 and message in body.decode()
    assert get(server.url + "/after") == (200, b"x" * 10)  # and the server goes on


def test_a_query_that_is_not_utf8_is_answered(server):
    assert get(server.url + "/?size=2&x=%ff%fe") == (200, b"xx")
    assert get(server.url + "/?size=%ff")[0] == 400


def test_a_large_body_is_sent_in_pieces(server):
    assert get(server.url + "/big?size=300001") == (200, b"x" * 300001)
    received = raw_get(server.url, b"GET /close?size=300000 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert received.partition(b"\r\n\r\n")[2] == b"x" * 150000


def test_base_url_brackets_ipv6():
    assert base_url("127.0.0.1", 80) == "http://127.0.0.1:80"
    assert base_url("::1", 8000) == "http://[::1]:8000"
    assert base_url("localhost", 1) == "http://localhost:1"




@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_running_server_on_ipv6_loopback():
    with running_server(host="::1", latency=0.0, size=3) as running:
        assert running.url.startswith("http://[::1]:")
        assert get(running.url + "/") == (200, b"xxx")


def test_bind_says_why_a_port_cannot_be_had():
    with bind("127.0.0.1", 0) as taken, pytest.raises(OSError):
        bind("127.0.0.1", taken.getsockname()[1])


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"latency": float("inf")}, ValueError),  # every request would wait forever
        ({"latency": float("nan")}, ValueError),
        ({"latency": -1}, ValueError),
        ({"latency": "1"}, TypeError),
        ({"jitter": float("inf")}, ValueError),
        ({"fail_rate": 1.5}, ValueError),
        ({"fail_rate": float("nan")}, ValueError),
        ({"size": -1}, ValueError),
        ({"size": 1.5}, ValueError),
    ],
)
def test_bad_settings_are_refused_up_front(settings, error):
    with pytest.raises(error):
        TestApp(**settings)
