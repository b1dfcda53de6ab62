"""A real Ray cluster of several nodes on this machine, started with the ``ray`` CLI, for tests.

Each node is one ``ray start --block`` in a session of its own (``start_new_session``): every
process of that node (GCS, raylet, agents, workers) stays in that session, so stopping the node
kills exactly that session's processes, and nothing else on the machine (``ray stop`` would kill
every Ray here, other people's included). Every port is a free one and the cluster has its own
short temp dir (Ray's socket paths must stay under ~107 bytes), so it coexists with other Rays.

Linux only: it reads /proc to find a session's processes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY_CLI = Path(sys.executable).with_name("ray")  # the `ray` of the Python running the tests
OBJECT_STORE_BYTES = 100 * 2**20  # Ray's default is 30% of memory: this machine is shared

# One driver that waits until the cluster has `want` alive nodes, none of them one of `gone` (the
# GCS calls a killed node alive until it misses enough heartbeats), then prints them as JSON.
_WAIT_FOR_NODES = """
import json, logging, sys, time
import ray
address, want, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
gone = set(json.loads(sys.argv[4]))
ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
while True:
    alive = [node for node in ray.nodes() if node["Alive"]]
    sockets = {node["RayletSocketName"] for node in alive}
    if (len(alive) == want and not sockets & gone) or time.monotonic() > deadline:
        break
    time.sleep(0.2)
print(json.dumps([{"id": n["NodeID"], "cpus": n["Resources"].get("CPU", 0),
                   "raylet_socket": n["RayletSocketName"]} for n in alive]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name: state, ppid, pgrp, session, ..."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def session_pids(sid: int) -> list[int]:
    """The live (not zombie) processes of session ``sid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and fields[0] != "Z" and int(fields[3]) == sid:
                found.append(int(entry))
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""




class Node:
    """One ``ray start --block`` and the session its processes live in."""

    def __init__(self, process: subprocess.Popen, log: Path, head: bool) -> None:
        self.process, self.log, self.head = process, log, head
        self.sid = process.pid  # start_new_session: the session is led by `ray start` itself
        self.socket: str | None = None  # its raylet's socket: how the GCS's node table names it

    def pids(self) -> list[int]:
        return session_pids(self.sid)

    def raylet_pid(self) -> int | None:
        for pid in self.pids():
            if cmdline(pid).split(" ", 1)[0].endswith("/raylet"):
                return pid
        return None

    def raylet_socket(self) -> str | None:
        pid = self.raylet_pid()
        for arg in cmdline(pid).split() if pid else []:
            if arg.startswith("--raylet_socket_name="):
                return arg.split("=", 1)[1]
        return None

    def running(self, title: str) -> list[int]:
        """This node's processes whose title starts with ``title`` (a worker's "ray::f")."""
        return [pid for pid in self.pids() if cmdline(pid).startswith(title)]

    def kill(self) -> None:
        """SIGKILL every process of this node's session, then reap ``ray start``."""
        for _ in range(50):  # a process may start a child while the first ones are killed
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class LocalCluster:
    """A head and worker nodes on this machine, each with ``cpus`` CPUs, reached at ``address``."""

    def __init__(self, cpus: int = 1) -> None:
        self.cpus = cpus
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short: socket paths
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[Node] = []
        # Token authentication with a token of its own: the same whatever ~/.ray/auth_token holds
        # (a local ray.init() writes one there, and `ray start --head` then turns tokens on).
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}

    def env(self, **changes: str) -> dict[str, str]:
        """The environment for this cluster's processes and for drivers (with RAY_ADDRESS)."""
        env = {key: value for key, value in os.environ.items()
               if key not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
        env.update(self.auth, RAY_USAGE_STATS_ENABLED="0")
        env.update(changes)
        return env

    def driver_env(self, **changes: str) -> dict[str, str]:
        return self.env(RAY_ADDRESS=self.address, **changes)

    # --- starting ----------------------------------------------------------------------------

    def _start(self, args: list[str], head: bool) -> Node:
        ports = {
            "--node-manager-port": free_port(),
            "--object-manager-port": free_port(),
            "--dashboard-agent-listen-port": free_port(),
            "--dashboard-agent-grpc-port": free_port(),
            "--runtime-env-agent-port": free_port(),
            "--metrics-export-port": free_port(),
        }
        command = [
            str(RAY_CLI), "start", *args, "--block", f"--num-cpus={self.cpus}", "--num-gpus=0",
            f"--object-store-memory={OBJECT_STORE_BYTES}", f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats", *(f"{flag}={port}" for flag, port in ports.items()),
        ]
        log = self.temp_dir / f"node{len(self.nodes)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self.env(), start_new_session=True,
            )
        node = Node(process, log, head)
        self.nodes.append(node)
        return node

    def start(self, nodes: int = 2, timeout: float = 90) -> LocalCluster:
        """Start the head and ``nodes - 1`` more; wait until all are alive (or stop them all)."""
        try:
            return self._start_all(nodes, time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def _start_all(self, nodes: int, deadline: float) -> LocalCluster:
        head = self._start(
            ["--head", f"--port={self.port}", "--include-dashboard=false",
             f"--dashboard-port={free_port()}"],
            head=True,
        )
        while True:  # the GCS answers before a second node may join
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if head.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Ray head did not start:\n{head.log_tail()}") from None
                time.sleep(0.1)
        for _ in range(nodes - 1):
            self.add_node()
        self.wait_for_nodes(nodes, deadline - time.monotonic())
        return self

    def add_node(self) -> Node:
        return self._start([f"--address={self.address}"], head=False)

    def wait_for_nodes(self, count: int, timeout: float, gone: list[Node] = ()) -> list[dict]:
        """The alive nodes, once there are ``count`` of them and the GCS no longer calls any of
        ``gone`` alive; RuntimeError after ``timeout``."""
        timeout = max(timeout, 5.0)
        dead = json.dumps([node.socket for node in gone if node.socket])
        done = subprocess.run(
            [sys.executable, "-c", _WAIT_FOR_NODES, self.address, str(count), str(timeout), dead],
            capture_output=True, text=True, timeout=timeout + 60, env=self.env(),
        )
        alive = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else []
        sockets = {node["raylet_socket"] for node in alive}
        if len(alive) == count and not sockets & set(json.loads(dead)):
            for node in self.nodes:
                node.socket = node.socket or node.raylet_socket()
            return alive
        logs = "\n".join(f"--- node {k}:\n{node.log_tail()}" for k, node in enumerate(self.nodes))
        raise RuntimeError(
            f"{len(alive)} Ray nodes alive after {timeout:.0f} s, not {count} without the lost "
            f"ones\n{done.stderr[-2000:]}\n{logs}"
        )

    # --- stopping ----------------------------------------------------------------------------

    def pids(self) -> list[int]:
        return [pid for node in self.nodes for pid in node.pids()]

    def stop(self) -> None:
        """Kill every process this cluster started (worker nodes first) and remove its temp dir."""
        for node in reversed(self.nodes):
            node.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
