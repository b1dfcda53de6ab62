"""Proxies as httpx honours them (issue 31): HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY from
the environment (`trust_env=True`, the default), `trust_env=False`, and `proxy=`, in every mode and
in `partally fetch`. A loopback proxy records what it is asked; the hosts behind it
(`*.invalid`, RFC 6761) cannot resolve, so an answer means the request went through it."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import sys
import threading

import httpx
import pytest
from helpers import run_python

from partally.io.fetch import MODES, fetch_all

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


class RecordingProxy:
    """A loopback proxy that answers every plain request itself ("via proxy") and refuses
    every CONNECT with 403, recording each request's line and headers; stops with `close`."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.seen: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn, contextlib.suppress(OSError):
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                line, *fields = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
                with self._lock:
                    self.seen.append((line, headers))
                if line.startswith("CONNECT "):
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nvia proxy")

    def lines(self) -> list[str]:
        with self._lock:
            return [line for line, _ in self.seen]

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    running = RecordingProxy()
    yield running
    running.close()


@pytest.fixture
def target():
    """A loopback server that answers "direct" to every request, keep-alive; records lines."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []

    def handle(conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn, contextlib.suppress(OSError):
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                seen.append(head.split(b"\r\n")[0].decode())
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ndirect")

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    listener.close()


URLS = [f"http://partally-{i}.invalid/path?q={i}" for i in range(4)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
def test_http_proxy_from_the_environment_is_used(proxy, monkeypatch, mode, name):
    # It went direct in all three modes, silently (httpx.get used the proxy).
    monkeypatch.setenv(name, proxy.url)
    results = fetch_all(URLS, mode, retries=0, timeout=5)
    assert [(r.status, r.content) for r in results] == [(200, b"via proxy")] * 4, results
    assert sorted(proxy.lines()) == sorted(f"GET {url} HTTP/1.1" for url in URLS)
    assert {headers["host"] for _, headers in proxy.seen} == {f"partally-{i}.invalid" for i in range(4)}


@pytest.mark.parametrize("mode", MODES)
def test_https_goes_through_a_connect_tunnel_of_https_proxy(proxy, monkeypatch, mode):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # not for https URLs
    (result,) = fetch_all(["https://secure.invalid:8443/x"], mode, retries=0, timeout=5)
    assert not result.ok  # the proxy refused the tunnel: an error result, never a direct try
    assert [line[:-1] for line in proxy.lines()] == ["CONNECT secure.invalid:8443 HTTP/1."]  # 1.0: http.client


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "*", "localhost,127.0.0.1", " example.com , 127.0.0.1"])
def test_no_proxy_hosts_go_direct(proxy, target, monkeypatch, mode, no_proxy):
    url, seen = target
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    results = fetch_all([f"{url}/a", URLS[0]], mode, retries=0, timeout=5)
    assert (results[0].status, results[0].content) == (200, b"direct")
    assert seen == ["GET /a HTTP/1.1"]
    if no_proxy == "*":  # every URL direct: the .invalid host cannot be found
        assert not results[1].ok and proxy.lines() == []
    else:
        assert results[1].content == b"via proxy" and proxy.lines() == [f"GET {URLS[0]} HTTP/1.1"]


@pytest.mark.parametrize("mode", MODES)
def test_no_proxy_domain_matches_its_subdomains_as_httpx_does(proxy, monkeypatch, mode):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "partally-1.invalid")
    urls = ["http://partally-10.invalid/", "http://a.partally-1.invalid/", "http://partally-1.invalid/"]
    with httpx.Client() as client:  # httpx's own choice: proxied, direct, direct
        direct = [client._transport_for_url(httpx.URL(u)) is client._transport for u in urls]
    assert direct == [False, True, True]
    results = fetch_all(urls, mode, retries=0, timeout=5)
    assert results[0].content == b"via proxy"
    assert proxy.lines() == ["GET http://partally-10.invalid/ HTTP/1.1"]
    assert not results[1].ok and not results[2].ok  # direct: these names cannot be found


@pytest.mark.parametrize("mode", MODES)
def test_trust_env_false_ignores_the_environment(proxy, target, monkeypatch, mode):
    url, seen = target
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    (result,) = fetch_all([f"{url}/b"], mode, retries=0, timeout=5, trust_env=False)
    assert result.content == b"direct" and seen == ["GET /b HTTP/1.1"] and proxy.lines() == []


@pytest.mark.parametrize("mode", MODES)
def test_proxy_argument_is_used_for_every_url_with_its_credentials(proxy, target, monkeypatch, mode):
    url, seen = target
    monkeypatch.setenv("NO_PROXY", "*")  # httpx: an explicit proxy is used whatever NO_PROXY says
    with_auth = proxy.url.replace("http://", "http://us%40er:p%3Ass@")
    results = fetch_all([f"{url}/c", URLS[1]], mode, retries=0, timeout=5, proxy=with_auth)
    assert [r.content for r in results] == [b"via proxy"] * 2 and seen == []
    expected = "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert {headers.get("proxy-authorization") for _, headers in proxy.seen} == {expected}


@pytest.mark.parametrize("mode", MODES)
def test_a_socks_proxy_in_the_environment_is_refused_not_bypassed(proxy, monkeypatch, mode):
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(ValueError, match=r"ALL_PROXY in the environment .*socks5 proxies are not supported"):
        fetch_all(URLS, mode)
    assert fetch_all([], mode, trust_env=False) == []


def test_partally_fetch_honours_the_environment_and_its_proxy_options(proxy, target):
    url, seen = target

    def fetch(*args: str, env: dict[str, str]) -> dict:
        code = "import sys; from partally.cli import main; sys.exit(main(sys.argv[1:]))"
        done = run_python(code, "fetch", *args, "--results", "/dev/stdout", env=env, timeout=60)
        rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert rows, (done.stdout, done.stderr)
        return rows[0]

    import os

    env = {k: v for k, v in os.environ.items() if k.upper() not in PROXY_VARS}
    env["HTTP_PROXY"] = proxy.url
    assert fetch(URLS[2], env=env)["ok"]
    assert proxy.lines() == [f"GET {URLS[2]} HTTP/1.1"]
    assert fetch(f"{url}/d", "--no-trust-env", env=env)["ok"] and seen == ["GET /d HTTP/1.1"]
    assert fetch(URLS[3], "--proxy", proxy.url, "--no-trust-env", env=env)["ok"]
    assert proxy.lines()[-1] == f"GET {URLS[3]} HTTP/1.1"
    bad = run_python(
        "import sys; from partally.cli import main; sys.exit(main(sys.argv[1:]))",
        "fetch", URLS[0], "--proxy", "socks5://127.0.0.1:1", env=env,
    )
    assert bad.returncode == 2 and "socks5 proxies are not supported" in bad.stderr, bad.stderr
    assert sys.executable


@pytest.mark.parametrize("mode", MODES)
def test_ssl_cert_file_is_read_as_httpx_reads_it_and_not_without_trust_env(target, monkeypatch, mode):
    url, _ = target
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    with pytest.raises(OSError):
        httpx.Client()  # httpx's own reading of it
    with pytest.raises(OSError):
        fetch_all([f"{url}/e"], mode, retries=0)
    (result,) = fetch_all([f"{url}/e"], mode, retries=0, trust_env=False)
    assert result.content == b"direct"
