"""GET /api/v1/events/export: every matching event, oldest first, streamed from a server-side
cursor in constant memory, ending with a summary that lets an auditor check completeness.

ndjson: one event per line; the last line is {"_summary": {...}}.
csv: a header record, one record per event; the last record starts with the field `_summary`
followed by the row count, the sha256 and the coverage as JSON. Cells a spreadsheet would
read as a formula are neutralised (auditor.shapes: OWASP's CSV injection rule).
sha256 is over every byte sent before the summary (the csv header included).

The access log gets two rows: `started` when the answer begins, and how it ended when the
stream closes: `completed` (rows, sha256), `cut` (the client went away; rows the server had
fully handed on) or `failed` (the error's class). At most AUDITOR_API_EXPORTS_PER_TOKEN
exports run at once per token (PostgreSQL advisory locks, so across every worker)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import logging
from collections.abc import Generator
from contextlib import ExitStack
from datetime import datetime
from typing import Any

import psycopg
from apiflask import APIBlueprint, HTTPError
from flask import Response, current_app, g
from marshmallow import RAISE

from auditor.store import export_slots, queries
from auditor.store.access_queries import AccessRecord, append
from web import schemas
from web.audit import request_record, requires
from web.db import Connections, database
from web.metrics import Metrics
from web.paging import coverage_summary, dumps

bp = APIBlueprint("export", __name__, url_prefix="/api/v1", tag="API")
FETCH_ROWS = 5000
RETRY_EXPORT_SECONDS = 10
log = logging.getLogger("auditor.api")

_CONTENT = {
    "application/x-ndjson": {"schema": {"type": "string"}},
    "text/csv": {"schema": {"type": "string"}},
}

_RESPONSES: dict[int | str, dict[str, str | dict[str, dict[str, Any]]]] = {
    200: {"description": "the events, then the summary", "content": _CONTENT},
    400: {"description": "bad parameter"},
    401: {"description": "no, unknown or revoked token"},
    403: {"description": "the token's role is not exporter or admin"},
    429: {"description": "this token already runs as many exports as allowed"},
}


@bp.get("/events/export")
@requires("exporter")
@bp.input(schemas.ExportQuery, location="query", arg_name="query", unknown=RAISE)
@bp.doc(
    summary="Export events (ndjson or csv), streamed, with a completeness summary at the end",
    responses=_RESPONSES,
)
def export_events(query: dict[str, Any]) -> Response:
    as_csv = query["format"] == "csv"
    flt = queries.EventFilter(
        equals={k: query[k] for k in queries.EVENT_EQUALS if query.get(k) is not None},
        start=query.get("from_"),
        end=query.get("to"),
    )
    db = database()
    limit: int = current_app.config["AUDITOR_SETTINGS"].api.exports_per_token
    record = request_record(200)
    metrics = current_app.extensions["auditor_metrics"]
    # CSV: one snapshot for the COPY and the summary's look at the same rows. Nothing may
    # fail after this.
    stack, connection = _take_slot(db, g.token.id, limit, repeatable_read=as_csv)
    stream = ExportStream(
        stack, db, _body(connection, flt, as_csv, query.get("account")), metrics, record
    )
    g.export_stream = stream  # web.audit writes the `started` row and hands its id over
    mimetype = "text/csv" if as_csv else "application/x-ndjson"
    response = Response(stream, mimetype=mimetype)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="events.{"csv" if as_csv else "ndjson"}"'
    )
    return response


def _take_slot(
    db: Connections, token_id: int, limit: int, *, repeatable_read: bool = False
) -> tuple[ExitStack, psycopg.Connection[Any]]:
    """The export's own connection in a transaction holding one of the token's slots (a
    transaction-level advisory lock, released when the stream closes); 429 when all are
    taken. ``repeatable_read``: one snapshot for every read of the export."""
    stack = ExitStack()
    try:
        connection = stack.enter_context(db.connection())
        stack.enter_context(connection.transaction())
        if repeatable_read:
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for slot in range(limit):
            if export_slots.try_slot(connection, token_id, slot):
                return stack, connection
    except BaseException:
        stack.close()
        raise
    stack.close()
    raise HTTPError(
        429,
        f"this token already runs {limit} export(s) at once; wait for one to end",
        headers={"Retry-After": str(RETRY_EXPORT_SECONDS)},
    )


class ExportStream:
    """The WSGI body of one export. The server calls close() whatever happened (PEP 3333),
    so the ending row is written and the connection released even when the client vanished
    before the first byte."""

    def __init__(
        self,
        stack: ExitStack,
        db: Connections,
        body: Generator[tuple[str | bytes, int]],
        metrics: Metrics,
        record: AccessRecord,
    ) -> None:
        self.started_row: int | None = None
        self._stack = stack
        self._db = db
        self._body = body
        self._metrics = metrics
        self._record = record
        self._handed_on = 0  # rows in chunks the server came back for: fully written
        self._in_flight = 0
        self._sha256: str | None = None
        self._error: str | None = None
        self._finished = False
        self._closed = False

    def __iter__(self) -> ExportStream:  # of bytes: str chunks are sent as UTF-8
        return self

    def __next__(self) -> bytes:
        self._handed_on += self._in_flight
        self._in_flight = 0
        try:
            chunk, rows = next(self._body)
        except StopIteration:
            self._finished = True
            self.close()  # the common end: the row is written now, not when the server says
            raise
        except Exception as exc:
            self._error = type(exc).__name__
            log.exception("an export failed after %d rows", self._handed_on)
            self.close()
            raise
        if rows < 0:  # the summary: the hash it carries goes into the log
            self._sha256 = chunk if isinstance(chunk, str) else chunk.decode()
            return self.__next__()
        self._in_flight = rows
        self._metrics.export_rows.inc(rows)
        return chunk.encode() if isinstance(chunk, str) else chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._body.close()
        try:
            self._stack.close()
        except psycopg.Error:
            log.exception("could not end an export's transaction")
        if self.started_row is None:
            return  # the answer never began (its `started` row could not be written)
        outcome, sha256, error = "cut", None, None
        if self._finished:
            outcome, sha256 = "completed", self._sha256
        elif self._error is not None:
            outcome, error = "failed", self._error
        record = dataclasses.replace(
            self._record,
            rows=self._handed_on,
            follows=self.started_row,
            outcome=outcome,
            sha256=sha256,
            error=error,
        )
        try:
            with self._db.primary() as connection:
                append(connection, record)
        except Exception:
            log.exception("could not write how an export ended")


def _summary_record(rows: int, sha256: str, coverage: dict[str, Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["_summary", rows, sha256, dumps(coverage)])
    return buffer.getvalue()


def _body(
    connection: psycopg.Connection[Any],
    flt: queries.EventFilter,
    as_csv: bool,
    account: str | None,
) -> Generator[tuple[str | bytes, int]]:
    """(chunk, rows in it); the summary is preceded by (its sha256, -1) for the log."""
    digest = hashlib.sha256()
    accounts: set[str] = set()
    earliest: datetime | None = None
    sent = 0
    if as_csv:
        # COPY sends bytes only: what the summary needs of the rows is asked first, in the
        # same snapshot (the export's transaction is REPEATABLE READ).
        extent = queries.export_extent(connection, flt)
        earliest, accounts = extent.earliest, set(extent.accounts)
        header = ",".join(queries.EVENT_CSV_COLUMNS) + "\n"
        digest.update(header.encode())
        yield header, 0
        for chunk, count in queries.export_events_csv(connection, flt, chunk_rows=FETCH_ROWS):
            digest.update(chunk)
            sent += count
            yield chunk, count
    else:
        for rows in queries.export_events_json(connection, flt, fetch=FETCH_ROWS):
            text = "\n".join(row.json for row in rows) + "\n"
            digest.update(text.encode())
            first = min(row.received_at for row in rows)
            earliest = first if earliest is None else min(earliest, first)
            accounts.update(row.account for row in rows)
            sent += len(rows)
            yield text, len(rows)
    seen = [earliest] if earliest is not None else []
    coverage = coverage_summary(connection, flt.start, flt.end, seen, account, accounts)
    sha256 = digest.hexdigest()
    yield sha256, -1
    if as_csv:
        yield _summary_record(sent, sha256, coverage), 0
    else:
        yield dumps({"_summary": {"rows": sent, "sha256": sha256, "coverage": coverage}}) + "\n", 0
