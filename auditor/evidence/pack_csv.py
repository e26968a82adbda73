"""events.csv of an evidence pack, written by PostgreSQL's COPY (a quarter of the client CPU
of Python's csv) and streamed; optionally on a second connection in the same snapshot
(``twin``), so that PostgreSQL writes the CSV while this process encodes the NDJSON."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from auditor.evidence import batches, leaves


def csv_chunks(
    conn: psycopg.Connection[Any],
    where: sql.Composable,
    params: list[Any],
    bounds: tuple[int, int] | None,
    chunk_rows: int,
) -> Iterator[bytes]:
    """The exported events as CSV, written by PostgreSQL (COPY, a quarter of the client CPU
    of Python's csv), streamed: the rows of events.ndjson in the same order, selected by the
    same filter within the ids it saw (in the REPEATABLE READ transaction the CLI and the
    API use, the very same rows). Times in UTC (set by the caller)."""
    fields = leaves.SOURCES["event"].fields
    columns = sql.SQL(", ").join(sql.SQL("e.{}").format(sql.Identifier(n)) for n in fields)
    within: sql.Composable = sql.SQL("")
    if bounds is not None:  # else a twin in the same snapshot: the same rows by the filter
        within = sql.SQL(" AND e.id >= {} AND e.id <= {}").format(
            sql.Literal(bounds[0]), sql.Literal(bounds[1])
        )
    statement = sql.SQL(
        # the position of the event's own record row, or of its format-2 batch row
        f"COPY (SELECT {batches.EVENT_POSITION} AS position, {{}}"
        f" FROM events AS e{batches.EVENT_PLACE_JOIN}"
        " WHERE {}{} ORDER BY 1 NULLS LAST, e.id)"
        " TO STDOUT WITH (FORMAT csv, HEADER)"
    ).format(columns, where, within)
    with conn.cursor() as cur, cur.copy(statement, params) as copy:
        pending: list[bytes] = []
        for line in copy:  # a row (the header first) per piece COPY gives
            pending.append(bytes(line))
            if len(pending) >= chunk_rows:
                yield b"".join(pending)
                pending = []
        yield b"".join(pending)


class EarlyCsv:
    """events.csv made by PostgreSQL on a twin connection while the NDJSON is written:
    a thread copies it into a spool file (memory up to SPOOL_MEMORY, then disk)."""

    SPOOL_MEMORY = 8 << 20

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        where: sql.Composable,
        params: list[Any],
        chunk_rows: int,
    ) -> None:
        self.chunk_rows = chunk_rows
        self.spool = tempfile.SpooledTemporaryFile(max_size=self.SPOOL_MEMORY)  # noqa: SIM115 (closed by close)
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._copy, args=(conn, where, params), name="pack-csv", daemon=True
        )
        self.thread.start()

    def _copy(
        self, conn: psycopg.Connection[Any], where: sql.Composable, params: list[Any]
    ) -> None:
        try:
            for chunk in csv_chunks(conn, where, params, None, self.chunk_rows):
                self.spool.write(chunk)
        except BaseException as exc:  # handed to the reader, raised there
            self.error = exc

    def chunks(self) -> Iterator[bytes]:
        self.thread.join()
        if self.error is not None:
            raise self.error
        self.spool.seek(0)
        while chunk := self.spool.read(1 << 20):
            yield chunk

    def close(self) -> None:
        self.thread.join()
        self.spool.close()


def twin(conn: psycopg.Connection[Any], conninfo: str) -> psycopg.Connection[Any]:
    """A second, read-only connection in ``conn``'s snapshot (``conn`` must be in a
    REPEATABLE READ transaction, kept open while the twin is used)."""
    snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()
    assert snapshot is not None
    other = psycopg.connect(conninfo)
    try:
        other.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        other.read_only = True
        other.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot[0])))
        other.execute("SET LOCAL timezone = 'UTC'")
    except BaseException:
        other.close()
        raise
    return other
