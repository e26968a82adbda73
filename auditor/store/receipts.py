"""A receipt: one message as it reached auditor, before anything was made of it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import uuid_utils.compat as uuid_compat

NOTIFICATION = "notification"
SNAPSHOT = "snapshot"  # state re-read after a gap; not something GWS pushed
KINDS = (NOTIFICATION, SNAPSHOT)
MAX_LABEL_CHARS = 256


def _check_label(value: str | None, name: str) -> None:
    if value is None:
        return
    if not value or len(value) > MAX_LABEL_CHARS or "\x00" in value:
        raise ValueError(f"{name} must be 1..{MAX_LABEL_CHARS} characters without NUL")


@dataclass(frozen=True, slots=True)
class Receipt:
    """receipt_id and received_at are fixed at receipt time: together they are the identity
    that makes storing the same receipt twice a no-op."""

    receipt_id: uuid.UUID
    received_at: datetime
    account: str
    channel: str | None
    raw: str | bytes
    kind: str = NOTIFICATION
    # Set when the envelope around the message was already unusable (a broken import line):
    # the writer quarantines the receipt with this reason instead of parsing it.
    defect: str | None = None

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is None or self.received_at.utcoffset() is None:
            raise ValueError("received_at must carry a time zone")
        _check_label(self.account, "account")
        _check_label(self.channel, "channel")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")


def new_receipt_id() -> uuid.UUID:
    """A UUIDv7: unique, and sortable by the time it was made."""
    return uuid_compat.uuid7()
