"""partally's Celery app, for the ``celery`` backend's workers: ``celery -A partally.celery worker``.

Workers take the broker from ``CELERY_BROKER_URL`` (Redis, or RabbitMQ with a Redis result store)
and the result store from ``CELERY_RESULT_BACKEND``, else the same Redis as the broker. partally's
tasks go to a queue of their own (``partally``) and its remote control to an exchange of its own,
so a user's other workers on the same broker neither take them nor answer for them.

One task, ``partally.chunk``: a workload (pickled: built-ins by name, user functions by value)
over [lo, hi), run on the worker's fastest CPU kernel (numba, else native, else Python) on one
thread; it returns that kernel's partial of the workload's reduction, in JSON's terms
(``to_wire``: an int, None, or a named tuple with its type). Reliability settings (measured in
shared/research/celery-kubernetes.md):

- late acks, a reject when the worker process is lost, prefetch 1: a chunk whose pool process
  is killed goes back to the queue at once; one whose whole worker is killed is sent again by
  the driver (below), and its own message comes back after the Redis visibility timeout
  (``PARTALLY_CELERY_VISIBILITY_TIMEOUT``, default 60 s), revoked by then, swept
  every second rather than kombu's 10 s default (a chunk still running then, e.g. compiling a
  kernel for longer than the timeout, is delivered again: counted once, the duplicate wasted);
- each start of a chunk is counted in the result store, with the worker that started it
  (``WORKER_KEY``): a chunk that has already started ``MAX_ATTEMPTS`` times (it keeps killing its
  worker) is not run again, and its result says so; the driver sends a chunk again at once when
  the worker that started it stops answering, rather than wait for the visibility timeout;
- a workload's own error comes back as a small dict that the client turns into ``WorkloadError``
  (Celery's JSON results would lose its fields).

Anyone who can write to the broker can run code on the workers (a user function arrives
pickled): give the broker a password or TLS, and never expose it.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from celery import Celery

from partally._errors import WorkloadError
from partally.workloads.reductions import Extreme, FloatSum
from partally._settings import celery_broker_url, celery_result_url, celery_visibility_timeout

QUEUE = "partally"  # partally's tasks, and no one else's
_PARTIAL_TYPES = (FloatSum, Extreme)  # the named-tuple partials (the others are ints or None)
MAX_ATTEMPTS = 3  # starts of one chunk before it is given up as one that kills its worker
ATTEMPTS_KEY = "partally:attempts:"  # + task id: how often a chunk has started
WORKER_KEY = "partally:worker:"  # + task id: the node name of the worker that started it last
EXPIRES_S = 3600  # results, attempt counters and queued chunks outlive a lost client this long
_GIVE_UP_SOON = {"retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5,
                                  "interval_max": 1}}
# The driver's sockets: a broker or result store that stops answering is an error within seconds
# (redis-py and kombu would wait forever on a connection whose server is gone).
_SOCKET_S = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}


def make_app(client: bool = False) -> Celery:
    """partally's Celery app, configured from the environment as it is now; ``client``: for the
    ``celery`` backend's driver, which gives up on a lost result store within seconds (a worker
    keeps trying, as Celery does by default)."""
    made = Celery("partally", set_as_current=False)
    sweep = {
        "visibility_timeout": celery_visibility_timeout(),
        "unacked_restore_interval": 1,  # kombu >= 5.7: sweep every second, not every ~100 s
        "unacked_restore_throttle": 1,
    }
    made.conf.update(
        broker_url=celery_broker_url(),
        result_backend=celery_result_url(),
        task_default_queue=QUEUE,
        task_default_exchange=QUEUE,
        task_default_routing_key=QUEUE,
        control_exchange=QUEUE,  # ping, revoke and inspect reach partally's workers only
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={**sweep, **(_SOCKET_S if client else {})},
        result_backend_transport_options={**sweep, **(_GIVE_UP_SOON if client else {})},
        visibility_timeout=sweep["visibility_timeout"],
        result_expires=EXPIRES_S,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    if client:
        made.conf.update(redis_socket_timeout=_SOCKET_S["socket_timeout"],
                         redis_socket_connect_timeout=_SOCKET_S["socket_connect_timeout"],
                         broker_connection_timeout=_SOCKET_S["socket_connect_timeout"])
    made.task(name="partally.chunk", bind=True)(chunk)
    made.task(name="partally.worker_info")(worker_info)
    return made


def chunk(task: Any, payload: bytes, lo: int, hi: int, seed: int) -> dict[str, Any]:
    """One chunk on this worker: ``{"partial": ...}``, the local kernel's partial of the
    workload's reduction over [lo, hi) in JSON's terms (``to_wire``), or ``{"error": ...}``
    (the workload raised, or the chunk kept killing its worker)."""
    from partally.backends._cluster import run_chunk

    attempts = _started(task)
    if attempts > MAX_ATTEMPTS:
        return {"error": "lost", "attempts": attempts - 1}
    workload = pickle.loads(payload)  # noqa: S301 - the broker is trusted (see the docstring)
    try:
        return {"partial": to_wire(run_chunk(workload, lo, hi, seed))}
    except WorkloadError as exc:
        return {"error": "workload", "message": str(exc), "workload": exc.workload,
                "index": exc.index, "where": exc.where, "frame": exc.frame}


def to_wire(partial: Any) -> Any:
    """A partial as JSON carries it: an int or None as it is; a named-tuple partial (FloatSum,
    Extreme) as ``{"type": its name, "fields": [...]}`` (JSON would make it a bare list)."""
    if isinstance(partial, _PARTIAL_TYPES):
        return {"type": type(partial).__name__, "fields": list(partial)}
    return partial


def from_wire(value: Any) -> Any:
    """``to_wire``'s partial back as the reduction's own object; ``ValueError`` for a shape
    that no partial has."""
    if isinstance(value, dict):
        kinds = {kind.__name__: kind for kind in _PARTIAL_TYPES}
        kind = kinds.get(value.get("type"))
        if kind is None or len(value.get("fields", ())) != len(kind._fields):
            raise ValueError(f"not a partial of a partally reduction: {value!r}"[:300])
        return kind(*value["fields"])
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError(f"not a partial of a partally reduction: {value!r}"[:300])


def _started(task: Any) -> int:
    """Count one more start of this chunk in the result store, and name the worker that started
    it (``WORKER_KEY``); how many starts there have been."""
    key = f"{ATTEMPTS_KEY}{task.request.id}"
    client = task.app.backend.client  # the result store's Redis
    with client.pipeline() as pipe:
        pipe.incr(key)
        pipe.expire(key, EXPIRES_S)
        pipe.set(f"{WORKER_KEY}{task.request.id}", task.request.hostname or "", ex=EXPIRES_S)
        return int(pipe.execute()[0])


def worker_info() -> tuple[str, int]:
    """Which kernel this worker runs and its process id (for ``partally info`` and the tests)."""
    from partally.backends._cluster import worker_kernel

    return worker_kernel(), os.getpid()


app = make_app()
