import os
import signal
import tempfile


# partally caches calibrations and compiled kernels in the user cache folder: the tests use a
# folder of their own, so that they neither read nor write the user's (subprocesses inherit it).
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="partally-tests-cache-")

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("ci", parent=settings.get_profile("default"), max_examples=25)
settings.load_profile("ci" if os.environ.get("CI") else "default")

# A script that starts pytest in the background (`cmd &` without job control) leaves SIGINT
# ignored, in pytest and in every Python it starts: the Ctrl-C tests would then wait forever.
# Handle it as an interactive run does (children get the default action back at exec).
signal.signal(signal.SIGINT, signal.default_int_handler)
