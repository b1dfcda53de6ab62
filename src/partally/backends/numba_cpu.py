"""``numba``: a workload's Python function compiled by Numba, ``prange`` over chunks.

Every reduction is exact (``_numba_kernels``): each chunk writes a row of int64 words that the
host reads as Python ints (``_exact_rows``), so the partial does not depend on the workers or the
slices, and matches the Python backends' bit for bit where the element values match.

Compiled kernels are kept per workload and cached on disk where Numba can (the first run on a
machine pays for compilation, later processes load it). ``workers`` above the cores is capped to
the cores (and to ``NUMBA_NUM_THREADS``); concurrent calls from several threads are fine (Numba's
default OpenMP and TBB layers are thread-safe).

fork: Numba's GNU OpenMP threads do not survive ``os.fork()``: a child forked after a parallel
kernel ran in its parent is killed by libgomp (SIGTERM) at its first parallel kernel. In such a
child this backend refuses at once, with ``BackendUnavailable`` saying why and what works (the
'spawn' start method, another backend, or ``NUMBA_THREADING_LAYER=workqueue`` / tbb, fork-safe
layers). The choice of layer is left to the user: the workqueue layer survives fork but aborts the
process when two threads launch kernels at once, so partally does not force it.

Ctrl-C while numba is being imported is never a verdict on its availability: ``unavailable()``
lets the KeyboardInterrupt through, and says "not installed" only when numba cannot be found.
"""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from partally._errors import BackendUnavailable, WorkloadError
from partally.backends import _trust
from partally.backends._common import Tally, capped_workers, paced_slices
from partally.backends.base import Backend, PerWorkload, Progress
from partally.workloads import Workload

_CHUNKS_PER_WORKER = 4  # static schedule: a little slack for uneven chunks (primes)
_FORK_REFUSAL = (
    "this process was forked (os.fork) after Numba's GNU OpenMP threads had started in its "
    "parent, and they do not survive fork (libgomp would kill this process); start workers "
    "with the 'spawn' or 'forkserver' start method, use another backend ('native', "
    "'processes'), or set NUMBA_THREADING_LAYER=workqueue (fork-safe, not thread-safe) "
    "before the first run"
)


def _fork_safe_layer() -> bool:
    """Whether Numba's threading layer in use survives fork (tbb, workqueue, Intel OpenMP)."""
    try:
        import numba

        if numba.threading_layer() != "omp":
            return True  # tbb and workqueue survive fork
        from numba.np.ufunc import omppool

        return getattr(omppool, "openmp_vendor", "GNU") != "GNU"  # Intel OpenMP survives fork
    except Exception:  # noqa: BLE001 - unknown: refuse rather than be killed
        return False


def _interrupted(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is behind ``exc`` (its cause or context, at any depth)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def _noting_ctrl_c() -> Iterator[list[bool]]:
    """Note a Ctrl-C that arrives inside the block, for the caller to raise once the block ends.
    Raised inside it, it can be lost: numpy turns it into an ImportError ("PyCapsule_Import could
    not import module"), and inside llvmlite's ctypes callbacks or importlib's module-lock weakref
    callback it is printed as "Exception ignored" with a traceback and dropped. Only where
    Python's own SIGINT handler is in place, in the main thread."""
    noted: list[bool] = []
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield noted
        return

    def handler(signum: int, frame: object) -> None:
        noted.append(True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def _import_failure(exc: Exception, interrupted: bool) -> str:
    """Why numba cannot be imported, in words: "not installed" only when it cannot be found."""
    try:
        found = importlib.util.find_spec("numba") is not None
    except (ImportError, ValueError):  # a half-imported numba in sys.modules
        found = True
    if not found:
        return f"numba is not installed ({exc}); install it with `pip install numba`"
    if interrupted:
        return (
            "numba is installed, but an import of it (or of numpy) in this process was "
            f"interrupted (Ctrl-C) and left it half-imported ({exc}); start a new Python process"
        )
    return f"numba is installed but failed to import ({type(exc).__name__}: {exc})"


def _made_unless_ctrl_c(workload: Workload) -> tuple[Callable, type]:
    """``_make_kernel(workload)``; a Ctrl-C that comes meanwhile is raised once it is made (a
    compile takes a second at most; raised inside it, llvmlite's ctypes callbacks print it with a
    traceback and drop it, and Numba's cache loader may swallow it: a long run would go on)."""
    with _noting_ctrl_c() as ctrl_c:
        made = _make_kernel(workload)
    if ctrl_c:
        raise KeyboardInterrupt
    return made


class NumbaBackend(Backend):
    name = "numba"
    family = "Numba"
    compiled = True
    uses_workers = True
    has_startup = True

    def __init__(self) -> None:
        self._kernels: PerWorkload[tuple[Callable, type]] = PerWorkload(_made_unless_ctrl_c)
        self._refused: dict[str, str | None] = {}  # by Workload.key
        self._guard = _trust.Guard()  # user kernels: checked on a sample, followed after
        self._imported = False  # numba imported in this process (that cannot be undone)
        self._import_interrupted = False  # a Ctrl-C cut an import of numba short in this process
        self._forked_after_launch = False  # forked after Numba's parallel threads had started

    def after_fork_in_child(self) -> None:
        parallel = sys.modules.get("numba.np.ufunc.parallel")
        if parallel is not None and getattr(parallel, "_is_initialized", False):
            self._forked_after_launch = True

    def _fork_refusal(self) -> str | None:
        """Why Numba's parallel kernels cannot run in this forked process, or None."""
        if self._forked_after_launch and not _fork_safe_layer():
            return _FORK_REFUSAL
        return None

    def unavailable(self) -> str | None:
        """Why numba cannot run here, or None. A Ctrl-C during the import is raised once the
        import is over (a second at most; never a verdict), and only a successful import is
        kept: a failed one is tried again."""
        if self._imported:  # the hot path: no signal handler to swap on every call
            return self._fork_refusal()
        try:
            with _noting_ctrl_c() as ctrl_c:
                import numba  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - a probe never raises: ImportError, or numpy's
            # RuntimeError ("CPU dispatcher tracer already initialized") after a cut-short import
            if ctrl_c or _interrupted(exc):
                self._import_interrupted = True
                raise KeyboardInterrupt from exc
            return _import_failure(exc, self._import_interrupted)
        except KeyboardInterrupt:
            self._import_interrupted = True
            raise
        self._imported = True
        if ctrl_c:  # noted during the import, which is whole
            raise KeyboardInterrupt
        return self._fork_refusal()

    def supports(self, workload: Workload) -> str | None:
        """Built-in counts compile on every supported Python (a refusal already met is said);
        a user function, or a reduction that takes the values' type, is compiled once here to
        find out (a fraction of a second). A refusal carries the compiler's reason, whatever
        its type (a function whose values the reduction cannot take says their type)."""
        if self.unavailable() is not None:
            return None
        workload = self._guard.current(workload)
        if workload.key not in self._refused and (not workload.builtin or workload.reduce != "count"):
            try:
                self._kernel(workload)  # compiled now, or loaded from the disk cache
            except BackendUnavailable:
                pass  # noted in self._refused
        return self._refused.get(workload.key)

    @property
    def started(self) -> bool:
        return bool(self._kernels)

    def _kernel(self, workload: Workload) -> tuple[Callable, type]:
        """``workload``'s compiled kernel (made once) and the integer type it takes.

        Any exception from Numba's compiler (a ``TypingError``, an ``AssertionError`` from a
        pass, ...) is noted as a refusal for this workload and raised as ``BackendUnavailable``;
        so is a user function whose values differ from Python's on a sample (``_trust``).
        """
        workload = self._guard.current(workload)
        refusal = self._refused.get(workload.key)
        if refusal is not None:
            raise BackendUnavailable(f"backend 'numba' cannot run {workload.name!r}: {refusal}")
        try:
            with warnings.catch_warnings():  # the refusal says it all
                warnings.simplefilter("ignore")
                made = self._kernels(workload)
        except Exception as exc:  # noqa: BLE001 - any compile error is a refusal
            from partally.backends import _numba_kernels

            self._refused[workload.key] = _numba_kernels.refusal(exc, workload)
            raise BackendUnavailable(
                f"backend 'numba' cannot run {workload.name!r}: {self._refused[workload.key]}"
            ) from exc
        if workload.key not in self._refused:  # trusted once its values match Python's
            values = None if workload.builtin else _element_partials(workload, *made)
            self._refused[workload.key] = values and _trust.disagreement(workload, "numba", values)
            return self._kernel(workload)
        return made

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
        from partally.backends import _exact_rows  # numpy: only when run
        import numba

        refusal = self._fork_refusal()
        if refusal is not None:
            raise BackendUnavailable(f"backend 'numba' cannot run in this process: {refusal}")
        kernel, index_type = self._kernel(workload)
        workers = capped_workers(workers, numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(workers)
        seed = index_type(workload.compiled_seed(seed))
        reduction = workload.reduction
        flip = _exact_rows.FLIP.get(reduction.name)  # the extreme kernels' last argument
        tally = Tally(progress, hi - lo)
        total = reduction.zero()
        for a, b in paced_slices(lo, hi, workload.cpu_slice):
            chunks = max(1, min(workers * _CHUNKS_PER_WORKER, b - a))
            try:
                out = kernel(a, b, seed, chunks) if flip is None else kernel(a, b, seed, chunks, flip)
            except Exception as exc:  # the workload's own function raised, compiled
                raise WorkloadError(
                    workload.name, None, exc, where=f"somewhere in [{a}, {b}) on numba"
                ) from exc
            total = reduction.merge(total, _exact_rows.partial(reduction, out))
            tally.add(b - a)
        return total


def _element_partials(workload: Workload, kernel: Callable, index_type: type) -> _trust.Values:
    """The compiled partial of each single element [i, i + 1): its value as the reduction takes it."""
    from partally.backends import _exact_rows  # numpy: only when run
    reduction = workload.reduction
    extra = () if reduction.name not in _exact_rows.FLIP else (_exact_rows.FLIP[reduction.name],)

    def values(indices: list[int], seed: int) -> list[Any]:
        import numba

        typed = index_type(workload.compiled_seed(seed))
        threads = numba.get_num_threads()  # this thread's setting: other threads keep theirs
        numba.set_num_threads(1)  # one element a call: no parallel region's barrier to wait at
        try:  # (2 threads on a loaded machine: 5 us to 0.3 ms a call, and far worse at times)
            rows = [kernel(i, i + 1, typed, 1, *extra) for i in indices]
        finally:
            numba.set_num_threads(threads)
        return [_exact_rows.partial(reduction, row) for row in rows]

    return values


def _make_kernel(workload: Workload) -> tuple[Callable, type]:
    from partally.backends import _exact_rows  # numpy: only when run
    from partally.backends import _numba_kernels

    return _numba_kernels.kernel(workload, _exact_rows.kernel_name(workload.reduction))
