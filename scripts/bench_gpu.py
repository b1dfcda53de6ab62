"""Bench the GPU path on a GPU: kernels, whole calls, first-call costs, auto's choice, CPU ratios.

    python scripts/bench_gpu.py [--repeat 5] [--backends cuda,numba-cuda] [--cpu numba,native]
                                [--json PATH] [--summary PATH] [--quick]

Run by scripts/device_check.sh (after `partally calibrate`, so that auto's choice is the calibrated
one). What it measures, every count checked against its known value before its time is reported,
each time the median of --repeat runs after a warm-up:

- ``pi`` at 1e8, 1e9, 1e10 and ``primes`` at 1e7, 1e8, 1e9 on each GPU backend: the kernel time
  (CUDA events around each launch of one call, summed) and the whole ``partally.compute`` call;
  the call's overhead above its kernel;
- the same sizes on the CPU backends (numba, native; every core), for the GPU/CPU ratio;
- ``backend="auto"``'s choice at each size (``partally.explain``), against the fastest measured;
- first-call costs, each in a fresh process with empty kernel caches: CUDA context, loading
  counting.fatbin, compiling counting.cu with NVRTC (cold, then from CuPy's cache), numba-cuda's
  JIT compile and load, the first ``compute()``.

Writes the results as JSON (--json) after every case, so that a run cut short keeps what it
measured, and prints a table with the goals beside the numbers (--summary: also to a file).
Needs a CUDA device; without one it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import partally
from partally.backends import _gpu, get
from partally.backends._common import slices
from partally.workloads import BUILTINS

CASES = (("pi", 10**8), ("pi", 10**9), ("pi", 10**10),
         ("primes", 10**7), ("primes", 10**8), ("primes", 10**9))
QUICK_CASES = (("pi", 10**8), ("pi", 10**10), ("primes", 10**7), ("primes", 10**9))
# primes: shared/DESIGN.md; pi (seed 0): native and numba agreed on a CPU (pi 1e9: bench_core.py).
KNOWN = {
    ("pi", 10**8): 78_536_590,
    ("pi", 10**9): 785_401_279,
    ("pi", 10**10): 7_853_951_890,
    ("primes", 10**7): 664_579,
    ("primes", 10**8): 5_761_455,
    ("primes", 10**9): 50_847_534,
}
GOALS = {
    "pi_1e10_kernel_ms": 20.0,  # cuda, pi at 1e10: kernel time
    "primes_1e9_kernel_ms": 150.0,  # cuda, primes below 1e9: kernel time
    "overhead_us": 100.0,  # warm compute(n, backend="cuda") above its kernel
}
GPU_NAMES = ("cuda", "numba-cuda")


# ---- kernel timers: the backends' own launch loops, with CUDA events around each launch ----------

def cupy_kernel_seconds(workload: str, n: int) -> tuple[float, int]:
    """One call's launches of the cuda backend's kernel, timed with CuPy events."""
    import cupy

    from partally.backends import cuda

    chosen = BUILTINS[workload]
    kernel = cuda.module()[0].get_function(chosen.cuda_kernel)
    grid = (_gpu.default_blocks(),)
    out = cupy.zeros(1, dtype=cupy.uint64)
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    total_ms = 0.0
    for a, b in slices(0, n, chosen.gpu_slice):
        start.record()
        kernel(grid, (_gpu.THREADS,), (np.uint64(a), np.uint64(b), np.uint64(0), out))
        end.record()
        end.synchronize()
        total_ms += cupy.cuda.get_elapsed_time(start, end)
    return total_ms / 1e3, int(out.get()[0])


def numba_kernel_seconds(workload: str, n: int) -> tuple[float, int]:
    """One call's launches of the numba-cuda backend's kernel, timed with numba-cuda events."""
    from numba import cuda

    chosen = BUILTINS[workload]
    compiled, _ = get("numba-cuda").kernel(chosen)  # the compiled kernel itself
    kernel = compiled[_gpu.default_blocks(), _gpu.THREADS]
    out = cuda.to_device(np.zeros(1, dtype=np.uint64))
    start, end = cuda.event(timing=True), cuda.event(timing=True)
    total_ms = 0.0
    for a, b in slices(0, n, chosen.gpu_slice):
        start.record()
        kernel(np.uint64(a), np.uint64(b), np.uint64(0), out)
        end.record()
        end.synchronize()
        total_ms += cuda.event_elapsed_time(start, end)
    return total_ms / 1e3, int(out.copy_to_host()[0])


KERNEL_TIMERS: dict[str, Callable[[str, int], tuple[float, int]]] = {
    "cuda": cupy_kernel_seconds,
    "numba-cuda": numba_kernel_seconds,
}


def wall(function: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def repeats(n: int, base: int, cpu: bool) -> int:
    """Fewer runs where one run is long (the CPU at the largest sizes)."""
    return max(2, base // 2) if cpu and n >= 10**9 else base


# ---- first-call costs: each in a fresh process -----------------------------------------------------

_FIRST_CUDA = r"""
import json, os, time
t = {}
s = time.perf_counter(); import partally; from partally.backends import cuda; t["import_partally_s"] = time.perf_counter() - s
s = time.perf_counter(); import cupy; t["import_cupy_s"] = time.perf_counter() - s
s = time.perf_counter(); cupy.zeros(1).get(); t["context_s"] = time.perf_counter() - s
s = time.perf_counter(); module, source = cuda.module(); t["module_load_s"] = time.perf_counter() - s
t["source"] = source
s = time.perf_counter(); r = partally.compute(10**6, backend="cuda", workload="pi"); t["first_compute_s"] = time.perf_counter() - s
s = time.perf_counter(); r2 = partally.compute(10**6, backend="cuda", workload="pi"); t["second_compute_s"] = time.perf_counter() - s
t["count_ok"] = r == r2 == 785806
print("JSON" + json.dumps(t))
"""

_FIRST_NUMBA = r"""
import json, time
t = {}
s = time.perf_counter(); import partally; t["import_partally_s"] = time.perf_counter() - s
s = time.perf_counter(); from numba import cuda; t["import_numba_cuda_s"] = time.perf_counter() - s
s = time.perf_counter(); cuda.current_context(); t["context_s"] = time.perf_counter() - s
s = time.perf_counter(); r = partally.compute(10**6, backend="numba-cuda", workload="pi"); t["first_compute_s"] = time.perf_counter() - s
s = time.perf_counter(); r2 = partally.compute(10**6, backend="numba-cuda", workload="pi"); t["second_compute_s"] = time.perf_counter() - s
s = time.perf_counter(); p = partally.compute(10**6, backend="numba-cuda", workload="primes"); t["first_primes_compute_s"] = time.perf_counter() - s
t["count_ok"] = r == r2 == 785806 and p == 78498
print("JSON" + json.dumps(t))
"""


def first_call(code: str, env: dict[str, str]) -> dict:
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=180, env={**os.environ, **env})
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 180 s"}
    for line in done.stdout.splitlines():
        if line.startswith("JSON"):
            return json.loads(line[4:])
    lines = (done.stderr or done.stdout).strip().splitlines()
    return {"error": lines[-1] if lines else f"exit status {done.returncode}"}


def first_calls(names: list[str], log: Callable[[str], None]) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "cuda" in names:
            fresh = os.path.join(tmp, "cupy-fatbin")
            results["cuda_fatbin"] = first_call(_FIRST_CUDA, {"CUPY_CACHE_DIR": fresh})
            nvrtc = {"CUPY_CACHE_DIR": os.path.join(tmp, "cupy-nvrtc"), "PARTALLY_CUDA_NVRTC": "1"}
            results["cuda_nvrtc_cold"] = first_call(_FIRST_CUDA, nvrtc)
            results["cuda_nvrtc_cached"] = first_call(_FIRST_CUDA, nvrtc)
        if "numba-cuda" in names:
            fresh = {"NUMBA_CACHE_DIR": os.path.join(tmp, "numba")}
            results["numba_cuda_cold"] = first_call(_FIRST_NUMBA, fresh)
            results["numba_cuda_cached"] = first_call(_FIRST_NUMBA, fresh)
    for key, value in results.items():
        log(f"first call, {key}: {value}")
    return results


# ---- the runs ----------------------------------------------------------------------------------------

def bench_gpu_case(name: str, workload: str, n: int, repeat: int) -> dict:
    expected = KNOWN[workload, n]
    got = partally.compute(n, backend=name, workload=workload)  # warm-up: compile, load, context
    if got != expected:
        return {"error": f"count {got} != {expected}"}
    KERNEL_TIMERS[name](workload, n)
    kernel, call = [], []
    for _ in range(repeat):
        seconds, result = KERNEL_TIMERS[name](workload, n)
        if result != expected:
            return {"error": f"kernel count {result} != {expected}"}
        kernel.append(seconds)
        seconds, result = wall(lambda: partally.compute(n, backend=name, workload=workload))
        if result != expected:
            return {"error": f"compute() count {result} != {expected}"}
        call.append(seconds)
    k, c = statistics.median(kernel), statistics.median(call)
    return {"kernel_s": k, "call_s": c, "overhead_s": c - k, "rate_per_s": n / k, "runs": repeat}


def bench_cpu_case(name: str, workload: str, n: int, repeat: int) -> dict:
    expected = KNOWN[workload, n]
    partally.compute(10**5, backend=name, workload=workload)  # warm-up: JIT, threads
    times = []
    for _ in range(repeat):
        seconds, result = wall(lambda: partally.compute(n, backend=name, workload=workload))
        if result != expected:
            return {"error": f"count {result} != {expected}"}
        times.append(seconds)
    return {"call_s": statistics.median(times), "runs": repeat}


def auto_choice(workload: str, n: int) -> dict:
    try:
        explanation = partally.explain(n, workload=workload)
    except Exception as exc:  # report, keep going
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"backend": explanation.backend, "reason": explanation.reason,
            "predicted_s": dict(explanation.predicted)}


def versions() -> dict:
    found = {"python": platform.python_version(), "partally": partally.__version__}
    for module in ("numpy", "numba", "numba_cuda", "cupy"):
        try:
            found[module] = __import__(module).__version__
        except Exception as exc:  # noqa: BLE001 - report what is there
            found[module] = f"missing ({type(exc).__name__})"
    try:
        import cupy

        found["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
        found["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    except Exception as exc:  # noqa: BLE001
        found["cuda_driver"] = f"unknown ({type(exc).__name__})"
    return found


# ---- the table ----------------------------------------------------------------------------------------

def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} µs"


def _mark(ok: bool | None) -> str:
    return "?" if ok is None else ("✓" if ok else "✗")


def summary(results: dict) -> list[str]:
    gpu, cpu, auto = results["gpu"], results["cpu"], results["auto"]
    rows = [f"device: {results['device']}",
            "workload  n     | cuda kernel / call   | numba-cuda kernel / call | numba     | "
            "native    | best CPU / cuda | auto"]
    for workload, n in results["cases"]:
        key = f"{workload} {n:.0e}"
        cells = []
        for name in GPU_NAMES:
            r = gpu.get(name, {}).get(key, {})
            cells.append(f"{_ms(r.get('kernel_s'))} / {_ms(r.get('call_s'))}" if "call_s" in r
                         else r.get("error", "-")[:22])
        cpu_times = {name: cpu.get(name, {}).get(key, {}).get("call_s") for name in cpu}
        cuda_call = gpu.get("cuda", {}).get(key, {}).get("call_s")
        best_cpu = min((t for t in cpu_times.values() if t), default=None)
        ratio = f"{best_cpu / cuda_call:.1f}x" if best_cpu and cuda_call else "-"
        choice = auto.get(key, {})
        rows.append(
            f"{workload:7} {n:.0e} | {cells[0]:20} | {cells[1]:24} | "
            f"{_ms(cpu_times.get('numba')):9} | {_ms(cpu_times.get('native')):9} | "
            f"{ratio:>15} | {choice.get('backend', '-')} {_mark(choice.get('ok'))}"
        )
    first = results.get("first_call", {})

    def first_line(label: str, key: str, parts: tuple[tuple[str, str], ...]) -> None:
        r = first.get(key)
        if not r:
            return
        if "error" in r:
            rows.append(f"first call, {label}: {r['error'][:90]}")
            return
        words = ", ".join(f"{word} {_ms(r.get(field))}" for word, field in parts if field in r)
        ok = "" if r.get("count_ok") else " (COUNT WRONG)"
        rows.append(f"first call, {label}: {words}{ok}")

    cuda_parts = (("context", "context_s"), ("module load", "module_load_s"),
                  ("first compute(1e6)", "first_compute_s"), ("second", "second_compute_s"))
    first_line(f"cuda ({first.get('cuda_fatbin', {}).get('source', '?')})", "cuda_fatbin",
               cuda_parts)
    first_line("cuda (NVRTC, cold cache)", "cuda_nvrtc_cold", cuda_parts)
    first_line("cuda (NVRTC, cached)", "cuda_nvrtc_cached", cuda_parts)
    numba_parts = (("context", "context_s"), ("first compute(1e6) incl. JIT", "first_compute_s"),
                   ("second", "second_compute_s"), ("first primes", "first_primes_compute_s"))
    first_line("numba-cuda (cold cache)", "numba_cuda_cold", numba_parts)
    first_line("numba-cuda (disk cache)", "numba_cuda_cached", numba_parts)
    rows.append("goals (cuda on an H100):")
    for line in results["goals"]:
        rows.append(f"  {line}")
    return rows


def goals(results: dict) -> list[str]:
    cuda_results = results["gpu"].get("cuda", {})
    lines = []

    def kernel_goal(key: str, goal_ms: float, what: str) -> None:
        r = cuda_results.get(key, {})
        k = r.get("kernel_s")
        ok = None if k is None else k * 1e3 < goal_ms
        lines.append(f"{_mark(ok)} {what}: kernel {_ms(k)} (goal < {goal_ms:g} ms)")

    kernel_goal("pi 1e+10", GOALS["pi_1e10_kernel_ms"], "pi at 1e10")
    kernel_goal("primes 1e+09", GOALS["primes_1e9_kernel_ms"], "primes below 1e9")
    overheads = [r["overhead_s"] for r in cuda_results.values() if "overhead_s" in r]
    one_launch = cuda_results.get("pi 1e+08", {}).get("overhead_s")
    ok = None if one_launch is None else one_launch * 1e6 < GOALS["overhead_us"]
    spread = (f"; {_ms(min(overheads))} to {_ms(max(overheads))} over all sizes"
              if overheads else "")
    lines.append(f"{_mark(ok)} warm compute(n, 'cuda') above its kernel: {_ms(one_launch)} at pi "
                 f"1e8 (one launch; goal < {GOALS['overhead_us']:g} µs){spread}")
    bad = [key for key, choice in results["auto"].items() if choice.get("ok") is False]
    judged = [choice for choice in results["auto"].values() if choice.get("ok") is not None]
    ok = None if not judged else not bad
    lines.append(f"{_mark(ok)} auto never picks a GPU where a CPU backend is faster"
                 + (f": wrong at {', '.join(bad)}" if bad else f" ({len(judged)} sizes judged)"))
    return lines


def judge_auto(results: dict) -> None:
    """auto is wrong where it picks a GPU backend and a measured CPU backend was faster (by 10%)."""
    for (workload, n) in results["cases"]:
        key = f"{workload} {n:.0e}"
        choice = results["auto"].get(key)
        if not choice or "backend" not in choice:
            continue
        picked = choice["backend"]
        times = {name: r[key]["call_s"] for group in ("gpu", "cpu")
                 for name, r in results[group].items() if "call_s" in r.get(key, {})}
        if not times:
            continue
        fastest = min(times, key=times.get)
        choice["fastest_measured"] = fastest
        if picked in GPU_NAMES and picked in times:
            cpu_best = min((t for name, t in times.items() if name not in GPU_NAMES), default=None)
            choice["ok"] = cpu_best is None or times[picked] <= 1.1 * cpu_best
        else:
            choice["ok"] = True  # a CPU pick never breaks "no GPU where a CPU is faster"


def render(results: dict) -> list[str]:
    """The table, with the goals judged, of a run's results (a partial run's too)."""
    results["cases"] = [tuple(case) for case in results["cases"]]
    judge_auto(results)
    results["goals"] = goals(results)
    return summary(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", default="cuda,numba-cuda", help="GPU backends to bench")
    parser.add_argument("--cpu", default="numba,native", help="CPU backends to compare with")
    parser.add_argument("--json", type=Path, help="write the results here (after every case)")
    parser.add_argument("--summary", type=Path, help="write the table here too")
    parser.add_argument("--quick", action="store_true", help="4 sizes, no first-call processes")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only print the table of an earlier (maybe partial) --json file")
    args = parser.parse_args()
    if args.render:
        print("\n".join(render(json.loads(args.render.read_text()))))
        return 0
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    cpu_names = [name.strip() for name in args.cpu.split(",") if name.strip()]
    for name in names:
        if name not in KERNEL_TIMERS:
            parser.error(f"--backends: {name!r} is not a GPU backend; expected {list(KERNEL_TIMERS)}")

    def log(line: str) -> None:
        print(line, flush=True)

    reasons = {name: get(name).unavailable() for name in names}
    if all(reasons.values()):
        for name, reason in reasons.items():
            log(f"{name}: not available here: {reason}")
        log("NO CUDA DEVICE: nothing to bench on the GPU here")
        if args.json:
            args.json.write_text(json.dumps({"device": None, "reasons": reasons}, indent=1))
        return 2
    cases = QUICK_CASES if args.quick else CASES
    results: dict = {
        "device": _gpu.device_name(), "host": platform.node(), "cpus": os.cpu_count(),
        "versions": versions(), "reasons": reasons, "cases": cases, "repeat": args.repeat,
        "first_call": {}, "gpu": {}, "cpu": {}, "auto": {}, "goals": [],
    }

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))

    save()  # a run cut short still leaves the device and versions
    log(f"{results['device']}; {results['versions']}")
    live = [name for name in names if reasons[name] is None]
    for name in names:
        if reasons[name] is not None:
            log(f"{name}: skipped ({reasons[name]})")
    if not args.quick:  # before anything in this process warms a cache
        results["first_call"] = first_calls(live, log)
        save()
    for workload, n in cases:
        key = f"{workload} {n:.0e}"
        for name in live:
            r = bench_gpu_case(name, workload, n, args.repeat)
            results["gpu"].setdefault(name, {})[key] = r
            log(f"{name:10} {key:12} {r}")
            save()
    for workload, n in cases:
        key = f"{workload} {n:.0e}"
        results["auto"][key] = auto_choice(workload, n)
        log(f"auto       {key:12} {results['auto'][key]}")
        for name in cpu_names:
            reason = get(name).unavailable()
            r = ({"error": f"unavailable: {reason}"} if reason
                 else bench_cpu_case(name, workload, n, repeats(n, args.repeat, cpu=True)))
            results["cpu"].setdefault(name, {})[key] = r
            log(f"{name:10} {key:12} {r}")
            save()
    table = render(results)
    save()
    print("\n".join(table))
    if args.summary:
        args.summary.write_text("\n".join(table) + "\n")
    errors = [f"{name} {key}: {r['error']}" for group in ("gpu", "cpu")
              for name, per in results[group].items() for key, r in per.items() if "error" in r]
    for line in errors:
        log(f"ERROR {line}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
