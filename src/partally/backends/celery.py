"""``celery``: the range cut into chunks, one Celery task per chunk, through a real broker.

The broker is ``CELERY_BROKER_URL`` (Redis, or RabbitMQ with a Redis result store), the result
store ``CELERY_RESULT_BACKEND`` or the same Redis. Workers run ``celery -A partally.celery
worker`` (``partally/celery.py`` holds the app, its settings and the task) and take partally's
queue only. Each chunk runs the fastest CPU kernel its worker has, as on Ray; the workload travels
pickled (built-ins by name, user functions by value), so a ``__main__`` lambda works.

Refusals come fast: without a broker the backend is unavailable; a broker that does not answer,
or no worker on partally's queue, is ``BackendUnavailable`` within a few seconds (the broker is
probed before Celery's own client, which can take 19 s to give up). ``workers`` caps the chunks
in flight. Results are waited for with Celery's own wait (woken by the result store's pub/sub
message, never its default 0.5 s poll) and read in one MGET; they are forgotten after use. A chunk whose worker
dies is delivered again (see ``partally.celery``); one that keeps killing its worker fails the
call with the reason; a count whose workers all stop answering for ``_WORKERS_LOST_S`` fails
with a ``RuntimeError`` that says so. Ctrl-C revokes what is still queued (never terminating a
running chunk: a pool process may already run another's) and returns nothing.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from partally._errors import BackendUnavailable, _rebuilt
from partally._settings import celery_broker_url, celery_result_url, celery_visibility_timeout
from partally.backends._cluster import ClusterBackend
from partally.workloads import Workload

_PROBE_S = 2.0  # to connect to the broker or result store and hear it answer
# For the first worker to answer a ping, asked again longer each time: a live worker's main loop
# missed a 1 s ping on a loaded machine, and once 1 + 4 s right after chunks killed its pool's
# processes three times (CI, quiet machine).
_PING_S = (1.0, 4.0, 10.0)
_ALIVE_S = 5.0  # a worker that answered this recently is not asked again before a count
_STATS_S = 30.0  # how long the workers' process count is kept
_POLL_S = 1.0  # a wait gives control back this often (Ctrl-C, the watchdog)
_WORKERS_LOST_S = 10.0  # no worker answering this long mid-run: the count fails
_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671, "pyamqp": 5672}
_FIX = "start one with `CELERY_BROKER_URL=... celery -A partally.celery worker`"


def unavailable() -> str | None:
    if importlib.util.find_spec("celery") is None or importlib.util.find_spec("redis") is None:
        return 'celery is not installed; install it with `pip install "partally[celery]"`'
    broker = celery_broker_url()
    if broker is None:
        return (
            "no broker configured: set CELERY_BROKER_URL (e.g. redis://:PASSWORD@HOST:6379/0), "
            "and start workers with `celery -A partally.celery worker`"
        )
    results = celery_result_url()
    if results is None or results.split("://", 1)[0] not in ("redis", "rediss"):
        return (
            f"the result store must be Redis: set CELERY_RESULT_BACKEND=redis://... (now "
            f"{'unset' if results is None else _shown(results)}; the broker is {_shown(broker)})"
        )
    return None


def _shown(url: str) -> str:
    """``url`` without its password."""
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)


def _probe(url: str, what: str) -> None:
    """``BackendUnavailable`` within ``_PROBE_S`` unless a server answers at ``url`` (a Redis
    answers PING; other brokers only have to accept the connection)."""
    from kombu.utils.url import url_to_parts

    parts = url_to_parts(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in _DEFAULT_PORTS:
        return  # sentinel, unix sockets, SQS ...: Celery's own client says what is wrong
    host, port = parts.hostname or "localhost", parts.port or _DEFAULT_PORTS[scheme]
    try:
        with socket.create_connection((host, port), _PROBE_S) as sock:
            if scheme != "redis":
                return  # TLS or AMQP: connected is all this checks
            sock.settimeout(_PROBE_S)
            sock.sendall(b"PING\r\n")
            answer = sock.recv(1)  # "+PONG", or "-NOAUTH ..." where a password is needed
            if answer not in (b"+", b"-"):
                why = "it closed the connection" if not answer else "it does not speak Redis"
                raise BackendUnavailable(f"cannot use the {what} at {_shown(url)}: {why}")
    except TimeoutError as exc:
        raise _unreachable(url, what, f"no answer within {_PROBE_S:g} s") from exc
    except OSError as exc:
        raise _unreachable(url, what, str(exc)) from exc


def _unreachable(url: str, what: str, why: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"cannot reach the Celery {what} at {_shown(url)} ({why}); check that it runs there and "
        "the port is open, or set CELERY_BROKER_URL / CELERY_RESULT_BACKEND to one that does"
    )


@dataclass
class _Workers:
    """What the workers on partally's queue said last: their names and pool sizes."""

    processes: dict[str, int]
    asked_at: float


class CeleryBackend(ClusterBackend):
    name = "celery"
    setting = "CELERY_BROKER_URL"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._app: Any = None
        self._urls: tuple[str | None, str | None, float] | None = None
        self._alive_at = -float("inf")  # when a worker last answered
        self._workers: _Workers | None = None

    def unavailable(self) -> str | None:
        return unavailable()

    def unreachable(self) -> str | None:
        try:
            self._checked()
        except BackendUnavailable as exc:
            return str(exc)
        return None

    @property
    def started(self) -> bool:
        return self._app is not None

    def device(self) -> str:
        """``Celery workers on redis://host:6379/0: 2 workers, 8 processes``; never raises."""
        why = unavailable()
        if why is not None:
            return f"none: {why}"
        where = f"Celery workers on {_shown(celery_broker_url() or '')}"
        try:
            app = self._checked(fresh=True)
            return f"{where}: {self._describe(self._stats(app, fresh=True))}"
        except Exception as exc:  # noqa: BLE001 - a description, never an error
            return f"{where} (cannot ask them now: {exc})"

    @staticmethod
    def _describe(processes: dict[str, int]) -> str:
        workers, total = len(processes), sum(processes.values())
        each = ", ".join(f"{name} {count}" for name, count in sorted(processes.items()))
        return (f"{workers} worker{'s' * (workers != 1)}, {total} process{'es' * (total != 1)}"
                f" ({each})")

    # --- connecting ----------------------------------------------------------------------------

    def _current_app(self) -> Any:
        """partally's Celery app for the environment as it is now (made anew when it changed)."""
        from partally import celery as worker_side

        urls = (celery_broker_url(), celery_result_url(), celery_visibility_timeout())
        with self._lock:
            if self._app is None or self._urls != urls:
                self._drop()
                self._app, self._urls = worker_side.make_app(client=True), urls
            return self._app

    def _drop(self) -> None:
        """Forget the app and what the workers said (after an error, or when the URLs change)."""
        app, self._app, self._workers = self._app, None, None
        self._alive_at = -float("inf")
        if app is not None:
            try:
                app.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    def _checked(self, fresh: bool = False) -> Any:
        """The app, once the broker and result store answer and a worker on partally's queue
        does (asked again when the last answer is older than ``_ALIVE_S``, or ``fresh``)."""
        why = unavailable()
        if why is not None:
            raise BackendUnavailable(f"backend 'celery' is not available here: {why}")
        from partally import celery as worker_side

        broker, results = celery_broker_url() or "", celery_result_url() or ""
        _probe(broker, "broker")
        if results != broker:
            _probe(results, "result store")
        app = self._current_app()
        if fresh or time.monotonic() - self._alive_at > _ALIVE_S:
            try:
                alive = self._ping(app)
            except BackendUnavailable:
                self.close()  # a new app next time: Celery's may be stuck reconnecting
                raise
            if not alive:
                raise BackendUnavailable(
                    f"no Celery worker consumes partally's queue {worker_side.QUEUE!r} on "
                    f"{_shown(broker)} (none answered within {sum(_PING_S):g} s): {_FIX}"
                )
        return app

    def _ping(self, app: Any) -> bool:
        """Whether a worker of partally's app answers (its remote control is partally's own),
        asked up to ``len(_PING_S)`` times, longer each time; ``BackendUnavailable`` when the
        broker fails the ping."""
        try:
            answered = any(bool(app.control.ping(timeout=wait, limit=1)) for wait in _PING_S)
        except Exception as exc:
            broker = self._urls[0] if self._urls else ""
            raise _unreachable(broker or "", "broker", str(exc)) from exc
        if answered:
            self._alive_at = time.monotonic()
        return answered

    def _stats(self, app: Any, fresh: bool = False) -> dict[str, int]:
        """Worker name -> pool processes, asked at most every ``_STATS_S`` (or ``fresh``): every
        worker that answers within half a second (a worker added meanwhile is seen then)."""
        known = self._workers
        if not fresh and known is not None and time.monotonic() - known.asked_at < _STATS_S:
            return known.processes
        try:
            stats = app.control.inspect(timeout=0.5).stats() or {}
        except Exception as exc:
            raise _unreachable(celery_broker_url() or "", "broker", str(exc)) from exc
        processes = {name: int(info.get("pool", {}).get("max-concurrency", 1))
                     for name, info in stats.items()}
        if processes:
            self._workers = _Workers(processes, time.monotonic())
            self._alive_at = time.monotonic()
            return processes
        return known.processes if known is not None else {"(no answer to inspect stats)": 1}

    def worker_info(self) -> tuple[str, int]:
        """Run one task: (the kernel its worker runs chunks on, the worker process's id)."""
        app = self._checked()
        kernel, pid = app.send_task("partally.worker_info").get(timeout=60, interval=0.005)
        return kernel, pid

    def connect(self) -> _CeleryTasks:
        app = self._checked()
        return _CeleryTasks(self, app, sum(self._stats(app).values()))

    def close(self) -> None:
        with self._lock:
            self._drop()

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._app, self._urls, self._workers = None, None, None  # its sockets are the parent's
        self._alive_at = -float("inf")


@dataclass(frozen=True)
class _Chunk:
    """One submitted chunk: Celery's handle, its range and its workload's name."""

    sent: Any  # celery.result.AsyncResult
    lo: int
    hi: int
    workload: str

    @property
    def id(self) -> str:
        return self.sent.id


class _CeleryTasks:
    """One count's chunks as Celery tasks (the cluster adapter of ``_cluster.run_tasks``)."""

    def __init__(self, backend: CeleryBackend, app: Any, processes: int) -> None:
        self.backend, self.app, self.processes = backend, app, processes
        self.store = app.backend  # the Redis result store
        self.payload: tuple[Workload, bytes] | None = None
        self.metas: dict[str, dict] = {}
        self.silent_since: float | None = None
        self.lost = False

    def cpus(self) -> int:
        return max(1, self.processes)

    def submit(self, workload: Workload, lo: int, hi: int, seed: int) -> _Chunk:
        from partally import celery as worker_side

        if self.payload is None or self.payload[0] is not workload:
            self.payload = (workload, pickle.dumps(workload))
        sent = self.app.send_task(
            "partally.chunk", args=(self.payload[1], lo, hi, seed),
            expires=worker_side.EXPIRES_S,
        )
        return _Chunk(sent, lo, hi, workload.name)

    def wait(self, chunks: list[_Chunk]) -> tuple[list[_Chunk], list[_Chunk]]:
        """The finished chunks, after Celery's own wait for the oldest one (woken by the result
        store's pub/sub message, never Celery's default 0.5 s poll) for at most ``_POLL_S``; then
        all of them are read in one MGET."""
        from celery.exceptions import TimeoutError as Silent

        try:
            try:
                chunks[0].sent.get(timeout=_POLL_S, interval=0.005, propagate=False,
                                   disable_sync_subtasks=False)
            except Silent:
                pass
            done, rest = self._split(chunks)
        except (OSError, RuntimeError, *self.store.connection_errors) as exc:  # Celery's own
            raise self._lost("the result store stopped answering", exc) from exc  # is a RuntimeError
        if done:
            self.silent_since = None
        else:
            self._watch()
        return done, rest

    def _split(self, chunks: list[_Chunk]) -> tuple[list[_Chunk], list[_Chunk]]:
        keys = [self.store.get_key_for_task(chunk.id) for chunk in chunks]
        done, rest = [], []
        for chunk, raw in zip(chunks, self.store.client.mget(keys)):
            meta = None if raw is None else self.store.decode_result(raw)
            if meta is not None and meta.get("status") in ("SUCCESS", "FAILURE", "REVOKED"):
                self.metas[chunk.id] = meta
                done.append(chunk)
            else:
                rest.append(chunk)
        return done, rest

    def _watch(self) -> None:
        """Raise once no worker has answered for ``_WORKERS_LOST_S`` (asked after a silent wait)."""
        now = time.monotonic()
        try:
            alive = self._reachable() and self.backend._ping(self.app)  # noqa: SLF001
        except BackendUnavailable:
            alive = False
        if alive:
            self.silent_since = None
            return
        self.silent_since = now if self.silent_since is None else self.silent_since
        if now - self.silent_since >= _WORKERS_LOST_S:
            raise self._lost(f"no worker has answered for {_WORKERS_LOST_S:g} s", None)

    def _reachable(self) -> bool:
        """Whether the broker and result store answer now (within seconds: Celery's own
        client would retry a dead broker for minutes)."""
        try:
            _probe(celery_broker_url() or "", "broker")
            _probe(celery_result_url() or "", "result store")
        except BackendUnavailable:
            return False
        return True

    def _lost(self, why: str, exc: BaseException | None) -> RuntimeError:
        self.lost = True  # nothing to revoke or forget on a cluster that is gone
        self.backend.close()
        broker = _shown(celery_broker_url() or "")
        cause = f" ({' '.join(str(exc).split())})" if exc is not None else ""
        return RuntimeError(
            f"lost the Celery cluster on {broker} mid-run: {why}{cause}; the run was not "
            f"finished. Check the broker and the workers (`celery -A partally.celery inspect "
            "ping`), and run again"
        )

    def result(self, chunk: _Chunk) -> Any:
        meta = self.metas.pop(chunk.id)
        where = f"chunk [{chunk.lo}, {chunk.hi}) of workload {chunk.workload!r}"
        if meta["status"] == "REVOKED":
            raise RuntimeError(f"{where} was revoked on its Celery worker (expired or revoked)")
        if meta["status"] == "FAILURE":
            error = meta.get("result") or {}
            raise RuntimeError(
                f"{where} failed on its Celery worker: {error.get('exc_type', 'error')}: "
                f"{json.dumps(error.get('exc_message', ''))}"
            )
        from partally import celery as worker_side

        value = meta["result"]
        if isinstance(value, dict) and "partial" in value:
            return worker_side.from_wire(value["partial"])
        if isinstance(value, dict) and value.get("error") == "workload":
            raise _rebuilt(value["message"], value["workload"], value["index"], value["where"],
                           value.get("frame"))
        if isinstance(value, dict) and value.get("error") == "lost":
            raise RuntimeError(
                f"{where} was started {value.get('attempts')} times and each time its Celery "
                "worker process died (killed by a signal, or out of memory); gave up after "
                f"{worker_side.MAX_ATTEMPTS} attempts"
            )
        raise RuntimeError(f"{where}: its worker answered {value!r:.200}, which is no partial "
                           "(a worker of another partally version?)")

    def cancel(self, chunks: list[_Chunk]) -> None:
        """Revoke the chunks still queued; a running one finishes (never ``terminate=True``)."""
        if self.lost or not self._reachable():
            return  # the broker is gone: nothing to revoke on
        try:
            self.app.control.revoke([chunk.id for chunk in chunks])
        except Exception:  # noqa: BLE001 - it went meanwhile
            pass

    def release(self, chunks: Iterable[_Chunk]) -> None:
        """Delete the results and attempt counters of these chunks, and stop listening for them."""
        from partally import celery as worker_side

        ids = [chunk.id for chunk in chunks]
        if not ids or self.lost:
            return
        try:
            keys = [self.store.get_key_for_task(task) for task in ids]
            keys += [f"{worker_side.ATTEMPTS_KEY}{task}" for task in ids]
            self.store.client.delete(*keys)
            for task in ids:
                self.store.result_consumer.cancel_for(task)
        except Exception:  # noqa: BLE001 - the store is gone; results expire by themselves
            pass
