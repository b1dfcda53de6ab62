"""`partally fetch`, `partally serve` and the IO bench, against the local server (127.0.0.1 only)."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from rich.console import Console

from partally.cli import io as _io_cli
from partally.io import fetch as _fetch
from partally.bench.io import run_io_bench
from partally.io.server import running_server


@pytest.fixture(scope="module")
def server():
    with running_server(latency=0.0, size=10) as running:
        yield running


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(_fetch, "BACKOFF", 0.001)


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="partally")
    _io_cli.add_io_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_modes_match_fetch():
    assert _io_cli.MODES == _fetch.MODES


@pytest.mark.parametrize("mode", _io_cli.MODES)
def test_fetch_summarises(server, capsys, mode):
    assert run("fetch", f"{server.url}/a", f"{server.url}/b", "--mode", mode, "--limit", "2") == 0
    out = capsys.readouterr().out
    assert "2 ok, 0 failed; 20 bytes in" in out and f"({mode}, limit 2)" in out
    assert "requests/s" in out


def test_fetch_lists_failures_writes_json_and_exits_1(server, capsys, tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text(f"# a comment\n{server.url}/ok\n\n{server.url}/x?status=404\nftp://127.0.0.1/\n")
    out_json = tmp_path / "out.json"
    assert run("fetch", "--file", str(urls), "--json", str(out_json)) == 1
    out = capsys.readouterr().out
    assert "1 ok, 2 failed" in out
    assert f"{server.url}/x?status=404: HTTP 404 Not Found" in out
    assert "ftp://127.0.0.1/: unsupported scheme 'ftp'" in out
    rows = json.loads(out_json.read_text())
    assert [(r["status"], r["ok"], r["bytes"]) for r in rows] == [
        (200, True, 10),
        (404, False, 10),
        (None, False, 0),
    ]
    assert set(rows[0]) == {"url", "status", "bytes", "elapsed", "error", "ok"}


def test_fetch_shows_at_most_20_failures(capsys):
    assert run("fetch", *[f"gopher://127.0.0.1/{i}" for i in range(25)]) == 1
    out = capsys.readouterr().out
    assert out.count("unsupported scheme") == 20 and "... and 5 more" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fetch"], "no URLs"),
        (["fetch", "--limit", "0", "http://127.0.0.1/"], "--limit must be >= 1"),
        (["fetch", "--file", "/nonexistent/urls.txt"], "cannot read --file"),
        (["serve", "--latency", "-1"], "--latency must be >= 0"),
        (["serve", "--jitter", "-1"], "--jitter must be >= 0"),
        (["serve", "--fail-rate", "1.5"], "--fail-rate must be in [0, 1]"),
        (["serve", "--size", "-1"], "--size must be >= 0"),
        (["serve", "--port", "70000"], "--port must be in 0..65535"),
    ],
)
def test_bad_arguments_one_line_exit_2(capsys, argv, message):
    assert run(*argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"partally {argv[0]}: error: ") and message in err


def test_bad_mode_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit:
        run("fetch", "--mode", "processes", "http://127.0.0.1/")
    assert exit.value.code == 2 and "invalid choice: 'processes'" in capsys.readouterr().err


def test_serve_runs_until_ctrl_c():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    port = _free_port()
    argv = [sys.executable, "-m", "partally", "serve", "--port", str(port), "--latency", "0"]
    child = subprocess.Popen([*argv, "--size", "4"], env=env, stderr=subprocess.PIPE)
    try:
        body = _wait_for(f"http://127.0.0.1:{port}/")
        assert body == b"xxxx"
    finally:
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=10)
    assert f"serving http://127.0.0.1:{port}/" in err.decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str) -> bytes:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_io_bench_rows_and_table():
    out = io.StringIO()
    rows = run_io_bench(requests=20, latency=0.01, limit=5, console=Console(file=out, width=120))
    assert [(r["mode"], r["requests"], r["workers"]) for r in rows] == [
        ("asyncio", 20, 5),
        ("threads", 20, 5),
        ("sequential", 20, 1),
    ]
    assert [r["ideal"] for r in rows] == pytest.approx([0.04, 0.04, 0.2])
    for row in rows:
        assert row["failed"] == 0 and row["seconds"] >= row["ideal"]
        assert row["x_ideal"] == pytest.approx(row["seconds"] / row["ideal"])
    table = out.getvalue()
    assert "latency 10 ms" in table and "asyncio" in table and "sequential" in table
