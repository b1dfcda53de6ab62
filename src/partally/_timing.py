"""Wall-clock measurement shared by the bench and the dispatcher's calibration."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Seconds per run over several runs."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median: how far the runs disagree."""
        return (max(self.samples) - min(self.samples)) / self.median if self.median else 0.0


def measure(run: Callable[[], object], repeat: int) -> tuple[Timing, object]:
    """Time ``repeat`` calls of ``run`` (already warmed up); return the timing and the last result."""
    samples = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        samples.append(time.perf_counter() - start)
    return Timing(tuple(samples)), result
