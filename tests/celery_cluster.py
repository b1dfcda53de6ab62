"""A real Celery cluster on this machine, for tests: a Redis server and ``celery -A partally.celery
worker`` processes, each in a session of its own.

The Redis server is Debian's ``redis-server`` (``.ci/run`` installs it), on a free loopback port,
with a password, no persistence and ``noeviction``. A port is only known to be ours once the
server there answers with our server's process id: a port taken between choosing and binding
makes that server exit, and another port is tried. Every process started here lives in its own
session (``start_new_session``), so stopping it kills exactly that session's processes.

Linux only: it reads /proc to find a session's processes.
"""

from __future__ import annotations

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

from ray_cluster import session_pids

REDIS_SERVER = shutil.which("redis-server")
CELERY_CLI = Path(sys.executable).with_name("celery")  # the `celery` of the Python running tests
VISIBILITY_S = 5  # a lost worker's chunk comes back after this by default (partally's: 60)


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    import importlib.util

    if not sys.platform.startswith("linux"):
        return "reads /proc for processes"
    if importlib.util.find_spec("celery") is None:
        return 'celery is not installed: pip install ".[celery]"'
    if REDIS_SERVER is None:
        return "no redis-server here: apt-get install redis-server (.ci/run does)"
    if not CELERY_CLI.exists():
        return f"no `celery` command next to {sys.executable}"
    return None


def _kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (a process may fork while the first are killed)."""
    for _ in range(50):
        pids = session_pids(sid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of ``pid`` in clock ticks (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


class Redis:
    """One ``redis-server`` on a free loopback port, with a password.

    ``args``: the server's arguments but its port, address and folder (default: the password,
    no persistence, noeviction); they must set ``--requirepass`` to ``password``.
    """

    def __init__(self, folder: Path, password: str | None = None, args: list[str] | None = None):
        self.folder = folder
        self.password = password or secrets.token_hex(16)
        self.args = args if args is not None else [
            "--requirepass", self.password, "--save", "", "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
        ]
        self.process: subprocess.Popen | None = None
        self.port = 0

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=db, password=self.password,
                           socket_timeout=5)

    def start(self, timeout: float = 20, port: int | None = None) -> Redis:
        """Start the server on a free port, or on ``port`` (as a restarted server would be)."""
        for _ in range(20):
            if port is not None:
                self.port = port
            else:
                with socket.socket() as probe:  # a port free now; ours once our server answers
                    probe.bind(("127.0.0.1", 0))
                    self.port = probe.getsockname()[1]
            log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - the server's
            self.process = subprocess.Popen(
                [REDIS_SERVER, *self.args, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", str(self.folder)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            if self._ours(time.monotonic() + timeout):
                return self
            self.stop()  # the port was taken meanwhile: another one
        raise RuntimeError(f"redis-server did not start: {self.log_tail()}")

    def _ours(self, deadline: float) -> bool:
        """Whether the server on ``port`` is the one this object started."""
        import redis

        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if int(self.client().info("server")["process_id"]) == self.process.pid:
                    return True
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is not None:
            _kill_session(self.process.pid)
            self.process.wait(timeout=10)

    def restart(self, outage: float) -> None:
        """Kill the server, wait ``outage`` seconds and start a new one on the same port: with no
        persistence, everything it held (queues, results, bindings) is gone."""
        self.stop()
        time.sleep(outage)
        self.start(port=self.port)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.folder / "redis.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Worker:
    """One ``celery -A partally.celery worker``: its main process and its pool processes.

    ``name``: its Celery node name (``--hostname``), as it answers a ping."""

    def __init__(self, name: str, process: subprocess.Popen, log: Path) -> None:
        self.name, self.process, self.log = name, process, log

    @property
    def sid(self) -> int:
        return self.process.pid  # start_new_session: the session is led by the worker itself

    def pids(self) -> list[int]:
        return session_pids(self.sid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def pool(self) -> list[int]:
        """The pool processes (children of the main process) that run the chunks."""
        return _children(self.process.pid)

    def kill(self) -> None:
        """SIGKILL the whole worker: its main process and its pool, as a lost machine would."""
        _kill_session(self.sid)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """A warm shutdown (SIGTERM), then whatever is left of the session killed."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class CeleryCluster:
    """A Redis server and ``celery -A partally.celery worker`` processes on this machine."""

    def __init__(self, redis_password: str | None = None, redis_args: list[str] | None = None,
                 visibility: float = VISIBILITY_S):
        self.visibility = visibility  # the Redis visibility timeout of workers and drivers
        self.folder = Path(tempfile.mkdtemp(prefix="partally-celery-"))
        self.redis = Redis(self.folder, redis_password, redis_args)
        self.workers: list[Worker] = []
        self._made = 0

    def env(self, db: int = 0, **changes: str) -> dict[str, str]:
        """The environment of workers and drivers: the broker URL and the visibility timeout."""
        env = {key: value for key, value in os.environ.items()
               if key not in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "PARTALLY_BACKEND")}
        env.update(CELERY_BROKER_URL=self.redis.url(db),
                   PARTALLY_CELERY_VISIBILITY_TIMEOUT=f"{self.visibility:g}")
        env.update(changes)
        return env

    def start(self, workers: int = 2, timeout: float = 60) -> CeleryCluster:
        try:
            self.redis.start()
            for _ in range(workers):
                self.add_worker()
            self.wait_for_workers(timeout)
            return self
        except BaseException:
            self.stop()
            raise

    def add_worker(self, command: list[str] | None = None, env: dict[str, str] | None = None,
                   name: str | None = None) -> Worker:
        """Start a worker: ``command`` with ``env`` (default: ``celery -A partally.celery worker``
        with one pool process, in ``env()``), whose node name is ``name``."""
        self._made += 1
        if command is None:
            name = f"w{self._made}@partally-tests"
            command = [str(CELERY_CLI), "-A", "partally.celery", "worker", "--concurrency=1",
                       "--pool=prefork", f"--hostname={name}", "--without-gossip",
                       "--without-mingle", "--loglevel=WARNING"]
        log = self.folder / f"worker{self._made}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self.env() if env is None else env, start_new_session=True,
            )
        worker = Worker(name or f"worker{self._made}", process, log)
        self.workers.append(worker)
        return worker

    def answering(self, most: int | None = None) -> set[str]:
        """The names of the workers that answer a ping within 1 s (sooner once ``most`` have)."""
        from celery import Celery

        from partally.celery import QUEUE

        app = Celery("partally-tests", set_as_current=False, broker=self.redis.url(),
                     control_exchange=QUEUE)
        try:
            replies = app.control.ping(timeout=1.0, limit=most)
        finally:
            app.close()
        return {name for reply in replies for name in reply}

    def wait_for_workers(self, timeout: float) -> None:
        """Until every live worker answers a ping and has its pool process (RuntimeError after
        ``timeout``)."""
        deadline = time.monotonic() + timeout
        want = {worker.name for worker in self.workers if worker.alive()}
        while True:
            ready = all(worker.pool() for worker in self.workers if worker.alive())
            if ready and self.answering(len(want)) >= want:
                return
            dead = [worker for worker in self.workers if not worker.alive()]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(f"--- {w.name}:\n{w.log_tail()}" for w in self.workers)
                raise RuntimeError(f"workers not ready after {timeout:.0f} s\n{logs}")
            time.sleep(0.1)

    def replace_lost(self, timeout: float = 60) -> None:
        """A new worker for each one that a test killed."""
        lost = [worker for worker in self.workers if not worker.alive()]
        for worker in lost:
            worker.kill()
            self.workers.remove(worker)
            self.add_worker()
        if lost:
            self.wait_for_workers(timeout)

    def pids(self) -> list[int]:
        sessions = [worker.sid for worker in self.workers]
        if self.redis.process is not None:
            sessions.append(self.redis.process.pid)
        return [pid for sid in sessions for pid in session_pids(sid)]

    def stop(self) -> None:
        """Stop every worker, then Redis; remove the folder."""
        for worker in self.workers:
            worker.stop()
        self.redis.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> CeleryCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
