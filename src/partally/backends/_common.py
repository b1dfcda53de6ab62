"""Helpers shared by the backends: how to cut a range into pieces, how many workers help, how to
run pieces on a pool lazily, a bounded number in flight, merging their partials, and how to tell
a caller's progress callback."""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import BrokenExecutor, CancelledError, Future
from typing import Any

from partally._machine import cores
from partally.workloads.reductions import Reduction


class Tally:
    """Tells ``progress(done, total)`` the elements finished as pieces finish (None: nothing)."""

    def __init__(self, progress: Callable[[int, int], None] | None, total: int) -> None:
        self._progress = progress
        self.total = total
        self.done = 0

    def add(self, elements: int) -> None:
        """``elements`` more are finished."""
        if self._progress is not None:
            self.done += elements
            self._progress(self.done, self.total)

    def piece(self, piece: tuple[int, int]) -> None:
        """The piece [a, b) is finished."""
        self.add(piece[1] - piece[0])


def split_range(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """Cut [lo, hi) into at most ``parts`` contiguous, non-empty pieces of near-equal size."""
    return list(iter_range(lo, hi, parts))


def iter_range(lo: int, hi: int, parts: int) -> Iterator[tuple[int, int]]:
    """``split_range``'s pieces, one at a time: memory does not grow with ``parts``."""
    size = hi - lo
    if size <= 0:
        return
    parts = max(1, min(parts, size))
    step, extra = divmod(size, parts)
    start = lo
    for k in range(parts):
        end = start + step + (1 if k < extra else 0)
        yield start, end
        start = end


def slices(lo: int, hi: int, step: int) -> Iterator[tuple[int, int]]:
    """[lo, hi) in consecutive slices of at most ``step`` elements (calls short enough that
    Python gets control back, and sees Ctrl-C, between them)."""
    for start in range(lo, hi, step):
        yield start, min(hi, start + step)


def paced_slices(
    lo: int, hi: int, first: int, target_s: float = 0.1, most: int = 2**40
) -> Iterator[tuple[int, int]]:
    """[lo, hi) in consecutive slices, each sized from how long the caller took on the last one,
    so that each takes about ``target_s``: Python gets control back (and sees Ctrl-C) that often,
    and a fast predicate is not called in slices so short that the per-call cost shows. A slice
    never grows past ``most``, nor past ``first`` where that is larger (``count``'s folded loop)."""
    step, start = max(1, first), lo
    most = max(most, step)
    while start < hi:
        end = min(hi, start + step)
        began = time.perf_counter()
        yield start, end
        took = time.perf_counter() - began
        growth = 4.0 if took <= 0 else min(4.0, target_s / took)  # grow gently, shrink at once
        step = max(1, min(most, int((end - start) * growth)))
        start = end


def capped_workers(workers: int, limit: int | None = None) -> int:
    """``workers`` capped to what can help on this machine: the cores this process may use (and
    ``limit``, a pool's size, when given). More would only add threads or processes that wait."""
    top = cores() if limit is None else min(limit, cores())
    return max(1, min(workers, top))


def run_bounded(
    submit: Callable[[tuple[int, int]], Future],
    pieces: Iterable[tuple[int, int]],
    in_flight: int,
    reduction: Reduction,
    done: list[tuple[tuple[int, int], Any]] | None = None,
    tally: Tally | None = None,
) -> Any:
    """Submit each piece lazily, at most ``in_flight`` pending at once, and merge their partials
    (``reduction.merge``, in the order they finish).

    ``workers`` so limits this call's share of a shared pool, and memory stays bounded however many
    pieces there are. On any exception (Ctrl-C included) the pending futures are cancelled: nothing
    of this call stays queued behind it. ``done``, when given, collects ``(piece, partial)`` for
    each piece merged (a caller that must redo the rest after its pool was replaced knows what is
    left); ``tally`` is told each piece merged.
    """
    # Completion comes by done-callbacks, not concurrent.futures.wait(): a future cancelled by the
    # pool's shutdown(cancel_futures=True) never wakes wait()'s waiters, but runs its callbacks.
    finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
    pending: dict[Future, tuple[int, int]] = {}
    total = reduction.zero()

    def collect() -> None:
        nonlocal total
        future = finished.get()
        if future not in pending:  # already collected
            return
        partial = future.result()  # raises the task's error; the finally cancels the rest
        piece = pending.pop(future)
        total = reduction.merge(total, partial)
        if done is not None:
            done.append((piece, partial))
        if tally is not None:
            tally.piece(piece)

    try:
        pieces = iter(pieces)
        while True:
            while len(pending) >= in_flight:  # a free slot first, then the next piece: a piece
                collect()  # is never drawn and then dropped
            piece = next(pieces, None)
            if piece is None:
                break
            future = submit(piece)
            pending[future] = piece
            future.add_done_callback(finished.put)
        while pending:
            collect()
        return total
    finally:
        for future in pending:
            future.cancel()


class _PoolGone(Exception):
    """A submit was refused: the pool was shut down or broken (the cause says which)."""


def run_on_pool(
    acquire: Callable[[], Any],
    submit: Callable[[Any, tuple[int, int]], Future],
    retired: Callable[[Any], bool],
    pieces: Iterable[tuple[int, int]],
    in_flight: int,
    reduction: Reduction,
    tally: Tally | None = None,
    attempts: int = 20,
) -> Any:
    """Merge the partials of ``submit(pool, piece)`` over the pieces on a shared pool
    (``run_bounded``), surviving a pool that another call or ``close()`` retires meanwhile: the
    pieces not yet merged go to the pool ``acquire()`` gives next. A failure of the pool still
    current (``retired(pool)`` false: a worker died) is raised (``BrokenExecutor``), as is any
    error of a task.
    """
    pieces = iter(pieces)
    redo: deque[tuple[int, int]] = deque()

    def source() -> Iterator[tuple[int, int]]:
        while True:
            if redo:
                yield redo.popleft()
                continue
            piece = next(pieces, None)
            if piece is None:
                return
            yield piece

    total = reduction.zero()
    for attempt in range(attempts):
        pool = acquire()
        submitted: list[tuple[int, int]] = []
        done: list[tuple[tuple[int, int], Any]] = []

        def send(piece: tuple[int, int], pool: Any = pool, submitted: list = submitted) -> Future:
            submitted.append(piece)
            try:
                return submit(pool, piece)
            except RuntimeError as exc:  # shut down, or BrokenExecutor (a RuntimeError)
                raise _PoolGone() from exc

        try:
            rest = run_bounded(send, source(), in_flight, reduction, done, tally)
            return reduction.merge(total, rest)
        except (_PoolGone, CancelledError, BrokenExecutor) as exc:
            if not retired(pool) or attempt == attempts - 1:
                if isinstance(exc, _PoolGone):
                    raise exc.__cause__ from None  # type: ignore[misc]
                raise
            for _, partial in done:
                total = reduction.merge(total, partial)
            counted = {piece for piece, _ in done}
            redo.extendleft(piece for piece in submitted if piece not in counted)
    raise AssertionError("unreachable")
