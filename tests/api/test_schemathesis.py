"""Property-based run of the API against its own /openapi.json, in-process (WSGI): no 5xx,
every status code, content type and body as documented.

Operations are driven one by one with hypothesis (schemathesis' pytest plugin does not yet
work with pytest 9's fixture nodes)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from auditor.config import libpq_conninfo
from auditor.evidence import checkpoints, keys
from tests.api.conftest import Api
from tests.helpers import T0, om_message, receipt

EXAMPLES_PER_OPERATION = 40


@pytest.mark.slow
def test_api_conforms_to_its_openapi_document(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
            case.call_and_validate(
                headers=headers,
                checks=[
                    checks.not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )

        conforms()
