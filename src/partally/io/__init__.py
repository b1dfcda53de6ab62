"""The IO side: ``fetch_all`` / ``afetch_all`` over httpx transports, and the local test server."""
