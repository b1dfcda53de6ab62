"""partally's exceptions.

    RuntimeError
    └── BackendUnavailable   a backend asked for by name cannot run here (the reason says why)

Bad arguments raise the built-in ``TypeError`` (wrong type) and ``ValueError`` (wrong value).
"""


class BackendUnavailable(RuntimeError):
    """A backend asked for by name cannot run on this machine; the message says why."""
