"""``backend="auto"``: cost models, their calibration and cache, and the dispatcher that uses them.

``dispatcher()`` is this process's one ``Dispatcher``; ``explain`` is the public way to ask it.
"""

from __future__ import annotations

import threading

from partally.auto.dispatcher import Dispatcher, Explanation

__all__ = ["Dispatcher", "Explanation", "dispatcher", "explain", "use_dispatcher"]

_made: list[Dispatcher] = []
_lock = threading.Lock()


def dispatcher() -> Dispatcher:
    """This process's dispatcher, made on first use."""
    if not _made:
        with _lock:
            if not _made:
                _made.append(Dispatcher())
    return _made[0]


def use_dispatcher(replacement: Dispatcher | None) -> None:
    """Make ``replacement`` this process's dispatcher (None: a new default one on next use)."""
    with _lock:
        _made.clear()
        if replacement is not None:
            _made.append(replacement)


def explain(
    n: int, workload: object = "count", *, reduce: str | None = None, args: tuple = ()
) -> Explanation:
    """Which backend ``partally.compute(n, workload=workload, reduce=reduce)`` would run on here,
    and why.

    Returns an ``Explanation``: ``.backend`` is the choice, ``.reason`` the rule that made it,
    ``.predicted`` the cost model's seconds per backend when the models decided, ``.values``
    what is reduced (e.g. "sum of float values (inferred from f(0, 0))"; "" for a count),
    ``.args`` how the args travel on the chosen backend;
    ``str()`` of it reads as one line. Like ``compute``, the first call for a workload and
    reduction may calibrate (about 3 s, then cached on this machine).
    """
    from partally import _validate

    chosen = _validate.workload(workload, reduce)
    n = _validate.size(n, chosen)
    return dispatcher().explain(_validate.args(args, chosen, n, 0), n)
