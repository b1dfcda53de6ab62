"""``partally bench``: run and verify (``run``), report (``report``), plot (``plot``), IO (``io``)."""
