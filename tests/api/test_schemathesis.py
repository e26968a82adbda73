"""Property-based run of the API against its own /openapi.json, in-process (WSGI): no 5xx,
every status code, content type and body as documented, and no value the document calls valid
refused (positive_data_acceptance).

Four rules the document cannot express are kept out of the generated cases: a cursor is
valid only if this server signed it (HMAC), `from` must not be after `to` (times or record
positions: one parameter
against another), `as_of` must not be in the future, an evidence pack selects by exactly one
of its three selectors, and a legal hold names at least one predicate over a non-empty time
range. Each has its own tests (test_hardening.py, test_search.py, test_evidence_pack.py,
test_retention_api.py).

Operations are driven one by one with hypothesis (schemathesis' pytest plugin does not yet
work with pytest 9's fixture nodes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from auditor.config import libpq_conninfo
from auditor.evidence import checkpoints, keys
from tests.api.conftest import Api
from tests.helpers import T0, om_message, receipt

EXAMPLES_PER_OPERATION = 25


@pytest.mark.slow
def test_api_conforms_to_its_openapi_document(
    committed_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = committed_api  # the checkpoint is made on a connection of its own; exports stream
    api.store(
        [
            receipt(
                om_message(f"i{n % 3}", "Routing", reference_id=n, user_data={"n": n}),
                at=n * 1000,
                account=f"agent{n % 2}",
            )
            for n in range(6)
        ]
    )
    api.cover("agent0", T0, T0 + timedelta(seconds=3))
    # the evidence export signs with the API's key, against a checkpoint
    monkeypatch.setenv("AUDITOR_SIGNING_KEY_FILE", str(tmp_path / "signing.pem"))
    with psycopg.connect(libpq_conninfo(api.url)) as conn:
        checkpoints.make(conn, keys.create(tmp_path / "signing.pem"))
        conn.commit()
    schema = schemathesis.openapi.from_wsgi("/openapi.json", api.app)
    headers = {"Authorization": f"Bearer {api.tokens['admin']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: Case) -> None:
            _within_the_unwritten_rules(case)
            case.call_and_validate(
                headers=headers,
                checks=[
                    checks.not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                    positive_data_acceptance,
                ],
            )

        conforms()


def _within_the_unwritten_rules(case: Case) -> None:
    if case.path.endswith("/holds") and isinstance(case.body, dict):
        _a_hold_with_a_predicate(case.body)
    if case.path.endswith("/evidence/export") and not isinstance(case.query, dict):
        case.query = {}
    query = case.query if isinstance(case.query, dict) else None
    if query is None:
        return
    query.pop("cursor", None)
    as_of = _instant(query.get("as_of"))
    if as_of is not None and (as_of.tzinfo is None or as_of > datetime.now(UTC)):
        query.pop("as_of")  # not in the future: test_as_of.py covers the refusal
    start, end = _instant(query.get("from")), _instant(query.get("to"))
    if start is not None and end is not None and start > end:
        query["from"], query["to"] = query["to"], query["from"]
    low, high = query.get("from"), query.get("to")
    if isinstance(low, int) and isinstance(high, int) and low > high:  # record positions
        query["from"], query["to"] = high, low
    if case.path.endswith("/evidence/export"):
        _one_evidence_selector(query, start, end)


_PREDICATES = ("interaction_ids", "reference_ids", "account", "media_type", "from", "to")


def _a_hold_with_a_predicate(body: dict[str, object]) -> None:
    """A hold names at least one predicate; its `from` is before its `to`
    (tests/api/test_retention_api.py covers the refusals)."""
    if not any(name in body for name in _PREDICATES):
        body["account"] = "agent0"
    start, end = _instant(body.get("from")), _instant(body.get("to"))
    if start is not None and end is not None and start >= end:
        body.pop("to")
        if start == end:
            body.setdefault("account", "agent0")


_SELECTORS = ("interaction_id", "reference_id", "account")


def _one_evidence_selector(
    query: dict[str, object], start: datetime | None, end: datetime | None
) -> None:
    """An evidence pack selects by exactly one of interaction, referenceId, or account over a
    non-empty from..to (tests/integration/test_evidence_pack.py covers the refusals)."""
    chosen = [name for name in _SELECTORS if name in query]
    usable = [
        name
        for name in chosen
        if name != "account" or (start is not None and end is not None and start != end)
    ]
    keep = usable[0] if usable else "interaction_id"
    for name in _SELECTORS:
        if name != keep:
            query.pop(name, None)
    query.setdefault(keep, "OM-1")
    if start is not None and start == end:  # an empty range; account needs one (kept above)
        query.pop("to", None)


def _instant(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value is not None else None
    except ValueError:
        return None
