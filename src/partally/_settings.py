"""partally's environment settings, read in one place.

    PARTALLY_BACKEND=name     every backend="auto" call runs on that backend
    PARTALLY_NO_CALIBRATE=1   auto takes a fixed order instead of calibrating
    CELERY_BROKER_URL, CELERY_RESULT_BACKEND, PARTALLY_CELERY_VISIBILITY_TIMEOUT: the celery
                              backend's broker, result store, and redelivery delay (below)
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


def celery_broker_url() -> str | None:
    """The broker of the ``celery`` backend and its workers (Celery's own variable)."""
    return text("CELERY_BROKER_URL")


def celery_result_url() -> str | None:
    """The result store: CELERY_RESULT_BACKEND, else a Redis broker itself."""
    found, broker = text("CELERY_RESULT_BACKEND"), celery_broker_url()
    if found is None and broker is not None and broker.split("://", 1)[0] in ("redis", "rediss"):
        return broker
    return found


def celery_visibility_timeout() -> float:
    """Seconds before Redis delivers again a chunk whose worker was lost (default 60);
    ``ValueError`` for anything but a number above 0."""
    value = text("PARTALLY_CELERY_VISIBILITY_TIMEOUT")
    if value is None:
        return 60.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ValueError(
            f"PARTALLY_CELERY_VISIBILITY_TIMEOUT={value!r}: expected a number of seconds above 0"
        )
    return seconds


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
