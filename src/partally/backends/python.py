"""``python``: one pure-Python loop, the guide's baseline."""

from __future__ import annotations

from partally.backends._common import cpu_device
from partally.workloads import count_range

NAME = "python"
PARALLEL = False

device = cpu_device


def unavailable() -> str | None:
    return None


def count(workload: str, lo: int, hi: int, *, workers: int, seed: int) -> int:
    return count_range(workload, lo, hi, seed)
