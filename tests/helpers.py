"""Small helpers shared by the test files."""

import signal
import socket
import subprocess
import sys

import pytest


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
