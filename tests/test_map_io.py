"""partally.map_io / amap_io: the IO engine with the user's own function, in every mode."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest
from helpers import interrupt, start_python

from partally import IOResult, amap_io, map_io
from partally.io.engine import MAX_BACKOFF, Pacer, Retry

SYNC_MODES = ("threads", "sequential")


async def double(x):
    await asyncio.sleep(0)
    return 2 * x


def twice(x):
    return 2 * x


def run(fn_sync, fn_async, mode, items, **kwargs):
    return map_io(fn_async if mode == "asyncio" else fn_sync, items, mode, **kwargs)


MODES = ("asyncio", "threads", "sequential")


@pytest.mark.parametrize("mode", MODES)
def test_values_in_input_order_and_errors_per_item(mode):
    def sync(x):
        time.sleep(0.001 * (10 - x))  # later items finish first
        return 10 / x

    async def asyn(x):
        await asyncio.sleep(0.001 * (10 - x))
        return 10 / x

    results = run(sync, asyn, mode, range(10), limit=10)
    assert [r.item for r in results] == list(range(10))
    assert isinstance(results[0].error, ZeroDivisionError) and not results[0].ok
    assert [r.value for r in results[1:]] == [10 / x for x in range(1, 10)]
    assert all(r.ok and r.attempts == 1 and r.elapsed >= 0 for r in results[1:])
    assert isinstance(results[1], IOResult)


@pytest.mark.parametrize("mode", ["asyncio", "threads"])
def test_order_completed(mode):
    gates = {i: threading.Event() for i in range(3)}

    def sync(x):  # item 2 finishes first, then 1, then 0: each waits for the one after it
        if x < 2:
            assert gates[x + 1].wait(30)
        gates[x].set()
        return x

    async def asyn(x):
        if x < 2:
            while not gates[x + 1].is_set():
                await asyncio.sleep(0.001)
        gates[x].set()
        return x

    results = run(sync, asyn, mode, range(3), limit=3, order="completed")
    assert [r.value for r in results] == [2, 1, 0]


@pytest.mark.parametrize("mode", MODES)
def test_retries_only_the_named_exceptions(mode):
    calls = {"a": 0, "b": 0}

    def sync(name):
        calls[name] += 1
        if name == "a" and calls[name] < 3:
            raise ConnectionError("flaky")
        if name == "b":
            raise KeyError("never retried")
        return name

    async def asyn(name):
        return sync(name)

    a, b = run(sync, asyn, mode, ["a", "b"], retries=5, retry_on=ConnectionError, backoff=0.001)
    assert a.ok and a.value == "a" and a.attempts == 3 and calls["a"] == 3
    assert isinstance(b.error, KeyError) and b.attempts == 1 and calls["b"] == 1


def test_retries_exhausted_keep_the_last_error():
    attempts = []

    def fail(x):
        attempts.append(x)
        raise TimeoutError(len(attempts))

    (result,) = map_io(fail, [1], "sequential", retries=2, backoff=0.0)
    assert result.attempts == 3 and str(result.error) == "3"


def test_backoff_doubles_is_capped_and_never_overflows():
    retry = Retry(2000, Exception, 0.1)
    pauses = [retry.pause(OSError(), attempt) for attempt in range(1, 1501)]
    assert pauses[:3] == [0.1, 0.2, 0.4]
    assert max(pauses) == MAX_BACKOFF
    assert retry.pause(OSError(), 2001) is None


def test_the_pacer_spaces_starts_evenly():
    pacer = Pacer(10.0)
    assert [pacer.reserve(0.0) for _ in range(4)] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert pacer.reserve(5.0) == 0.0  # idle a while: no burst owed, the next is due now
    assert pacer.reserve(5.0) == pytest.approx(0.1)


@pytest.mark.parametrize("mode", MODES)
def test_rate_spaces_the_calls(mode):
    starts = []

    def sync(x):
        starts.append(time.monotonic())

    async def asyn(x):
        sync(x)

    run(sync, asyn, mode, range(6), limit=6, rate=20.0)
    starts.sort()
    # Each start is booked 1/20 s after the one before, and a sleep never ends early: however
    # late the first one woke, the k-th comes at least (k - 1) / 20 s after it (never a burst).
    assert all(starts[k] - starts[0] >= (k - 1) * 0.05 for k in range(1, 6)), starts


@pytest.mark.parametrize("mode", ["asyncio", "threads"])
def test_key_limit_bounds_calls_per_key(mode):
    lock, now, most = threading.Lock(), {}, {}

    def enter(key):
        with lock:
            now[key] = now.get(key, 0) + 1
            most[key] = max(most.get(key, 0), now[key])

    def leave(key):
        with lock:
            now[key] -= 1

    def sync(item):
        enter(item[0])
        time.sleep(0.005)
        leave(item[0])

    async def asyn(item):
        enter(item[0])
        await asyncio.sleep(0.005)
        leave(item[0])

    items = [(host, i) for i in range(12) for host in "ab"]
    results = run(sync, asyn, mode, items, limit=10, key=lambda item: item[0], key_limit=2)
    assert all(r.ok for r in results) and most == {"a": 2, "b": 2}


@pytest.mark.parametrize("mode", MODES)
def test_the_input_is_read_lazily(mode):
    taken = []

    def items():
        for i in itertools.count():
            taken.append(i)
            yield i

    seen = []

    def sync(x):
        return x

    async def asyn(x):
        return x

    def on_result(result):
        seen.append(len(taken))
        if len(seen) == 50:
            raise StopBatch

    with pytest.raises(StopBatch):
        run(sync, asyn, mode, items(), limit=4, on_result=on_result)
    assert max(seen) <= 50 + 4 + 1  # never read far ahead of the workers


class StopBatch(Exception):
    pass


@pytest.mark.parametrize("mode", MODES)
def test_collect_false_keeps_nothing(mode):
    seen = []
    results = run(twice, double, mode, range(100), limit=5, collect=False, on_result=seen.append)
    assert results == [] and sorted(r.value for r in seen) == [2 * i for i in range(100)]


@pytest.mark.parametrize("mode", MODES)
def test_an_error_from_the_input_iterator_is_the_batch_error(mode):
    def items():
        yield 1
        raise LookupError("bad input")

    with pytest.raises(LookupError, match="bad input"):
        run(twice, double, mode, items(), limit=2)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_exit_are_never_swallowed(mode, error):
    def sync(x):
        raise error()

    async def asyn(x):
        raise error()

    with pytest.raises(error):
        run(sync, asyn, mode, range(4), limit=2)


def test_cancelling_amap_io_cancels_its_calls():
    started, cancelled = asyncio.Event(), []

    async def slow(x):
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise

    async def main():
        task = asyncio.ensure_future(amap_io(slow, range(3), limit=3))
        await started.wait()
        await asyncio.sleep(0)  # let the other workers start
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert sorted(cancelled) == [0, 1, 2]


def test_mode_none_picks_by_the_function():
    assert [r.value for r in map_io(double, [1, 2])] == [2, 4]
    names = []
    map_io(lambda x: names.append(threading.current_thread().name), range(3), limit=2)
    assert all(name.startswith("partally-io") or name == "MainThread" for name in names)


def test_amap_io_is_the_async_twin():
    results = asyncio.run(amap_io(double, range(5), limit=2))
    assert [r.value for r in results] == [0, 2, 4, 6, 8]


def test_map_io_asyncio_inside_a_loop_points_to_amap_io():
    async def main():
        map_io(double, [1])

    with pytest.raises(RuntimeError, match="amap_io"):
        asyncio.run(main())


def test_threads_are_bounded_by_limit():
    before, seen = threading.active_count(), []
    map_io(lambda x: seen.append(threading.active_count()), range(200), "threads", limit=4)
    assert max(seen) <= before + 4


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fn": 5}, TypeError, "fn must be callable"),
        ({"items": 5}, TypeError, "items must be an iterable"),
        ({"items": "abc"}, TypeError, "items must be an iterable"),
        ({"mode": "processes"}, ValueError, "unknown mode 'processes'"),
        ({"limit": 0}, ValueError, "limit must be >= 1"),
        ({"limit": 1.5}, TypeError, "limit must be an int"),
        ({"retries": -1}, ValueError, "retries must be >= 0"),
        ({"retry_on": ValueError("x")}, TypeError, "retry_on must be an Exception subclass"),
        ({"retry_on": (OSError, KeyboardInterrupt)}, TypeError, "retry_on must be"),
        ({"rate": 0}, ValueError, "rate must be > 0"),
        ({"rate": float("inf")}, ValueError, "rate must be a finite number"),
        ({"rate": float("nan")}, ValueError, "rate must be > 0"),
        ({"rate": "5"}, TypeError, "rate must be a number"),
        ({"backoff": -1}, ValueError, "backoff must be >= 0"),
        ({"key": len}, ValueError, "key and key_limit go together"),
        ({"key_limit": 2}, ValueError, "key and key_limit go together"),
        ({"key": 5, "key_limit": 2}, TypeError, "key must be callable"),
        ({"key": len, "key_limit": 0}, ValueError, "key_limit must be >= 1"),
        ({"order": "random"}, ValueError, "order must be one of"),
        ({"on_result": 5}, TypeError, "on_result must be callable"),
        ({"collect": "no"}, TypeError, "collect must be True or False"),
        ({"fn": double, "mode": "threads"}, TypeError, "async function: run it with mode='asyncio'"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {"fn": twice, "items": [1], **kwargs}
    with pytest.raises(error, match=match):
        map_io(**kwargs)
    if "mode" not in kwargs:
        with pytest.raises(error, match=match):
            asyncio.run(amap_io(**kwargs))


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_stops_promptly(mode):
    started = "    sys.stdout.write('in\\n'); sys.stdout.flush()\n"  # one write: no interleaving
    function = (
        "async def fn(x):\n" + started + "    await asyncio.sleep(60)\n"
        if mode == "asyncio"
        else "def fn(x):\n" + started + "    time.sleep(60)\n"
    )
    code = (
        "import asyncio, sys, time\nfrom partally import map_io\n"
        + function
        + f"map_io(fn, range(8), {mode!r}, limit=4)\n"
    )
    child = start_python(code)
    assert child.stdout.readline() == "in\n"  # a call is under way
    stderr = interrupt(child, within=30)
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr
    assert stderr.count("Traceback") == 1 and "CancelledError" not in stderr


def test_the_engine_imports_no_http_library():
    code = (
        "import sys\nimport partally\nfrom partally import map_io\n"
        "print(sorted({'httpx', 'aiohttp', 'urllib3'} & set(sys.modules)))\n"
    )
    child = start_python(code)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.strip() == "[]"
