"""Runs tests/test_cudasim.py and test_cudasim_examples.py in their own pytest process under
NUMBA_ENABLE_CUDASIM=1.

The simulator only replaces the GPU when the variable is set before numba is first imported, so
this is how one `python -m pytest` also checks every numba-cuda kernel on a machine without a GPU.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("numba_cuda") is None,
    reason='numba-cuda is not installed (pip install "partally[cuda]")',
)


@pytest.mark.timeout(1200)  # about 2 minutes here; this VM has run it at half speed
def test_numba_cuda_kernels_pass_on_the_simulator():
    tests = Path(__file__).parent
    environment = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "cudasim", "-p", "no:cacheprovider",
         str(tests / "test_cudasim.py"), str(tests / "test_cudasim_examples.py")],
        capture_output=True, text=True, timeout=1100, env=environment, cwd=tests.parent,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in summary and "skipped" not in summary, summary
