"""Run an IO function over many items concurrently: sequentially, on threads, or on asyncio.

`map_io` and `amap_io` are twins over one plan. A fixed set of at most `limit` workers pulls items
from one shared iterator (read lazily: a generator of a million items never sits in memory, and a
million items make `limit` tasks or threads, never a million). Each item's calls are paced by a
`Pacer` (a smooth rate limit) and a per-key gate, retried by a `Retry` policy, and end as that
item's result: a failure is the item's error result, never the batch's. The policy objects are
free of IO; a sync and an async driver do the waiting.

This module imports neither httpx nor any other HTTP library: `partally.io.fetch` is one client of
it (an HTTP request as the IO function, its own retry policy and result type).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import numbers
import os
import queue
import sys
import threading
import time
import types
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sized
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["MODES", "ORDERS", "IOResult", "Pacer", "Retry", "amap_io", "map_io"]

MODES = ("asyncio", "threads", "sequential")
ORDERS = ("input", "completed")
BACKOFF = 0.1  # seconds before the first retry; doubles with each further one
MAX_BACKOFF = 30.0  # ... up to this many seconds, however many retries
MAX_THREADS = 256  # threads mode runs at most this many threads, whatever `limit` asks

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class IOResult(Generic[T]):
    """What calling the IO function on one item gave: its return value, or the exception it raised.

    `attempts` counts the calls (1 + the retries made); `elapsed` is the seconds from the first
    call to the last one's end, pauses included.
    """

    item: Any
    value: T | None
    error: BaseException | None
    attempts: int
    elapsed: float

    @property
    def ok(self) -> bool:
        """True when the last call returned (`value` holds what it returned)."""
        return self.error is None


class Retry:
    """Which failures are retried, and after how long: free of IO (the drivers wait).

    `pause(error, attempt, item)` is the seconds to wait before trying again after failed attempt
    `attempt` (1 for the first call), or None to give up with `error` as the item's result.
    The default retries exceptions of the `on` types `retries` times, `backoff` seconds after the
    first failure, doubling, at most MAX_BACKOFF seconds a pause.
    """

    def __init__(
        self,
        retries: int = 0,
        on: type[BaseException] | tuple[type[BaseException], ...] = (),
        backoff: float = BACKOFF,
    ) -> None:
        self.retries, self.on, self.backoff = retries, on, backoff

    def pause(self, error: Exception, attempt: int, item: Any = None) -> float | None:
        if attempt > self.retries or not isinstance(error, self.on):
            return None
        return self.delay(attempt)

    def delay(self, attempt: int) -> float:
        """The backoff after failed attempt `attempt`: doubling, capped, never an overflow."""
        return min(self.backoff * 2.0 ** min(attempt - 1, 64), MAX_BACKOFF)


class Pacer:
    """A smooth rate limit: call starts at least 1/`rate` seconds apart, never in bursts.

    `reserve(now)` books the next start and returns the seconds to wait for it (0 if it is
    already due). Free of IO; the caller holds a lock if threads share it.
    """

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = -math.inf

    def reserve(self, now: float) -> float:
        start = max(now, self._next)
        self._next = start + self.interval
        return start - now


@dataclass(frozen=True)
class Plan(Generic[R]):
    """How a batch runs, whatever its driver: the limits, the policies and the result maker.

    `make(item, value, error, attempts, elapsed)` builds each item's result (an `IOResult` for
    `map_io`; `partally.io.fetch` makes its own).
    """

    limit: int
    retry: Retry
    make: Callable[[Any, Any, Exception | None, int, float], R]
    rate: float | None = None
    key: Callable[[Any], Hashable] | None = None
    key_limit: int | None = None
    order: str = "input"
    collect: bool = True
    on_result: Callable[[R], None] | None = None


def _number(name: str, value: Any, *, low: float, inclusive: bool, none: bool = False) -> None:
    if value is None and none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not (value >= low if inclusive else value > low) or math.isnan(value):
        raise ValueError(f"{name} must be {'>=' if inclusive else '>'} {low}, got {value}")


def whole(name: str, value: Any, low: int, none: bool = False) -> None:
    """TypeError unless `value` is an int (not a bool; None too if `none`), ValueError below `low`."""
    if value is None and none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def check_plan(
    items: Any,
    *,
    limit: Any,
    retries: Any,
    rate: Any,
    key: Any,
    key_limit: Any,
    order: Any,
    on_result: Any,
    backoff: Any,
    what: str = "items",
) -> None:
    """Refuse bad arguments before any call, each with a message saying what is accepted."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(f"{what} must be an iterable (a list, a generator, ...), not {type(items).__name__}")
    whole("limit", limit, 1)
    whole("retries", retries, 0)
    _number("rate", rate, low=0, inclusive=False, none=True)
    if rate is not None and math.isinf(rate):
        raise ValueError("rate must be a finite number of calls per second (None for no limit)")
    _number("backoff", backoff, low=0, inclusive=True)
    if math.isinf(backoff):
        raise ValueError("backoff must be a finite number of seconds")
    for name, value in (("key", key), ("on_result", on_result)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable or None, not {type(value).__name__}")
    whole("key_limit", key_limit, 1, none=True)
    if (key is None) != (key_limit is None):
        raise ValueError("key and key_limit go together: key(item) names the group, key_limit its cap")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}, got {order!r}")


def _exception_types(retry_on: Any) -> tuple[type[BaseException], ...]:
    types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, Exception)):
            raise TypeError(
                f"retry_on must be an Exception subclass or a tuple of them, not {retry_on!r}"
            )
    return types


def is_async(fn: Callable[..., Any]) -> bool:
    """True for an `async def` function (or a partial of one, or an object whose __call__ is)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)
    )


class _Refused(TypeError):
    """What `fn` returned cannot be a result (a coroutine in a sync mode, an async generator):
    the batch's error, raised by map_io, never an item's value."""


def _refuse(value: Any) -> _Refused:
    """The TypeError for a value no mode can take as a result; a coroutine is closed unawaited."""
    close = getattr(value, "close", None)
    if inspect.iscoroutine(value) and close is not None:
        close()  # never run: no "coroutine ... was never awaited" warning at exit
    if inspect.isasyncgen(value):
        return _Refused(
            "fn returned an async generator (an async def with yield): fn is called once per "
            "item and must return (or, async, await) that item's value"
        )
    return _Refused(
        f"fn returned a {type(value).__name__} object, an awaitable, and mode 'threads' or "
        "'sequential' awaits nothing: pass an `async def` function (`async def f(k): return "
        "await fetch(session, k)`), which runs on asyncio, or use mode='asyncio', which awaits "
        "what fn returns"
    )


def _unusable(value: Any) -> bool:
    """True for a value no result may be: an awaitable (its type has __await__, as
    `collections.abc.Awaitable` asks, without the ABC's slower check) or an async generator."""
    kind = type(value)
    return hasattr(kind, "__await__") or kind is types.AsyncGeneratorType


async def _awaited(value: Any) -> Any:
    """`value` awaited until it is no longer awaitable (a coroutine an async fn returned
    unawaited runs too); _Refused for an async generator."""
    while _unusable(value):
        if inspect.isasyncgen(value):
            raise _refuse(value)
        value = await value
    return value


class _Batch(Generic[R]):
    """The state one batch's workers share: the input, the results, the first failure."""

    def __init__(self, plan: Plan[R], items: Iterable[Any]) -> None:
        self.plan = plan
        self.items: Iterator[Any] = iter(items)
        self.results: list[Any] = []
        self.failure: list[BaseException] = []
        self.ordered = plan.collect and plan.order == "input"

    def take(self) -> tuple[int, Any] | None:
        """The next (slot, item), or None when the input is done (or the batch failed)."""
        if self.failure:
            return None
        for item in self.items:  # raises what the user's iterator raises: the batch's error
            slot = -1
            if self.ordered:
                slot = len(self.results)
                self.results.append(None)
            return slot, item
        return None

    def done(self, slot: int, result: R) -> None:
        plan = self.plan
        if slot >= 0:
            self.results[slot] = result
        elif plan.collect:
            self.results.append(result)
        if plan.on_result is not None:
            plan.on_result(result)


# The sync driver: sequential in the calling thread, or kept daemon threads.


class _ThreadPool:
    """Daemon threads kept between calls, as many as the most ever busy at once.

    Starting 100 threads took 110 to 190 ms on a busy 2-core machine, most of the ideal 0.2 s of
    the thread benchmark. Daemon threads: after Ctrl-C the interpreter waits on no call.
    """

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):  # threads do not survive a fork
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` on a kept thread (a new one only if none is idle)."""
        with self._lock:
            start = not self._idle
            self._idle -= not start
        self._jobs.put(job)
        if start:
            threading.Thread(target=self._serve, name="partally-io", daemon=True).start()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            job()  # never raises: the job records its failure itself
            # Idle once the job is over: the next batch, started as this one ends, finds the
            # thread free rather than starting another (50 ms a thread on a busy machine).
            with self._lock:
                self._idle += 1


THREADS = _ThreadPool()


class _SyncDriver(Generic[R]):
    """Runs a sync `call` over the batch on `workers` threads (1: in the calling thread)."""

    def __init__(self, call: Callable[[Any], Any], batch: _Batch[R], workers: int) -> None:
        self.call, self.batch, self.workers = call, batch, workers
        self.lock = threading.Lock()  # guards the input, the results and the bookkeeping
        self.started = self.active = 0
        self.finished = threading.Event()
        plan = batch.plan
        self.pacer = Pacer(plan.rate) if plan.rate else None
        self.gates: dict[Hashable, threading.Semaphore] = {}

    def run(self) -> list[R]:
        if self.workers == 1:  # sequential: in this thread, so Ctrl-C lands here directly
            self.started = self.active = 1
            self._work()
        else:
            try:
                self._spawn()
                # In short waits: a Ctrl-C that the kernel hands to a worker thread only sets
                # Python's flag, and a wait without a timeout would never wake to see it.
                while not self.finished.wait(0.05):
                    pass
            except BaseException:
                with self.lock:  # tells the workers to stop taking items
                    self.batch.failure.append(KeyboardInterrupt())
                raise
        if self.batch.failure:
            raise self.batch.failure[0]
        return self.batch.results

    def _spawn(self) -> None:
        """Start one more worker (the caller holds the lock, or nothing runs yet)."""
        self.started += 1
        self.active += 1
        THREADS.submit(self._work)

    def _work(self) -> None:
        batch = self.batch
        try:
            while True:
                with self.lock:
                    taken = batch.take()
                    if taken is None:
                        return
                    if self.started < self.workers:  # one more worker while items keep coming
                        self._spawn()
                result = self._one(taken[1])
                with self.lock:
                    batch.done(taken[0], result)
        except BaseException as exc:  # on_result or the input raised, or Ctrl-C (sequential)
            with self.lock:
                batch.failure.append(exc)
            if self.workers == 1:
                raise
        finally:
            with self.lock:
                self.active -= 1
                if not self.active:
                    self.finished.set()

    def _one(self, item: Any) -> R:
        plan = self.batch.plan
        start, attempt = time.perf_counter(), 0
        while True:
            attempt += 1
            try:
                value = self._attempt(item)
            except _Refused:  # fn itself is wrong for this mode: the batch's error
                raise
            except Exception as exc:  # the item's own failure, never the batch's
                pause = plan.retry.pause(exc, attempt, item)
                if pause is None:
                    return plan.make(item, None, exc, attempt, time.perf_counter() - start)
                time.sleep(pause)
            else:
                return plan.make(item, value, None, attempt, time.perf_counter() - start)

    def _attempt(self, item: Any) -> Any:
        plan = self.batch.plan
        gate = None
        if plan.key is not None:
            group = plan.key(item)
            with self.lock:
                gate = self.gates.get(group)
                if gate is None:
                    gate = self.gates[group] = threading.Semaphore(plan.key_limit or 1)
            gate.acquire()
        try:
            if self.pacer is not None:
                with self.lock:
                    wait = self.pacer.reserve(time.monotonic())
                if wait > 0:
                    time.sleep(wait)
            value = self.call(item)
        finally:
            if gate is not None:
                gate.release()
        if _unusable(value):
            raise _refuse(value)
        return value


# The async driver: tasks on the running event loop.


class _AsyncDriver(Generic[R]):
    """Runs `call` (async, or sync returning an awaitable) over the batch on `workers` tasks."""

    def __init__(self, call: Callable[[Any], Any], batch: _Batch[R], workers: int) -> None:
        self.call, self.batch, self.workers = call, batch, workers
        self.tasks: list[asyncio.Task[None]] = []
        self.active = 0
        self.finished = asyncio.Event()
        plan = batch.plan
        self.pacer = Pacer(plan.rate) if plan.rate else None
        self.gates: dict[Hashable, asyncio.Semaphore] = {}

    async def run(self) -> list[R]:
        self._spawn()
        try:
            await self.finished.wait()
        except BaseException:  # cancelled (Ctrl-C): stop the workers before going
            await self._stop()
            raise
        if self.batch.failure:
            await self._stop()
            raise self.batch.failure[0]
        return self.batch.results

    async def _stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def _spawn(self) -> None:
        self.active += 1
        self.tasks.append(asyncio.ensure_future(self._work()))

    async def _work(self) -> None:
        batch = self.batch
        try:
            while (taken := batch.take()) is not None:
                if len(self.tasks) < self.workers:
                    self._spawn()
                batch.done(taken[0], await self._one(taken[1]))
        except BaseException as exc:  # on_result or the input raised; fn raised CancelledError
            batch.failure.append(exc)
        finally:
            self.active -= 1
            if not self.active or batch.failure:
                self.finished.set()

    async def _one(self, item: Any) -> R:
        plan = self.batch.plan
        start, attempt = time.perf_counter(), 0
        while True:
            attempt += 1
            try:
                value = await self._attempt(item)
            except _Refused:  # fn itself is wrong: the batch's error
                raise
            except Exception as exc:  # the item's own failure, never the batch's
                pause = plan.retry.pause(exc, attempt, item)
                if pause is None:
                    return plan.make(item, None, exc, attempt, time.perf_counter() - start)
                await asyncio.sleep(pause)
            else:
                return plan.make(item, value, None, attempt, time.perf_counter() - start)

    async def _attempt(self, item: Any) -> Any:
        plan = self.batch.plan
        if plan.key is None and self.pacer is None:  # the common case, kept short
            value = self.call(item)
            if inspect.isawaitable(value):  # an async fn's coroutine, or a sync fn's awaitable
                value = await value
            return await _awaited(value) if _unusable(value) else value
        gate = None
        if plan.key is not None:
            group = plan.key(item)
            gate = self.gates.get(group)
            if gate is None:
                gate = self.gates[group] = asyncio.Semaphore(plan.key_limit or 1)
            await gate.acquire()
        try:
            if self.pacer is not None:
                wait = self.pacer.reserve(time.monotonic())
                if wait > 0:
                    await asyncio.sleep(wait)
            value = self.call(item)
            if inspect.isawaitable(value):  # an async fn's coroutine, or a sync fn's awaitable
                value = await value
            return await _awaited(value) if _unusable(value) else value
        finally:
            if gate is not None:
                gate.release()


def _workers(limit: int, items: Iterable[Any]) -> int:
    return min(limit, len(items)) if isinstance(items, Sized) else limit


def run_sync(call: Callable[[Any], Any], items: Iterable[Any], plan: Plan[R], workers: int) -> list[R]:
    """Run `call` over `items` on `workers` threads (1: in this thread); checked arguments."""
    workers = max(1, min(workers, _workers(plan.limit, items)))
    return _SyncDriver(call, _Batch(plan, items), workers).run()


async def run_async(call: Callable[[Any], Any], items: Iterable[Any], plan: Plan[R]) -> list[R]:
    """Run `call` over `items` on at most `plan.limit` tasks of the running loop."""
    if not _workers(plan.limit, items):
        return []
    return await _AsyncDriver(call, _Batch(plan, items), plan.limit).run()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (the `uvloop` extra), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def run_coroutine(coro: Awaitable[T], twin: str) -> T:
    """Run `coro` to its end from sync code, as `asyncio.run` does (on uvloop if installed);
    RuntimeError naming `twin` inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        close = getattr(coro, "close", None)
        if close:
            close()  # never awaited: no "coroutine was never awaited" warning
        raise RuntimeError(
            f"mode='asyncio' cannot run inside a running event loop; await {twin}(...) instead"
        )
    try:
        if sys.version_info < (3, 11):  # no asyncio.Runner: asyncio's own loop
            return asyncio.run(coro)  # type: ignore[arg-type]
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(coro)  # type: ignore[arg-type]
    except KeyboardInterrupt as exc:  # asyncio.run chains the workers' CancelledError to it:
        exc.__suppress_context__ = True  # one traceback for one Ctrl-C, not two
        raise


def _io_result(item: Any, value: Any, error: Exception | None, attempts: int, elapsed: float) -> IOResult[Any]:
    return IOResult(item, value, error, attempts, elapsed)


def _plan(
    items: Any,
    limit: Any,
    retries: Any,
    retry_on: Any,
    backoff: Any,
    rate: Any,
    key: Any,
    key_limit: Any,
    order: Any,
    collect: Any,
    on_result: Any,
) -> Plan[IOResult[Any]]:
    check_plan(
        items, limit=limit, retries=retries, rate=rate, key=key, key_limit=key_limit,
        order=order, on_result=on_result, backoff=backoff,
    )
    if not isinstance(collect, bool):
        raise TypeError(f"collect must be True or False, not {collect!r}")
    retry = Retry(retries, _exception_types(retry_on), backoff)
    return Plan(limit, retry, _io_result, rate, key, key_limit, order, collect, on_result)


async def amap_io(
    fn: Callable[[Any], Awaitable[T]] | Callable[[Any], T],
    items: Iterable[Any],
    *,
    limit: int = 50,
    retries: int = 0,
    retry_on: type[Exception] | tuple[type[Exception], ...] = Exception,
    backoff: float = BACKOFF,
    rate: float | None = None,
    key: Callable[[Any], Hashable] | None = None,
    key_limit: int | None = None,
    order: str = "input",
    collect: bool = True,
    on_result: Callable[[IOResult[T]], None] | None = None,
) -> list[IOResult[T]]:
    """Await `fn(item)` for each item on the running loop; see `map_io` for the arguments.

    `fn` is an async function; a sync one returning an awaitable (`lambda k: fetch(session, k)`)
    works too, its awaitable awaited (a plain sync one would block the loop: run it with
    `map_io(mode="threads")`). A result is never an awaitable: what fn returns is awaited until
    it is not, and an async generator is refused (TypeError).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, not {type(fn).__name__}")
    plan = _plan(items, limit, retries, retry_on, backoff, rate, key, key_limit, order, collect, on_result)
    return await run_async(fn, items, plan)


def map_io(
    fn: Callable[[Any], T] | Callable[[Any], Awaitable[T]],
    items: Iterable[Any],
    mode: str | None = None,
    *,
    limit: int = 50,
    retries: int = 0,
    retry_on: type[Exception] | tuple[type[Exception], ...] = Exception,
    backoff: float = BACKOFF,
    rate: float | None = None,
    key: Callable[[Any], Hashable] | None = None,
    key_limit: int | None = None,
    order: str = "input",
    collect: bool = True,
    on_result: Callable[[IOResult[T]], None] | None = None,
) -> list[IOResult[T]]:
    """Call `fn(item)` for each item concurrently; an `IOResult` for each, in input order.

    `mode` is "asyncio" (an `async def fn`, on an event loop), "threads" (a sync `fn` on at most
    `limit` threads, at most MAX_THREADS) or "sequential" (one call at a time, in this thread);
    None picks "asyncio" for an async `fn`, else "threads". The asyncio mode runs its own event
    loop (uvloop's where it is installed: the `uvloop` extra); from async code use `amap_io`.

    - `items`: any iterable, read lazily as workers free up (a generator is never listed).
    - `limit`: at most this many calls in flight.
    - `retries`, `retry_on`, `backoff`: a call that raises one of the `retry_on` exception types
      is tried again up to `retries` times, after `backoff` seconds, doubling (at most 30 s).
    - `rate`: at most this many calls start per second, evenly spaced (not in bursts).
    - `key`, `key_limit`: at most `key_limit` calls in flight for items with one `key(item)`
      (a host, a table, a user).
    - `order`: "input" (the default) or "completed" (the results in the order they finished).
    - `collect`: False keeps no results (map_io returns []): they go only to `on_result`, so
      memory stays flat however many items there are.
    - `on_result(result)` is called with each result as it comes (in the worker's thread in
      threads mode); an exception it raises stops the batch and propagates.

    A sync `fn` that returns an awaitable (a lambda binding an argument of an async function)
    is refused with a TypeError in "threads" and "sequential" mode, where nothing could await
    it: pass an `async def`, or mode="asyncio", which awaits it. A result is never an
    un-awaited coroutine.

    Whatever `fn` raises (an `Exception`) is that item's error result (`result.error`), never the
    batch's. Bad arguments raise TypeError or ValueError before any call; an exception raised by
    the `items` iterator itself, KeyboardInterrupt (Ctrl-C stops promptly: threads are daemons,
    tasks are cancelled) and SystemExit propagate.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, not {type(fn).__name__}")
    if mode is None:
        mode = "asyncio" if is_async(fn) else "threads"
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}, expected one of {list(MODES)} or None")
    if mode != "asyncio" and is_async(fn):
        raise TypeError(f"fn is an async function: run it with mode='asyncio', not {mode!r}")
    plan = _plan(items, limit, retries, retry_on, backoff, rate, key, key_limit, order, collect, on_result)
    if mode == "asyncio":
        return run_coroutine(run_async(fn, items, plan), "amap_io")
    return run_sync(fn, items, plan, 1 if mode == "sequential" else min(limit, MAX_THREADS))
