"""``partally bench --plot``: time against n, log-log, one line per backend, one panel per workload.

matplotlib is the ``plot`` extra: imported only here, only when a plot is asked for. The figure is
drawn on a ``matplotlib.figure.Figure`` directly (no pyplot, no global backend state).
"""

from __future__ import annotations

from typing import Any

from partally.bench.run import MISMATCH, OK, SKIPPED, UNVERIFIED

INSTALL_HINT = 'pip install "partally[plot]"'


class PlotUnavailable(RuntimeError):
    """matplotlib is missing; the message names the extra to install."""


def require_matplotlib() -> None:
    """Raise ``PlotUnavailable`` naming the extra if matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise PlotUnavailable(
            f"--plot needs matplotlib, which is not installed ({exc}); "
            f"install it with `{INSTALL_HINT}`"
        ) from None


def plot(data: dict[str, Any], path: str) -> None:
    """Write the figure for ``data`` (``partally.bench.report.report(...)``) to ``path`` (png, svg, pdf)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    workloads = data["config"]["workloads"]
    backends = data["config"]["backends"]
    rows = data["measurements"]
    figure = Figure(figsize=(5.2 * len(workloads), 4.6), layout="constrained")
    axes = figure.subplots(1, len(workloads), squeeze=False)[0]
    colors = {name: f"C{k % 10}" for k, name in enumerate(backends)}
    for ax, workload in zip(axes, workloads):
        for name in backends:
            mine = [r for r in rows if r["workload"] == workload and r["backend"] == name]
            timed = [r for r in mine if r["status"] in (OK, UNVERIFIED) and r["median_s"]]
            if timed:
                ax.plot(
                    [r["n"] for r in timed], [r["median_s"] for r in timed],
                    marker="o", markersize=4, color=colors[name], label=name,
                    linestyle="--" if name == "auto" else "-",
                )
            skipped = [r for r in mine if r["status"] == SKIPPED and r["predicted_s"]]
            if timed and skipped:  # the budget's prediction, dotted
                last = timed[-1]
                ax.plot(
                    [last["n"]] + [r["n"] for r in skipped],
                    [last["median_s"]] + [r["predicted_s"] for r in skipped],
                    linestyle=":", color=colors[name], alpha=0.6,
                )
            for r in mine:
                if r["status"] == MISMATCH and r["median_s"]:
                    ax.plot(r["n"], r["median_s"], marker="x", color="red", markersize=10)
        ax.set_xscale("log")
        ax.set_yscale("log")
        folded = workload in data["config"].get("folded", [])
        ax.set_title(workload + (" (compiled loops are folded)" if folded else ""))
        ax.set_xlabel("n (elements)")
        ax.set_ylabel("seconds per call (median)")
        ax.grid(True, which="major", alpha=0.4)
        ax.legend(fontsize="small")
    info = data["machine"]
    figure.suptitle(
        f"partally bench, {data['created'][:10]}: {info['cpu']} ({info['cores_usable']} cores), "
        f"GPU: {info['gpu'] or 'none'}; dotted: predicted, skipped",
        fontsize="medium",
    )
    figure.savefig(path, dpi=110)
