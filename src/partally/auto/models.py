"""Cost models for ``backend="auto"``: t(n) = overhead + n / rate, piecewise, and choosing by them.

The model of one backend on one workload is fitted through the median time at a ladder of sizes;
each pair of adjacent sizes gives one (overhead, rate) line. One line is not enough on real
machines: the C++ backend runs small ranges on one thread and spawns threads above a block size,
so its time jumps 20x between 1e4 and 1e5 while Numba's persistent pool does not. Between timed
sizes the model interpolates; past the largest it extrapolates the last line, below the smallest
the first. A backend's first call in a process (JIT compile or load, pool or context start) is
kept apart as ``startup``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from partally._format import size_words

TIE = 0.10  # predicted times this close are a tie (see ``pick``)
WORK_S = 2e-3  # a timed run shorter than this is mostly per-call cost, not work
TINY = 32  # below this, compute(auto) runs pure Python without looking at any model


@dataclass(frozen=True)
class Model:
    """Fitted time of one backend on one workload: t(n) = overhead + n / rate, piecewise.

    ``sizes`` and ``seconds`` are the timed points (median seconds per run, made non-decreasing);
    ``startup`` is the one-time cost of the first call in a process, not part of t(n).
    """

    sizes: tuple[int, ...]
    seconds: tuple[float, ...]
    startup: float = 0.0
    source: str = "calibration"  # where the points came from: "calibration" or "real calls"
    at: float = 0.0  # when (seconds since the epoch; 0: unknown)

    def __post_init__(self) -> None:
        if len(self.sizes) < 2 or len(self.sizes) != len(self.seconds):
            raise ValueError("a model needs at least two timed sizes, one time for each")
        if any(b <= a for a, b in zip(self.sizes, self.sizes[1:])):
            raise ValueError("timed sizes must increase")

    def line(self, k: int) -> tuple[float, float]:
        """(overhead s, rate elements/s) of the line through timed points k and k + 1."""
        (n0, n1), (t0, t1) = self.sizes[k : k + 2], self.seconds[k : k + 2]
        if t1 <= t0:
            return t0, math.inf
        rate = (n1 - n0) / (t1 - t0)
        return t0 - n0 / rate, rate

    def predict(self, n: int) -> float:
        """Predicted seconds for [0, n) once the backend is started. Past the largest timed
        size, at least the time per element measured there: a model timed only at a few small
        sizes (equal times: an infinite rate) never predicts work for free."""
        if n > self.sizes[-1]:
            return self.seconds[-1] + (n - self.sizes[-1]) / self.rate
        k = min(max(bisect.bisect_right(self.sizes, n) - 1, 0), len(self.sizes) - 2)
        overhead, rate = self.line(k)
        return max(overhead + n / rate, 0.0)

    @property
    def overhead(self) -> float:
        """Seconds per call at small n (the first line's intercept, at least 0)."""
        return max(self.line(0)[0], 0.0)

    @property
    def rate(self) -> float:
        """Elements per second at large n: the last line's slope; where that line is flat, or
        fitted through only two points too short to tell work from per-call cost (under
        ``WORK_S``), at most the largest timed size over its time (never infinite)."""
        slope = self.line(len(self.sizes) - 2)[1]
        if slope == math.inf or (len(self.sizes) < 3 and self.seconds[-1] < WORK_S):
            return min(slope, self.sizes[-1] / max(self.seconds[-1], 1e-9))
        return slope


def fit(
    sizes: Iterable[int],
    medians: Iterable[float],
    startup: float = 0.0,
    source: str = "calibration",
    at: float = 0.0,
) -> Model:
    """The model through the median time at each size.

    Times are made non-decreasing in n (each one at most every later one): a larger range never
    takes less, so a lower later time means the earlier one was noise.
    """
    sizes, seconds = list(sizes), [float(t) for t in medians]
    for k in range(len(seconds) - 2, -1, -1):
        seconds[k] = min(seconds[k], seconds[k + 1])
    return Model(tuple(sizes), tuple(seconds), max(float(startup), 0.0), source, at)


def corrected(model: Model, n: int, seconds: float, at: float) -> Model:
    """``model`` refitted through a real call's time at n: the point (n, seconds) replaces what
    disagrees with it (a point below n that took longer), the points above n are scaled by how
    far off the model was at n (what made it wrong there, a busy machine, made them wrong too);
    with no point left beside it, a line through the origin."""
    off = seconds / model.predict(n) if model.predict(n) > 0 else 1.0
    points = {
        size: t if size < n else t * off
        for size, t in zip(model.sizes, model.seconds)
        if (size < n and t <= seconds) or size > n
    }
    points[n] = seconds
    if len(points) < 2:
        points[max(1, n // 2)] = seconds * max(1, n // 2) / n
    sizes = sorted(points)
    return fit(sizes, [points[size] for size in sizes], model.startup, "real calls", at)


def pick(times: Mapping[str, float], models: Mapping[str, Model]) -> str:
    """The backend to run, given the time predicted for each: the fastest, but among those within
    ``TIE`` of the fastest, the one with the least per-call overhead (then the first listed).

    Least overhead usually means fewer threads to wake on each call, and on a busy machine a
    backend that synchronises threads on every call can stall for a scheduler tick; a near-tie
    also keeps the choice from flipping on measurement noise.
    """
    bound = min(times.values()) * (1 + TIE)
    return min((name for name in times if times[name] <= bound), key=lambda k: models[k].overhead)


def fastest(models: Mapping[str, Model], n: int) -> str:
    """The backend ``pick`` runs at n, once every backend is started."""
    return pick({name: model.predict(n) for name, model in models.items()}, models)


def crossovers(models: Mapping[str, Model], lo: int, hi: int) -> list[tuple[str, int]]:
    """Who is fastest from where: [(backend, first n), ...] covering [lo, hi], in order of n."""
    if not models:
        return []
    grid = sorted({lo, hi, *(round(10 ** (e / 20)) for e in range(0, 20 * 19) if lo < 10 ** (e / 20) < hi)})
    regions = [(fastest(models, lo), lo)]
    for a, b in zip(grid, grid[1:]):
        winner = fastest(models, b)
        if winner == regions[-1][0]:
            continue
        while b - a > 1:  # bisect to the first n where the new winner leads
            mid = (a + b) // 2
            if fastest(models, mid) == regions[-1][0]:
                a = mid
            else:
                b = mid
        regions.append((fastest(models, b), b))
    return regions


def crossover_words(models: Mapping[str, Model], limit: int) -> str:
    """Who auto picks, in words: "python below 32, native 32 to 4.1e4, numba above 4.1e4"."""
    regions = [("python", 0)]
    for name, start in crossovers(models, TINY, limit):
        if name != regions[-1][0]:
            regions.append((name, start))
    if len(regions) == 1:
        return "python at every n"
    words = []
    for k, (name, start) in enumerate(regions):
        if k == 0:
            words.append(f"{name} below {size_words(regions[1][1])}")
        elif k == len(regions) - 1:
            words.append(f"{name} above {size_words(start)}")
        else:
            words.append(f"{name} {size_words(start)} to {size_words(regions[k + 1][1])}")
    return ", ".join(words)
