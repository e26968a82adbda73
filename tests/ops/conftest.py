"""Fixtures of the API tests, shared: the ops tests ask the API what it answers."""

from tests.api.conftest import api

__all__ = ["api"]
