"""``python``: one pure-Python loop, the guide's baseline."""

from __future__ import annotations

from partally.backends.base import Backend
from partally.workloads import Workload


class PythonBackend(Backend):
    name = "python"
    family = "Python"
    runs_python = True

    def count(self, workload: Workload, lo: int, hi: int, *, workers: int, seed: int) -> int:
        return workload.count_range(lo, hi, seed)
