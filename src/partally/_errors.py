"""partally's exceptions.

    RuntimeError
    ├── BackendUnavailable   a backend asked for by name cannot run here (the reason says why)
    ├── BackendFailed        a backend failed mid-run (a pool broken, a cluster or broker lost)
    └── WorkloadError        the workload's own function raised (names the workload and the i)

Bad arguments raise the built-in ``TypeError`` (wrong type) and ``ValueError`` (wrong value).
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

_PACKAGE = str(Path(__file__).parent) + os.sep  # partally's own frames are not the user's


class BackendUnavailable(RuntimeError):
    """A backend asked for by name cannot run on this machine; the message says why."""


class BackendFailed(RuntimeError):
    """A backend failed mid-run (its pool broke, its cluster or broker was lost); the message
    says which and what to do, the cause is chained (``__cause__``). No partial result is
    returned: the call ran on nothing else."""


class WorkloadError(RuntimeError):
    """A workload's function raised; ``workload``, ``index`` (or None) and ``where`` say where.

    ``frame``: the user's frame that partally called, as ``(file, line, function, source
    line)``, or None where there is none (compiled code, a value that cannot be converted). It
    travels with the error to other processes, which a traceback does not."""

    def __init__(self, workload: str, index: int | None, error: BaseException, where: str = ""):
        self.workload, self.index, self.where = workload, index, where
        self.frame = user_frame(error)
        at = f"at i = {index}" if index is not None else where or "at an unknown i"
        super().__init__(f"workload {workload!r} raised {type(error).__name__} {at}: {error}")

    def __reduce__(self) -> tuple:  # crosses process pools with its message intact
        return _rebuilt, (self.args[0], self.workload, self.index, self.where, self.frame)


def user_frame(error: BaseException) -> tuple[str, int, str, str] | None:
    """The first frame of ``error``'s traceback outside partally (the function partally called):
    ``(file, line, function, source line)``, or None."""
    for frame in traceback.extract_tb(error.__traceback__):
        if not frame.filename.startswith(_PACKAGE):
            return frame.filename, frame.lineno or 0, frame.name, (frame.line or "").strip()
    return None


def _rebuilt(
    message: str, workload: str, index: int | None, where: str, frame: tuple | None = None
) -> WorkloadError:
    error = WorkloadError.__new__(WorkloadError)
    RuntimeError.__init__(error, message)
    error.workload, error.index, error.where = workload, index, where
    error.frame = tuple(frame) if frame is not None else None  # JSON (celery) gives a list
    return error
