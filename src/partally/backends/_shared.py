"""The user's arrays in shared memory, for the process pool: placed once per call, attached once
per worker, never pickled into a task.

``placed(args)`` copies each array into a ``multiprocessing.shared_memory`` segment of its own and
gives the args with each array replaced by a ``SharedArray`` (a name, a dtype and a shape: a few
bytes to pickle); the segments are removed when the block ends, whatever happens (an error,
Ctrl-C, a dead worker). In a worker a ``SharedArray`` unpickles as a read-only NumPy view of its
segment, attached once and kept while the worker's tasks name it; the segments of an earlier call
are closed when a task names new ones, so a worker holds one call's data at most.

The creator alone owns a segment: a worker attaches it untracked (3.13's ``track=False``), or,
before 3.13, registers it with the resource tracker it shares with its parent (spawned workers
do), where the parent's entry already stands; the parent's unlink removes it. Were the parent
killed, that tracker removes the segments it left.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SharedArray:
    """An array in the shared-memory segment ``name``: how a task names it."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    call: str  # the call it belongs to: a worker keeps one call's segments

    def __reduce__(self) -> tuple[Any, ...]:
        return _attached, (self.name, self.dtype, self.shape, self.call)


@contextlib.contextmanager
def placed(args: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    """``args`` with each array copied into a segment of its own (C order) and named by a
    ``SharedArray``; every segment is closed and removed when the block ends."""
    import numpy as np
    from multiprocessing import shared_memory

    segments = []
    shipped = []
    call = secrets.token_hex(8)
    try:
        for value in args:
            if not hasattr(value, "dtype"):
                shipped.append(value)
                continue
            name = f"partally-{secrets.token_hex(8)}"
            segment = shared_memory.SharedMemory(name=name, create=True, size=max(value.nbytes, 1))
            segments.append(segment)
            np.copyto(np.ndarray(value.shape, value.dtype, buffer=segment.buf), value)
            shipped.append(SharedArray(name, value.dtype.str, tuple(value.shape), call))
        yield tuple(shipped)
    finally:
        for segment in segments:
            with contextlib.suppress(OSError):
                segment.close()
            with contextlib.suppress(OSError):
                segment.unlink()


class _Attachments:
    """A worker's attached segments: those of the call its tasks come from."""

    def __init__(self) -> None:
        self.segments: dict[str, Any] = {}
        self.call = ""
        self.lock = threading.Lock()

    def array(self, name: str, dtype: str, shape: tuple[int, ...], call: str) -> Any:
        import numpy as np

        with self.lock:
            if call != self.call:  # a new call: an earlier one's segments are done with
                for old in self.segments.values():
                    with contextlib.suppress(BufferError, OSError):
                        old.close()
                self.segments, self.call = {}, call
            segment = self.segments.get(name)
            if segment is None:
                segment = self.segments[name] = _attach(name)
            array = np.ndarray(shape, np.dtype(dtype), buffer=segment.buf)
            array.flags.writeable = False
            return array


_WORKER = _Attachments()  # per worker process: what its tasks attached


def _attach(name: str) -> Any:
    from multiprocessing import shared_memory

    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)
    # Registered again with the resource tracker the pool's workers share with their parent: a
    # no-op there (one entry per name), removed once when the parent unlinks it.
    return shared_memory.SharedMemory(name=name)


def _attached(name: str, dtype: str, shape: tuple[int, ...], call: str) -> Any:
    return _WORKER.array(name, dtype, shape, call)
