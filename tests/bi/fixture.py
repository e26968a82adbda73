"""Hand-made lifecycles whose BI answers are computed by hand (see the expectations in the
tests). Times are seconds after T0; every event goes through the real writer."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BAD_DAY = T0 + timedelta(days=1)  # the bad lifecycles, outside the sample queries' range
CHANNEL = "/v2/me/openmedia"
PROCESSING_CAPS = ["Transfer", "AttachUserData", "UpdateUserData", "DeleteUserData", "Complete"]
ROUTING = {"RTenant": "Environment", "ServiceType": "sales"}


def at(seconds: float, base: datetime = T0) -> datetime:
    return base + timedelta(seconds=seconds)


def message(
    interaction_id: str | None,
    state: str | None,
    *,
    notification_type: str = "StatusChange",
    ref: int | None = None,
    user_data: dict[str, Any] | None = None,
    media_type: str = "email",
    openmedia_type: str = "Inbound",
    error: tuple[int, str] | None = None,
    snapshot: bool = False,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "messageType": "OpenmediaSnapshot" if snapshot else "OpenmediaStateChangeMessage",
        "notificationType": "Snapshot" if snapshot else notification_type,
    }
    if ref is not None:
        data["referenceId"] = ref
    if error is not None:
        data["errorCode"], data["errorMessage"] = error
    if interaction_id is not None:
        resource: dict[str, Any] = {
            "id": interaction_id,
            "state": state,
            "capabilities": {"Invited": ["Accept", "Reject"], "Completed": []}.get(
                str(state), PROCESSING_CAPS
            ),
            "mediaType": media_type,
            "openmediaType": openmedia_type,
        }
        if user_data is not None:
            resource["userData"] = user_data
        data["openmedia"] = resource
    return {"channel": CHANNEL, "data": data}


# (seconds after the base time, account, message)
Line = tuple[datetime, str, dict[str, Any]]


def good_lifecycles() -> list[Line]:
    more = {**ROUTING, "CaseId": "C-1", "Priority": 2}
    later = {"RTenant": "Environment", "CaseId": "C-1", "Priority": 3}
    plain = {"RTenant": "Environment"}
    a, b, c, d = "OM-TRANSFER", "OM-REJECT", "OM-OUTBOUND", "OM-GAP"
    return [
        # A: accepted by agent001, transferred to agent002, who completes it.
        (at(0), "agent001", message(a, "Invited", user_data=ROUTING)),
        (at(12.5), "agent001", message(a, "Processing", ref=1, user_data=ROUTING)),
        (
            at(20),
            "agent001",
            message(a, "Processing", notification_type="PropertiesUpdated", ref=2, user_data=more),
        ),
        (at(60), "agent001", message(a, "Completed", ref=3, user_data=more)),
        (at(60.25), "agent002", message(a, "Invited", user_data=more)),
        (at(70), "agent002", message(a, "Processing", ref=1, user_data=more)),
        (
            at(80),
            "agent002",
            message(a, "Processing", notification_type="PropertiesUpdated", ref=2, user_data=later),
        ),
        (at(100.75), "agent002", message(a, "Completed", ref=3, user_data=later)),
        # B: rejected by agent003, routed to agent001, an operation fails, completed.
        (at(5), "agent003", message(b, "Invited", media_type="chat", user_data=plain)),
        (at(8), "agent003", message(b, "Completed", ref=1, media_type="chat", user_data=plain)),
        (at(9), "agent001", message(b, "Invited", media_type="chat", user_data=plain)),
        (at(10), "agent001", message(b, "Processing", ref=4, media_type="chat", user_data=plain)),
        (
            at(15),
            "agent001",
            message(
                b,
                "Processing",
                notification_type="Error",
                ref=5,
                media_type="chat",
                error=(1203, "Interaction is locked or not owned by this agent"),
            ),
        ),
        (at(40), "agent001", message(b, "Completed", ref=6, media_type="chat", user_data=plain)),
        # C: created by agent002 (Outbound: starts in Processing), completed.
        (at(30), "agent002", message(c, "Processing", ref=7, openmedia_type="Outbound")),
        (
            at(45),
            "agent002",
            message(c, "Completed", ref=8, openmedia_type="Outbound", user_data={"CaseId": "C-9"}),
        ),
        # D: agent003's session has a coverage gap (50 s .. 55 s) while it handles D.
        (at(45), "agent003", message(d, "Invited", media_type="chat", user_data=plain)),
        (at(48), "agent003", message(d, "Processing", ref=2, media_type="chat", user_data=plain)),
        (at(58), "agent003", message(d, "Completed", ref=3, media_type="chat", user_data=plain)),
        # S: agent006 first sees its item in a snapshot after a gap; nothing to find.
        (at(1, BAD_DAY), "agent006", message("OM-SNAP", "Processing", snapshot=True)),
        (
            at(2, BAD_DAY),
            "agent006",
            message("OM-SNAP", "Processing", notification_type="PropertiesUpdated", ref=1),
        ),
        (at(3, BAD_DAY), "agent006", message("OM-SNAP", "Completed", ref=2)),
    ]


def bad_lifecycles() -> list[Line]:
    def t(seconds: float) -> datetime:
        return at(seconds, BAD_DAY)

    return [
        # Properties updated after the session's Completed.
        (t(10), "agent004", message("BAD-AFTER", "Invited")),
        (t(11), "agent004", message("BAD-AFTER", "Processing", ref=1)),
        (t(12), "agent004", message("BAD-AFTER", "Completed", ref=2)),
        (
            t(13),
            "agent004",
            message("BAD-AFTER", "Processing", notification_type="PropertiesUpdated", ref=3),
        ),
        # Processing out of nowhere: no Invited, no Accept (no referenceId).
        (t(20), "agent004", message("BAD-NOINVITE", "Processing")),
        # An Accept's answer on a session never invited.
        (t(30), "agent005", message("BAD-ACCEPT", "Processing", ref=9)),
        # Invited to agent004; agent005 sees its properties change without an invitation.
        (t(40), "agent004", message("BAD-SEEN", "Invited")),
        (t(41), "agent004", message("BAD-SEEN", "Processing", ref=4)),
        (
            t(42),
            "agent005",
            message("BAD-SEEN", "Processing", notification_type="PropertiesUpdated", ref=10),
        ),
        # Processing back to Invited on the same session.
        (t(50), "agent004", message("BAD-ORDER", "Invited")),
        (t(51), "agent004", message("BAD-ORDER", "Processing", ref=5)),
        (t(52), "agent004", message("BAD-ORDER", "Invited")),
        # An Error without an openmedia resource (so without an interaction id).
        (
            t(60),
            "agent004",
            message(None, None, notification_type="Error", ref=99, error=(1, "failed")),
        ),
    ]


EXPECTED_BAD_FINDINGS = {
    ("BAD-AFTER", "agent004", "EVENT_AFTER_COMPLETED"),
    ("BAD-AFTER", "agent004", "STATE_OUT_OF_ORDER"),
    ("BAD-NOINVITE", "agent004", "PROCESSING_WITHOUT_INVITE"),
    ("BAD-NOINVITE", "agent004", "SEEN_WITHOUT_INVITE"),
    ("BAD-ACCEPT", "agent005", "ACCEPT_WITHOUT_INVITE"),
    ("BAD-ACCEPT", "agent005", "SEEN_WITHOUT_INVITE"),
    ("BAD-SEEN", "agent005", "SEEN_WITHOUT_INVITE"),
    ("BAD-SEEN", "agent005", "PROCESSING_WITHOUT_INVITE"),
    ("BAD-ORDER", "agent004", "STATE_OUT_OF_ORDER"),
    (None, "agent004", "OPERATION_FAILED"),
}

# Connected intervals: agent001's two overlapping sessions (a lease handover) merge into one;
# agent003 has a gap from 50 s to 55 s. agent004..006 were never covered.
COVERAGE = [
    ("agent001", "w1", at(-3600), at(30)),
    ("agent001", "w2", at(20), at(2 * 86400)),
    ("agent002", "w1", at(-3600), at(2 * 86400)),
    ("agent003", "w1", at(-3600), at(50)),
    ("agent003", "w2", at(55), at(2 * 86400)),
]


def receipts() -> list[Any]:
    from auditor.store.receipts import SNAPSHOT, Receipt

    lines = sorted(good_lifecycles() + bad_lifecycles(), key=lambda line: line[0])
    return [
        Receipt(
            uuid.uuid5(uuid.NAMESPACE_URL, f"bi-fixture/{n}"),
            when,
            account,
            CHANNEL,
            json.dumps(msg),
            kind=SNAPSHOT if msg["data"]["notificationType"] == "Snapshot" else "notification",
        )
        for n, (when, account, msg) in enumerate(lines)
    ]
