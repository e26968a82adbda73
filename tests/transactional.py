"""The app inside the test's transaction (pypi/warehouse's pattern, for psycopg).

A test holds one connection with a transaction open; ``OneTransaction`` is the connection
source the app gets from ``create_app(settings, connections=...)``: every request runs on
that same connection in a savepoint of its own, as the API's login (SET ROLE, so the API's
privileges are still the ones checked), and the test reads what the app wrote (the access
log, a token's last use) in the same transaction. Nothing is committed: the test's rollback
removes it all, so tests share one database instead of cloning one each.

Not for code that needs its own commits or sessions: exports (their slots are advisory
locks, which one session takes again and again), several connections at once, a server in
a subprocess, or answers that depend on now() moving (it is the transaction's start)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

_names = itertools.count()


@contextmanager
def savepoint(connection: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A savepoint that is rolled back on an exception or when a statement in it failed (a
    caught error leaves it aborted), released otherwise: what an autocommit connection does
    for the statements of one request."""
    name = sql.Identifier(f"test_sp_{next(_names)}")
    connection.execute(sql.SQL("SAVEPOINT {}").format(name))
    failed = False
    try:
        yield connection
    except BaseException:
        failed = True
        raise
    finally:
        if not connection.closed and not connection.broken:
            if failed or connection.info.transaction_status == TransactionStatus.INERROR:
                connection.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(name))
            connection.execute(sql.SQL("RELEASE SAVEPOINT {}").format(name))


class OneTransaction:
    """Every connection the app asks for is the test's, in a savepoint, as ``login``."""

    has_replica = False

    def __init__(self, connection: psycopg.Connection[Any], login: str) -> None:
        self._connection = connection
        self._login = login
        self._savepoints: list[str] = []  # open ones, innermost last
        self._users = 0  # app contexts holding the connection

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        connection = self._connection
        name = f"app_sp_{next(_names)}"
        connection.execute(sql.SQL("SAVEPOINT {}").format(sql.Identifier(name)))
        self._savepoints.append(name)
        if self._users == 0:
            connection.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self._login)))
        self._users += 1
        failed = False
        try:
            yield connection
        except BaseException:
            failed = True
            raise
        finally:
            self._users -= 1
            self._end(name, failed)

    def _end(self, name: str, failed: bool) -> None:
        connection = self._connection
        if connection.closed or connection.broken:
            return
        # An export's stream outlives its request: the request's savepoint ends first and
        # takes the export's with it, so the export's end finds nothing left to release.
        if name in self._savepoints:
            del self._savepoints[self._savepoints.index(name) :]
            ident = sql.Identifier(name)
            if failed or connection.info.transaction_status == TransactionStatus.INERROR:
                connection.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(ident))
            connection.execute(sql.SQL("RELEASE SAVEPOINT {}").format(ident))
        if self._users == 0:
            connection.execute("RESET ROLE")  # a released savepoint keeps its SET ROLE

    primary = connection

    def dispose(self) -> None:
        return None
