import subprocess
import sys

import partally


def test_all_is_sorted_and_exported():
    assert partally.__all__ == sorted(partally.__all__)
    for name in partally.__all__:
        assert getattr(partally, name) is not None


def test_import_is_light():
    """`import partally` loads no numba, numpy, httpx, cupy or ray."""
    code = (
        "import sys, partally\n"
        "heavy = {'numba', 'numpy', 'httpx', 'cupy', 'ray', 'matplotlib', 'rich'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
