#!/usr/bin/env bash
# Install partally into a fresh virtual environment on each other CPython this machine has
# (3.10, 3.12, 3.13; the full suite runs on 3.11 by README's test command) and run the tests
# that say it works there: every backend's exactness, user workloads, the CLI, reliability and
# the CUDA simulator. Left out on these versions (run on 3.11 only, to keep CI short): the bench,
# auto's calibration and dispatch details, the IO side (pure Python, no compiled code), the
# two-node Ray cluster and the Celery cluster.
#
# Each version also runs the installed CLI once (numba's `pi` to 1e6 must print 785806). A version
# not found is skipped with a line saying so; a failing test or check fails the script.
# scripts/forky_pythons.sh runs this same script on 3.14 and 3.15 in a Debian forky chroot.
#
#   bash scripts/test_pythons.sh            # every other version found
#   bash scripts/test_pythons.sh 3.12       # just one
set -euo pipefail
cd "$(dirname "$0")/.."

versions=("${@:-3.10 3.12 3.13}")
read -r -a versions <<< "${versions[*]}"
tests=(tests/test_backends.py tests/test_workloads.py tests/test_user_workloads.py
       tests/test_numba_compile_errors.py tests/test_kernel_loops.py tests/test_errors.py
       tests/test_cli.py tests/test_reliability.py tests/test_reliability_auto.py
       tests/test_cudasim_process.py tests/test_free_threaded.py)

find_python() {  # python3.X on PATH that runs (a pyenv shim may not), else pyenv's newest 3.X
    local v="$1" exe
    exe="$(command -v "python$v" || true)"
    if [ -n "$exe" ] && ! "$exe" -c "import sys" >/dev/null 2>&1; then
        exe=""
    fi
    if [ -z "$exe" ]; then
        exe="$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python 2>/dev/null | sort -V | tail -1 || true)"
    fi
    echo "$exe"
}

status=0
for v in "${versions[@]}"; do
    exe="$(find_python "$v")"
    if [ -z "$exe" ]; then
        echo "== Python $v: not on this machine, skipped"
        continue
    fi
    echo "== Python $v: $("$exe" --version 2>&1) at $exe"
    began=$SECONDS
    venv="$(mktemp -d)/venv"
    "$exe" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet ".[test,cuda]"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}" || status=1
    pi="$("$venv/bin/partally" compute 1e6 --backend numba --workload pi)" || pi="(failed)"
    echo "== Python $v: partally compute 1e6 --backend numba --workload pi: $pi"
    if [ "${pi%% *}" != 785806 ]; then
        echo "== Python $v: that is not 785806"
        status=1
    fi
    echo "== Python $v: done in $((SECONDS - began)) s"
done
exit "$status"
