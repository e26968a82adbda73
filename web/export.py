"""GET /api/v1/events/export: every matching event, oldest first, streamed from a server-side
cursor in constant memory, ending with a summary that lets an auditor check completeness.

ndjson: one event per line; the last line is {"_summary": {...}}.
csv: a header record, one record per event; the last record starts with the field `_summary`
followed by the row count, the sha256 and the coverage as JSON.
sha256 is over every byte sent before the summary (the csv header included)."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from apiflask import APIBlueprint
from flask import Response, current_app, g, request, stream_with_context
from marshmallow import RAISE

from auditor.store import queries
from web import schemas
from web.audit import database, filters_as_given, requires, write_access_log
from web.metrics import Metrics
from web.paging import coverage_summary, dumps

bp = APIBlueprint("export", __name__, url_prefix="/api/v1", tag="API")
FETCH_ROWS = 5000
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
    g.audit_deferred = True  # written when the stream ends, with the rows actually sent
    audit = (g.token, "GET", request.path, filters_as_given())
    metrics: Metrics = current_app.extensions["auditor_metrics"]
    stream = _stream(flt, as_csv, query.get("account"), audit, metrics)
    mimetype = "text/csv" if as_csv else "application/x-ndjson"
    response = Response(stream_with_context(stream), mimetype=mimetype)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="events.{"csv" if as_csv else "ndjson"}"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _csv_chunk(rows: list[tuple[Any, ...]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(row[2:] for row in rows)
    return buffer.getvalue()


def _lines(rows: list[tuple[Any, ...]]) -> str:
    """PostgreSQL made each line (a JSON object or a quoted CSV record)."""
    return "\n".join(row[2] for row in rows) + "\n"


def _stream(
    flt: queries.EventFilter,
    as_csv: bool,
    account: str | None,
    audit: tuple[Any, str, str, dict[str, Any]],
    metrics: Metrics,
) -> Iterator[str]:
    db = database()
    sent = 0
    try:
        digest = hashlib.sha256()
        accounts: set[str] = set()
        earliest: datetime | None = None
        with db.connection() as connection, connection.transaction():
            statement, params = queries.export_events_query(flt, csv=as_csv)
            with connection.cursor(name="auditor_export") as cur:
                cur.execute(statement, params)
                if as_csv:
                    header = ",".join(queries.EVENT_CSV_COLUMNS) + "\n"
                    digest.update(header.encode())
                    yield header
                while rows := cur.fetchmany(FETCH_ROWS):
                    chunk = _lines(rows)
                    digest.update(chunk.encode())
                    first = min(row[0] for row in rows)
                    earliest = first if earliest is None else min(earliest, first)
                    accounts.update(row[1] for row in rows)
                    sent += len(rows)
                    metrics.export_rows.inc(len(rows))
                    yield chunk
            seen = [earliest] if earliest is not None else []
            coverage = coverage_summary(connection, flt.start, flt.end, seen, account, accounts)
        summary = {"rows": sent, "sha256": digest.hexdigest(), "coverage": coverage}
        if as_csv:
            yield _csv_chunk([(None, None, "_summary", sent, summary["sha256"], dumps(coverage))])
        else:
            yield dumps({"_summary": summary}) + "\n"
    finally:
        token, method, path, filters = audit
        try:
            with db.connection() as connection:
                write_access_log(connection, token, method, path, filters, 200, sent)
        except Exception:
            log.exception("could not write the access log of an export")
