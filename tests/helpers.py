"""Small helpers shared by the test files."""

import inspect
import json
import signal
import socket
import subprocess
import sys

import pytest
from reference import count_range, loop_count


def run_python(code: str, *args: str, timeout: float = 60, env: dict | None = None):
    """Run ``code`` in a new Python (``python -c``); the finished process, output as text."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
        env=env,
    )


def start_python(code: str, env: dict | None = None) -> subprocess.Popen:
    """Start ``code`` in a new Python (``python -c``), its output piped, as text."""
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
    )


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def raw_get(url: str, request: bytes) -> bytes:
    """Send ``request`` to the server at ``url`` as is; everything it answers until it closes."""
    port = int(url.rsplit(":", 1)[1])
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            received += chunk
    return received


def interrupt(process: subprocess.Popen, within: float) -> str:
    """Send Ctrl-C (SIGINT) to ``process``; its stderr once it has exited (a test failure if it
    is still running ``within`` seconds later)."""
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=within)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"still running {within} s after Ctrl-C")


def _hits(i, seed):
    return (i ^ seed) % 13 == 0


def check_every_workload(backend: str, env: dict, timeout: float) -> None:
    """Count on cluster backend ``backend`` from a fresh Python driver (``env`` reaches the
    cluster), as a user's would be: the built-ins against known values and the reference (many
    tasks over short ranges, up to 2**32 and with the largest seed), and a user workload defined
    in the driver's __main__ (sent by value) against a plain loop over it."""
    known = [("count", 10**7, 10**7), ("primes", 10**6, 78498), ("primes", 10**7, 664579),
             ("pi", 10**5, 78607), ("pi", 10**6, 785806)]
    ranges = [(w, lo, hi, seed) for w in ("count", "primes", "pi")
              for lo, hi, seed in [(7, 3001, 12345), (2**32 - 2500, 2**32, 2**64 - 1)]]
    code = (
        "import dataclasses, json, sys, partally\n"
        "from partally.backends import get\n"
        "from partally.workloads import resolve\n"
        "backend, known, ranges = json.loads(sys.argv[1])\n"
        "cluster = get(backend)\n"
        "out = [partally.compute(n, backend=backend, workload=w) for w, n, _ in known]\n"
        "short = lambda w: dataclasses.replace(resolve(w), task_min=7)  # many tasks, short ranges\n"
        "out += [cluster.count(short(w), lo, hi, workers=2, seed=s) for w, lo, hi, s in ranges]\n"
        + inspect.getsource(_hits)  # defined again in the driver's __main__
        + "out.append(partally.compute(2 * 10**6, backend=backend, workload=_hits, seed=9))\n"
        "print(json.dumps(out))\n"
    )
    done = run_python(code, json.dumps([backend, known, ranges]), timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])  # a cluster may print lines too
    expected = [value for _, _, value in known] + [count_range(*case) for case in ranges]
    assert counts == [*expected, loop_count(_hits, 0, 2 * 10**6, 9)]
