"""Small builders shared by the tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from auditor.sample import SampleLine
from auditor.store.receipts import Receipt, new_receipt_id

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
V = TypeVar("V")


class WaitTimeout(AssertionError):
    """A condition a test waited on did not come true in time."""


def wait_for(
    what: str,
    probe: Callable[[], V],
    timeout: float = 30,
    *,
    until: Callable[[V], object] = bool,
    interval: float = 0.05,
    retry_on: tuple[type[Exception], ...] = (),
) -> V:
    """Poll ``probe`` until ``until(value)`` holds and return that value: the one way tests
    wait for something (never a fixed sleep). On timeout, fail naming ``what`` was awaited,
    for how long, and the last value seen (or the last ``retry_on`` error), so that a slow
    machine and a broken behaviour can be told apart from the message alone."""
    deadline = time.monotonic() + timeout
    last: str = "never probed"
    while True:
        try:
            value = probe()
        except retry_on as exc:
            last = f"{type(exc).__name__}: {exc}".strip()
        else:
            if until(value):
                return value
            last = repr(value)
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"timed out after {timeout:g} s waiting for {what}; last: {last[:500]}"
            )
        time.sleep(interval)


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


def truncations_not_refused(
    read: Callable[[bytes], object], stream: bytes, message: str
) -> list[tuple[int, str]]:
    """Every proper prefix of ``stream`` given to ``read``: the cuts that did not raise a
    ValueError containing ``message``, with what happened instead (empty: all refused).
    One test over all cuts, not a test each: hundreds of cases of a microsecond each."""
    wrong: list[tuple[int, str]] = []
    for cut in range(len(stream)):
        try:
            read(stream[:cut])
        except ValueError as exc:
            if message not in str(exc):
                wrong.append((cut, f"ValueError: {exc}"))
        except Exception as exc:
            wrong.append((cut, f"{type(exc).__name__}: {exc}"))
        else:
            wrong.append((cut, "no error"))
    return wrong
