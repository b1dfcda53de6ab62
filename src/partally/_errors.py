"""partally's exceptions.

    RuntimeError
    ├── BackendUnavailable   a backend asked for by name cannot run here (the reason says why)
    └── WorkloadError        the workload's own function raised (names the workload and the i)

Bad arguments raise the built-in ``TypeError`` (wrong type) and ``ValueError`` (wrong value).
"""

from __future__ import annotations


class BackendUnavailable(RuntimeError):
    """A backend asked for by name cannot run on this machine; the message says why."""


class WorkloadError(RuntimeError):
    """A workload's function raised; ``workload``, ``index`` (or None) and ``where`` say where."""

    def __init__(self, workload: str, index: int | None, error: BaseException, where: str = ""):
        self.workload, self.index, self.where = workload, index, where
        at = f"at i = {index}" if index is not None else where or "at an unknown i"
        super().__init__(f"workload {workload!r} raised {type(error).__name__} {at}: {error}")

    def __reduce__(self) -> tuple:  # crosses process pools with its message intact
        return _rebuilt, (self.args[0], self.workload, self.index, self.where)


def _rebuilt(message: str, workload: str, index: int | None, where: str) -> WorkloadError:
    error = WorkloadError.__new__(WorkloadError)
    RuntimeError.__init__(error, message)
    error.workload, error.index, error.where = workload, index, where
    return error
