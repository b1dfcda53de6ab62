"""`partally fetch`, `partally serve` and the IO bench, against the local server (127.0.0.1 only)."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from helpers import has_ipv6_loopback
from rich.console import Console

from partally.bench.io import run_io_bench
from partally.cli import io as _io_cli
from partally.io import engine
from partally.io.server import running_server


@pytest.fixture(scope="module")
def server():
    with running_server(latency=0.0, size=10) as running:
        yield running


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="partally")
    _io_cli.add_io_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_modes_match_the_engine():
    assert _io_cli.MODES == engine.MODES


@pytest.mark.parametrize("mode", _io_cli.MODES)
def test_fetch_summarises(server, capsys, mode):
    assert run("fetch", f"{server.url}/a", f"{server.url}/b", "--mode", mode, "--limit", "2") == 0
    out = capsys.readouterr().out
    assert "2 ok, 0 failed; 20 bytes in" in out and f"({mode}, limit 2)" in out
    assert "requests/s" in out


def test_fetch_lists_failures_writes_json_lines_and_exits_1(server, capsys, tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text(f"# a comment\n{server.url}/ok\n\n{server.url}/x?status=404\nftp://127.0.0.1/\n")
    out_json = tmp_path / "out.jsonl"
    assert run("fetch", "--file", str(urls), "--results", str(out_json)) == 1
    out = capsys.readouterr().out
    assert "1 ok, 2 failed" in out
    assert f"{server.url}/x?status=404: HTTP 404 Not Found" in out
    assert "ftp://127.0.0.1/: unsupported scheme 'ftp'" in out
    rows = [json.loads(line) for line in out_json.read_text().splitlines()]
    assert [(r["status"], r["ok"], r["bytes"]) for r in rows] == [
        (200, True, 10),
        (404, False, 10),
        (None, False, 0),
    ]
    assert set(rows[0]) == {"url", "ok", "status", "bytes", "elapsed", "attempts", "error", "final_url", "path"}


def test_fetch_sends_the_method_headers_and_body_asked_for(server, tmp_path, capsys):
    base = f"{server.url}/echo"
    assert run("fetch", base, "--json", '{"a": 1}', "-H", "X-One: 1", "--output", str(tmp_path)) == 0
    echo = json.loads((tmp_path / "echo").read_text())
    assert echo["method"] == "POST" and echo["body"] == '{"a": 1}'
    assert echo["headers"]["content-type"] == "application/json" and echo["headers"]["x-one"] == "1"
    data = tmp_path / "data.bin"
    data.write_bytes(b"from a file")
    folder = tmp_path / "put"
    folder.mkdir()
    assert run("fetch", base, "--method", "put", "--data", f"@{data}", "--output", str(folder)) == 0
    echo = json.loads((folder / "echo").read_text())
    assert echo["method"] == "PUT" and echo["body"] == "from a file"
    folder = tmp_path / "get"
    folder.mkdir()
    assert run("fetch", base, "-H", "X-Two: 2", "--output", str(folder), "--rate", "50") == 0
    echo = json.loads((folder / "echo").read_text())
    assert echo["method"] == "GET" and echo["headers"]["x-two"] == "2"


def test_fetch_output_writes_each_body_to_a_file(server, tmp_path, capsys):
    urls = [f"{server.url}/a.txt?size=3", f"{server.url}/b?size=70000"]
    assert run("fetch", *urls, "--output", str(tmp_path)) == 0
    assert (tmp_path / "a.txt").read_bytes() == b"xxx"
    assert (tmp_path / "b").stat().st_size == 70000


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664)])
def test_fetch_output_files_get_the_usual_mode_for_new_files(server, tmp_path, umask, mode):
    before = os.umask(umask)  # as a user's shell sets it; curl -o and wget give 0o666 less it
    try:
        assert run("fetch", f"{server.url}/a.txt?size=3", "--output", str(tmp_path)) == 0
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == mode
    assert os.listdir(tmp_path) == ["a.txt"]  # no temporary left


def test_the_progress_bar_shows_on_a_terminal_only(server):
    urls = [f"{server.url}/p{i}" for i in range(_io_cli.PROGRESS_AFTER + 5)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-m", "partally", "fetch", *urls]
    piped = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == ""
    tty = subprocess.run(argv, env={**env, "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"},
                         capture_output=True, text=True, timeout=120)
    assert tty.returncode == 0 and "fetching (asyncio)" in tty.stderr


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
        (["serve", "--latency", "-1"], "--latency must be a finite number of seconds >= 0"),
        (["serve", "--latency", "inf"], "--latency must be a finite number of seconds >= 0"),
        (["serve", "--latency", "nan"], "--latency must be a finite number of seconds >= 0"),
        (["serve", "--jitter", "-1"], "--jitter must be a finite number of seconds >= 0"),
        (["serve", "--jitter", "inf"], "--jitter must be a finite number of seconds >= 0"),
        (["serve", "--fail-rate", "nan"], "--fail-rate must be in [0, 1]"),
        (["serve", "--host", "no-such-host.invalid"], "cannot listen on no-such-host.invalid:8000"),
        (["fetch", "--timeout", "0", "http://127.0.0.1/"], "--timeout must be a number of seconds > 0"),
        (["fetch", "--timeout", "-1", "http://127.0.0.1/"], "--timeout must be"),
        (["fetch", "--timeout", "nan", "http://127.0.0.1/"], "--timeout must be"),
        (["fetch", "--timeout=-inf", "http://127.0.0.1/"], "--timeout must be"),
        (["fetch", "--timeout", "soon", "http://127.0.0.1/"], "--timeout must be"),
        (["fetch", "--retries", "-1", "http://127.0.0.1/"], "--retries must be a whole number in 0..100"),
        (["fetch", "--retries", "1.5", "http://127.0.0.1/"], "--retries must be"),
        (["fetch", "--retries", "101", "http://127.0.0.1/"], "--retries must be"),
        (["fetch", "--retries", "x", "http://127.0.0.1/"], "--retries must be"),
        (["fetch", "--results", "/nonexistent/out.json", "http://127.0.0.1/"], "folder '/nonexistent' does not exist"),
        (["fetch", "--results", "/", "http://127.0.0.1/"], "is a directory"),
        (["fetch", "--results", "", "http://127.0.0.1/"], "--results: give a file name"),
        (["fetch", "--json", "{nope", "http://127.0.0.1/"], "--json must be JSON text"),
        (["fetch", "--json", "1", "--data", "x", "http://127.0.0.1/"], "give --data or --json, not both"),
        (["fetch", "--data", "@/nonexistent/body", "http://127.0.0.1/"], "cannot read --data @/nonexistent/body"),
        (["fetch", "--header", "no colon", "http://127.0.0.1/"], "--header must be 'Name: value'"),
        (["fetch", "--header", ": v", "http://127.0.0.1/"], "--header must be 'Name: value'"),
        (["fetch", "--method", "GE T", "http://127.0.0.1/"], "--method must be a method name"),
        (["fetch", "--rate", "0", "http://127.0.0.1/"], "--rate must be a number of requests per second > 0"),
        (["fetch", "--rate", "inf", "http://127.0.0.1/"], "--rate must be"),
        (["fetch", "--output", "/dev/null/dir", "http://127.0.0.1/"], "--output folder '/dev/null/dir' cannot be made"),
        (["fetch", "--output", "/dev/null", "http://127.0.0.1/"], "--output must be a folder"),
        (["fetch", "--proxy", "socks5://127.0.0.1:1", "http://127.0.0.1/"], "--proxy: proxy='socks5://127.0.0.1:1': socks5 proxies are not supported"),
        (["fetch", "--proxy", "ftp://127.0.0.1:1", "http://127.0.0.1/"], "not a usable proxy URL"),
        (["serve", "--fail-rate", "1.5"], "--fail-rate must be in [0, 1]"),
        (["serve", "--size", "-1"], "--size must be >= 0"),
        (["serve", "--port", "70000"], "--port must be in 0..65535"),
    ],
)
def test_bad_arguments_one_line_exit_2(capsys, argv, message):
    assert run(*argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"partally {argv[0]}: error: ") and message in err


def test_fetch_with_a_bad_host_fails_alone_not_the_batch(server, capsys):
    # IDNAError escaped fetch_all, and `partally fetch` exited 2 for the whole list.
    assert run("fetch", f"{server.url}/a", "http://xn--zz.localhost/", f"{server.url}/b") == 1
    out = capsys.readouterr().out
    assert "2 ok, 1 failed" in out and "http://xn--zz.localhost/: invalid URL" in out


def test_fetch_results_to_an_unwritable_path_stops_before_any_request(capsys, tmp_path):
    with running_server(latency=0.0, size=10) as fresh:
        missing = tmp_path / "no" / "such" / "out.json"
        assert run("fetch", f"{fresh.url}/a", "--results", str(missing)) == 2
        assert fresh.app.requests == 0  # checked before the fetch, as `bench` does
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("partally fetch: error: --results: cannot write")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_fetch_results_that_fail_late_are_one_line_not_a_traceback(server, capsys):
    assert run("fetch", f"{server.url}/a", "--results", "/dev/full") == 2  # ENOSPC at write time
    out, err = capsys.readouterr()
    assert "1 ok, 0 failed" in out  # the summary still came
    assert err.strip().startswith("partally fetch: error: --results: cannot write '/dev/full'")


def test_fetch_timeout_and_retries(server, capsys):
    server.app.reset()
    url = f"{server.url}/r?fail_first=1"
    assert run("fetch", url, "--retries", "0") == 1
    assert run("fetch", url + "&again", "--retries", "1") == 0
    assert server.app.hits["/r?fail_first=1"] == 1 and server.app.hits["/r?fail_first=1&again"] == 2
    assert run("fetch", f"{server.url}/slow?latency=60", "--timeout", "0.1", "--retries", "0") == 1
    assert "ReadTimeout" in capsys.readouterr().out  # a hang would be pytest's 300 s timeout
    for none in ("inf", "none", "1e300"):
        assert run("fetch", f"{server.url}/a?latency=0.05", "--timeout", none) == 0


def test_fetch_file_not_utf8_is_a_fetch_error(tmp_path, capsys):
    # Through the real entry point: a UnicodeDecodeError reached main's "partally: error:".
    from partally.cli import main

    bad = tmp_path / "urls.txt"
    bad.write_bytes(b"http://127.0.0.1/\xff\xfe\n")
    assert main(["fetch", "--file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("partally fetch: error: cannot read --file")
    assert "not UTF-8" in err


@pytest.mark.parametrize("mode", _io_cli.MODES)
def test_fetch_ctrl_c_exits_130_promptly_without_a_traceback(server, mode):
    urls = [f"{server.url}/{mode}-{i}?latency=30" for i in range(20)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-m", "partally", "fetch", "--mode", mode, "--limit", "20", *urls]
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        def started() -> int:  # this child's requests that reached the server
            return sum(n for key, n in list(server.app.hits.items()) if key.startswith(f"/{mode}-"))

        while started() < (1 if mode == "sequential" else 20):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)  # no leftover thread keeps it alive (answers: 30 s)
    finally:
        child.kill()
    assert child.returncode == 130
    assert b"Traceback" not in err and err.strip().endswith(b"partally: interrupted")


def _serve(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "partally", "serve", "--latency", "0", "--size", "3", *argv]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


def _serving_line(child: subprocess.Popen) -> str:
    line = child.stderr.readline()  # the child is killed by the caller if this hangs
    assert line.startswith("serving "), line
    return line


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_serve_port_0_says_the_port_and_answers_once_it_says_so(host):
    if host == "::1" and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    child = _serve("--host", host, "--port", "0")
    timer = threading.Timer(30, child.kill)
    timer.start()
    try:
        line = _serving_line(child)
        url = line.split()[1]
        bracketed = "[::1]" if host == "::1" else host
        assert url.startswith(f"http://{bracketed}:") and not url.endswith(":0/")
        # "serving" came before the port was bound: a request at once was refused.
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read() == b"xxx"
    finally:
        timer.cancel()
        child.send_signal(signal.SIGINT)
        child.communicate(timeout=30)


def test_serve_on_a_taken_port_is_one_line_and_never_says_serving():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        child = _serve("--port", str(taken.getsockname()[1]))
        _, err = child.communicate(timeout=30)
    assert child.returncode == 2 and "serving" not in err
    assert err.count("\n") == 1 and err.startswith("partally serve: error: cannot listen on 127.0.0.1:")




def test_bad_mode_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit:
        run("fetch", "--mode", "processes", "http://127.0.0.1/")
    assert exit.value.code == 2 and "invalid choice: 'processes'" in capsys.readouterr().err


def test_serve_runs_until_ctrl_c():
    child = _serve("--port", "0", "--size", "4")
    timer = threading.Timer(60, child.kill)
    timer.start()
    try:
        url = _serving_line(child).split()[1]
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read() == b"xxxx"
    finally:
        timer.cancel()
        child.send_signal(signal.SIGINT)
        child.communicate(timeout=30)


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


def test_fetch_output_makes_a_missing_folder_as_wget_p_does(server, tmp_path, capsys):
    # `--output DIR` with a missing DIR was an error ("must be an existing folder").
    folder = tmp_path / "new" / "deeper"
    assert run("fetch", f"{server.url}/one.txt", "--output", str(folder)) == 0
    assert (folder / "one.txt").read_bytes() == b"x" * 10
    assert f"bodies written to {folder}{os.sep}" in capsys.readouterr().out


def test_fetch_json_says_where_the_response_bodies_went(server, capsys):
    # `partally fetch --json ...` printed nothing of the response body, nor said why.
    assert run("fetch", f"{server.url}/echo", "--json", '{"a": 1}') == 0
    out = capsys.readouterr().out
    assert "1 ok, 0 failed" in out and "bodies counted, not kept (--output DIR writes each to a file)" in out
