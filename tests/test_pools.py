"""The merge loop under the pool backends (backends/_common.py), on executors whose timing the test
controls: run_bounded sums every piece once, never has more than ``in_flight`` pending and draws
pieces lazily; run_on_pool survives a retired pool and raises the failures of a current one.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import BrokenExecutor, Future, ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partally._machine import cores
from partally.backends._common import (
    capped_workers,
    paced_slices,
    run_bounded,
    run_on_pool,
    slices,
    split_range,
)
from partally.workloads import reductions

SUM = reductions.get("sum", "int")  # the partials below are ints: merged by adding

HANG_S = 30  # a hang bound: every wait below ends in microseconds when the code is right


def covers(pieces, lo, hi):
    """Whether ``pieces`` are non-empty and follow each other from lo to hi."""
    ends = [lo] + [end for _, end in pieces]
    return all(start == ends[k] and start < end for k, (start, end) in enumerate(pieces)) and (
        ends[-1] == hi
    )


@given(lo=st.integers(0, 2**62), size=st.integers(0, 10**6), parts=st.integers(1, 100))
def test_split_range_cuts_near_equal_pieces(lo, size, parts):
    pieces = split_range(lo, lo + size, parts)
    assert covers(pieces, lo, lo + size)
    assert len(pieces) == min(parts, size)
    lengths = {end - start for start, end in pieces}
    assert max(lengths, default=0) - min(lengths, default=0) <= 1
    assert split_range(lo + size, lo, parts) == []


@given(lo=st.integers(0, 2**62), size=st.integers(0, 10**5), step=st.integers(1, 10**4))
def test_slices_cover_the_range_in_steps(lo, size, step):
    pieces = list(slices(lo, lo + size, step))
    assert covers(pieces, lo, lo + size)
    assert all(end - start == step for start, end in pieces[:-1])
    assert all(end - start <= step for start, end in pieces)


@given(lo=st.integers(0, 2**62), size=st.integers(0, 10**7), first=st.integers(1, 10**3),
       most=st.integers(1, 10**6))
def test_paced_slices_cover_the_range_and_keep_to_the_most(lo, size, first, most):
    pieces = list(paced_slices(lo, lo + size, first, most=most))
    assert covers(pieces, lo, lo + size)
    assert all(end - start <= max(first, most) for start, end in pieces)


def test_paced_slices_grow_fourfold_when_fast():
    pieces = list(paced_slices(0, 10**6, 10, target_s=1e9, most=10**5))
    assert [end - start for start, end in pieces[:4]] == [10, 40, 160, 640]
    assert max(end - start for start, end in pieces) == 10**5


def test_capped_workers():
    assert capped_workers(10**6) == cores() and capped_workers(0) == capped_workers(-5) == 1
    assert capped_workers(3, limit=1) == 1 and capped_workers(1, limit=10**6) == 1
    assert capped_workers(10**6, limit=10**6) == cores()


def value(piece):
    """A piece's partial: the sum of its integers (a lost or doubled piece changes the total)."""
    lo, hi = piece
    return (lo + hi - 1) * (hi - lo) // 2


class Driven:
    """An executor whose futures finish one at a time, oldest first, and only once the caller has
    as many pending as it may (``in_flight``, or all that are left): so the bound is reached, and
    passing it is seen, whatever the threads' timing. ``fail``: pieces that raise instead."""

    def __init__(self, pieces: int, in_flight: int, fail=()):
        self.pieces, self.in_flight, self.fail = pieces, in_flight, set(fail)
        self.outstanding: deque[tuple[Future, tuple[int, int]]] = deque()
        self.submitted: list[Future] = []
        self.most = 0
        self.stalled = False
        self.lock = threading.Condition()
        self.thread = threading.Thread(target=self._finish, daemon=True)
        self.thread.start()

    def submit(self, piece):
        future = Future()
        with self.lock:
            self.outstanding.append((future, piece))
            self.submitted.append(future)
            self.most = max(self.most, len(self.outstanding))
            self.lock.notify_all()
        return future

    def _finish(self):
        finished = 0
        while finished < self.pieces:
            with self.lock:
                level = min(self.in_flight, self.pieces - finished)
                if not self.lock.wait_for(lambda: len(self.outstanding) >= level, HANG_S):
                    self.stalled = True
                    return
                future, piece = self.outstanding.popleft()
            finished += 1
            if not future.set_running_or_notify_cancel():
                continue  # cancelled by the caller
            if piece in self.fail:
                future.set_exception(ValueError(f"piece {piece}"))
                return
            future.set_result(value(piece))


@pytest.mark.parametrize("in_flight", [1, 2, 3, 7])
@pytest.mark.parametrize("parts", [1, 5, 37])
def test_run_bounded_sums_each_piece_once_and_fills_the_bound(in_flight, parts):
    pieces = split_range(10, 5000, parts)
    pool = Driven(len(pieces), in_flight)
    drawn = []

    def lazily():
        for piece in pieces:
            assert len(drawn) == len(pool.submitted)  # the last piece drawn was submitted
            drawn.append(piece)
            yield piece

    done = []
    assert run_bounded(pool.submit, lazily(), in_flight, SUM, done) == sum(range(10, 5000))
    assert not pool.stalled
    assert pool.most == min(in_flight, len(pieces))
    assert sorted(done) == [(piece, value(piece)) for piece in pieces]


def test_run_bounded_without_pieces_is_zero():
    assert run_bounded(Driven(0, 2).submit, [], 2, SUM) == 0


def test_an_error_is_raised_and_the_pending_pieces_are_cancelled():
    pieces = split_range(0, 1000, 10)
    pool = Driven(len(pieces), 3, fail={pieces[4]})
    done = []
    with pytest.raises(ValueError, match=r"piece \(400, 500\)"):
        run_bounded(pool.submit, iter(pieces), 3, SUM, done)
    assert [piece for piece, _ in done] == pieces[:4]
    assert len(pool.submitted) == 7  # pieces 4, 5 and 6 were in flight; none drawn beyond them
    assert all(future.cancelled() for future in pool.submitted[5:])


class Gate:
    """Tasks that wait for ``open()`` (on a one-thread pool: one runs, the rest stay queued)."""

    def __init__(self):
        self.event = threading.Event()

    def task(self, piece):
        assert self.event.wait(HANG_S)
        return value(piece)


@pytest.mark.parametrize("retire_at", [[3], [12], [12, 12]])
def test_a_pool_retired_under_a_submit_passes_its_rest_to_the_next(retire_at):
    """close() between two submits: the next submit is refused; what was not counted is redone
    on the next pool (retired at its 3rd submit: nothing was counted there yet; at its 12th, at
    least 9 pieces were, and are not counted again; [12, 12]: the second pool is retired too)."""
    gate = Gate()
    if retire_at[0] > 3:
        gate.event.set()  # the pools count until they are retired
    pools = [ThreadPoolExecutor(1) for _ in retire_at] + [ThreadPoolExecutor(2)]
    current, calls = [0], []

    def submit(pool, piece):
        calls.append((pool, piece))
        k = pools.index(pool)
        if k < len(retire_at) and sum(p is pool for p, _ in calls) == retire_at[k]:
            current[0] = k + 1
            pool.shutdown(wait=False, cancel_futures=True)
            gate.event.set()
        return pool.submit(gate.task, piece)

    pieces = split_range(0, 10_000, 40)
    acquire, retired = lambda: pools[current[0]], lambda pool: pool is not pools[current[0]]
    total = run_on_pool(acquire, submit, retired, iter(pieces), 3, SUM)
    pools[-1].shutdown()
    assert total == sum(range(10_000))
    last = [piece for pool, piece in calls if pool is pools[-1]]
    assert len(last) == len(set(last)) and set(last) >= set(pieces[sum(retire_at) - 1 :])
    if retire_at == [3]:
        assert sorted(last) == pieces  # none counted on the first: no result collected there
    else:  # each retired pool counted at least 9 pieces (12 submitted, at most 3 in flight)
        assert len(last) <= len(pieces) - 9 * len(retire_at)


def test_a_pool_retired_while_its_pieces_wait_passes_them_on():
    """close() while the caller waits: the queued pieces are cancelled, counted on the next pool."""
    gate = Gate()
    first, second = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    current, submitted = [first], []

    def submit(pool, piece):
        future = pool.submit(gate.task, piece)
        submitted.append(pool)
        if pool is first and len(submitted) == 3:  # all in flight: retire it from elsewhere
            threading.Thread(target=retire).start()
        return future

    def retire():
        current[0] = second
        first.shutdown(wait=False, cancel_futures=True)
        gate.event.set()

    pieces = split_range(0, 10_000, 40)
    total = run_on_pool(lambda: current[0], submit, lambda pool: pool is not current[0],
                          iter(pieces), 3, SUM)
    second.shutdown()
    assert total == sum(range(10_000))
    # the cancelled ones reached the caller before the running one finished: nothing counted
    # on the first pool, everything on the second, once
    assert submitted.count(second) == len(pieces)


def test_a_current_pool_that_refuses_raises_its_error():
    def submit(pool, piece):
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    acquired = []

    def acquire():
        acquired.append("pool")
        return "pool"

    with pytest.raises(RuntimeError, match="interpreter shutdown") as caught:
        run_on_pool(acquire, submit, lambda pool: pool != "pool", iter([(0, 5)]), 2, SUM)
    assert type(caught.value) is RuntimeError and acquired == ["pool"]


def test_a_broken_current_pool_raises_broken_executor():
    def submit(pool, piece):
        future = Future()
        future.set_exception(BrokenExecutor("a worker died"))
        return future

    acquired = []

    def acquire():
        acquired.append("pool")
        return "pool"

    with pytest.raises(BrokenExecutor, match="a worker died"):
        run_on_pool(acquire, submit, lambda pool: pool != "pool", iter([(0, 5), (5, 9)]), 2, SUM)
    assert acquired == ["pool"]


def test_a_task_error_is_raised_even_when_the_pool_was_retired():
    def submit(pool, piece):
        future = Future()
        future.set_exception(ValueError("the user's function failed"))
        return future

    with pytest.raises(ValueError, match="the user's function failed"):
        run_on_pool(lambda: "pool", submit, lambda pool: True, iter([(0, 5)]), 2, SUM)


@pytest.mark.parametrize("attempts", [1, 3])
def test_pools_retired_again_and_again_give_up_after_the_attempts(attempts):
    acquired = []

    def acquire():
        acquired.append(object())
        return acquired[-1]

    def submit(pool, piece):
        raise RuntimeError("cannot schedule new futures after shutdown")

    with pytest.raises(RuntimeError, match="after shutdown"):
        run_on_pool(acquire, submit, lambda pool: True, iter([(0, 5)]), 2, SUM,
                    attempts=attempts)
    assert len(acquired) == attempts
