"""The ``celery`` backend on a real broker and real workers: a Redis server and two ``celery -A
partally.celery worker`` processes started here (celery_cluster.py), each in its own session, with
partally's own 60 s visibility timeout (a lost worker's chunks must come back sooner).

Drivers are this process (CELERY_BROKER_URL set for the test) or a fresh Python, as a user's
would be. A test that kills a worker gets a new one for the next test. At the end, no process of
the cluster is left.
"""

import dataclasses
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from helpers import check_every_workload, interrupt, run_python

import partally
from celery_cluster import CeleryCluster, cpu_ticks, missing
from partally.backends import get as get_backend
from reduction_cases import check_every_reduction
from reference import KNOWN, PI_3E9_SEED_3

pytestmark = pytest.mark.celery

WORKLOADS = ("count", "primes", "pi")
TEST_PID = os.getpid()
VISIBILITY_S = 60  # partally's default: a chunk of a lost worker would come back after this
PRIMES_1E9 = KNOWN["primes"][10**9]


@pytest.fixture(scope="module")
def cluster():
    why = missing()
    if why:
        pytest.skip(why)
    started = CeleryCluster(visibility=VISIBILITY_S).start(workers=2)
    try:
        # Numba compiles each kernel once into the tests' cache folder, which both workers read:
        # compiled here, a first chunk is short and runs once.
        code = "\n".join(
            ["import partally"]
            + [f"partally.compute(10**6, backend='celery', workload={w!r})" for w in WORKLOADS]
        )
        done = run_python(code, timeout=180, env=started.env())
        assert done.returncode == 0, done.stderr[-3000:]
        yield started
    finally:
        started.stop()
    assert started.pids() == [], "processes of the test cluster outlived it"


@pytest.fixture
def two_workers(cluster):
    """The module's cluster with two workers (a new one for each that a test killed), each
    answering a ping: a test starts on a ready cluster, whatever the test before it killed."""
    cluster.replace_lost()
    cluster.wait_for_workers(60)
    return cluster


@pytest.fixture
def driver(two_workers, monkeypatch):
    """This process as a driver of the cluster (its broker in CELERY_BROKER_URL)."""
    for name, value in two_workers.env().items():
        if name.startswith(("CELERY_", "PARTALLY_CELERY_")):
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("CELERY_RESULT_BACKEND", raising=False)
    yield two_workers
    get_backend("celery").close()


@pytest.mark.timeout(180)
def test_every_workload_is_exact(two_workers):
    check_every_workload("celery", two_workers.env(), timeout=150)


@pytest.mark.timeout(180)
def test_every_reduction_is_exact(driver):
    """sum, mean, min and max of ints and floats (NaN, inf, -0.0, values from 1e-300 to 1e300)
    travel back as exact partials through the result store and merge to the exact result."""
    check_every_reduction("celery")


def _pools(cluster):
    return {pid: worker for worker in cluster.workers for pid in worker.pool()}


def _running_pool(cluster, thread, deadline):
    """A pool process seen using CPU (running a chunk) while ``thread`` counts."""
    ticks = {pid: cpu_ticks(pid) for pid in _pools(cluster)}
    while True:
        assert thread.is_alive() and time.monotonic() < deadline, "no chunk seen running"
        time.sleep(0.02)
        for pid, worker in _pools(cluster).items():
            if cpu_ticks(pid) > ticks.get(pid, 0) + 1:
                return pid, worker
            ticks.setdefault(pid, cpu_ticks(pid))


def _count_in_thread(result, n=3 * 10**9, seed=3):
    def run():
        try:
            result["count"] = partally.compute(n, backend="celery", workload="pi", seed=seed)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.timeout(120)
def test_chunks_reach_both_workers_run_on_numba_and_are_forgotten(driver):
    partally.compute(10**7, backend="celery", workload="pi")  # both pools' kernels loaded
    kernel, pid = get_backend("celery").worker_info()
    assert kernel == "numba" and pid in _pools(driver)
    before = {pid: cpu_ticks(pid) for pid in _pools(driver)}
    redis = driver.redis.client()
    kept = set(redis.keys("celery-task-meta-*")) | set(redis.keys("partally:*"))
    assert partally.compute(3 * 10**9, backend="celery", workload="pi", seed=3) == PI_3E9_SEED_3
    now = set(redis.keys("celery-task-meta-*")) | set(redis.keys("partally:*"))
    assert now - kept == set()  # the results, attempt counters and worker names are forgotten
    used = {worker.name for pid, worker in _pools(driver).items()
            if cpu_ticks(pid) - before.get(pid, 0) >= 5}  # 50 ms of CPU or more
    assert used == {worker.name for worker in driver.workers}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("what", ["pool process", "whole worker"])
def test_a_worker_killed_mid_run_and_the_count_stays_exact(driver, what):
    """A pool process killed: its chunk is requeued at once. The whole worker (main process and
    pool) killed: the driver sees it stop answering (5 s) and sends its chunk again, long before
    the 60 s visibility timeout would (its own copy comes back then, revoked)."""
    partally.compute(10**7, backend="celery", workload="pi")  # both pools' kernels loaded
    result = {}
    thread = _count_in_thread(result)
    pid, worker = _running_pool(driver, thread, time.monotonic() + 30)
    if what == "pool process":
        os.kill(pid, signal.SIGKILL)
    else:
        worker.kill()
    killed = time.monotonic()
    thread.join(timeout=VISIBILITY_S)
    assert not thread.is_alive()
    elapsed = time.monotonic() - killed
    print(f"{what} killed: the count ended {elapsed:.1f} s later")
    assert result == {"count": PI_3E9_SEED_3}
    assert elapsed < 30  # 5 s to be lost, then a chunk of about a second; loaded CI headroom
    if what == "whole worker":  # its chunk's message, unacknowledged, would come back later on
        driver.redis.client().delete("unacked", "unacked_index")


def _poison(i, seed):
    """Kills the process it runs in at i = 500, except the test's own."""
    if i == 500 and os.getpid() != TEST_PID:
        os.kill(os.getpid(), signal.SIGKILL)
    return i % 3 == 0


@pytest.mark.timeout(120)
def test_a_chunk_that_keeps_killing_its_worker_fails_clearly(driver):
    from partally.celery import MAX_ATTEMPTS

    poison = dataclasses.replace(partally.workload(_poison), task_min=250)  # 4 chunks
    with pytest.raises(partally.BackendFailed, match=rf"chunk \[500, 750\) .* was started "
                       rf"{MAX_ATTEMPTS} times and each time its Celery worker process died"):
        get_backend("celery").count(poison, 0, 1000, workers=2, seed=0)


def _finished(tasks, chunks, deadline_s=60):
    done, pending = [], list(chunks)
    deadline = time.monotonic() + deadline_s
    while pending:
        assert time.monotonic() < deadline, "chunks unfinished"
        finished, pending = tasks.wait(pending)
        done += finished
    return done


@pytest.mark.timeout(120)
def test_a_chunk_that_failed_on_its_worker_fails_or_goes_again(driver):
    """A chunk's task that failed on its worker (Celery's FAILURE, stored in the real result
    store): an error of its own is BackendFailed naming it, chained (it was an AttributeError);
    the worker's lost connection sends the chunk again, and its partial comes back."""
    import redis

    from partally.backends.celery import _Chunk, _Copy
    from partally.workloads import BUILTINS

    tasks = get_backend("celery").connect()
    broken, cut = (_Chunk(0, 10, "count", b"", 0, [_Copy(tasks.app.AsyncResult(name))])
                   for name in (f"broken-{os.getpid()}", f"cut-{os.getpid()}"))
    cut.payload = pickle.dumps(BUILTINS["count"])
    tasks.store.mark_as_failure(broken.copies[0].id, KeyError("no such kernel"))
    tasks.store.mark_as_failure(cut.copies[0].id, redis.exceptions.ConnectionError("gone"))
    try:
        assert set(_finished(tasks, [broken, cut])) == {broken, cut}
        with pytest.raises(partally.BackendFailed, match=r"chunk \[0, 10\) of workload 'count' "
                           r"failed on its Celery worker: KeyError: 'no such kernel'") as caught:
            tasks.result(broken)
        assert isinstance(caught.value.__cause__, KeyError)
        assert len(cut.copies) == 2 and tasks.result(cut) == 10
    finally:
        tasks.release([broken, cut])


def _fails_at_three(i, seed):
    return 1 // (i - 3) > 0  # numba gives 0 at i = 3 and is refused: the workers run Python


@pytest.mark.timeout(120)
def test_the_workloads_own_error_comes_back_with_its_index_and_frame(driver):
    with pytest.raises(partally.WorkloadError, match="ZeroDivisionError at i = 3") as caught:
        partally.compute(100, "celery", _fails_at_three)
    line = _fails_at_three.__code__.co_firstlineno + 1
    assert caught.value.index == 3 and caught.value.frame[1:3] == (line, "_fails_at_three")


@pytest.mark.timeout(120)
def test_ctrl_c_exits_130_and_drains_the_queue(two_workers):
    """``partally compute`` on minutes of work; Ctrl-C once chunks run: exit status 130 at once,
    the queued chunks revoked, and the workers free for the next count."""
    command = [sys.executable, "-m", "partally", "compute", "1e12", "--backend", "celery",
               "--workload", "pi", "--workers", "4"]
    ticks = {pid: cpu_ticks(pid) for pid in _pools(two_workers)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=two_workers.env())
    deadline = time.monotonic() + 60
    while not any(cpu_ticks(pid) > ticks[pid] + 1 for pid in ticks):  # chunks are running
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    interrupt(process, within=10)
    assert process.returncode == 130
    redis = two_workers.redis.client()
    deadline = time.monotonic() + 10  # a running chunk finishes (about a second of work)
    while redis.llen("partally") or redis.hlen("unacked"):
        assert time.monotonic() < deadline, "chunks left queued or unacknowledged after Ctrl-C"
        time.sleep(0.1)
    code = "import partally; print(partally.compute(10**6, backend='celery', workload='pi'))"
    done = run_python(code, timeout=60, env=two_workers.env())
    assert done.stdout.split() == ["785806"], done.stderr[-3000:]


@pytest.mark.timeout(120)
def test_no_worker_on_the_queue_is_refused_within_seconds(two_workers, monkeypatch):
    """Redis answers, but no worker listens on this database: refused, saying what to start."""
    monkeypatch.setenv("CELERY_BROKER_URL", two_workers.redis.url(db=1))
    monkeypatch.delenv("CELERY_RESULT_BACKEND", raising=False)
    backend = get_backend("celery")
    try:
        started = time.perf_counter()
        with pytest.raises(partally.BackendUnavailable) as refused:
            partally.compute(1000, backend="celery")
        assert time.perf_counter() - started < 60  # a hang bound: the pings wait 1 + 4 + 10 s
        assert "no Celery worker consumes partally's queue 'partally'" in str(refused.value)
        assert "celery -A partally.celery worker" in str(refused.value)
        assert two_workers.redis.password not in str(refused.value)
        assert backend.refusal(partally.workloads.resolve("pi")) == str(refused.value)
    finally:
        backend.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("listener", ["closed port", "silent server"])
def test_a_dead_broker_is_refused_within_seconds(listener):
    why = missing()
    if why:
        pytest.skip(why)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if listener == "closed port":
        server.close()
    else:
        server.listen(8)  # accepts connections (the kernel does) and never answers
    code = (
        "import partally, time\n"
        "started = time.perf_counter()\n"
        "try:\n"
        "    partally.compute(100, backend='celery')\n"
        "except partally.BackendUnavailable as exc:\n"
        "    print(time.perf_counter() - started)\n"
        "    print(exc)\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("CELERY_")}
    env["CELERY_BROKER_URL"] = f"redis://:hunter2@127.0.0.1:{port}/0"
    try:
        done = run_python(code, timeout=60, env=env)
    finally:
        server.close()
    assert done.returncode == 0, done.stderr[-3000:]
    took, said = done.stdout.split("\n", 1)
    assert float(took) < 20  # a hang bound: the probe waits 2 s (_PROBE_S), Celery's own forever
    assert said.startswith(f"cannot reach the Celery broker at redis://:**@127.0.0.1:{port}/0")
    assert "hunter2" not in said


@pytest.mark.timeout(120)
def test_the_broker_lost_mid_run_fails_clearly_and_soon():
    """A cluster of its own (one worker): its Redis is killed while chunks run."""
    why = missing()
    if why:
        pytest.skip(why)
    code = (
        "import partally, time\n"
        "partally.compute(10**6, backend='celery', workload='pi')\n"
        "print('ready', flush=True)\n"
        "try:\n"
        "    partally.compute(10**12, backend='celery', workload='pi')  # minutes of work\n"
        "except partally.BackendFailed as exc:\n"
        "    print('error:', exc, flush=True)\n"
        "    print('cause:', type(exc.__cause__).__name__, flush=True)\n"
    )
    with CeleryCluster().start(workers=1) as doomed:
        driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=doomed.env())
        try:
            assert driver.stdout.readline().strip() == "ready", driver.stderr.read()[-3000:]
            pool = doomed.workers[0].pool()[0]
            ticks, deadline = cpu_ticks(pool), time.monotonic() + 30
            while cpu_ticks(pool) <= ticks + 1:  # a chunk runs
                assert time.monotonic() < deadline, "no chunk seen running"
                time.sleep(0.02)
            doomed.redis.stop()
            killed = time.monotonic()
            stdout, stderr = driver.communicate(timeout=60)
        finally:
            driver.kill()
        elapsed = time.monotonic() - killed
    assert driver.returncode == 0, stderr[-3000:]
    port = doomed.redis.port
    assert stdout.startswith(f"error: lost the Celery cluster on redis://:**@127.0.0.1:{port}/0 "
                             "mid-run"), stdout
    assert "cause: None" not in stdout  # what the broker's client raised is chained
    assert elapsed < 30


@pytest.mark.timeout(240)
@pytest.mark.parametrize("outage", [0.2, 1.0])
def test_a_broker_restarted_mid_run_is_survived_and_the_next_call_works(outage):
    """A cluster of its own (two workers): its Redis, without persistence, is killed while chunks
    run and started again on the same port ``outage`` seconds later, its queue and results gone.
    The count ends exact (what the restart lost sent again) or with one BackendFailed naming the
    broker within 30 s, never another error and never a hang; the next call is exact."""
    why = missing()
    if why:
        pytest.skip(why)
    code = (
        "import partally, time\n"
        "partally.compute(10**6, backend='celery', workload='primes')\n"
        "print('ready', flush=True)\n"
        "try:\n"
        "    print('count:', partally.compute(10**9, backend='celery', workload='primes'),\n"
        "          flush=True)\n"
        "except partally.BackendFailed as exc:\n"
        "    print('error:', exc, flush=True)\n"
        "print('ended:', time.monotonic(), flush=True)\n"
        "print('next:', partally.compute(10**8, backend='celery', workload='primes'), flush=True)\n"
    )
    with CeleryCluster(visibility=VISIBILITY_S).start(workers=2) as cluster:
        driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=cluster.env())
        try:
            assert driver.stdout.readline().strip() == "ready", driver.stderr.read()[-3000:]
            pools = [pid for worker in cluster.workers for pid in worker.pool()]
            ticks, deadline = {pid: cpu_ticks(pid) for pid in pools}, time.monotonic() + 30
            while all(cpu_ticks(pid) <= ticks[pid] + 1 for pid in pools):  # chunks run
                assert time.monotonic() < deadline, "no chunk seen running"
                time.sleep(0.02)
            time.sleep(1)
            assert driver.poll() is None
            cluster.redis.restart(outage)
            restarted = time.monotonic()
            stdout, stderr = driver.communicate(timeout=180)
        finally:
            driver.kill()
    assert driver.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    said = dict(line.split(": ", 1) for line in stdout.strip().split("\n"))
    print(f"Redis out for {outage} s: {said}, {float(said['ended']) - restarted:.1f} s later")
    if "error" in said:
        port = cluster.redis.port
        assert said["error"].startswith(f"lost the Celery cluster on redis://:**@127.0.0.1:{port}/0")
        assert float(said["ended"]) - restarted < 30
    else:
        assert said["count"] == str(PRIMES_1E9)
    assert said["next"] == str(KNOWN["primes"][10**8])


@pytest.mark.timeout(120)
def test_a_broker_restarted_between_calls_the_next_call_works():
    """A cluster of its own (one worker): Redis restarted for 0.2 s between two calls of one
    driver, whose app is still connected to the old server. The second call is exact (it said
    BackendUnavailable: "Connection closed by server", its ping sent on the old connection)."""
    why = missing()
    if why:
        pytest.skip(why)
    code = (
        "import partally, sys, time\n"
        "print(partally.compute(10**6, backend='celery', workload='primes'), flush=True)\n"
        "sys.stdin.readline()  # the broker restarts meanwhile\n"
        "started = time.monotonic()\n"
        "print(partally.compute(10**6, backend='celery', workload='primes'), flush=True)\n"
        "print(time.monotonic() - started, flush=True)\n"
    )
    with CeleryCluster(visibility=VISIBILITY_S).start(workers=1) as cluster:
        driver = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=cluster.env())
        try:
            assert driver.stdout.readline().strip() == "78498", driver.stderr.read()[-3000:]
            time.sleep(6)  # past the driver's 5 s of trusting its last answer: it pings again
            cluster.redis.restart(0.2)
            stdout, stderr = driver.communicate("\n", timeout=90)
        finally:
            driver.kill()
    assert driver.returncode == 0, stderr[-3000:]
    count, took = stdout.split()
    print(f"the call after the restart took {float(took):.1f} s")
    assert count == "78498"


@pytest.mark.timeout(120)
def test_info_and_bench_name_the_broker_and_workers(two_workers):
    port = two_workers.redis.port
    said = (f"Celery workers on redis://:**@127.0.0.1:{port}/0: 2 workers, 2 processes "
            "(w")  # (w3@partally-tests 1, w4@partally-tests 1) after two were killed
    env = two_workers.env(COLUMNS="250")  # rich wraps table cells to the terminal's width
    done = subprocess.run([sys.executable, "-m", "partally", "info"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert said in done.stdout, [line for line in done.stdout.splitlines() if "celery" in line]
    assert two_workers.redis.password not in done.stdout
    bench = [sys.executable, "-m", "partally", "bench", "--backends", "celery", "--workload", "pi",
             "--sizes", "1e6", "--repeat", "1"]
    done = subprocess.run(bench, capture_output=True, text=True, timeout=90, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"celery ran on: {said}" in done.stdout
    assert "every result matched its reference" in done.stdout


def test_without_a_broker_it_is_unavailable_and_auto_leaves_it_out(monkeypatch):
    from partally.auto.calibration import NOT_CONFIGURED, candidates

    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    backend = get_backend("celery")
    assert backend.remote and not backend.configured()
    reason = backend.unavailable()
    assert reason is not None and ("CELERY_BROKER_URL" in reason or "partally[celery]" in reason)
    chosen, skipped = candidates(partally.workloads.resolve("pi"), ["python", "celery"])
    assert chosen == ["python"]
    assert skipped["celery"].startswith(NOT_CONFIGURED) and "CELERY_BROKER_URL" in skipped["celery"]


def test_unavailable_names_the_extra_and_import_partally_does_not_import_celery():
    code = (
        "import os, sys\n"
        "import partally\n"
        "partally.backends()  # no broker configured\n"
        "print('celery' in sys.modules)\n"
        "sys.modules['celery'] = None  # as if celery were not installed\n"
        "os.environ['CELERY_BROKER_URL'] = 'redis://127.0.0.1:1/0'\n"
        "from partally.backends import get\n"
        "print(get('celery').unavailable())\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("CELERY_")}
    done = run_python(code, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    imported, reason = done.stdout.strip().split("\n", 1)
    assert imported == "False"
    assert 'pip install "partally[celery]"' in reason

