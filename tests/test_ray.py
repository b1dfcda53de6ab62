"""The ``ray`` backend on a local Ray with 2 CPUs: exact counts, faults, fast failure, clean exit."""

import _thread
import dataclasses
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from helpers import start_python

from partally.workloads import BUILTINS, resolve

import partally
from partally.backends import get as get_backend
from partally.backends import _cluster
from partally.backends import ray as ray_module
from reduction_cases import check_every_reduction
from reference import NAMES, PI_3E9_SEED_3, count_range, loop_count

pytestmark = pytest.mark.ray

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason='ray is not installed: pip install ".[ray]"')
needs_proc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
backend = get_backend("ray")
TASK_TITLE = "ray::_count_chunk"  # Ray's process title for a worker running a chunk


def _env(**changes):
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env.update(changes)
    return env


def _run(code, timeout, **env):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=_env(**env)
    )


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the whole module, started here and used by the backend."""
    import ray

    saved = os.environ.pop("RAY_ADDRESS", None)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    backend.count(BUILTINS["pi"], 0, 1000, workers=2, seed=0)  # workers import numba outside any clock
    yield ray
    ray.shutdown()
    if saved is not None:
        os.environ["RAY_ADDRESS"] = saved


def test_unavailable_names_the_extra():
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if ray were not installed\n"
        "import partally\n"
        "from partally.backends import get\n"
        "print(get('ray').unavailable())\n"
        "try:\n"
        "    partally.compute(10, backend='ray')\n"
        "except partally.BackendUnavailable as exc:\n"
        "    print('raised', exc)\n"
    )
    done = _run(code, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 'pip install "partally[ray]"' in done.stdout
    assert "raised backend 'ray' is not available here" in done.stdout


def test_import_partally_does_not_import_ray():
    code = "import sys, partally\npartally.backends()\nprint('ray' in sys.modules)\n"
    done = _run(code, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_plan_covers_the_range_in_a_few_chunks_per_cpu():
    plan = lambda *args: list(_cluster.plan(*args))  # noqa: E731
    assert plan(BUILTINS["pi"], 0, 10**9, 2) == [(k * 125_000_000, (k + 1) * 125_000_000) for k in range(8)]
    assert plan(BUILTINS["pi"], 5, 1000, 16) == [(5, 1000)]  # too short to be worth a second task
    assert plan(BUILTINS["count"], 0, 10**12, 64) == [(0, 10**12)]  # compiled `count` is O(1)
    longest = _cluster.LONGEST * BUILTINS["pi"].task_min  # about a second of one core
    assert max(b - a for a, b in plan(BUILTINS["pi"], 0, 10**12, 2)) <= longest
    assert len(plan(BUILTINS["pi"], 0, 10**12, 2)) == -(-10**12 // longest)
    pieces = plan(BUILTINS["primes"], 3, 10**7 + 3, 3)
    assert pieces[0][0] == 3 and pieces[-1][1] == 10**7 + 3
    assert all(a < b == c for (a, b), (c, _) in zip(pieces, pieces[1:]))
    assert len(pieces) == 3 * 4


@needs_ray
def test_workers_run_the_fastest_kernel(local_ray):
    kernel, _ = ray_module.worker_info()
    assert kernel == "numba"


@needs_ray
@pytest.mark.parametrize("workload", NAMES)
@pytest.mark.parametrize(
    ("lo", "hi", "seed"),
    [(0, 0, 0), (0, 1, 0), (0, 2000, 0), (7, 3001, 12345), (2**32 - 2500, 2**32, 2**64 - 1)],
)
def test_equals_reference(local_ray, workload, lo, hi, seed):
    assert backend.count(resolve(workload), lo, hi, workers=2, seed=seed) == count_range(workload, lo, hi, seed)


@needs_ray
@pytest.mark.parametrize("workload", NAMES)
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_many_small_chunks_equal_reference(local_ray, monkeypatch, workload, workers):
    short = dataclasses.replace(resolve(workload), task_min=7)  # cut even short ranges into 4 per CPU
    in_flight = []
    wait = local_ray.wait

    def spy(refs, **kwargs):
        in_flight.append(len(refs))
        return wait(refs, **kwargs)

    monkeypatch.setattr(local_ray, "wait", spy)
    lo, hi = 2**31 - 1000, 2**31 + 1001
    assert backend.count(short, lo, hi, workers=workers, seed=99) == count_range(workload, lo, hi, 99)
    assert in_flight and max(in_flight) <= workers  # `workers` caps the tasks at once


@needs_ray
@pytest.mark.parametrize(
    ("workload", "n", "expected"),
    [("count", 10**7, 10**7), ("primes", 10**6, 78498), ("primes", 10**7, 664579),
     ("pi", 10**5, 78607), ("pi", 10**6, 785806)],
)
def test_known_values_through_compute(local_ray, workload, n, expected):
    assert partally.compute(n, backend="ray", workload=workload) == expected


@needs_ray
@needs_proc
def test_a_killed_worker_is_retried_and_the_count_stays_exact(local_ray):
    n = 3 * 10**9  # 24 chunks of ~0.1 s on 2 CPUs
    expected = PI_3E9_SEED_3
    result, killed = {}, []

    def run():
        result["count"] = backend.count(BUILTINS["pi"], 0, n, workers=2, seed=3)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 20
    while not killed and time.monotonic() < deadline:
        for pid in _descendants(os.getpid()):
            if _cmdline(pid).startswith(TASK_TITLE):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
        time.sleep(0.01)
    thread.join(timeout=60)
    assert killed, "no worker was seen running a chunk"
    assert not thread.is_alive()
    assert result["count"] == expected


@needs_ray
def test_ctrl_c_cancels_the_tasks(local_ray):
    threading.Timer(0.5, _thread.interrupt_main).start()
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        backend.count(BUILTINS["primes"], 0, 2**32, workers=2, seed=0)  # minutes of work
    assert time.perf_counter() - started < 20  # a hang bound: the count takes minutes
    # the cancelled tasks free their CPUs: a small count is not stuck behind minutes of them
    started = time.perf_counter()
    assert backend.count(BUILTINS["pi"], 0, 10**6, workers=2, seed=0) == 785806
    assert time.perf_counter() - started < 30


@needs_ray
def test_connects_to_the_cluster_in_ray_address(local_ray):
    address = local_ray.get_runtime_context().gcs_address
    code = (
        "import partally, ray\n"
        "from partally.backends import get\n"
        "print(partally.compute(10**6, backend='ray', workload='primes'))\n"
        "print(get('ray').device())\n"
        "print(ray.get_runtime_context().gcs_address)\n"
    )
    done = _run(code, timeout=120, RAY_ADDRESS=address)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["78498", f"Ray cluster at {address}: 1 node, 2 CPUs", address]


@needs_ray
@pytest.mark.parametrize("listener", ["closed port", "silent server"])
def test_unreachable_ray_address_fails_fast(listener):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))  # kept bound: no one else can take the port meanwhile
    port = server.getsockname()[1]
    if listener == "silent server":
        server.listen(8)  # accepts connections (the kernel does) and never answers
    # else: bound but not listening, the kernel refuses connections as for a closed port
    code = (
        "import partally\n"
        "try:\n"
        "    partally.compute(100, backend='ray')\n"
        "except partally.BackendUnavailable as exc:\n"
        "    print(exc)\n"
    )
    started = time.perf_counter()
    try:
        done = _run(code, timeout=60, RAY_ADDRESS=f"127.0.0.1:{port}")
    finally:
        server.close()
    assert time.perf_counter() - started < 15
    assert done.returncode == 0, done.stderr
    assert f"cannot reach the Ray cluster at RAY_ADDRESS='127.0.0.1:{port}'" in done.stdout


@needs_ray
@needs_proc
def test_local_ray_is_started_once_and_gone_after_exit():
    code = (
        "import partally, ray\n"
        "from partally.backends import ray as backend\n"
        "assert partally.compute(10**6, backend='ray', workload='pi') == 785806\n"
        "first = ray.get_runtime_context().gcs_address\n"
        "assert partally.compute(10**6, backend='ray', workload='pi') == 785806\n"
        "print(first == ray.get_runtime_context().gcs_address)\n"
        "print(backend.worker_info()[1])\n"
    )
    process = start_python(code, env=_env())
    seen = set()
    while process.poll() is None:
        seen.update(_descendants(process.pid))
        time.sleep(0.05)
    stdout, stderr = process.communicate()
    assert process.returncode == 0, stderr
    same_ray, worker = stdout.split()
    assert same_ray == "True"  # the second call used the Ray the first one started
    assert int(worker) in seen
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(_gone(pid) for pid in seen):
        time.sleep(0.1)
    assert [pid for pid in seen if not _gone(pid)] == []


def _sevens(i, seed):
    return (i * 7 + seed) % 11 < 3


@needs_ray
def test_a_user_workload_runs_on_ray(local_ray):
    workload = partally.workload(_sevens)
    lo, hi = 2**33, 2**33 + 50_000
    expected = loop_count(_sevens, lo, hi, 5)
    assert backend.count(workload, lo, hi, workers=2, seed=5) == expected


def _fails_at_three(i, seed):
    return 1 // (i - 3) > 0  # numba gives 0 at i = 3 and is refused: the workers run Python


@needs_ray
def test_the_workloads_own_error_comes_back_as_itself_with_its_frame(local_ray):
    with pytest.raises(partally.WorkloadError, match="ZeroDivisionError at i = 3") as caught:
        partally.compute(100, "ray", _fails_at_three, workers=2)
    assert type(caught.value) is partally.WorkloadError  # not Ray's wrapper, its traceback text
    line = _fails_at_three.__code__.co_firstlineno + 1
    assert caught.value.index == 3 and caught.value.frame[1:3] == (line, "_fails_at_three")


@needs_ray
def test_every_reduction_is_exact(local_ray):
    """sum, mean, min and max of ints and floats come back as exact partials and merge exactly."""
    check_every_reduction("ray")


def test_user_code_travels_by_value():
    """A node that cannot import the user's module (this test file) still runs the function."""
    from partally.workloads.user import payload

    code = "import pickle, sys; print(pickle.loads(sys.stdin.buffer.read())(3, 0))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], input=payload(_sevens), cwd="/",
                          capture_output=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == str(_sevens(3, 0))



@needs_ray
@pytest.mark.timeout(120)
def test_a_ray_address_that_is_not_ray_is_unavailable_everywhere(tmp_path):
    """RAY_ADDRESS at a real Redis (as when both use 6379): ``partally.backends()``, auto's
    candidates, the bench's backends and ``partally info`` all say ray is unavailable, with the
    reason, within seconds."""
    from celery_cluster import Redis, missing

    why = missing()
    if why:
        pytest.skip(why)
    code = (
        "import time\n"
        "started = time.perf_counter()\n"
        "import partally\n"
        "from partally.auto.calibration import candidates\n"
        "from partally.bench.run import select_backends\n"
        "(info,) = [b for b in partally.backends() if b.name == 'ray']\n"
        "print(info.available, info.reason, sep='|')\n"
        "chosen, skipped = candidates(partally.workloads.resolve('pi'), ['python', 'ray'])\n"
        "print(chosen, skipped['ray'], sep='|')\n"
        "runnable, left_out = select_backends(['python', 'ray'])\n"
        "print(runnable, left_out['ray'], sep='|')\n"
        "try:\n"
        "    partally.compute(100, backend='ray')\n"
        "except partally.BackendUnavailable as exc:\n"
        "    print('refused', exc, sep='|')\n"
        "print(time.perf_counter() - started)\n"
    )
    redis = Redis(tmp_path).start()
    try:
        address = f"127.0.0.1:{redis.port}"
        done = _run(code, timeout=60, RAY_ADDRESS=address)
        assert done.returncode == 0, done.stderr[-3000:]
        info = subprocess.run([sys.executable, "-m", "partally", "info"], capture_output=True,
                              text=True, timeout=60, env=_env(RAY_ADDRESS=address, COLUMNS="250"))
    finally:
        redis.stop()
    said = f"cannot reach the Ray cluster at RAY_ADDRESS='{address}' (the server there"
    available, listed, benched, refused, took = done.stdout.strip().split("\n")
    assert available.startswith(f"False|{said}"), available
    assert listed.startswith(f"['python']|unavailable: {said}"), listed
    assert benched.startswith(f"['python']|{said}"), benched
    assert refused.startswith(f"refused|backend 'ray' is not available here: {said}"), refused
    assert float(took) < 30  # each probe answers at once; Ray's own client would retry ~40 s
    assert info.returncode == 0, info.stderr[-3000:]
    (row,) = [line for line in info.stdout.splitlines() if line.startswith(("│ ray ", "| ray "))]
    assert " no " in row and "cannot reach the Ray cluster" in row, row


@needs_ray
def test_a_function_over_data_runs_on_ray_with_one_put_per_array(local_ray, monkeypatch):
    """args travel by one ray.put per array per call, never in each task."""
    import numpy as np

    import partally

    values = np.random.default_rng(5).random(300_000)
    puts = []
    real_put = local_ray.put
    monkeypatch.setattr(local_ray, "put", lambda value, **kw: puts.append(1) or real_put(value, **kw))

    def mean_of(i, seed, v, scale):
        return v[i] * scale

    f = partally.workload(mean_of, reduce="sum", returns=float)
    got = partally.compute(300_000, "ray", f, args=(values, 2.0), workers=2)
    assert got == partally.compute(300_000, "python", f, args=(values, 2.0))
    assert len(puts) == 1  # the one array, once, however many tasks
    explanation = partally.explain(300_000, workload=f, args=(values, 2.0))
    assert "array" in explanation.args
