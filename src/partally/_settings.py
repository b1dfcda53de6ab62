"""partally's environment settings, read in one place.

    PARTALLY_BACKEND=name     every backend="auto" call runs on that backend
    PARTALLY_NO_CALIBRATE=1   auto takes a fixed order instead of calibrating
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_FALSE = ("", "0", "false", "no", "off")


def flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to something other than 0/false/no/off."""
    return os.environ.get(name, "").strip().lower() not in _FALSE


def text(name: str) -> str | None:
    """The environment variable ``name``, stripped; None when unset or blank."""
    return os.environ.get(name, "").strip() or None


def cache_folder() -> Path:
    """Where partally keeps what it measured and compiled: platformdirs' user cache folder
    (``$XDG_CACHE_HOME/partally`` on Linux)."""
    import platformdirs

    return platformdirs.user_cache_path("partally")


@dataclass(frozen=True)
class Settings:
    """What the environment asks of ``backend="auto"``."""

    forced: str | None = None  # PARTALLY_BACKEND (lower case, checked against the backends)
    no_calibrate: bool = False  # PARTALLY_NO_CALIBRATE

    @classmethod
    def from_environment(cls, backend_names: tuple[str, ...]) -> Settings:
        """Read the environment; ``ValueError`` for a PARTALLY_BACKEND that names no backend."""
        forced = text("PARTALLY_BACKEND")
        if forced is not None:
            forced = forced.lower()
            if forced == "auto":
                forced = None
            elif forced not in backend_names:
                raise ValueError(
                    f"PARTALLY_BACKEND={os.environ['PARTALLY_BACKEND']!r} is not a backend; "
                    f"expected 'auto' or one of {list(backend_names)}"
                )
        return cls(forced, flag("PARTALLY_NO_CALIBRATE"))
