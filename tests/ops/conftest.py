"""Fixtures of the API tests, shared: the ops tests ask the API what it answers; and the
worker tests' simulator, for the failover test's worker."""

from tests.api.conftest import api, committed_api
from tests.ingest.conftest import sim

__all__ = ["api", "committed_api", "sim"]
