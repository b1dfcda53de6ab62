"""``ray``: the range cut into chunks, one Ray task per chunk, on a cluster or a local Ray.

With ``RAY_ADDRESS`` set, partally connects to that cluster (``host:port``, ``ray://host:port`` or
``auto``); otherwise it starts a local Ray once per process, keeps it for later calls and shuts it
down at exit. A Ray that the caller started with ``ray.init()`` is used as it is and left running.

Each task asks for one CPU and runs the fastest CPU kernel its worker has (numba, else native,
else the Python loop) on one thread: Ray places exactly one task per CPU, so nothing is
oversubscribed. Every node needs partally installed (``pip install "partally[ray]"``).

Chunks are a few per CPU (slack for uneven chunks, slower nodes and retries) and never so short
that Ray's ~1 ms cost per task shows. ``workers`` caps the tasks running at once. A task whose
worker dies is run again (``max_retries``); Ctrl-C cancels the tasks and returns nothing.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import socket
import threading
from typing import Any

from partally._errors import BackendUnavailable
from partally.backends import get as get_backend
from partally.backends._common import cpu_device, split_range

NAME = "ray"
PARALLEL = True
_TASKS_PER_CPU = 4
# Shortest chunk worth a task: about 10 ms of single-core numba (pi ~1e9/s, primes ~1e7/s).
# `count` folds to `hi - lo` in compiled code: one task does it all.
_MIN_CHUNK = {"count": 2**62, "primes": 2**17, "pi": 2**24}
_MAX_RETRIES = 3  # per task, when its worker or node dies
_CONNECT_TIMEOUT_S = 3.0
_KERNELS = ("numba", "native", "python")  # the order a worker tries them in

_lock = threading.Lock()
_started_here = False  # whether this process started the Ray it is connected to


def _address() -> str | None:
    return os.environ.get("RAY_ADDRESS", "").strip() or None


def unavailable() -> str | None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return 'ray is not installed; install it with `pip install "partally[ray]"`'
    return None


def device() -> str:
    address = _address()
    if address is not None:
        return f"Ray cluster at {address}"
    return f"local Ray on {cpu_device()}"


# --- on the worker -----------------------------------------------------------------------------


@functools.cache
def _worker_kernel() -> str:
    """The fastest CPU backend available in this (worker) process."""
    for name in _KERNELS:
        if get_backend(name).unavailable() is None:
            return name
    return "python"


def _count_chunk(workload: str, lo: int, hi: int, seed: int) -> int:
    """One task: count [lo, hi) on this worker's fastest kernel, on one thread."""
    return get_backend(_worker_kernel()).count(workload, lo, hi, workers=1, seed=seed)


def _worker_info() -> tuple[str, int]:
    """Which kernel a worker runs, and its process id (for ``partally info`` and the tests)."""
    return _worker_kernel(), os.getpid()


# --- on the driver -----------------------------------------------------------------------------


def _probe(address: str) -> None:
    """Fail fast if nothing listens at ``address``: ``ray.init`` would retry for a minute or more."""
    target = address
    if target == "auto":
        from ray._private import services  # private, but the only way to see where "auto" points

        try:
            target = services.canonicalize_bootstrap_address(target)
        except Exception as exc:  # noqa: BLE001 - whatever Ray says, the user's fix is the same
            raise BackendUnavailable(
                f"RAY_ADDRESS=auto, but no running Ray cluster was found here ({exc}); "
                "start one with `ray start --head` or unset RAY_ADDRESS for a local Ray"
            ) from exc
        if not target:
            raise BackendUnavailable(
                "RAY_ADDRESS=auto, but no running Ray cluster was found here; "
                "start one with `ray start --head` or unset RAY_ADDRESS for a local Ray"
            )
    target = target.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # not host:port: let Ray parse it and say what is wrong
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise BackendUnavailable(
            f"cannot reach the Ray cluster at RAY_ADDRESS={address!r} ({exc}); check that "
            "`ray start --head` runs there and the port is open, or unset RAY_ADDRESS for a "
            "local Ray"
        ) from exc


def _connect() -> Any:
    """The ``ray`` module, connected: to RAY_ADDRESS, to the caller's Ray, or to a local one."""
    global _started_here
    import ray

    with _lock:
        if ray.is_initialized():
            return ray
        address = _address()
        options: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": False,
        }
        if address is None:
            # "local": a new Ray of our own, even if `ray start` left one running on this machine.
            ray.init(address="local", **options)
            _started_here = True
            atexit.register(shutdown)
        else:
            _probe(address)
            try:
                ray.init(address=address, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BackendUnavailable(
                    f"cannot connect to the Ray cluster at RAY_ADDRESS={address!r}: {exc}"
                ) from exc
        return ray


def shutdown() -> None:
    """Stop the local Ray this process started (nothing if it connected to someone else's)."""
    global _started_here
    with _lock:
        if not _started_here:
            return
        _started_here = False
        import ray

        ray.shutdown()


def _cluster_cpus(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


@functools.cache
def _remote(ray: Any) -> tuple[Any, Any]:
    options = {"num_cpus": 1, "max_retries": _MAX_RETRIES, "retry_exceptions": False}
    return ray.remote(**options)(_count_chunk), ray.remote(num_cpus=1)(_worker_info)


def worker_info() -> tuple[str, int]:
    """Run one task and return (the kernel its worker uses, the worker's process id)."""
    ray = _connect()
    return ray.get(_remote(ray)[1].remote())


def plan(workload: str, lo: int, hi: int, cpus: int) -> list[tuple[int, int]]:
    """The chunks [lo, hi) is cut into for ``cpus`` CPUs: a few per CPU, none too short."""
    size = hi - lo
    longest_useful = max(1, size // _MIN_CHUNK[workload])
    return split_range(lo, hi, min(cpus * _TASKS_PER_CPU, longest_useful))


def count(workload: str, lo: int, hi: int, *, workers: int, seed: int) -> int:
    if hi <= lo:
        return 0
    ray = _connect()
    cpus = min(workers, _cluster_cpus(ray))
    pieces = plan(workload, lo, hi, cpus)
    task = _remote(ray)[0]
    pending: list[Any] = []
    total = 0
    try:
        for a, b in pieces:
            if len(pending) >= workers:  # at most `workers` tasks at once
                done, pending = ray.wait(pending, num_returns=1)
                total += sum(ray.get(done))
            pending.append(task.remote(workload, a, b, seed))
        total += sum(ray.get(pending))
        pending = []
    except ray.exceptions.RayTaskError:
        raise  # the kernel's own error, re-raised as its own type too
    except ray.exceptions.RayError as exc:
        raise RuntimeError(
            f"a Ray task of the 'ray' backend failed after {_MAX_RETRIES} retries: {exc}"
        ) from exc
    finally:
        for ref in pending:  # Ctrl-C or an error: nothing left running, no partial sum
            ray.cancel(ref)
    return total
