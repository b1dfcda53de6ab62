"""This machine: its cores, its CPU and its NVIDIA GPUs, read without importing any GPU library."""

from __future__ import annotations

import functools
import glob
import os
import platform


def cores() -> int:
    """The number of CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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
