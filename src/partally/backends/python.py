"""``python``: one pure-Python loop, the guide's baseline."""

from __future__ import annotations

from typing import Any

from partally.backends._common import Tally, slices
from partally.backends.base import Backend, Progress
from partally.workloads import Workload

_PIECE = 2**16  # elements between progress reports (when a callback asks for them)


class PythonBackend(Backend):
    name = "python"
    family = "Python"
    runs_python = True

    def run(
        self,
        workload: Workload,
        lo: int,
        hi: int,
        *,
        workers: int,
        seed: int,
        progress: Progress | None = None,
    ) -> Any:
        if progress is None:
            return workload.run_range(lo, hi, seed)
        reduction, tally = workload.reduction, Tally(progress, hi - lo)
        total = reduction.zero()
        for piece in slices(lo, hi, _PIECE):
            total = reduction.merge(total, workload.run_range(*piece, seed))
            tally.piece(piece)
        return total
