"""Numba CPU kernels: a workload's Python predicate compiled and inlined into a ``prange`` loop.

Imported only by the ``numba`` backend, on first use (importing numba costs about half a second).

Numba's disk cache keys a closure by its pickled cells, and a pickled dispatcher differs in every
process, so a kernel made by closing over the predicate would compile anew each time (about a
second). Each workload's kernel is therefore a module of its own: the kernel's source, written
once to the cache folder under a name made from a hash of the workload's code, with the compiled
predicate as a module global. Numba caches it beside that file; an edited function gets a new
file. Where no folder can be written (a read-only home), kernels compile in memory each process.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
from numba import njit, types

from partally._settings import cache_folder
from partally.workloads import Workload
from partally.workloads.user import digest

SIGNATURE_VERSION = 2  # bump when _SOURCE changes

_SOURCE = '''"""partally's Numba kernel for one workload (generated; safe to delete)."""
import numpy as np
from numba import prange

element = None  # the compiled predicate, set before the first compile
index_type = None  # np.uint64 or np.int64, set likewise


def count(lo, hi, seed, chunks):
    # Chunk bounds are computed serially: bound arithmetic inside the prange body, with the
    # unsigned loop index, miscounted ranges that cross 2**31 (numba 0.68).
    step, extra = divmod(hi - lo, chunks)
    bounds = np.empty(chunks + 1, np.int64)
    bounds[0] = lo
    for c in range(chunks):
        bounds[c + 1] = bounds[c] + step + (1 if c < extra else 0)
    # One partial row per chunk, written by its own iteration and added after the prange: no
    # scalar reduction for Numba's parfor pass to infer (that inference fails on Python 3.12+).
    partials = np.zeros(chunks, np.uint64)
    for c in prange(chunks):
        s = np.uint64(0)
        for i in range(bounds[c], bounds[c + 1]):  # `count`'s loop: LLVM folds it to b - a
            if element(index_type(i), seed):
                s += np.uint64(1)
        partials[c] = s
    total = np.uint64(0)
    for c in range(chunks):
        total += partials[c]
    return total
'''


def _folder() -> Path | None:
    """A writable folder for kernel sources and Numba's cache of them, or None."""
    folder = cache_folder() / "numba-kernels"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def _module(workload: Workload) -> ModuleType:
    """The kernel's module, from its file in the cache folder (written once), or in memory."""
    name = f"partally_kernel_{workload.name if workload.name.isidentifier() else 'w'}"
    name += f"_{digest(workload.element)}_v{SIGNATURE_VERSION}"
    folder = _folder()
    if folder is not None:
        path = folder / f"{name}.py"
        try:
            if not path.is_file() or path.read_text(encoding="utf-8") != _SOURCE:
                fd, tmp = tempfile.mkstemp(suffix=".py", dir=folder)
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    file.write(_SOURCE)
                os.replace(tmp, path)
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[name] = module  # Numba's cache finds the module again by its name
            return module
        except OSError:
            pass
    module = ModuleType(name)
    exec(compile(_SOURCE, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - our own source
    return module


def kernel(workload: Workload) -> tuple[Callable, type]:
    """``workload``'s kernel ``count(lo, hi, seed, chunks)``, compiled (or loaded from the disk
    cache) for i and seed of the returned type. Numba's errors propagate (TypingError ...)."""
    index_type = np.uint64 if workload.unsigned else np.int64
    module = _module(workload)
    module.element = njit(inline="always")(workload.element(index_type, njit))
    module.index_type = index_type
    cached = getattr(module, "__file__", None) is not None  # from a file Numba can cache beside
    compiled = njit(parallel=True, nogil=True, cache=cached)(module.count)
    numba_index = types.uint64 if index_type is np.uint64 else types.int64
    compiled.compile((types.int64, types.int64, numba_index, types.int64))
    return compiled, index_type


def refusal(error: BaseException, workload: Workload) -> str:
    """Why Numba cannot compile ``workload``, from its error: the first line that says."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    first = next((line for line in lines if not line.startswith("\x1b")), type(error).__name__)
    return f"Numba cannot compile {workload.name!r} ({type(error).__name__}: {first[:300]})"
