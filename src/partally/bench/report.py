"""What ``partally bench`` shows and writes: a table per workload, JSON, the machine it ran on.

Everything is rendered from ``summarize(bench)``, one plain dict per measurement with the derived
numbers (median, elements/s, speedup over ``python``, the flat-time mark), so that the rich table,
the JSON file and ``markdown(report)`` (for a README, from a bench JSON file) say the same thing.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import sys
import sysconfig
from importlib import metadata
from typing import Any

from partally._format import rate, seconds, size

from partally.bench.run import (
    AUTO,
    ERROR,
    MISMATCH,
    OK,
    SKIPPED,
    UNVERIFIED,
    Bench,
    predict,
)

SCHEMA = "partally-bench/1"
GUIDE_SECONDS = {"python": 1.13, "processes": 0.72}  # the guide's sequential and multiprocessing
# A time "does not grow with n" where, against the fastest run of this backend at a size at least
# FLAT_SPAN times smaller, it grew by less than (n ratio) ** FLAT_SLOPE (1 would be linear). The
# fastest, not the first: a slow outlier at small n (a thread waking late) must not hide growth.
FLAT_SPAN = 100
FLAT_SLOPE = 0.2


def _compiled(name: str | None) -> bool:
    """Whether backend ``name`` compiles the workload (LLVM, g++ and nvcc fold `count`)."""
    from partally.backends import get, names

    return name in names() and get(name).compiled
_VERSIONS = (
    "partally", "numpy", "numba", "llvmlite", "numba-cuda", "cupy-cuda12x", "cupy", "ray", "celery",
    "rich", "matplotlib",
)


# ----------------------------------------------------------------------------- the numbers


def summarize(bench: Bench) -> list[dict[str, Any]]:
    """One dict per measurement, in workload, n, backend order, with the derived numbers."""
    order = {name: k for k, name in enumerate(bench.backends)}
    rows = []
    for workload in bench.workloads:
        measured = bench.rows(workload.name)
        python = {m.n: m.median for m in measured if m.backend == "python" and m.status == OK}
        timed: dict[str, list[tuple[int, float]]] = {}
        for name in bench.backends:
            points = dict(bench.probes.get((workload.name, name), {}))
            points.update((m.n, m.median) for m in measured if m.backend == name and m.timed)
            timed[name] = sorted(points.items())
        for m in sorted(measured, key=lambda m: (m.n, order.get(m.backend, len(order)))):
            row: dict[str, Any] = {
                "workload": m.workload,
                "backend": m.backend,
                "n": m.n,
                "status": m.status,
                "median_s": m.median,
                "spread": m.spread,
                "samples_s": list(m.samples),
                "calls_per_sample": m.calls_per_sample,
                "elements_per_s": m.n / m.median if m.median else None,
                "result": _json_value(m.result),
                "expected": _json_value(m.expected),
                "reference": m.reference,
                "predicted_s": m.predicted_s,
                "chose": m.chose,
                "message": m.message,
                "python_s": None,
                "python_extrapolated": False,
                "speedup_vs_python": None,
                "flat": False,
            }
            if m.timed:
                base, extrapolated = python.get(m.n), False
                if base is None and python and "python" in bench.backends:
                    base, extrapolated = predict(list(python.items()), m.n), True
                if base:
                    row["python_s"] = base
                    row["python_extrapolated"] = extrapolated
                    row["speedup_vs_python"] = base / m.median
                if _flat(timed[m.backend], m.n, m.median):
                    folded = workload.folds and _compiled(m.chose or m.backend)
                    row["flat"] = "folded" if folded else "overhead"
            rows.append(row)
    return rows


def _flat(points: list[tuple[int, float]], n: int, seconds: float) -> bool:
    """Whether ``seconds`` at ``n`` did not grow with n, against (size, seconds) ``points``."""
    earlier = [(n1, t1) for n1, t1 in points if n1 * FLAT_SPAN <= n and t1 > 0]
    if not earlier:
        return False
    n1, t1 = min(earlier, key=lambda point: point[1])
    return seconds <= t1 * (n / n1) ** FLAT_SLOPE


def machine() -> dict[str, Any]:
    """The machine and software a bench ran on."""
    from partally._machine import cores, cpu_model, gil_enabled, gpu_names

    versions = {}
    for name in _VERSIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": cpu_model(),
        "cores_usable": cores(),
        "cores_total": os.cpu_count(),
        "gpu": gpu_names(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": gil_enabled(),  # threads: serialised, or parallel (free-threaded, GIL off)
        "platform": platform.platform(),
        "versions": versions,
    }


def report(bench: Bench) -> dict[str, Any]:
    """The whole bench as one JSON-ready dict."""
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            "guide": bench.guide,
            "workloads": [workload.name for workload in bench.workloads],
            "descriptions": {workload.name: workload.description for workload in bench.workloads},
            "folded": [workload.name for workload in bench.workloads if workload.folds],
            "sizes": bench.sizes,
            "backends": bench.backends,
            "repeat": bench.repeat,
            "workers": bench.workers,
            "budget_s": bench.budget_s,
            "seed": 0,
        },
        "unavailable": bench.unavailable,
        "devices": _devices(bench.backends),
        "measurements": summarize(bench),
        "probes": [
            {"workload": workload, "backend": name, "n": n, "seconds": t}
            for (workload, name), points in bench.probes.items()
            for n, t in sorted(points.items())
        ],
        "ok": bench.ok,
        "failures": len(bench.failures),
    }


def _devices(names: list[str]) -> dict[str, str]:
    """What each benchmarked backend ran on, asked after the runs (a Ray cluster's size then)."""
    from partally.backends import get

    return {name: get(name).device() for name in names if name != "auto"}


def write_json(data: dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=2)
        file.write("\n")


# ----------------------------------------------------------------------------- formatting




def _speedup(row: dict[str, Any]) -> str:
    if row["speedup_vs_python"] is None:
        return "-"
    value = row["speedup_vs_python"]
    text = f"{value:.3g}×" if value < 1000 else f"{value:,.0f}×"
    return text + ("~" if row["python_extrapolated"] else "")


def _check(row: dict[str, Any]) -> str:
    status, reference = row["status"], row["reference"]
    if status == OK:
        if reference.startswith("agreement"):
            return "✓ agree"
        if reference.startswith("pure-Python"):
            return "✓ python"
        if reference.startswith("sample"):
            return "✓ sample"
        return "✓ known" if reference == "known value" else "✓ n"
    return {UNVERIFIED: "? unverified", MISMATCH: "WRONG", ERROR: "ERROR", SKIPPED: "-"}[status]


def _backend(row: dict[str, Any]) -> str:
    if row["backend"] == AUTO and row["chose"]:
        return f"auto → {row['chose']}"
    return row["backend"]


def _cells(row: dict[str, Any]) -> list[str]:
    """n, backend, time, spread, elements/s, vs python, check: plain text."""
    if row["status"] == SKIPPED:
        time, spread, elements, speed = f"skipped (~{seconds(row['predicted_s'])})", "", "", ""
    elif row["status"] in (MISMATCH, ERROR) or row["median_s"] is None:
        time, spread, elements, speed = "-", "", "", ""
    else:
        mark = {"folded": " †", "overhead": " ‡"}.get(row["flat"], "")
        time = seconds(row["median_s"]) + mark
        spread = f"{row['spread'] * 100:.0f}%"
        elements, speed = rate(row["elements_per_s"]), _speedup(row)
        if row["flat"] == "folded":  # no counting was timed: these numbers mean nothing
            elements, speed = "†", "†"
    return [size(row["n"]), _backend(row), time, spread, elements, speed, _check(row)]


_HEADERS = ("n", "backend", "median", "spread", "elements/s", "vs python", "check")


def notes(rows: list[dict[str, Any]], workload: str) -> list[str]:
    """The words under a workload's table."""
    lines = []
    if any(row["flat"] == "folded" for row in rows):
        lines.append(
            "† the time does not grow with n: the compiler removed the loop (LLVM, g++ and "
            "nvcc fold the guide's `count` loop to `hi - lo`), so this is call overhead, not "
            "counting, and elements/s or a speedup would mean nothing."
        )
    if any(row["flat"] == "overhead" for row in rows):
        lines.append(
            "‡ the time does not grow with n: fixed costs (task dispatch, thread wake-up, "
            "kernel launch) hide the per-element work at these sizes."
        )
    if any(row["python_extrapolated"] for row in rows):
        lines.append(
            "~ python was not run at this n (over budget): speedup against its time "
            "extrapolated from smaller n (t = overhead + n / rate)."
        )
    skipped = [row for row in rows if row["status"] == SKIPPED]
    if skipped:
        budget = skipped[0]["message"].rsplit("budget ", 1)[-1]
        lines.append(
            f"skipped: {len(skipped)} runs predicted (from smaller n) to take more than "
            f"{budget} each."
        )
    for check, prefix, words in (
        ("agree", "agreement", "past the pure-Python reference's budget, and no known value: "
         "checked by the agreement of independent implementations"),
        ("sample", "sample", "past the pure-Python reference's budget, no known value, and "
         "only one implementation (not Python) counted it"),
    ):
        compared = _compared(rows, prefix)
        if compared:
            lines.append(f"✓ {check}: {words}: {compared}.")
    if any(row["backend"] == AUTO for row in rows):
        lines.append(
            "auto: compute(n, backend=\"auto\"), with the dispatcher's choice after →; its "
            "calibration ran in the warm-up, untimed. Every row is a compute(n, backend=...) call."
        )
    lines.append("spread: (slowest - fastest) / median of the runs.")
    return lines


def _compared(rows: list[dict[str, Any]], prefix: str) -> str:
    """What was compared at the sizes whose reference starts with ``prefix``, sizes grouped."""
    sizes: dict[str, list[int]] = {}
    for row in rows:
        if row["status"] == OK and row["reference"].startswith(prefix):
            found = sizes.setdefault(row["reference"], [])
            if row["n"] not in found:
                found.append(row["n"])
    return "; ".join(
        f"at n = {', '.join(size(n) for n in found)}, {reference}"
        for reference, found in sizes.items()
    )


def _description(data: dict[str, Any], workload: str) -> str:
    return data["config"].get("descriptions", {}).get(workload, workload)


def render(data: dict[str, Any], console: Any) -> None:
    """Print a rich table per workload (or the guide's comparison), with notes under each."""
    from rich.table import Table

    rows = data["measurements"]
    if data["config"]["guide"]:
        _render_guide(data, console)
    else:
        for workload in data["config"]["workloads"]:
            mine = [row for row in rows if row["workload"] == workload]
            table = Table(title=f"{workload}: {_description(data, workload)}")
            for header in _HEADERS:
                justify = "left" if header in ("backend", "check") else "right"
                table.add_column(header, justify=justify)
            last_n = None
            for row in mine:
                if last_n is not None and row["n"] != last_n:
                    table.add_section()
                last_n = row["n"]
                cells = _cells(row)
                style = {MISMATCH: "bold red", ERROR: "bold red", SKIPPED: "dim",
                         UNVERIFIED: "yellow"}.get(row["status"])
                table.add_row(*cells, style=style)
            console.print(table)
            for line in notes(mine, workload):
                console.print(f"  {line}", highlight=False, soft_wrap=True)
            console.print()
    _render_footer(data, console)


def _render_guide(data: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    n = data["config"]["sizes"][0]
    table = Table(
        title=f"The guide's experiment: 4 tasks x {n // 4:,} counts, "
        f"{data['config']['workers']} workers"
    )
    for header in ("backend", "median", "spread", "the guide", "this / guide", "check"):
        table.add_column(header, justify="left" if header in ("backend", "check") else "right")
    for row in data["measurements"]:
        cells = _cells(row)
        guide = GUIDE_SECONDS.get(row["backend"])
        ratio = f"{row['median_s'] / guide:.2f}" if guide and row["median_s"] else ""
        table.add_row(cells[1], cells[2], cells[3], seconds(guide) if guide else "", ratio,
                      cells[6])
    console.print(table)
    console.print(
        "  the guide: sequential (here `python`) 1.13 s, multiprocessing (here `processes`) "
        "0.72 s; threads are "
        + ("serialised by the GIL." if data["machine"].get("gil_enabled", True) else
           "parallel here (free-threaded CPython, the GIL off)."),
        highlight=False,
    )
    for line in notes(data["measurements"], "count"):
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    console.print()


def _render_footer(data: dict[str, Any], console: Any) -> None:
    info = data["machine"]
    console.print(
        f"machine: {info['cpu']}, {info['cores_usable']} cores; GPU: {info['gpu'] or 'none'}; "
        f"Python {info['python']}; numba {info['versions'].get('numba', '-')}",
        highlight=False,
    )
    for name, device in data.get("devices", {}).items():
        if not device.startswith("CPU:"):  # a GPU or a Ray cluster: say which
            console.print(f"{name} ran on: {device}", markup=False, highlight=False,
                          soft_wrap=True)
    for name, reason in data["unavailable"].items():
        console.print(f"not benchmarked: {name}: {reason}", markup=False, highlight=False,
                      soft_wrap=True)
    bad = [row for row in data["measurements"] if row["status"] in (MISMATCH, ERROR)]
    if bad:
        console.print(
            f"[bold red]{len(bad)} result(s) WRONG or failed: their times are not reported.[/]"
        )
    elif any(row["status"] == UNVERIFIED for row in data["measurements"]):
        console.print("[yellow]some results could not be verified (see 'check').[/]")
    else:
        console.print("[green]every result matched its reference.[/]")


def markdown(data: dict[str, Any], *, full: bool = False) -> str:
    """GitHub markdown for a README, from ``report(...)`` or a bench JSON file.

    By default one compact table per workload: a row per backend, a column per size, the median
    time in each cell (marks as in the terminal table), then elements/s and the speedup over
    ``python`` at the largest size the backend ran. ``full``: every measurement, as in the terminal.
    """
    info = data["machine"]
    out = [
        f"Measured {data['created'][:10]} on {info['cpu']} ({info['cores_usable']} cores), "
        f"GPU: {info['gpu'] or 'none'}, Python {info['python']}, "
        f"numba {info['versions'].get('numba', '-')}, partally "
        f"{info['versions'].get('partally', '-')}; median of {data['config']['repeat']} runs; "
        + _verdict(data["measurements"]),
        "",
    ]
    for workload in data["config"]["workloads"]:
        rows = [row for row in data["measurements"] if row["workload"] == workload]
        out += [f"**{workload}**: {_description(data, workload)}", ""]
        if full:
            out.append("| " + " | ".join(_HEADERS) + " |")
            out.append("|" + "|".join(" ---: " if h not in ("backend", "check") else " --- "
                                      for h in _HEADERS) + "|")
            out += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
        else:
            out += _pivot(rows, data["config"]["backends"], data["config"]["sizes"])
        out.append("")
        out += [f"- {line}" for line in notes(rows, workload)]
        out.append("")
    return "\n".join(out)


def _verdict(rows: list[dict[str, Any]]) -> str:
    if any(row["status"] in (MISMATCH, ERROR) for row in rows):
        return "**some results were WRONG or failed**."
    if any(row["status"] == UNVERIFIED for row in rows):
        return "some results could not be verified (marked ?)."
    return "every result verified."


def _pivot(rows: list[dict[str, Any]], backends: list[str], sizes: list[int]) -> list[str]:
    header = ["backend", *(f"n = {size(n)}" for n in sizes), "elements/s", "vs python"]
    out = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for name in backends:
        mine = {row["n"]: row for row in rows if row["backend"] == name}
        if not mine:
            continue
        cells, last = [name], None
        for n in sizes:
            row = mine.get(n)
            if row is None:
                cells.append("")
                continue
            text = _cells(row)
            if row["status"] == SKIPPED:
                cells.append("skipped")
            elif row["status"] in (MISMATCH, ERROR):
                cells.append(f"**{text[6]}**")
            else:
                chose = f" → {row['chose']}" if row.get("chose") else ""  # auto's pick
                cells.append(text[2] + chose + (" ?" if row["status"] == UNVERIFIED else ""))
                last = text
        cells += [last[4], last[5]] if last else ["", ""]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _json_value(value: Any) -> Any:
    """A result as strict JSON: a non-finite float as its repr ("nan", "inf", "-inf"), a min
    or max as {"value": ..., "index": ...}; ints and finite floats as they are (a float's
    JSON text reads back to the same float)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {key: _json_value(item) for key, item in value._asdict().items()}
    return value
