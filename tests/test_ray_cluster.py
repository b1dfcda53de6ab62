"""The ``ray`` backend on a real cluster: two nodes joined by ``ray start``, through RAY_ADDRESS.

One cluster for the whole session (a head and a second node, one CPU each, started with the `ray`
CLI next to this Python, each node in its own session: see ray_cluster.py); every driver is a
fresh Python with RAY_ADDRESS set, as a user's would be (a process has one ``ray.init``). A test
that loses the second node gets a new one for the next test; losing the head uses a cluster of its
own. At the end, no process of any of these clusters is left.
"""

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import check_every_workload, start_python

from ray_cluster import RAY_CLI, LocalCluster
from reference import PI_3E9_SEED_3

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for processes"),
]

TASK_TITLE = "ray::_count_chunk"  # Ray's process title for a worker running a chunk


def _missing_ray() -> str | None:
    if importlib.util.find_spec("ray") is None:
        return 'ray is not installed: pip install ".[ray]"'
    if not RAY_CLI.exists():
        return f"no `ray` command next to {sys.executable}"
    return None


@pytest.fixture(scope="session")
def cluster():
    """A two-node Ray cluster on this machine for the whole session; all of it gone afterwards."""
    why = _missing_ray()
    if why:
        pytest.skip(why)
    started = LocalCluster(cpus=1).start(nodes=2, timeout=90)
    try:
        yield started
    finally:
        started.stop()
    assert started.pids() == [], "processes of the test cluster outlived it"


@pytest.fixture
def two_nodes(cluster):
    """The session's cluster with both nodes alive (a new second node if a test killed it)."""
    lost = [node for node in cluster.nodes if not node.head and node.raylet_pid() is None]
    if lost:
        for node in lost:
            node.kill()  # what is left of it
            cluster.nodes.remove(node)
        cluster.add_node()
        cluster.wait_for_nodes(2, timeout=90, gone=lost)  # until the GCS calls the lost one dead
    return cluster


def _drive(cluster, code, timeout, **env):
    """Run ``code`` in a fresh Python connected to ``cluster`` through RAY_ADDRESS."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
        env=cluster.driver_env(**env),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _wait_ready(driver):
    """Read the driver's stdout up to its "ready" line (Ray may print lines of its own there)."""
    lines = []
    for line in driver.stdout:
        if line.strip() == "ready":
            return
        lines.append(line)
    driver.wait(timeout=10)
    stderr = driver.stderr.read()[-3000:]
    pytest.fail(f"the driver ended before it was ready:\n{''.join(lines)}{stderr}")


def _counted(stdout):
    """The driver's "count N" line (Ray may print its own lines to stdout too)."""
    return int(next(line for line in stdout.splitlines() if line.startswith("count "))[6:])


@pytest.mark.timeout(120)
def test_every_workload_is_exact_on_the_cluster(two_nodes):
    check_every_workload("ray", two_nodes.driver_env(), timeout=90)


@pytest.mark.timeout(120)
def test_tasks_run_on_both_nodes(two_nodes):
    """Every node is seen running the backend's own tasks (a node's processes are its session)."""
    code = (
        "import partally\n"
        "partally.compute(3 * 10**9, backend='ray', workload='pi')  # a worker up on each node\n"
        "print('ready', flush=True)\n"
        "print('count', partally.compute(3 * 10**9, backend='ray', workload='pi', seed=3))\n"
    )
    driver = start_python(code, env=two_nodes.driver_env())
    try:
        _wait_ready(driver)
        seen = set()
        while driver.poll() is None and len(seen) < len(two_nodes.nodes):
            seen.update(k for k, node in enumerate(two_nodes.nodes) if node.running(TASK_TITLE))
            time.sleep(0.02)
        stdout, stderr = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 0, stderr[-3000:]
    assert _counted(stdout) == PI_3E9_SEED_3
    assert seen == {0, 1}, f"tasks seen running on nodes {sorted(seen)} only"


@pytest.mark.timeout(120)
def test_info_and_bench_say_nodes_and_cpus(two_nodes):
    expected = f"Ray cluster at {two_nodes.address}: 2 nodes, 2 CPUs"
    code = (
        "import sys, partally\n"
        "from partally.backends import get\n"
        "print(get('ray').device())  # not connected: asked of the head\n"
        "assert 'ray' in sys.modules and not sys.modules['ray'].is_initialized()\n"
        "partally.compute(10**6, backend='ray', workload='pi')\n"
        "print(get('ray').device())  # connected\n"
    )
    stdout = _drive(two_nodes, code, timeout=60)
    said = [line for line in stdout.splitlines() if line.startswith("Ray cluster at")]
    assert said == [expected, expected]

    wide = {"COLUMNS": "250"}  # rich wraps table cells to the terminal's width
    info = [sys.executable, "-m", "partally", "info"]
    done = subprocess.run(info, capture_output=True, text=True, timeout=60,
                          env=two_nodes.driver_env(**wide))
    assert done.returncode == 0, done.stderr[-3000:]
    assert expected in done.stdout, [line for line in done.stdout.splitlines() if " ray " in line]

    bench = [sys.executable, "-m", "partally", "bench", "--backends", "ray", "--workload", "pi",
             "--sizes", "1e6", "--repeat", "1"]
    done = subprocess.run(bench, capture_output=True, text=True, timeout=90,
                          env=two_nodes.driver_env(**wide))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"ray ran on: {expected}" in done.stdout
    assert "every result matched its reference" in done.stdout


@pytest.mark.timeout(60)
def test_device_never_raises_for_an_unreachable_cluster():
    why = _missing_ray()
    if why:
        pytest.skip(why)
    with socket.socket() as closed:  # bound, never listening: refused, and no one else's
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
        env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
        code = "from partally.backends import get\nprint(get('ray').device())\n"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=30, env={**env, "RAY_ADDRESS": address})
    assert done.returncode == 0, done.stderr[-3000:]
    assert time.perf_counter() - started < 15
    said = f"Ray cluster at {address} (not connected yet; cannot ask it now:"
    assert done.stdout.startswith(said), done.stdout


@pytest.mark.timeout(120)
def test_a_node_lost_mid_run_is_retried_and_the_count_stays_exact(two_nodes):
    code = (
        "import partally\n"
        "partally.compute(3 * 10**9, backend='ray', workload='pi')  # a worker up on each node\n"
        "print('ready', flush=True)\n"
        "print('count', partally.compute(3 * 10**9, backend='ray', workload='pi', seed=3))\n"
    )
    second = next(node for node in two_nodes.nodes if not node.head)
    driver = start_python(code, env=two_nodes.driver_env())
    try:
        _wait_ready(driver)
        raylet, deadline = second.raylet_pid(), time.monotonic() + 30
        while not second.running(TASK_TITLE):  # a chunk in flight there: it will be lost
            assert driver.poll() is None and time.monotonic() < deadline, "no task on node 2"
            time.sleep(0.01)
        os.kill(raylet, signal.SIGKILL)
        killed = time.monotonic()
        stdout, stderr = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 0, stderr[-3000:]
    assert _counted(stdout) == PI_3E9_SEED_3
    # typically 2-3 s here; Ray's health checks bound how long a lost node can hold a retry
    assert time.monotonic() - killed < 45
    assert second.raylet_pid() is None  # the node is really gone


@pytest.mark.timeout(150)
def test_the_head_lost_mid_run_fails_clearly_and_soon():
    """A cluster of its own: the session's one is not destroyed."""
    why = _missing_ray()
    if why:
        pytest.skip(why)
    code = (
        "import partally, time\n"
        "partally.compute(10**6, backend='ray', workload='pi')\n"
        "print('ready', flush=True)\n"
        "try:\n"
        "    partally.compute(10**12, backend='ray', workload='pi')  # minutes of work\n"
        "except partally.BackendFailed as exc:\n"
        "    print('error:', exc, flush=True)\n"
    )
    with LocalCluster(cpus=1).start(nodes=2, timeout=90) as doomed:
        driver = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=doomed.driver_env(),
        )
        try:
            _wait_ready(driver)
            deadline = time.monotonic() + 30
            while not doomed.nodes[0].running(TASK_TITLE):  # the run under way on the head
                assert driver.poll() is None and time.monotonic() < deadline, "no task on the head"
                time.sleep(0.01)
            doomed.nodes[0].kill()  # the head: GCS, raylet, its workers
            killed = time.monotonic()
            stdout, stderr = driver.communicate(timeout=60)
        finally:
            driver.kill()
        elapsed = time.monotonic() - killed
    assert doomed.pids() == []
    assert driver.returncode == 0, stderr[-3000:]
    assert stdout.startswith(f"error: lost the Ray cluster at {doomed.address} mid-run"), stdout
    assert elapsed < 30  # partally gives up after _HEAD_LOST_S (10 s) of silence: ~16 s here
