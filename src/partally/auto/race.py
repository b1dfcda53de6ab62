"""Auto's own calls as measurements: a race among backends the models cannot tell apart.

A cost model is fitted once, at a ladder of sizes, on a machine that may have been busy then; near
a crossover, or between two timed sizes, its prediction can be off by more than the gap between two
backends. So where the models leave more than one started backend within ``SPREAD`` of the least
predicted time, ``auto``'s next calls at that n are shared among them in turn (interleaved: a busy
spell of the machine lands on all of them alike) until each has a few timings (more for short
calls, whose times are noisier); from then on that n runs on the one with the least median time. A
race only ever runs backends the models predict at most ``SPREAD`` times the best, and only where
the best takes under ``MAX_S``, so what it costs is bounded by a few calls' worth of that
difference, once per (workload, n).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

SPREAD = 2.0  # contenders: predicted within this factor of the least predicted time
MAX_S = 1.0  # no race where the best predicted call takes longer than this (s)
SAMPLES = ((1e-4, 25), (1e-2, 9), (math.inf, 3))  # (calls predicted under s, timings each)
SAME = 0.05  # medians this close: the models' choice stays


def contenders(predicted: Mapping[str, float], leader: str) -> tuple[str, ...]:
    """The backends worth racing at one n, the models' choice ``leader`` first: those predicted
    within ``SPREAD`` of the least time, when that is under ``MAX_S``. One name: no race."""
    best = min(predicted.values())
    if best > MAX_S:
        return (leader,)
    others = sorted(
        (name for name, t in predicted.items() if name != leader and t <= best * SPREAD),
        key=predicted.__getitem__,
    )
    return (leader, *others)


@dataclass
class Race:
    """Timings of auto's calls at one (workload, n), shared in turn among ``contenders``.

    ``contenders[0]`` is the models' choice; ``samples`` is how many timings each one gets.
    """

    contenders: tuple[str, ...]
    samples: int
    times: dict[str, list[float]] = field(default_factory=dict)
    turn: int = 0

    @classmethod
    def among(cls, names: tuple[str, ...], predicted: float) -> Race:
        """A race among ``names``, whose best call is predicted to take ``predicted`` s."""
        samples = next(count for below, count in SAMPLES if predicted < below)
        return cls(names, samples, {name: [] for name in names})

    def next(self) -> str:
        """The contender that runs the next call (in turn, skipping those with every timing)."""
        for _ in range(len(self.contenders)):
            name = self.contenders[self.turn % len(self.contenders)]
            self.turn += 1
            if len(self.times[name]) < self.samples:
                return name
        return self.contenders[0]  # every timing taken, the last ones still running

    def add(self, name: str, seconds: float) -> None:
        """One call of ``name`` took ``seconds``."""
        if name in self.times and len(self.times[name]) < self.samples:
            self.times[name].append(seconds)

    @property
    def done(self) -> bool:
        return all(len(t) >= self.samples for t in self.times.values())

    def medians(self) -> dict[str, float]:
        """Median seconds per contender (those with a timing), fastest first."""
        found = {name: statistics.median(t) for name, t in self.times.items() if t}
        return dict(sorted(found.items(), key=lambda item: item[1]))

    def winner(self) -> str:
        """The contender with the least median time; the models' choice where it is within
        ``SAME`` of that (two medians that close are noise, and flipping would cost calls)."""
        medians = self.medians()
        fastest = next(iter(medians))
        leader = self.contenders[0]
        if medians[leader] <= medians[fastest] * (1 + SAME):
            return leader
        return fastest
