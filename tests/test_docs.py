"""Every ```python block of README.md and docs/*.md runs as written.

Each page's blocks run in order, as one script, in a fresh Python process started in the
repository root (so ``examples.*`` imports as the pages say), with a temporary cache folder
shared by the pages (``XDG_CACHE_HOME``: auto's models and Numba's kernels, as a user's first
runs would make them). A block the page marks with ``<!-- needs: gpu -->`` or
``<!-- needs: cluster -->`` on the line before its fence is left out (docs/testing.md says what
the marks mean); bash and text blocks are never run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NEEDS = re.compile(r"<!--\s*needs:\s*(gpu|cluster)\s*-->")
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
TIMEOUT_S = 240  # a hang bound for one page; the pages take seconds (Numba compiles on first use)


def blocks(page: Path) -> tuple[list[str], list[str]]:
    """The page's python blocks to run, in order, and the marks of those it leaves out."""
    text = page.read_text(encoding="utf-8")
    run, skipped = [], []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = NEEDS.search(before)
        (skipped if mark else run).append(mark.group(1) if mark else match.group(1))
    return run, skipped


def test_the_marks_are_the_known_ones() -> None:
    """A misspelt mark would run a block that needs a GPU, or skip nothing: only the two."""
    for page in PAGES:
        for mark in re.findall(r"<!--\s*needs:\s*([^ ]*?)\s*-->", page.read_text(encoding="utf-8")):
            assert mark in ("gpu", "cluster"), f"{page.name}: unknown mark 'needs: {mark}'"


def test_the_readme_quick_start_is_found() -> None:
    """The extractor finds the README's blocks (a fence it cannot read would pass silently)."""
    run, _ = blocks(ROOT / "README.md")
    assert run and "partally.compute(" in run[0]


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_names_a_file(page: Path) -> None:
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which is missing"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_page_runs_as_written(page: Path, cache: Path) -> None:
    run, skipped = blocks(page)
    if not run:
        pytest.skip(f"no python block to run ({len(skipped)} marked: {', '.join(skipped) or 'none'})")
    script = "\n\n".join(f"# --- block {k + 1}\n{code}" for k, code in enumerate(run))
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    for forced in ("PARTALLY_BACKEND", "PARTALLY_NO_CALIBRATE", "NUMBA_ENABLE_CUDASIM"):
        env.pop(forced, None)  # the pages run as a user's session would, not as a test forces
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, (
        f"{page.name}: its python blocks failed (exit {done.returncode})\n"
        f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    )
