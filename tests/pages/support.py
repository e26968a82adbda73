"""The pages' test data: a few interactions with every kind of entry a timeline draws (state
changes, user-data diffs, a Snapshot re-read, an Error answering an operation, a coverage
gap), some stored later than the rest (for "as known at"), and the app served over HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from flask import Flask
from sqlalchemy.engine import URL
from werkzeug.serving import BaseWSGIServer, make_server

from auditor.config import libpq_conninfo
from auditor.store.receipts import SNAPSHOT, Receipt, new_receipt_id
from auditor.store.writer import store_batch
from tests.helpers import T0, om_message, receipt

CASE = "CASE-4711"  # the interaction whose timeline the tests read
A1, A2 = "agent101", "agent102"


def _error(interaction_id: str, reference_id: int, at: int, account: str) -> Receipt:
    raw = json.dumps(
        {
            "channel": "/v2/me/openmedia",
            "data": {
                "messageType": "OpenmediaStateChangeMessage",
                "notificationType": "Error",
                "referenceId": reference_id,
                "errorCode": 1203,
                "errorMessage": "Interaction is locked or not owned by this agent",
                "openmedia": {"id": interaction_id, "state": "Handling", "mediaType": "email"},
            },
        }
    )
    return receipt(raw, at=at, account=account)


def _snapshot(interaction_id: str, state: str, at: int, account: str) -> Receipt:
    raw = json.dumps(
        {
            "data": {
                "messageType": "OpenmediaSnapshot",
                "notificationType": "Snapshot",
                "openmedia": {"id": interaction_id, "state": state, "mediaType": "email"},
            },
            "snapshot": {"request": "GET /api/v2/me/openmedia/email?fields=*", "items": 1},
        }
    )
    return Receipt(
        new_receipt_id(), T0 + timedelta(milliseconds=at), account, None, raw, kind=SNAPSHOT
    )


def first_batch() -> list[Receipt]:
    case = [
        receipt(
            om_message(CASE, "Routing", reference_id=7, user_data={"case": "4711", "tier": "gold"}),
            account=A1,
        ),
        receipt(om_message(CASE, "Handling", reference_id=8), at=10_000, account=A1),
        receipt(
            om_message(
                CASE,
                "Handling",
                reference_id=9,
                user_data={"case": "4711", "tier": "platinum", "customer": "C-99"},
            ),
            at=20_000,
            account=A2,
        ),
        _error(CASE, 9, 21_000, A2),
        # agent102 is not listened to from +30 s to +90 s (coverage below): a gap, then a
        # Snapshot re-reads the state.
        _snapshot(CASE, "Processing", 95_000, A2),
    ]
    others = [
        receipt(om_message(f"WI-{n}", "Handling", media_type="workitem"), at=n * 1000, account=A1)
        for n in range(3)
    ] + [
        receipt(om_message(f"EM-{n}", "Completed", media_type="email"), at=n * 1000, account=A1)
        for n in range(3)
    ]
    return case + others


def late_batch() -> list[Receipt]:
    """Stored after the first batch: hidden "as known at" a time between the two."""
    return [
        receipt(om_message(CASE, "Completed"), at=119_000, account=A1),
        receipt(om_message(CASE, "Completed", user_data={"case": "4711"}), at=120_000, account=A2),
    ]


def cover(conn: psycopg.Connection[Any], account: str, start: datetime, end: datetime) -> None:
    conn.execute(
        "INSERT INTO coverage_intervals (account, worker_id, channels, started_at,"
        " heartbeat_at, ended_at, end_reason)"
        " VALUES (%s, 'w-test', %s, %s, %s, %s, 'disconnected')",
        (account, ["/v2/me/openmedia"], start, end, end),
    )


@dataclass(frozen=True)
class Seeded:
    between: datetime  # a whole second after the first batch was stored, before the late one


def seed(url: URL) -> Seeded:
    with psycopg.connect(libpq_conninfo(url)) as conn:
        store_batch(conn, first_batch())
        cover(conn, A1, T0 - timedelta(hours=1), T0 + timedelta(hours=1))
        cover(conn, A2, T0 - timedelta(hours=1), T0 + timedelta(seconds=30))
        cover(conn, A2, T0 + timedelta(seconds=90), T0 + timedelta(hours=1))
        conn.commit()
        stored = conn.execute("SELECT max(stored_at) FROM events").fetchone()
        assert stored is not None
        # "As known at" is entered to the second: wait (on the database's clock) for the
        # next whole second, so that a time exists between the two batches.
        between = stored[0].replace(microsecond=0) + timedelta(seconds=1)
        deadline = time.monotonic() + 5
        while conn.execute("SELECT now() > %s", (between,)).fetchone() != (True,):
            conn.rollback()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        conn.rollback()
        store_batch(conn, late_batch())
        conn.commit()
    return Seeded(between)


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """The app on a loopback port, many threads (werkzeug), for the browser."""
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
