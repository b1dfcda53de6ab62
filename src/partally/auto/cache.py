"""Where calibrations are kept: one JSON file per machine key in platformdirs' user cache.

The key is what the models depend on (CPU model, cores, GPU name, Python, partally version,
which optional packages are installed); a change of any of these re-calibrates. A corrupt or
unreadable file is ignored (and rewritten by the next calibration); an unwritable directory only
means the models live in memory for this process, and ``save`` says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import platform
import tempfile
from collections.abc import Mapping
from pathlib import Path

from partally._machine import cores, cpu_device, gil_enabled, gpu_names
from partally._settings import cache_folder
from partally.auto.calibration import Calibration
from partally.auto.models import Model
from partally.workloads import INDEX_LIMIT

FORMAT = 1
_OPTIONAL = ("numba", "numba_cuda", "cupy", "ray", "celery", "partally._native")


def machine_key() -> dict[str, object]:
    """What the models depend on: a change of any of these re-calibrates."""
    from partally._version import __version__

    installed = []
    for name in _OPTIONAL:
        try:
            if importlib.util.find_spec(name) is not None:
                installed.append(name)
        except (ImportError, ValueError):
            pass
    gil = gil_enabled()
    return {
        "cpu": cpu_device(),
        "cores": cores(),
        "gpu": gpu_names(),
        "python": f"{platform.python_implementation()} {platform.python_version()}"
        + ("" if gil else " free-threaded"),
        "partally": __version__,
        "installed": installed,
    }


class CalibrationCache:
    """The calibrations of this machine, in one JSON file under ``directory``."""

    def __init__(self, directory: Path | None = None, key: Mapping[str, object] | None = None):
        self.directory = cache_folder() if directory is None else Path(directory)
        self.key = dict(machine_key() if key is None else key)

    @property
    def path(self) -> Path:
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        return self.directory / f"dispatch-{digest}.json"

    def _read(self) -> dict[str, dict]:
        """The cached workloads for this key; {} if missing, corrupt or for another key."""
        try:
            with open(self.path, encoding="utf-8") as file:
                data = json.load(file)
        except (OSError, ValueError, UnicodeDecodeError):
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != self.key:
            return {}
        workloads = data.get("workloads")
        if not isinstance(workloads, dict):
            return {}
        return {name: entry for name, entry in workloads.items() if parse(entry) is not None}

    def load(self, workload_key: str) -> Calibration | None:
        """The cached calibration of the workload with this key, or None. Never measures."""
        entry = self._read().get(workload_key)
        return None if entry is None else parse(entry)

    def save(self, workload_key: str, calibration: Calibration) -> str | None:
        """Store ``calibration`` beside the others (atomically); None, or why it could not."""
        workloads = self._read()
        workloads[workload_key] = calibration.to_json()
        data = {"format": FORMAT, "key": self.key, "workloads": workloads}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".dispatch-", suffix=".json", dir=self.directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    json.dump(data, file, indent=1)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            return f"{type(exc).__name__}: {exc.strerror or exc}"
        return None


def parse(entry: object) -> Calibration | None:
    """A cached workload entry as a ``Calibration``, or None if it is malformed in any way."""
    try:
        models = {
            name: Model(
                tuple(int(n) for n in model["sizes"]),
                tuple(float(t) for t in model["seconds"]),
                float(model["startup"]),
                str(model.get("source", "calibration")),
                float(model.get("at", 0.0)),
            )
            for name, model in entry["models"].items()
        }
        skipped = {str(name): str(why) for name, why in entry["skipped"].items()}
        if "python" not in models or not all(
            math.isfinite(t) and t >= 0 for m in models.values() for t in (*m.seconds, m.startup)
        ):
            return None
        load = float(entry.get("load", 0.0))
        domain = int(entry.get("domain", INDEX_LIMIT))
        return Calibration(
            models, skipped, int(entry["workers"]), float(entry["elapsed_s"]), load, domain
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
