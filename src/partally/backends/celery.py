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
message, never its default 0.5 s poll) and read in one MGET; they are forgotten after use.

Faults mid-run (``_CeleryTasks``): a chunk whose pool process dies is delivered again (see
``partally.celery``); one whose whole worker stops answering is sent again at once, and the first
copy to finish is merged; a broker or result store that fails is waited for, and a restarted
Redis's lost chunks sent again. What cannot be recovered (the broker gone for ``_BROKER_LOST_S``,
no worker answering for ``_WORKERS_LOST_S``, a chunk that keeps killing its worker) fails the
call with ``BackendFailed``, saying which and what to do. Ctrl-C revokes what is still queued
(never terminating a running chunk: a pool process may already run another's) and returns
nothing.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from partally._errors import BackendFailed, BackendUnavailable, _rebuilt
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
_POLL_S = 1.0  # a wait gives control back this often (Ctrl-C, the checks)
_CHECK_S = 1.0  # a running count checks its workers and servers this often
_PING_WAIT_S = 0.5  # for the workers' answers to one of those checks' pings
# A worker silent this long mid-run is lost: its chunks are sent again (a live worker taken for
# lost costs one chunk's work twice, never a wrong count).
_WORKER_LOST_S = 5.0
_WORKERS_LOST_S = 10.0  # no worker answering this long mid-run: the count fails
_BROKER_LOST_S = 10.0  # the broker or result store failing this long mid-run: the count fails
_RETRY_S = 0.25  # between two tries to reach a failing broker
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
        self._servers: dict[str, Any] = {}  # the app's Redis servers, for a count's checks
        self._ids: dict[str, str] | None = None  # their run ids when a worker last answered

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
                self._servers = _servers()
            return self._app

    def servers(self) -> dict[str, Any]:
        """redis-py clients of the broker (when it is Redis) and the result store, made with the
        app: short timeouts and no retries, for a running count's checks."""
        with self._lock:
            return self._servers

    def run_ids(self) -> dict[str, str]:
        """The servers' run ids when a worker last answered (asked now if not known)."""
        ids = self._ids
        return ids if ids is not None else _run_ids(self.servers())

    def _drop(self) -> None:
        """Forget the app and what the workers said (after an error, or when the URLs change)."""
        app, self._app, self._workers, self._ids = self._app, None, None, None
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
                app = self._ping(app)
            except BackendUnavailable:
                self.close()  # a new app next time: Celery's may be stuck reconnecting
                raise
            if app is None:
                raise BackendUnavailable(
                    f"no Celery worker consumes partally's queue {worker_side.QUEUE!r} on "
                    f"{_shown(broker)} (none answered within {sum(_PING_S):g} s): {_FIX}"
                )
        return app

    def _ping(self, app: Any) -> Any:
        """The app, once a worker of partally's app answers its ping (its remote control is
        partally's own), asked up to ``len(_PING_S)`` times, longer each time; None if none
        answers. After a first ping that fails or goes unanswered the rest go through a new app:
        the old one's connection may predate a broker restart (its reply queue declared on a
        server that forgot it). ``BackendUnavailable`` when the broker fails the last ping."""
        for attempt, wait in enumerate(_PING_S):
            try:
                if app.control.ping(timeout=wait, limit=1):
                    self._ids = _run_ids(self.servers())  # what a count's checks compare with
                    self._alive_at = time.monotonic()
                    return app
            except Exception as exc:
                if attempt == len(_PING_S) - 1:
                    raise _unreachable(celery_broker_url() or "", "broker", str(exc)) from exc
            if attempt == 0:
                app = self._renewed(app)
        return None

    def _renewed(self, stale: Any) -> Any:
        """A new app in place of ``stale`` (unless another thread already made one)."""
        with self._lock:
            if self._app is stale:
                self._drop()
        return self._current_app()

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
        workers = self._stats(app)
        try:
            return _CeleryTasks(self, app, workers)
        except _broker_errors() as exc:
            raise _unreachable(celery_broker_url() or "", "broker", str(exc)) from exc

    def close(self) -> None:
        with self._lock:
            self._drop()

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._app, self._urls, self._workers = None, None, None  # its sockets are the parent's
        self._servers, self._ids = {}, None
        self._alive_at = -float("inf")


@dataclass(eq=False)
class _Copy:
    """One task sent for a chunk: Celery's handle, and whether it is given up (its worker or the
    broker's queue lost it; a copy given up that finishes after all still counts)."""

    sent: Any  # celery.result.AsyncResult
    dead: bool = False

    @property
    def id(self) -> str:
        return self.sent.id


@dataclass(eq=False)
class _Chunk:
    """One chunk of a count: its range, its workload and the tasks sent for it (a chunk whose
    copies are all given up is sent again); the first copy to finish gives its result."""

    lo: int
    hi: int
    workload: str
    payload: bytes
    seed: int
    copies: list[_Copy] = field(default_factory=list)
    lost: int = 0  # copies lost with the worker that ran them
    meta: dict | None = None  # the finished copy's result, as the result store holds it
    winner: str | None = None  # that copy's task id

    @property
    def where(self) -> str:
        return f"chunk [{self.lo}, {self.hi}) of workload {self.workload!r}"


def _broker_errors() -> tuple[type[BaseException], ...]:
    """What the broker's and result store's clients raise when their server is gone (Celery's
    own "retry limit exceeded" is a RuntimeError)."""
    from kombu.exceptions import KombuError
    from redis.exceptions import RedisError

    return (OSError, RuntimeError, RedisError, KombuError)


class _CeleryTasks:
    """One count's chunks as Celery tasks (the cluster adapter of ``_cluster.run_tasks``), kept
    going through the faults of a cluster:

    - a worker that has not answered a ping for ``_WORKER_LOST_S`` is lost: each chunk it started
      (``partally.celery.WORKER_KEY``) or held unstarted is sent again at once, rather than after
      the broker's visibility timeout; whichever copy finishes first is merged, the others are
      revoked. A chunk lost with its worker ``MAX_ATTEMPTS`` times fails the count;
    - the broker or result store failing: the count waits for it, and fails after
      ``_BROKER_LOST_S``; a Redis that restarted (its run id changed) has lost the queue and the
      results, so every unfinished chunk is sent again, on a new app (Celery's has stale
      connections and declarations);
    - no worker answering for ``_WORKERS_LOST_S``: the count fails.

    Failures are ``BackendFailed``, with the cause chained."""

    def __init__(self, backend: CeleryBackend, app: Any, workers: dict[str, int]) -> None:
        self.backend, self.app = backend, app
        self.processes = sum(workers.values())
        self.payload: tuple[Workload, bytes] | None = None
        now = time.monotonic()
        self.seen = {name: now for name in workers if "@" in name}  # worker -> last answer
        self.lost_workers: set[str] = set()
        self.silent_since: float | None = None  # when the workers last all stopped answering
        self.failing_since: float | None = None  # when the broker or result store began to fail
        self.error: BaseException | None = None  # their last error
        self.loss: BaseException | None = None  # the last error of a copy given up
        self.checked_at = now
        self.servers = backend.servers()
        self.ids = backend.run_ids()
        self.gone = False  # the count failed: nothing to revoke or forget

    @property
    def store(self) -> Any:
        return self.app.backend  # the Redis result store

    def cpus(self) -> int:
        return max(1, self.processes)

    def submit(self, workload: Workload, lo: int, hi: int, seed: int) -> _Chunk:
        if self.payload is None or self.payload[0] is not workload:
            self.payload = (workload, pickle.dumps(workload))
        chunk = _Chunk(lo, hi, workload.name, self.payload[1], seed)
        if self.failing_since is None:
            try:
                self._send(chunk)
            except _broker_errors() as exc:  # sent once the broker answers again
                self._failing(exc)
        return chunk

    def _send(self, chunk: _Chunk) -> None:
        from partally import celery as worker_side

        sent = self.app.send_task("partally.chunk", args=(chunk.payload, chunk.lo, chunk.hi,
                                                         chunk.seed),
                                  expires=worker_side.EXPIRES_S)
        chunk.copies.append(_Copy(sent))

    # --- waiting ------------------------------------------------------------------------------

    def wait(self, chunks: list[_Chunk]) -> tuple[list[_Chunk], list[_Chunk]]:
        """The finished chunks, after Celery's own wait for the first one (woken by the result
        store's pub/sub message, never Celery's default 0.5 s poll) for at most ``_POLL_S``; all
        of them are read in one MGET. Every ``_CHECK_S`` the workers and servers are checked,
        and chunks that lost every copy are sent again."""
        done: list[_Chunk] = []
        rest = chunks
        try:
            if self.failing_since is not None and not self._recovered(chunks):
                return [], chunks
            self._sleep_on(chunks)
            done, rest = self._split(chunks)
            if time.monotonic() - self.checked_at >= _CHECK_S:
                self._check(rest)
            self._refill(rest)
        except BackendFailed:
            raise
        except _broker_errors() as exc:
            self._failing(exc)
            time.sleep(_RETRY_S)  # a broker that answers but fails each call: not a busy loop
        else:
            self.failing_since = self.error = None
        return done, rest

    def _sleep_on(self, chunks: list[_Chunk]) -> None:
        from celery.exceptions import TimeoutError as Silent

        sent = next((chunk.copies[-1].sent for chunk in chunks if chunk.copies), None)
        if sent is None:
            return
        try:
            sent.get(timeout=_POLL_S, interval=0.005, propagate=False,
                     disable_sync_subtasks=False)
        except Silent:
            pass

    def _split(self, chunks: list[_Chunk]) -> tuple[list[_Chunk], list[_Chunk]]:
        """(finished, unfinished): a chunk is finished once any copy is; a copy that failed on a
        lost connection is given up."""
        copies = [(chunk, copy) for chunk in chunks for copy in chunk.copies]
        raws = self.store.client.mget([self.store.get_key_for_task(copy.id)
                                       for _, copy in copies]) if copies else []
        for (chunk, copy), raw in zip(copies, raws):
            meta = None if raw is None else self.store.decode_result(raw)
            if chunk.meta is not None or meta is None:
                continue
            if meta.get("status") == "FAILURE" and _disconnected(meta.get("result")):
                if not copy.dead:
                    copy.dead, chunk.lost = True, chunk.lost + 1
                    self.loss = meta.get("result")
            elif meta.get("status") in ("SUCCESS", "FAILURE", "REVOKED"):
                chunk.meta, chunk.winner = meta, copy.id
        done = [chunk for chunk in chunks if chunk.meta is not None]
        duplicates = [copy.id for chunk in done for copy in chunk.copies if copy.id != chunk.winner]
        if duplicates:
            self._revoke(duplicates)
        return done, [chunk for chunk in chunks if chunk.meta is None]

    def _refill(self, chunks: list[_Chunk]) -> None:
        """Send again each chunk whose copies were all given up."""
        from partally import celery as worker_side

        for chunk in chunks:
            if all(copy.dead for copy in chunk.copies):
                if chunk.lost >= worker_side.MAX_ATTEMPTS:
                    raise self._failed(
                        f"{chunk.where} was lost {chunk.lost} times with the worker that ran it "
                        "(the worker died or stopped answering each time)", self.loss)
                self._send(chunk)

    # --- checking the workers and the servers ----------------------------------------------

    def _check(self, chunks: list[_Chunk]) -> None:
        """A restarted Redis, then lost workers, once every ``_CHECK_S``."""
        now = self.checked_at = time.monotonic()
        ids = _run_ids(self.servers)
        if ids != self.ids:
            self._restarted(chunks, ids)
            return
        known = [name for name in self.seen if name not in self.lost_workers]
        replies = self.app.control.ping(timeout=_PING_WAIT_S, limit=len(known) or None)
        for name in (name for reply in replies for name in reply):
            self.seen[name] = now
            self.lost_workers.discard(name)  # it was only slow to answer: its copies still count
        if replies:
            self.silent_since = None
            self.backend._alive_at = now  # noqa: SLF001 - what the next count's check reads
        else:
            self.silent_since = now if self.silent_since is None else self.silent_since
            if now - self.silent_since >= _WORKERS_LOST_S:
                raise self._failed(f"no worker has answered for {_WORKERS_LOST_S:g} s", None)
        lost = {name for name, at in self.seen.items()
                if now - at >= _WORKER_LOST_S and name not in self.lost_workers}
        if lost:
            self.lost_workers |= lost
            self._give_up_on(chunks, lost)

    def _give_up_on(self, chunks: list[_Chunk], workers: set[str]) -> None:
        """Give up the copies that ``workers`` started (their ``WORKER_KEY``) or held before
        starting them (out of the broker's queue, not started: Redis brokers only)."""
        from partally import celery as worker_side

        copies = [(chunk, copy) for chunk in chunks for copy in chunk.copies if not copy.dead]
        if not copies:
            return
        started = self.store.client.mget([f"{worker_side.WORKER_KEY}{copy.id}"
                                          for _, copy in copies])
        queued = self._queued()
        for (chunk, copy), host in zip(copies, started):
            if queued is not None and copy.id in queued:
                continue  # back in the queue (its pool process died): any worker takes it
            name = host.decode(errors="replace") if host is not None else None
            if name in workers or (name is None and queued is not None):
                copy.dead, chunk.lost = True, chunk.lost + 1

    def _queued(self) -> set[str] | None:
        """The ids of the tasks in partally's queue on a Redis broker (None for other brokers)."""
        from partally import celery as worker_side

        client = self.servers.get("broker")
        if client is None:
            return None
        ids = set()
        for raw in client.lrange(worker_side.QUEUE, 0, -1):
            try:
                ids.add(json.loads(raw)["headers"]["id"])
            except (ValueError, KeyError, TypeError):
                continue
        return ids

    def _restarted(self, chunks: list[_Chunk], ids: dict[str, str]) -> None:
        """A Redis restarted: every unfinished chunk is sent again, through a new app."""
        self.ids = ids
        for chunk in chunks:
            for copy in chunk.copies:
                copy.dead = True  # the queue and the results are gone; a running copy may finish
        self._renew(chunks)

    # --- a broker or result store that fails ----------------------------------------------

    def _failing(self, exc: BaseException) -> None:
        """Note that the broker or result store failed; ``BackendFailed`` once it has failed for
        ``_BROKER_LOST_S``."""
        now = time.monotonic()
        self.failing_since = now if self.failing_since is None else self.failing_since
        self.error = exc
        if now - self.failing_since >= _BROKER_LOST_S:
            raise self._failed(
                f"the broker or result store has failed for {_BROKER_LOST_S:g} s", exc) from exc

    def _recovered(self, chunks: list[_Chunk]) -> bool:
        """Whether the broker and result store answer again (then on a new app, every chunk sent
        again if a Redis restarted); False after a short sleep if not; ``BackendFailed`` once
        they have failed for ``_BROKER_LOST_S``."""
        try:
            _probe(celery_broker_url() or "", "broker")
            _probe(celery_result_url() or "", "result store")
            ids = _run_ids(self.servers)
        except (BackendUnavailable, *_broker_errors()) as exc:
            self._failing(exc)
            time.sleep(_RETRY_S)
            return False
        if ids != self.ids:
            self._restarted(chunks, ids)
        else:
            self._renew(chunks)
        return True

    def _renew(self, chunks: list[_Chunk]) -> None:
        """A new app, with the copies' handles moved onto it (the old one's sockets are stale,
        its queues declared on a server that may have forgotten them)."""
        now = time.monotonic()
        self.seen = dict.fromkeys(self.seen, now)  # the workers reconnect too: give them time
        self.silent_since, self.checked_at = None, now
        old, self.app = self.app, self.backend._renewed(self.app)  # noqa: SLF001
        self.servers = self.backend.servers()
        if self.app is old:
            return
        for chunk in chunks:
            for copy in chunk.copies:
                copy.sent.backend = None  # its __del__ would unsubscribe on the closed app
                copy.sent = self.app.AsyncResult(copy.id)

    def _failed(self, why: str, exc: BaseException | None) -> BackendFailed:
        self.gone = True  # nothing to revoke or forget on a cluster that is gone
        self.backend.close()  # the next call starts on a new app
        broker = _shown(celery_broker_url() or "")
        cause = f" ({' '.join(str(exc).split())})" if exc is not None else ""
        failed = BackendFailed(
            f"lost the Celery cluster on {broker} mid-run: {why}{cause}; the run was not "
            f"finished. Check the broker and the workers (`celery -A partally.celery inspect "
            "ping`), and run again"
        )
        failed.__cause__ = exc if isinstance(exc, BaseException) else None
        return failed

    # --- results, cancelling, forgetting -----------------------------------------------------

    def result(self, chunk: _Chunk) -> Any:
        meta = chunk.meta or {}
        if meta.get("status") == "REVOKED":
            raise BackendFailed(f"{chunk.where} was revoked on its Celery worker (it expired in "
                                "the queue, or another client revoked it)")
        if meta.get("status") == "FAILURE":
            error = meta.get("result")
            said = (f"{type(error).__name__}: {error}" if isinstance(error, BaseException)
                    else f"{(error or {}).get('exc_type', 'error')}: "
                         f"{json.dumps((error or {}).get('exc_message', ''))}")
            raise BackendFailed(f"{chunk.where} failed on its Celery worker: {said}") from (
                error if isinstance(error, BaseException) else None)
        from partally import celery as worker_side

        value = meta.get("result")
        if isinstance(value, dict) and "partial" in value:
            return worker_side.from_wire(value["partial"])
        if isinstance(value, dict) and value.get("error") == "workload":
            raise _rebuilt(value["message"], value["workload"], value["index"], value["where"],
                           value.get("frame"))
        if isinstance(value, dict) and value.get("error") == "lost":
            raise BackendFailed(
                f"{chunk.where} was started {value.get('attempts')} times and each time its "
                "Celery worker process died (killed by a signal, or out of memory); gave up "
                f"after {worker_side.MAX_ATTEMPTS} attempts"
            )
        raise BackendFailed(f"{chunk.where}: its worker answered {value!r:.200}, which is no "
                            "partial (a worker of another partally version?)")

    def _revoke(self, ids: list[str]) -> None:
        """Revoke these tasks where still queued (never ``terminate=True``: a pool process may
        already run another's task); never raises."""
        try:
            self.app.control.revoke(ids)
        except Exception:  # noqa: BLE001 - the broker went meanwhile; they expire by themselves
            pass

    def cancel(self, chunks: list[_Chunk]) -> None:
        """Revoke every copy of these chunks still queued; a running one finishes."""
        if self.gone or self.failing_since is not None or not self._reachable():
            return  # the broker is gone: nothing to revoke on
        self._revoke([copy.id for chunk in chunks for copy in chunk.copies])

    def _reachable(self) -> bool:
        """Whether the broker and result store answer now (within seconds: Celery's own
        client would retry a dead broker for minutes)."""
        try:
            _probe(celery_broker_url() or "", "broker")
            _probe(celery_result_url() or "", "result store")
        except BackendUnavailable:
            return False
        return True

    def release(self, chunks: Iterable[_Chunk]) -> None:
        """Delete the results, attempt counters and worker names of every copy of these chunks,
        and stop listening for them."""
        from partally import celery as worker_side

        ids = [copy.id for chunk in chunks for copy in chunk.copies]
        if not ids or self.gone:
            return
        try:
            keys = [self.store.get_key_for_task(task) for task in ids]
            keys += [f"{prefix}{task}" for task in ids
                     for prefix in (worker_side.ATTEMPTS_KEY, worker_side.WORKER_KEY)]
            self.store.client.delete(*keys)
            for task in ids:
                self.store.result_consumer.cancel_for(task)
        except Exception:  # noqa: BLE001 - the store is gone; results expire by themselves
            pass


def _servers() -> dict[str, Any]:
    """A redis-py client for the broker (when it is Redis) and the result store: with short
    timeouts and no retries, for the checks."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    urls = {"store": celery_result_url() or ""}
    broker = celery_broker_url() or ""
    if broker.split("://", 1)[0] in ("redis", "rediss"):
        urls["broker"] = broker
    return {what: redis.Redis.from_url(url, socket_timeout=_PROBE_S,
                                      socket_connect_timeout=_PROBE_S,
                                      retry=Retry(NoBackoff(), 0))
            for what, url in urls.items()}


def _run_ids(servers: dict[str, Any]) -> dict[str, str]:
    """Each Redis server's run id: a new one when it restarted (and lost what it held); ""
    where the server does not say (INFO denied to this user)."""
    from redis.exceptions import ResponseError

    ids = {}
    for what, client in servers.items():
        try:
            ids[what] = str(client.info("server").get("run_id", ""))
        except ResponseError:
            ids[what] = ""
    return ids


def _disconnected(error: Any) -> bool:
    """Whether a task's error is its worker losing the broker or result store (not the chunk's
    fault: it is sent again)."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as Disconnected
    from redis.exceptions import TimeoutError as Silent

    return isinstance(error, (Disconnected, Silent, OperationalError, ConnectionError))
