"""``ray``: the range cut into chunks, one Ray task per chunk, on a cluster or a local Ray.

With ``RAY_ADDRESS`` set, partally connects to that cluster (``host:port``, ``ray://host:port`` or
``auto``); otherwise it starts a local Ray once per process, keeps it for later calls and shuts it
down at exit. A Ray that the caller started with ``ray.init()`` is used as it is and left running.

Each task asks for one CPU and runs the fastest CPU kernel its worker has (numba, else native,
else the Python loop) on one thread: Ray places exactly one task per CPU, so nothing is
oversubscribed. Every node needs partally installed (``pip install "partally[ray]"``).

Chunks are a few per CPU (slack for uneven chunks, slower nodes and retries) and never so short
that Ray's ~1 ms cost per task shows. ``workers`` caps the tasks running at once. A task whose
worker dies is run again (``max_retries``); Ctrl-C cancels the tasks and returns nothing. A head
(GCS) that stops answering for ``_HEAD_LOST_S`` mid-run ends the count with a RuntimeError that
says so (Ray itself would wait a minute and then end the whole process).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from partally._errors import BackendFailed, BackendUnavailable, WorkloadError
from partally._machine import cpu_device
from partally._settings import text
from partally.backends._cluster import ClusterBackend, run_chunk, worker_kernel
from partally.workloads import Workload

_MAX_RETRIES = 3  # per task, when its worker or node dies
_CONNECT_TIMEOUT_S = 3.0  # for the TCP probe of RAY_ADDRESS
_CONNECT_WINDOW_ENV, _CONNECT_WINDOW_S = "RAY_gcs_server_port_wait_time_s", 3  # Ray's own retries
_POLL_S = 1.0  # how often a running count checks that the head still answers
_HEAD_LOST_S = 10.0  # a head silent this long is gone (a restarting GCS is back well within it)

# HTTP/2's client connection preface and an empty SETTINGS frame; the server's first frame type.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 0x04

_lock = threading.Lock()
_started_here = False  # whether this process started the Ray it is connected to


def _address() -> str | None:
    return text("RAY_ADDRESS")


def unavailable() -> str | None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return 'ray is not installed; install it with `pip install "partally[ray]"`'
    return None


def device() -> str:
    """What the tasks run on, e.g. ``Ray cluster at 10.0.0.5:6379: 4 nodes, 64 CPUs``; never raises.

    Connected: the cluster's alive nodes and CPUs. Not connected, with RAY_ADDRESS set: asked of
    its head (GCS) directly, within seconds, without joining as a driver; if that fails, what it
    will connect to and why it could not ask now. Without RAY_ADDRESS: the local Ray it will start.
    """
    address = _address()
    where = f"Ray cluster at {address}" if address is not None else f"local Ray on {cpu_device()}"
    try:
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            if address is None and not _started_here:  # the caller's own ray.init()
                where = f"Ray cluster at {ray.get_runtime_context().gcs_address}"
            alive = [node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]]
            return f"{where}: {_size(alive)}"
        if address is None:
            return where  # started on first use
        if address.startswith("ray://"):
            return f"{where} (Ray Client; not connected yet)"
        return f"{where}: {_size(_ask_within(_alive_cpus, address, 2 * _CONNECT_TIMEOUT_S))}"
    except Exception as exc:  # noqa: BLE001 - a description, never an error
        why = _root_cause(exc)
        why = why if len(why) <= 160 else why[:157] + "..."
        return f"{where} (not connected yet; cannot ask it now: {why})"


def _size(cpus_per_node: list[float]) -> str:
    nodes, cpus = len(cpus_per_node), int(sum(cpus_per_node))
    return f"{nodes} node{'s' * (nodes != 1)}, {cpus} CPU{'s' * (cpus != 1)}"


def _ask_within(function: Any, argument: str, seconds: float) -> Any:
    """``function(argument)``, or TimeoutError after ``seconds`` (Ray's GCS client, given a
    server that answers but is not a Ray head, retries for ~40 s): on a daemon thread."""
    answer: dict[str, Any] = {}

    def ask() -> None:
        try:
            answer["value"] = function(argument)
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            answer["error"] = exc

    thread = threading.Thread(target=ask, name="partally-ray-device", daemon=True)
    thread.start()
    thread.join(seconds)
    if "error" in answer:
        raise answer["error"]
    if "value" not in answer:
        raise TimeoutError(f"no answer within {seconds:g} s")
    return answer["value"]


def _alive_cpus(address: str) -> list[float]:
    """The CPUs of each alive node of the cluster at ``address``, from its GCS, within seconds."""
    _probe(address)  # fails in seconds where Ray's own client would retry for a minute
    from ray._raylet import GcsClient  # private, but reading the node table needs no driver
    from ray.core.generated.gcs_pb2 import GcsNodeInfo

    target = _resolve_auto() if address == "auto" else address
    infos = GcsClient(address=target).get_all_node_info(timeout=_CONNECT_TIMEOUT_S)
    return [
        dict(info.resources_total).get("CPU", 0)
        for info in infos.values()
        if info.state == GcsNodeInfo.GcsNodeState.ALIVE
    ]


# --- on the worker -----------------------------------------------------------------------------


def _count_chunk(workload: Workload, lo: int, hi: int, seed: int, *args: Any) -> int:
    """One task (named so in Ray's process titles): the shared task body, over the call's args
    (Ray gives each array as a read-only view of its object store: no copy)."""
    return run_chunk(workload, lo, hi, seed, args)


def _worker_info() -> tuple[str, int]:
    """Which kernel a worker runs, and its process id (for ``partally info`` and the tests)."""
    return worker_kernel(), os.getpid()


# --- on the driver -----------------------------------------------------------------------------


def _unreachable(address: str, why: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"cannot reach the Ray cluster at RAY_ADDRESS={address!r} ({why}); check that "
        "`ray start --head` runs there and the port is open, or unset RAY_ADDRESS for a local Ray"
    )


def _resolve_auto() -> str:
    from ray._private import services  # private, but the only way to see where "auto" points

    try:
        target = services.canonicalize_bootstrap_address("auto")
    except Exception as exc:  # noqa: BLE001 - whatever Ray says, the user's fix is the same
        target, why = None, f" ({exc})"
    else:
        why = ""
    if not target:
        raise BackendUnavailable(
            f"RAY_ADDRESS=auto, but no running Ray cluster was found here{why}; "
            "start one with `ray start --head` or unset RAY_ADDRESS for a local Ray"
        )
    return target


def _probe(address: str) -> None:
    """Fail within seconds unless a gRPC server answers at ``address``.

    ``ray.init`` retries an unreachable address for a minute or more, and waits on a port that
    accepts but never answers for longer still. A Ray head (GCS or Ray Client server) speaks gRPC:
    it answers HTTP/2's connection preface with a SETTINGS frame at once.
    """
    target = _resolve_auto() if address == "auto" else address
    host, sep, port = target.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        return  # not host:port: let Ray parse it and say what is wrong
    try:
        with socket.create_connection((host.strip("[]"), int(port)), _CONNECT_TIMEOUT_S) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # TLS first: the plain-text check below does not apply
            sock.sendall(_H2_PREFACE)
            header = b""
            while len(header) < 9:  # the first frame's header
                data = sock.recv(9 - len(header))
                if not data:
                    raise _unreachable(address, "the server there closed the connection")
                header += data
    except TimeoutError as exc:
        raise _unreachable(address, f"no answer within {_CONNECT_TIMEOUT_S:g} s") from exc
    except OSError as exc:
        raise _unreachable(address, str(exc)) from exc
    if header[3] != _H2_SETTINGS:
        raise _unreachable(address, "the server there does not speak gRPC")


def _root_cause(exc: BaseException) -> str:
    """The innermost error's last line: Ray wraps e.g. a missing auth token in two layers."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:500] if lines else type(exc).__name__


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
            # Something answers there; if it is not a Ray head, Ray retries for ~20 s. Ray's own
            # knob for that window (read at connect time), unless the user set it.
            saved = os.environ.get(_CONNECT_WINDOW_ENV)
            os.environ.setdefault(_CONNECT_WINDOW_ENV, str(_CONNECT_WINDOW_S))
            try:
                ray.init(address=address, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BackendUnavailable(
                    f"cannot connect to the Ray cluster at RAY_ADDRESS={address!r}: "
                    f"{_root_cause(exc)}"
                ) from exc
            finally:
                if saved is None:
                    os.environ.pop(_CONNECT_WINDOW_ENV, None)
        return ray


def shutdown(*, ours_only: bool = True) -> None:
    """Stop the local Ray this process started (nothing if it connected to someone else's);
    ``ours_only=False``: disconnect whatever it is connected to (a cluster whose head is gone),
    so that the next call connects afresh."""
    global _started_here
    with _lock:
        if ours_only and not _started_here:
            return
        _started_here = False
        _remote.cache_clear()
        import ray

        ray.shutdown()


def _cluster_cpus(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


@functools.cache
def _remote(ray: Any) -> tuple[Any, Any]:
    # SPREAD: Ray's default packs tasks onto the driver's node while its lease queue drains, and
    # then and again left a second node idle for a whole count; chunks want every node.
    options = {"num_cpus": 1, "max_retries": _MAX_RETRIES, "retry_exceptions": False,
               "scheduling_strategy": "SPREAD"}
    return ray.remote(**options)(_count_chunk), ray.remote(num_cpus=1)(_worker_info)


def worker_info() -> tuple[str, int]:
    """Run one task and return (the kernel its worker uses, the worker's process id)."""
    ray = _connect()
    return ray.get(_remote(ray)[1].remote())


class _HeadLost(Exception):
    """The cluster's head (GCS) stopped answering mid-run."""


def _head(ray: Any) -> str | None:
    """The GCS address to watch while a count runs (None for Ray Client, which has none)."""
    if (_address() or "").startswith("ray://"):
        return None
    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - nothing to watch: Ray's own timeouts still apply
        return None


class _HeadWatch:
    """Whether the cluster's head (GCS) still answers, over a whole count."""

    def __init__(self, head: str | None) -> None:
        self.head, self.silent_since = head, None

    def check(self) -> None:
        """Raise ``_HeadLost`` once the head has not answered for ``_HEAD_LOST_S``."""
        if self.head is None:
            return
        try:
            _probe(self.head)
        except BackendUnavailable:
            now = time.monotonic()
            self.silent_since = now if self.silent_since is None else self.silent_since
            if now - self.silent_since >= _HEAD_LOST_S:
                raise _HeadLost(self.head) from None
        else:
            self.silent_since = None


class _RayTasks:
    """One count's chunks as Ray tasks (the cluster adapter of ``_cluster.run_tasks``)."""

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self.task = _remote(ray)[0]
        self.watch = _HeadWatch(_head(ray))
        self.lost = False
        self.sent: tuple[Workload, Workload, tuple[Any, ...]] | None = None  # this call's data

    def cpus(self) -> int:
        return _cluster_cpus(self.ray)

    def submit(self, workload: Workload, lo: int, hi: int, seed: int) -> Any:
        if not workload.args:
            return self.task.remote(workload, lo, hi, seed)
        if self.sent is None or self.sent[0] is not workload:  # one ray.put per array per call
            refs = tuple(
                self.ray.put(value) if hasattr(value, "dtype") else value for value in workload.args
            )
            self.sent = (workload, workload.bare(), refs)
        return self.task.remote(self.sent[1], lo, hi, seed, *self.sent[2])

    def wait(self, refs: list[Any]) -> tuple[list[Any], list[Any]]:
        """Some finished tasks, checking every ``_POLL_S`` that the head still answers: a driver
        whose GCS is gone would otherwise block for a minute, and then Ray ends the process."""
        done, rest = self.ray.wait(refs, num_returns=1, timeout=_POLL_S)
        if not done:
            try:
                self.watch.check()
            except _HeadLost:
                self.lost = True  # nothing to cancel: the cluster that ran them is gone
                head = self.watch.head
                where = _address() or head
                shutdown(ours_only=False)
                raise BackendFailed(
                    f"lost the Ray cluster at {where} mid-run: its head (GCS at {head}) has not "
                    f"answered for {_HEAD_LOST_S:g} s; the count was not finished. Check the head "
                    "node (`ray status`), restart it if needed (`ray start --head`), and run again"
                ) from None
        return done, rest

    def result(self, ref: Any) -> int:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, WorkloadError):  # the user's function raised: say only that
                raise exc.cause from None
            raise  # the kernel's own error, re-raised as its own type too
        except self.ray.exceptions.RayError as exc:
            raise BackendFailed(
                f"a Ray task of the 'ray' backend failed after {_MAX_RETRIES} retries: {exc}"
            ) from exc

    def cancel(self, refs: list[Any]) -> None:
        if not self.lost:  # Ctrl-C or an error: nothing left running
            for ref in refs:
                self.ray.cancel(ref)

    def release(self, refs: Iterable[Any]) -> None:
        """Nothing to do: Ray frees a result once no reference to it is left."""


class RayBackend(ClusterBackend):
    name = "ray"
    args_travel = "one ray.put per array per call; tasks take the reference (no copy per task)"
    setting = "RAY_ADDRESS"

    def unavailable(self) -> str | None:
        """Why ray cannot run now: not installed, or RAY_ADDRESS names a server that is not a
        reachable Ray head (checked within seconds, until this process has connected)."""
        return unavailable() or (self.unreachable() if self.configured() else None)

    def unreachable(self) -> str | None:
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            return None
        try:
            _probe(_address() or "")
        except BackendUnavailable as exc:
            return str(exc)
        return None

    def device(self) -> str:
        if unavailable() is not None:
            return "none: ray is not installed"
        return device()

    @property
    def started(self) -> bool:
        ray = sys.modules.get("ray")
        return ray is not None and ray.is_initialized()

    def connect(self) -> _RayTasks:
        return _RayTasks(_connect())

    def close(self) -> None:
        shutdown()
