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
from partally.backends._compiled import CompiledBackend, Kernel
from partally.backends.base import Progress
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


def _made_unless_ctrl_c(workload: Workload) -> Kernel:
    """``_make_kernel(workload)``; a Ctrl-C that comes meanwhile is raised once it is made (a
    compile takes a second at most; raised inside it, llvmlite's ctypes callbacks print it with a
    traceback and drop it, and Numba's cache loader may swallow it: a long run would go on)."""
    with _noting_ctrl_c() as ctrl_c:
        made = _make_kernel(workload)
    if ctrl_c:
        raise KeyboardInterrupt
    return made


class NumbaBackend(CompiledBackend):
    name = "numba"
    args_travel = (
        "kernel arguments: the caller's arrays in place (compiled once per argument types, "
        "bounds-checked)"
    )
    family = "Numba"
    uses_workers = True
    has_startup = True

    def __init__(self) -> None:
        super().__init__()
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

    def _make(self, workload: Workload) -> Kernel:
        with warnings.catch_warnings():  # the refusal says it all
            warnings.simplefilter("ignore")
            return _made_unless_ctrl_c(workload)

    def _compile_refusal(self, error: Exception, workload: Workload) -> str:
        from partally.backends import _numba_kernels

        return _numba_kernels.refusal(error, workload)

    def _element_partials(self, workload: Workload, made: Kernel) -> _trust.Values:
        return _element_partials(workload, *made)

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
        kernel, index_type = self.kernel(workload, hi)
        workers = capped_workers(workers, numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(workers)
        typed = index_type(workload.compiled_seed(seed))
        reduction = workload.reduction
        flip = _exact_rows.FLIP.get(reduction.name)  # the extreme kernels' argument after chunks
        extra = () if flip is None else (flip,)
        tally = Tally(progress, hi - lo)
        total = reduction.zero()
        for a, b in paced_slices(lo, hi, workload.cpu_slice):
            chunks = max(1, min(workers * _CHUNKS_PER_WORKER, b - a))
            try:
                out, bad = kernel(a, b, typed, chunks, *extra, *workload.args)
            except Exception as exc:  # raised outside the chunks' own error handling
                if _interrupted(exc):  # a Ctrl-C that landed while Numba boxed the result
                    raise KeyboardInterrupt from None
                raise WorkloadError(
                    workload.name, None, exc, where=f"somewhere in [{a}, {b}) on numba"
                ) from exc
            if bad[0] >= 0:
                call = (kernel, typed, (*extra, *workload.args))
                raise _raised_in(workload, call, int(bad[0]), int(bad[1]), seed)
            total = reduction.merge(total, _exact_rows.partial(reduction, out))
            tally.add(b - a)
        return total


def _raised_in(
    workload: Workload, call: tuple[Callable, Any, tuple], a: int, b: int, seed: int
) -> Exception:
    """The error for a chunk [a, b) whose compiled function raised: found at its first i by
    halving [a, b) with the kernel on one chunk, then Python's own error at that i (a
    ``WorkloadError`` naming it); where Python raises nothing there, a refusal."""
    import numba

    kernel, typed, extra = call
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        while b - a > 1:
            mid = a + (b - a) // 2
            if kernel(a, mid, typed, 1, *extra)[1][0] >= 0:
                b = mid
            else:
                a = mid
    finally:
        numba.set_num_threads(threads)
    try:
        workload.run_range(a, b, seed)
    except WorkloadError as exc:
        return exc
    return BackendUnavailable(
        f"backend 'numba' cannot run {workload.name!r}: its compiled code raised at i = {a} "
        "where Python does not; run it on a Python backend (python, threads, processes)"
    )


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
            made = [kernel(i, i + 1, typed, 1, *extra, *workload.args) for i in indices]
        finally:
            numba.set_num_threads(threads)
        for i, (_, bad) in zip(indices, made):
            if bad[0] >= 0:
                raise ArithmeticError(f"the compiled function raised at i = {i}")
        return [_exact_rows.partial(reduction, row) for row, _ in made]

    return values


def _make_kernel(workload: Workload) -> Kernel:
    from partally.backends import _exact_rows  # numpy: only when run
    from partally.backends import _numba_kernels

    return _numba_kernels.kernel(workload, _exact_rows.kernel_name(workload.reduction))
