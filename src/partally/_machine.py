"""This machine: its cores, its CPU and its NVIDIA GPUs, read without importing any GPU library;
and whether this Python runs with the GIL."""

from __future__ import annotations

import functools
import glob
import os
import platform
import sys


def cores() -> int:
    """The number of CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def gil_enabled() -> bool:
    """Whether this process runs with the GIL: always on a standard CPython build; on a
    free-threaded one (3.14t) only if it was switched on (``PYTHON_GIL=1``, ``-X gil=1``, or an
    imported extension not declared free-threading safe). Read at each call, since an import can
    switch it on."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_enabled is None else bool(is_enabled())


@functools.cache
def load_average() -> float:
    """The 1-minute load average (runnable processes), 0.0 where the OS does not report one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def cpu_model() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model


def cpu_device() -> str:
    """This machine's CPU in words, e.g. ``'CPU: AMD EPYC (2 cores)'``."""
    return f"CPU: {cpu_model()} ({cores()} cores)"


def gpu_names() -> str | None:
    """The NVIDIA GPUs' model names, read from the driver's /proc files (no CUDA import)."""
    names = []
    for path in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        try:
            with open(path, encoding="utf-8") as info:
                for line in info:
                    if line.startswith("Model:"):
                        names.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    return ", ".join(names) or None
