"""Fixtures of the API tests, shared: the ops tests ask the API what it answers."""

from tests.api.conftest import api, committed_api

__all__ = ["api", "committed_api"]
