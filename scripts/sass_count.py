"""Count the SASS instructions per element of the cuda backend's kernels (no GPU needed).

    python scripts/sass_count.py [--rev GIT_REV] [--arch 90] [--dump]

Compiles kernels/counting.cu (of the working tree, or of --rev, e.g. ``--rev HEAD~3``) with
``nvcc -cubin -O3 -std=c++17 -gencode arch=compute_90,code=sm_90``, disassembles it with
``cuobjdump -sass`` and reports, per kernel, what one element costs in warp instructions:

- ``pi``: the grid-stride loop's body divided by the elements it handles per trip (nvcc may unroll
  it: one element per multiply by splitmix64's last constant, hi word 0x94D049BB);
- ``primes``: the trial division (straight-line code from after the small-i check to the compare
  with 67*67 = 4489, all of which a warp runs whenever one lane survives it) and the loops after it:
  the square-and-multiply loop of Miller-Rabin (per exponent bit: a Montgomery squaring and a
  predicated Montgomery multiply) and the squaring loop;
- ``count``: no loop (the trip count is computed).

With --numba-cuda, also the numba-cuda kernels of the importable partally (numba-cuda makes the PTX
for sm_90, ptxas the SASS): their size, subroutine calls and loops.

Needs nvcc and cuobjdump (with nvdisasm). Where they are not on PATH, the ``nvidia-cuda-cuobjdump``
and ``nvidia-cuda-nvdisasm`` wheels provide them: ``pip install nvidia-cuda-cuobjdump
nvidia-cuda-nvdisasm`` (found under ``site-packages/nvidia/cu13/bin``), or set CUOBJDUMP.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
H100_INT_OPS = 33.5e12  # lane-instructions per second: 132 SMs x 128 lanes x 1.98 GHz
LANES = 32
PI_MARKER = "-0x6b2fb645"  # the high word of 0x94D049BB133111EB: one multiply per element
LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")


def find_tool(name: str) -> str:
    override = os.environ.get(name.upper())
    if override:
        return override
    found = shutil.which(name)
    if found:
        return found
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *sys.path}
    for root in roots:
        for sub in ("nvidia/cu13/bin", "nvidia/cu12/bin", "nvidia/cuda_cuobjdump/bin"):
            candidate = Path(root) / sub / name
            if candidate.is_file():
                return str(candidate)
    raise SystemExit(
        f"{name} not found: put it on PATH, set {name.upper()}, or "
        "`pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm`"
    )


def sources(rev: str | None, into: Path) -> Path:
    if rev is None:
        return ROOT / "kernels"
    for name in ("counting.cu", "elements.hpp"):
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:kernels/{name}"],
            check=True, capture_output=True, text=True,
        ).stdout
        (into / name).write_text(text)
    return into


def disassemble(kernels: Path, arch: str, work: Path) -> dict[str, list[tuple[int, str]]]:
    cubin = work / "counting.cubin"
    subprocess.run(
        [find_tool("nvcc"), "-cubin", "-O3", "-std=c++17", "-gencode",
         f"arch=compute_{arch},code=sm_{arch}", "-I", str(kernels), "-o", str(cubin),
         str(kernels / "counting.cu")],
        check=True,
    )
    cuobjdump = find_tool("cuobjdump")
    env = dict(os.environ)
    if shutil.which("nvdisasm") is None and "NVDISASM_PATH" not in env:
        nvdisasm = Path(cuobjdump).with_name("nvdisasm")
        env["PATH"] = f"{nvdisasm.parent}{os.pathsep}{env.get('PATH', '')}"
        try:
            env["PATH"] = f"{Path(find_tool('nvdisasm')).parent}{os.pathsep}{env['PATH']}"
        except SystemExit:
            pass
    sass = subprocess.run(
        [cuobjdump, "-sass", str(cubin)], check=True, capture_output=True, text=True, env=env
    ).stdout
    functions: dict[str, list[tuple[int, str]]] = {}
    current = None
    for line in sass.splitlines():
        if "Function :" in line:
            current = line.split("Function :")[1].strip()
            functions[current] = []
        elif current is not None and (match := LINE.search(line)):
            functions[current].append((int(match.group(1), 16), match.group(2)))
    return functions


def loops(code: list[tuple[int, str]]) -> list[tuple[int, int, int]]:
    """(start, end, instructions) of each backward branch's loop."""
    found = []
    for address, text in code:
        if (match := re.search(r"\bBRA (0x[0-9a-f]+)", text)) and int(match.group(1), 16) < address:
            start = int(match.group(1), 16)
            found.append((start, address, sum(1 for a, _ in code if start <= a <= address)))
    return found


def body(code, start, end):
    return [text for address, text in code if start <= address <= end]


def count_pi(code) -> dict:
    best = None
    for start, end, size in loops(code):
        elements = sum(PI_MARKER in text for text in body(code, start, end))
        if elements and (best is None or size < best[2]):
            best = (start, end, size, elements)
    if best is None:
        return {"error": "no loop with splitmix64's multiply found"}
    start, end, size, elements = best
    return {"loop": f"{start:#06x}-{end:#06x}", "instructions": size, "elements": elements,
            "per_element": size / elements}


def count_primes(code) -> dict:
    texts = [text for _, text in code]
    small = next(k for k, t in enumerate(texts)
                 if re.search(r"ISETP\.GE\.U32\.AND P\d, PT, R\d+, 0x(2|40), PT", t))
    begin = next(k for k in range(small + 1, len(texts)) if re.search(r"\bBRA\b", texts[k])) + 1
    end = next(k for k in range(begin, len(texts)) if "0x1189" in texts[k])
    trial = end - begin + 1
    after = code[end][0]
    mr = [(s, e, n) for s, e, n in loops(code) if s > after]
    return {"trial_division": trial, "miller_rabin_loops": mr}


_NUMBA_PTX = """
import sys, types as pytypes
import numba.cuda.dispatcher as dispatcher
from numba import cuda, types
# No GPU here: compile for sm_90 instead of the current device.
dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(9, 0))
from partally.backends import _numba_cuda_kernels as k
from partally.workloads import BUILTINS
sig = (types.uint64, types.uint64, types.uint64, types.uint64[::1])
for name in ("pi", "primes"):
    ptx, _ = cuda.compile_ptx(k.kernel(BUILTINS[name])[0].py_func, sig, cc=(9, 0))
    open(f"{sys.argv[1]}/{name}.ptx", "w").write(ptx)
"""


def numba_cuda_counts(work: Path) -> None:
    """The numba-cuda kernels of the importable partally: PTX by numba-cuda, SASS by ptxas."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    subprocess.run([sys.executable, "-c", _NUMBA_PTX, str(work)], check=True, env=env)
    ptxas = str(Path(find_tool("nvcc")).with_name("ptxas"))
    cuobjdump = find_tool("cuobjdump")
    env["PATH"] = f"{Path(cuobjdump).parent}{os.pathsep}{env.get('PATH', '')}"
    for name in ("pi", "primes"):
        cubin = work / f"{name}.cubin"
        subprocess.run([ptxas, "-arch=sm_90", "-O3", "-o", str(cubin), str(work / f"{name}.ptx")],
                       check=True)
        sass = subprocess.run([cuobjdump, "-sass", str(cubin)], check=True, capture_output=True,
                              text=True, env=env).stdout
        code = [(int(m.group(1), 16), m.group(2)) for m in LINE.finditer(sass)]
        calls = sum("CALL" in text for _, text in code)
        print(f"numba-cuda {name}_kernel: {len(code)} instructions, {calls} subroutine call(s)")
        for start, end, size in loops(code):
            inner = body(code, start, end)
            note = f", {sum('CALL' in t for t in inner)} call(s)" if any("CALL" in t for t in inner) else ""
            print(f"  loop {start:#06x}-{end:#06x}: {size} instructions{note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="count the kernels of this git revision")
    parser.add_argument("--arch", default="90", help="SASS architecture (default 90: H100)")
    parser.add_argument("--dump", action="store_true", help="print the SASS of each kernel too")
    parser.add_argument("--numba-cuda", action="store_true",
                        help="also count the numba-cuda kernels of the importable partally")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        functions = disassemble(sources(args.rev, Path(tmp)), args.arch, Path(tmp))
    label = args.rev or "working tree"
    print(f"kernels/counting.cu ({label}), sm_{args.arch}")
    if args.dump:
        for name, code in functions.items():
            print(f"== {name}")
            print("\n".join(f"{a:#06x} {t}" for a, t in code))
    pi = count_pi(functions["partally_pi"])
    if "error" in pi:
        print(f"partally_pi: {pi['error']}")
    else:
        floor = 1e10 * pi["per_element"] / H100_INT_OPS
        print(f"partally_pi: loop {pi['loop']}: {pi['instructions']} instructions for "
              f"{pi['elements']} element(s) = {pi['per_element']:.2f} per element; "
              f"floor at n=1e10 on an H100 ({H100_INT_OPS:.3g} int ops/s): {floor * 1e3:.1f} ms")
    primes = count_primes(functions["partally_primes"])
    print(f"partally_primes: trial division {primes['trial_division']} instructions per element "
          f"(straight-line; a warp runs all of it when any lane gets past the first test)")
    for start, end, size in primes["miller_rabin_loops"]:
        print(f"partally_primes: Miller-Rabin loop {start:#06x}-{end:#06x}: {size} instructions "
              "per trip")
    if args.numba_cuda:
        with tempfile.TemporaryDirectory() as tmp:
            numba_cuda_counts(Path(tmp))
    count_loops = loops(functions["partally_count"])
    print(f"partally_count: {len(count_loops)} loop(s) outside the block reduction"
          if count_loops else "partally_count: no loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
