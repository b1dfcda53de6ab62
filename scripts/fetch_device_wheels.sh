#!/usr/bin/env bash
# Prepare, here (with a package registry), what scripts/device_check.sh needs on a GPU machine
# that has none: wheels of partally's dependencies that machine lacks, in .whl/ (git ignores it;
# pass it along, e.g. `carry: [".whl"]`), and a prebuilt kernels/counting.fatbin for a GPU machine
# without nvcc.
#
#     bash scripts/fetch_device_wheels.sh
#
# The GPU machine has Python 3.12 with numba, numba-cuda, cupy-cuda13x, numpy, nanobind,
# scikit-build-core, cmake, ninja, pytest, hypothesis, rich, httpx, aiohttp (and so yarl, multidict,
# h11, anyio, ...). Missing there, checked against pyproject.toml: platformdirs (a dependency), uvicorn
# and its click, httptools (the local test server), urllib3 (a dependency, not pulled in by httpx),
# pytest-timeout (the `timeout` marks and ini option), cloudpickle (shipping user workloads).
# device_check.sh installs them with
#     python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#         --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
    platformdirs==4.14.8
    uvicorn==0.54.0
    click==8.5.1
    httptools==0.9.0
    urllib3==2.8.0
    pytest-timeout==2.4.0
    cloudpickle==3.1.2
    pyyaml==6.0.4
    kubernetes-validate==1.37.0
)
LIMIT_MIB=40

rm -rf .whl && mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"

# The fatbin as CMake builds it (SASS sm_75..sm_90, PTX compute_90), with the hash of its sources:
# device_check.sh uses it only when the build there made none and the sources are unchanged.
if command -v nvcc >/dev/null; then
    gencode=()
    for arch in 75 80 86 89 90; do gencode+=(-gencode "arch=compute_${arch},code=sm_${arch}"); done
    gencode+=(-gencode "arch=compute_90,code=compute_90")
    nvcc --fatbin -O3 -std=c++17 -I kernels "${gencode[@]}" -o .whl/counting.fatbin kernels/counting.cu
    cat kernels/counting.cu kernels/elements.hpp | sha256sum | cut -d' ' -f1 > .whl/counting.sources.sha256
    echo "prebuilt .whl/counting.fatbin ($(nvcc --version | grep -o 'release [0-9.]*'))"
else
    echo "no nvcc here: no prebuilt fatbin (the GPU machine builds one if it has nvcc, else NVRTC)"
fi

size_kib=$(du -sk .whl | cut -f1)
ls -l .whl
echo ".whl: $((size_kib / 1024)) MiB ($(ls .whl/*.whl | wc -l) wheels)"
if (( size_kib > LIMIT_MIB * 1024 )); then
    echo "ERROR: .whl is over ${LIMIT_MIB} MiB" >&2
    exit 1
fi
