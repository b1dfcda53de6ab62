"""partally's version, in one place (the package root and the cache key read it)."""

__version__ = "0.1.0"
