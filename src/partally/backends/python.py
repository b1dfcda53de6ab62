"""``python``: one pure-Python loop, the guide's baseline."""

from __future__ import annotations

from typing import Any

from partally.backends._common import Tally, paced_slices
from partally.backends.base import Backend, Progress
from partally.workloads import Workload

_FIRST, _EVERY_S = 256, 0.2  # with a progress callback: the first piece, then a piece per 0.2 s


class PythonBackend(Backend):
    name = "python"
    args_travel = "the caller's arrays themselves, read in place"
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
        for piece in paced_slices(lo, hi, _FIRST, _EVERY_S):
            total = reduction.merge(total, workload.run_range(*piece, seed))
            tally.piece(piece)
        return total
