#!/usr/bin/env bash
# The GPU path on a GPU, in one command: build and install this checkout, run the GPU tests, bench
# the GPU backends (kernels, calls, first-call costs, auto's choice, CPU ratios), print a table.
#
#     bash scripts/device_check.sh            # in the repository root; results under $OUT
#
# Made for a GPU machine without a package registry (Python 3.12 with numba, numba-cuda, CuPy,
# nanobind, scikit-build-core, cmake, ninja, pytest, ...): what it lacks comes from .whl/, which
# scripts/fetch_device_wheels.sh fills beforehand on a machine with one. Every step has a timeout
# and the script goes on past a failing step; the whole run keeps to PARTALLY_CHECK_BUDGET_S
# (default 340 s, so that a rerun fits a 15-minute loan) and says at the end which steps failed. Without a GPU it still builds and runs
# the GPU tests (they skip, with reasons) and says plainly that no device was found.
#
# Environment: OUT (results folder; default bench-out/device-check), PYTHON (default python3),
# PARTALLY_CHECK_SKIP_BUILD=1 (test the partally that is already importable), PARTALLY_CHECK_QUICK=1
# (fewer sizes, no first-call processes), PARTALLY_CHECK_SKIP_TESTS=1, PARTALLY_CHECK_BUDGET_S.
# Files under $OUT (at most 6): device_check.log (every step's output), summary.txt (the table),
# bench_gpu.json, pytest.txt, calibrate.txt, info.txt.

set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/bench-out/device-check}
BUDGET=${PARTALLY_CHECK_BUDGET_S:-340}
START=$(date +%s)
mkdir -p "$OUT"
LOG=$OUT/device_check.log
: > "$LOG"
WORK=$(mktemp -d /tmp/partally-check.XXXXXX)
export XDG_CACHE_HOME=$WORK/cache   # a fresh calibration cache: auto is judged as calibrated here
export PYTHONDONTWRITEBYTECODE=1
export PYTHONUNBUFFERED=1
export CUPY_CACHE_DIR=$WORK/cupy

STEPS=()      # "name|status|seconds"
FAILED=()

say() { echo "$*" | tee -a "$LOG"; }

left() { echo $((BUDGET - ($(date +%s) - START))); }

# run_step NAME TIMEOUT_S CMD... : runs CMD under `timeout` (cut to the time left), output to the
# log (and to $STEP_OUT when set); records ok / FAILED (rc) / TIMEOUT / skipped.
run_step() {
    local name=$1 limit=$2
    shift 2
    local remaining
    remaining=$(( $(left) - 15 ))
    if (( remaining < 10 )); then
        STEPS+=("$name|skipped (out of time)|0"); FAILED+=("$name (out of time)")
        say "--- $name: skipped, out of time"
        return 1
    fi
    (( limit > remaining )) && limit=$remaining
    say "--- $name (timeout ${limit}s): $*"
    local t0 t1 rc
    t0=$(date +%s.%N)
    if [[ -n ${STEP_OUT:-} ]]; then
        timeout -k 10 "$limit" "$@" 2>&1 | tee "$STEP_OUT" >> "$LOG"
        rc=${PIPESTATUS[0]}
    else
        timeout -k 10 "$limit" "$@" >> "$LOG" 2>&1
        rc=$?
    fi
    t1=$(date +%s.%N)
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    local status=ok
    if (( rc == 124 || rc == 137 )); then
        status="TIMEOUT after ${limit}s"; FAILED+=("$name (timeout)")
    elif (( rc != 0 )); then
        status="FAILED (exit $rc)"; FAILED+=("$name (exit $rc)")
    fi
    STEPS+=("$name|$status|$secs")
    say "--- $name: $status in ${secs}s"
    return $rc
}

# ---- 1. the machine -------------------------------------------------------------------------------
machine() {
    echo "date: $(date -u)"; uname -a
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
        --format=csv,noheader 2>&1 || echo "nvidia-smi: not found"
    command -v nvcc >/dev/null && nvcc --version | tail -2 || echo "nvcc: not found (no fatbin build)"
    "$PY" - <<'EOF'
import importlib, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("numpy", "numba", "numba_cuda", "cupy", "nanobind", "scikit_build_core", "pytest",
             "hypothesis", "rich", "httpx", "aiohttp", "yarl", "urllib3", "platformdirs",
             "uvicorn", "httptools", "pytest_timeout", "cloudpickle"):
    try:
        module = importlib.import_module(name)
        print(f"  {name} {getattr(module, '__version__', '?')}")
    except Exception as exc:
        print(f"  {name}: MISSING ({type(exc).__name__}: {exc})")
EOF
}
export -f machine
export PY
run_step machine 60 bash -c machine

# ---- 2. what the machine lacks, from .whl/ -----------------------------------------------------------
SITE=$WORK/site
if compgen -G ".whl/*.whl" >/dev/null; then
    wheels=(.whl/*.whl)
    if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
        # fetch_device_wheels.sh fetched them for the GPU machine's Python 3.12
        wheels=(.whl/*-py3-none-any.whl)
        say "--- wheels: not Python 3.12 here: only the pure-Python ones (${#wheels[@]})"
    fi
    run_step wheels 90 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$SITE" "${wheels[@]}" && export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
else
    say "--- wheels: no .whl/ folder (scripts/fetch_device_wheels.sh makes it); using what is installed"
fi

# ---- 3. build and install this checkout (into a folder of its own: no system site-packages) -------
if [[ ${PARTALLY_CHECK_SKIP_BUILD:-0} == 1 ]]; then
    say "--- build: skipped (PARTALLY_CHECK_SKIP_BUILD=1): testing the importable partally"
    STEPS+=("build|skipped (PARTALLY_CHECK_SKIP_BUILD=1)|0")
else
    PKG=$WORK/partally
    # No registry there: build with the installed scikit-build-core and nanobind, no index.
    # (Where they are missing, as in a bare virtual environment, pip fetches them: isolation.)
    isolation=(--no-build-isolation --no-index)
    "$PY" -c "import scikit_build_core, nanobind" 2>/dev/null || isolation=()
    if run_step build 300 "$PY" -m pip install ${isolation[@]+"${isolation[@]}"} --no-deps --no-cache-dir \
            --upgrade --target "$PKG" "$ROOT"; then
        export PYTHONPATH=$PKG${PYTHONPATH:+:$PYTHONPATH}
    fi
fi
FATBIN_NOTE=$("$PY" - <<'EOF' 2>&1
import hashlib, shutil
from pathlib import Path
try:
    from partally.backends import cuda
except Exception as exc:
    print(f"partally does not import: {exc}"); raise SystemExit
folder = cuda.kernels_dir()
if folder is None:
    print("no kernels folder: the package is broken"); raise SystemExit
fatbin = folder / cuda.FATBIN
prebuilt = Path(".whl/counting.fatbin")
if fatbin.is_file():
    print(f"{fatbin} (built with the package)")
elif prebuilt.is_file():
    sources = (Path("kernels/counting.cu").read_bytes() + Path("kernels/elements.hpp").read_bytes())
    wanted = Path(".whl/counting.sources.sha256").read_text().split()[0]
    if hashlib.sha256(sources).hexdigest() == wanted:
        shutil.copyfile(prebuilt, fatbin)
        print(f"{fatbin} (prebuilt by fetch_device_wheels.sh: no nvcc here)")
    else:
        print("none: no nvcc here and .whl/counting.fatbin is stale (rerun fetch_device_wheels.sh); NVRTC")
else:
    print("none (no nvcc here, no .whl/counting.fatbin): the cuda backend compiles with NVRTC")
EOF
)
say "--- fatbin: $FATBIN_NOTE"

# ---- 4. what partally sees -------------------------------------------------------------------------
STEP_OUT=$OUT/info.txt run_step info 90 "$PY" -m partally info
# The public face says whether the GPU backends can run: "ok", or the cuda backend's reason.
DEVICE=$("$PY" -c '
import partally
info = {b.name: b for b in partally.backends()}
gpu = [b for b in info.values() if b.name in ("cuda", "numba-cuda") and b.available]
print("ok " + gpu[0].device if gpu else info["cuda"].reason)' 2>&1 | tail -1)
if [[ $DEVICE == ok* ]]; then
    say "--- device: ${DEVICE#ok }"
    DEVICE=ok
else
    say "--- device: NO CUDA DEVICE FOUND ($DEVICE)"
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
        FAILED+=("device (nvidia-smi lists a GPU, partally finds none: $DEVICE)")
    fi
fi

# ---- 5. the GPU tests --------------------------------------------------------------------------------
TESTS=$(printf '%s\n' tests/test_gpu.py tests/test_cuda_build.py tests/test_kernel_loops.py \
        $(grep -l "mark.gpu" tests/test_*.py) | sort -u)
if [[ ${PARTALLY_CHECK_SKIP_TESTS:-0} == 1 ]]; then
    STEPS+=("tests|skipped (PARTALLY_CHECK_SKIP_TESTS=1)|0")
else
    # at most 60 s a test (pytest-timeout, from .whl/), so that one hung kernel leaves the bench time
    per_test=()
    "$PY" -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout 60)
    STEP_OUT=$OUT/pytest.txt run_step tests 150 "$PY" -m pytest -q -rs -p no:cacheprovider \
        -o addopts="--strict-markers" ${per_test[@]+"${per_test[@]}"} $TESTS
fi

# ---- 6. calibrate, then bench ------------------------------------------------------------------------
if [[ $DEVICE == ok ]]; then
    STEP_OUT=$OUT/calibrate.txt run_step calibrate 90 bash -c \
        "'$PY' -m partally calibrate --workload pi && '$PY' -m partally calibrate --workload primes"
    quick=()
    [[ ${PARTALLY_CHECK_QUICK:-0} == 1 ]] && quick=(--quick)
    run_step bench 300 "$PY" scripts/bench_gpu.py --repeat 5 ${quick[@]+"${quick[@]}"} \
        --json "$OUT/bench_gpu.json" --summary "$OUT/summary.txt"
else
    STEPS+=("calibrate|skipped (no device)|0" "bench|skipped (no device)|0")
    say "--- calibrate, bench: skipped: no CUDA device"
fi

# ---- the end: steps, table, failures -----------------------------------------------------------------
if [[ $DEVICE == ok && ! -s $OUT/summary.txt && -s $OUT/bench_gpu.json ]]; then
    # the bench was cut short: the table of what it measured
    timeout 30 "$PY" scripts/bench_gpu.py --render "$OUT/bench_gpu.json" > "$OUT/summary.txt" 2>> "$LOG"
fi
END=$WORK/end.txt
{
    echo
    echo "== partally device check: $(( $(date +%s) - START )) s, results in $OUT"
    for entry in "${STEPS[@]}"; do
        IFS='|' read -r name status secs <<< "$entry"
        printf '  %-10s %-40s %6ss\n' "$name" "$status" "$secs"
    done
    if [[ -s $OUT/pytest.txt ]]; then
        summary=$(grep -E "[0-9]+ (passed|failed|skipped|errors?)( |,|$)" "$OUT/pytest.txt" | tail -1)
        echo "  tests: ${summary:-no pytest summary (cut short? see pytest.txt)}"
    fi
    echo "  fatbin: $FATBIN_NOTE"
    if [[ $DEVICE == ok ]]; then
        if [[ -s $OUT/summary.txt ]]; then cat "$OUT/summary.txt"; else echo "  no bench table (see the log)"; fi
    else
        echo "NO CUDA DEVICE FOUND: $DEVICE"
        echo "  the GPU tests skipped (reasons in pytest.txt); nothing was benched on a GPU"
    fi
    if (( ${#FAILED[@]} )); then
        echo "FAILED STEPS: ${FAILED[*]}"
    else
        echo "all steps ok"
    fi
} > "$END"
cat "$END" >> "$LOG"
cat "$END"
rm -rf "$WORK"
(( ${#FAILED[@]} == 0 ))
