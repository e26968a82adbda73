"""Fixtures of the in-process tests."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest


@pytest.fixture
def db(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The test's connection with its transaction already open, so that the transaction a
    worker task opens on it (`with conn.transaction()`) is a savepoint inside the test's,
    rolled back with it, instead of a transaction of its own that would commit."""
    conn.execute("SELECT 1")
    return conn
