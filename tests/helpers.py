"""Small builders shared by the tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from auditor.sample import SampleLine
from auditor.store.receipts import Receipt, new_receipt_id

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def om_message(
    interaction_id: str,
    state: str,
    *,
    notification_type: str = "StatusChange",
    reference_id: int | None = None,
    user_data: dict[str, Any] | None = None,
    capabilities: list[str] | None = None,
    media_type: str = "email",
) -> str:
    data: dict[str, Any] = {
        "messageType": "OpenmediaStateChangeMessage",
        "notificationType": notification_type,
        "openmedia": {
            "id": interaction_id,
            "state": state,
            "capabilities": capabilities if capabilities is not None else [],
            "mediaType": media_type,
            "openmediaType": "Inbound",
        },
    }
    if reference_id is not None:
        data["referenceId"] = reference_id
    if user_data is not None:
        data["openmedia"]["userData"] = user_data
    return json.dumps({"channel": "/v2/me/openmedia", "data": data})


def receipt(raw: str | bytes, *, account: str = "agent001", at: int = 0, **kw: Any) -> Receipt:
    """A receipt received ``at`` milliseconds after T0."""
    return Receipt(
        new_receipt_id(), T0 + timedelta(milliseconds=at), account, "/v2/me/openmedia", raw, **kw
    )


def from_sample(line: SampleLine) -> Receipt:
    return Receipt(
        line.receipt_id, line.received_at, line.account, line.channel, json.dumps(line.message)
    )
