"""The base of the backends that compile the user's function (numba, numba-cuda): compile once
per workload, refuse with the backend's own name, trust per range (``_trust``).

A compile error is a refusal of that workload (kept, said with the compiler's reason). A user
function is trusted over [0, hi) once its compiled values agree with Python's on a sample of
that range; the built-ins are defined everywhere and need no sample.
"""

from __future__ import annotations

from collections.abc import Callable
from partally._errors import BackendUnavailable
from partally.backends import _trust
from partally.backends.base import Backend, PerWorkload
from partally.workloads import Workload

Kernel = tuple[Callable, type]  # the compiled kernel and the integer type it takes


class CompiledBackend(Backend):
    """A backend that compiles the workload's own Python function. Subclasses give ``_make``
    (the kernel), ``_compile_refusal`` (a compile error in words) and ``_element_partials``
    (the compiled partial of single elements, for the trust sample)."""

    compiled = True
    sample_most = 1024  # indices a trust sample compares at most

    def __init__(self) -> None:
        self._kernels: PerWorkload[Kernel] = PerWorkload(self._make)
        self._refused: dict[str, str] = {}  # compile refusals, by Workload.key
        self._errors: dict[str, Exception] = {}  # the compile errors behind them (the cause)
        self._guard = _trust.Guard()  # user kernels: followed after compiling, trusted per range

    def _make(self, workload: Workload) -> Kernel:
        raise NotImplementedError

    def _compile_refusal(self, error: Exception, workload: Workload) -> str:
        raise NotImplementedError

    def _element_partials(self, workload: Workload, made: Kernel) -> _trust.Values:
        raise NotImplementedError

    def _compiles_to_answer(self) -> bool:
        """Whether ``supports`` compiles to find out (the simulator does not: too slow)."""
        return True

    @property
    def started(self) -> bool:
        return bool(self._kernels)

    def supports(self, workload: Workload, n: int | None = None) -> str | None:
        """Why it cannot run ``workload`` (over [0, n), when n is given), or None. A user
        function, or a reduction that takes the values' type, is compiled once here to find
        out (a fraction of a second); with n, its values are also sampled on [0, n) (once per
        range). Never raises."""
        if self.unavailable() is not None or not self._compiles_to_answer():
            return None
        if workload.builtin and workload.reduce == "count":  # compiles everywhere: only said
            return self._refused.get(self._guard.current(workload).key)
        return self._made(workload, n)[1]

    def kernel(self, workload: Workload, hi: int | None = None) -> Kernel:
        """``workload``'s compiled kernel (made once) and the integer type it takes, trusted on
        [0, hi) when hi is given. A compile error, or values that differ from Python's inside
        [0, hi), is ``BackendUnavailable`` naming this backend."""
        made, refusal = self._made(workload, hi)
        if made is None:
            workload = self._guard.current(workload)
            error = BackendUnavailable(
                f"backend {self.name!r} cannot run {workload.name!r}: {refusal}"
            )
            raise error from self._errors.get(workload.key)
        return made

    def _made(self, workload: Workload, hi: int | None) -> tuple[Kernel | None, str | None]:
        """The kernel and None, or None and why not (a compile error, kept; a disagreement
        inside [0, hi))."""
        workload = self._guard.current(workload)
        refusal = self._refused.get(workload.key)
        if refusal is not None:
            return None, refusal
        try:
            made = self._kernels(workload)
        except Exception as exc:  # noqa: BLE001 - any compile error is a refusal
            self._errors.setdefault(workload.key, exc)
            refusal = self._compile_refusal(exc, workload)
            return None, self._refused.setdefault(workload.key, refusal)
        if hi is None or workload.builtin:
            return made, None
        partials = self._element_partials(workload, made)
        refusal = self._guard.trusted(workload, hi, self.name, partials, self.sample_most)
        return (made, None) if refusal is None else (None, refusal)

    def current(self, workload: Workload) -> Workload:
        """``workload`` as its kernel is compiled now (``_trust.Guard.current``)."""
        return self._guard.current(workload)
