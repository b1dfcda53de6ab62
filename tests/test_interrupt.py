"""Ctrl-C stops a run promptly, and no worker process outlives a run, an interrupt or the exit."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import run_python

import partally
from partally.backends import get as get_backend
from reference import count_range

processes = get_backend("processes")


def children_of(pid):
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(pid, 0); it has exited all the same
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def all_gone(pids, within=30.0):
    """Whether every pid has exited, waiting up to ``within`` seconds for stragglers to finish."""
    deadline = time.monotonic() + within
    while not all(gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


PROMPT_S = 10  # a hang bound: an interrupt is honoured in well under a second when idle


def counting_in_partally(thread_id):
    """Whether the thread ``thread_id`` is inside a backend's count (its stack, innermost first)."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        if f"{os.sep}partally{os.sep}backends{os.sep}" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def interrupt_when(ready, record=None):
    """Send this process a real SIGINT (as Ctrl-C does) once ``ready()`` holds; the returned list
    gets the time it was sent (and ``record`` the pool's worker pids just before)."""
    sent = []

    def fire():
        deadline = time.monotonic() + 120
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        if record is not None:
            record.extend(processes.worker_pids())
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=fire, daemon=True).start()
    return sent


def counting_here():
    """``ready`` for interrupt_when: the main thread is counting in a backend."""
    main = threading.main_thread().ident
    return lambda: counting_in_partally(main)


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_pool_is_reused_and_shut_down():
    expected = count_range("pi", 0, 20_000)
    assert partally.compute(20_000, backend="processes", workload="pi", workers=2) == expected
    first = processes.worker_pids()
    assert len(first) == 2
    partally.compute(20_000, backend="processes", workload="pi", workers=2)
    assert processes.worker_pids() == first
    processes.close()
    assert processes.worker_pids() == []
    assert all(gone(pid) for pid in first)


def test_interrupted_pool_leaves_no_worker():
    pids = []
    counting = counting_here()
    sent = interrupt_when(lambda: counting() and len(processes.worker_pids()) == 2, pids)
    with pytest.raises(KeyboardInterrupt):
        partally.compute(10**9, backend="processes", workload="pi", workers=2)
    assert time.perf_counter() - sent[0] < PROMPT_S
    assert len(pids) == 2
    assert all(gone(pid) for pid in pids)
    assert processes.worker_pids() == []
    # and the backend works again afterwards, with a new pool
    assert partally.compute(1000, backend="processes", workload="count") == 1000
    processes.close()


@pytest.mark.parametrize(
    ("backend", "workload", "n"),
    [("native", "primes", 2**32), ("numba", "primes", 2**32), ("threads", "pi", 10**9)],
)
def test_interrupt_is_prompt(backend, workload, n):
    partally.compute(1000, backend=backend, workload=workload)  # compile / start outside the clock
    sent = interrupt_when(counting_here())
    with pytest.raises(KeyboardInterrupt):
        partally.compute(n, backend=backend, workload=workload, workers=1)
    assert time.perf_counter() - sent[0] < PROMPT_S


def test_ctrl_c_on_the_command_line_leaves_no_process():
    command = [sys.executable, "-m", "partally", "compute", "1e10", "--backend", "processes"]
    command += ["--workload", "pi", "--workers", "2"]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(children_of(run.pid)) < 2 and time.monotonic() < deadline:  # the pool is up
        time.sleep(0.1)
    workers = children_of(run.pid)
    assert len(workers) >= 2
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=15)
    assert run.returncode == 130, stderr
    assert "interrupted" in stderr
    assert all_gone(workers)  # the pool's workers and multiprocessing's resource tracker


def test_exit_leaves_no_worker():
    code = (
        "import partally\n"
        "from partally.backends import get\n"
        "partally.compute(50_000, backend='processes', workload='pi', workers=2)\n"
        "print(*get('processes').worker_pids())\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 2
    assert all_gone(pids)


def test_a_script_piped_to_python_can_use_the_pool():
    # spawn re-runs the parent's main script in each worker: "<stdin>" is no file to re-run
    code = "import partally\nprint(partally.compute(50_000, backend='processes', workers=2))\n"
    done = subprocess.run(
        [sys.executable, "-"], input=code, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["50000"]


def test_workers_exit_when_their_parent_is_killed():
    code = (
        "import sys, partally\n"
        "from partally.backends import get\n"
        "partally.compute(50_000, backend='processes', workload='pi', workers=2)\n"
        "print(*get('processes').worker_pids(), flush=True)\n"
        "sys.stdin.read()\n"  # wait here until killed
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    pids = [int(pid) for pid in child.stdout.readline().split()]
    assert len(pids) == 2
    child.kill()  # SIGKILL: no atexit, no cleanup in the parent
    child.wait(timeout=10)
    assert all_gone(pids)
