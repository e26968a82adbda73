"""Snapshots: after every (re-)subscription, re-read the agent's current Open Media items
(GET /api/v2/me/openmedia/{mediaType}?fields=*) and spool each as a `kind=snapshot` receipt,
so the projection recovers what a gap hid. Items the projection still shows active for the
account but the GET no longer lists get a snapshot with state "Absent" (they ended unseen).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp

from auditor.ingest.spool import Row
from auditor.store.receipts import new_receipt_id

if TYPE_CHECKING:
    from auditor.ingest.source import Source

log = logging.getLogger("auditor.ingest.snapshot")
_COMPACT = (",", ":")


def now() -> datetime:
    return datetime.now(UTC)


def snapshot_row(
    account: str, at: str, item: Any, request: str, count: int, fence: int | None, **extra: Any
) -> Row:
    """A snapshot receipt; `fence` is the lease's fencing token (None without leases), which
    PostgreSQL checks when the snapshot is stored (docs/worker.md, "Fenced leases")."""
    if fence is not None:
        extra["fence"] = fence
    raw = {
        "data": {
            "messageType": "OpenmediaSnapshot",
            "notificationType": "Snapshot",
            "openmedia": item,
        },
        "snapshot": {"request": request, "items": count, **extra},
    }
    return Row(
        str(new_receipt_id()),
        at,
        account,
        None,
        "snapshot",
        json.dumps(raw, separators=_COMPACT),
    )


@dataclass(frozen=True)
class Listing:
    """One GET /api/v2/me/openmedia/{mediaType}?fields=*: the status and, on 200, the items
    GWS lists (whatever their shape: a snapshot keeps them as they came)."""

    status: int
    items: list[Any]


async def get_items(
    http: aiohttp.ClientSession,
    base_url: str,
    media: str,
    headers: Callable[[str], dict[str, str]],
) -> Listing:
    """The one GET of an account's open items, shared by snapshots and sweeps. `http` is the
    session's GWS HTTP client (its cookie jar holds the login), `headers(url)` the session's
    Authorization, CSRF token and cookies. Raises aiohttp.ClientError, TimeoutError and
    ValueError (a body that is not JSON)."""
    url = f"{base_url}/api/v2/me/openmedia/{media}"
    async with http.get(
        url,
        params={"fields": "*"},
        headers=headers(url),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as response:
        if response.status != 200:
            return Listing(response.status, [])
        body = await response.json()
    items = body.get("openmedia") if isinstance(body, dict) else None
    return Listing(200, items if isinstance(items, list) else [])


async def take_snapshot(
    source: Source, http: aiohttp.ClientSession | None
) -> tuple[set[str], str] | None:
    """After every successful subscribe: the agent's current items, one snapshot receipt each.
    Returns the ids seen and the time before the GET (for record_absent), None if it failed.
    `http` is the session's GWS HTTP client (None: no session, nothing to read)."""
    if http is None:
        return None
    total = 0
    seen: set[str] = set()
    started = source.clock.now().isoformat(timespec="microseconds")
    try:
        for media in source.config.media_types:
            request = f"GET /api/v2/me/openmedia/{media}?fields=*"
            listing = await get_items(http, source.config.base_url, media, source.request_headers)
            if listing.status != 200:
                log.warning(
                    "snapshot refused",
                    extra={
                        "account": source.account,
                        "media_type": media,
                        "status": listing.status,
                    },
                )
                return None  # incomplete: no "Absent" conclusions either
            items = listing.items
            at = source.clock.now().isoformat(timespec="microseconds")
            fence = source.coverage.fences.get(source.account)
            rows = [
                snapshot_row(source.account, at, item, request, len(items), fence) for item in items
            ]
            seen |= {i["id"] for i in items if isinstance(i, dict) and "id" in i}
            if rows:
                source.spool.put_many(rows)
            total += len(rows)
            source.metrics.snapshots.inc(len(rows))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("snapshot failed", extra={"account": source.account, "error": str(exc)})
        return None
    source.coverage.log(source.clock.now(), source.account, "snapshot", str(total))
    return seen, started


ABSENT_RETRY = 5.0  # seconds between tries of the "Absent" check while it cannot be made


async def record_absent(
    source: Source, seen: set[str], since: str, retry_delay: float = ABSENT_RETRY
) -> None:
    """Items the projection shows active for this account that the GET no longer lists
    ended while nobody listened: record that as a snapshot with state "Absent".

    The check needs the spool drained past `since` and PostgreSQL up. Until then it is
    retried for as long as the session lives: only states received before `since` count, so
    the conclusion holds however late it is drawn, while giving up left an item that ended in
    the gap "active" until the next re-subscription (a drain more than 30 s behind, under
    heavy load, was enough)."""
    if source.active_items is None:
        return
    while True:
        try:
            active = await source.active_items(source.account, since)
            break
        except Exception as exc:  # the drain behind, or PostgreSQL down
            log.warning(
                "absent check delayed", extra={"account": source.account, "error": str(exc)}
            )
            await asyncio.sleep(retry_delay)
    gone = sorted(active - seen)
    if not gone:
        return
    at = now().isoformat(timespec="microseconds")
    request = "GET /api/v2/me/openmedia/{" + ",".join(source.config.media_types) + "}?fields=*"
    source.spool.put_many(
        [
            snapshot_row(
                source.account,
                at,
                {"id": i, "state": "Absent"},
                request,
                0,
                source.coverage.fences.get(source.account),
                absent=True,
            )
            for i in gone
        ]
    )
    source.coverage.log(now(), source.account, "snapshot", f"{len(gone)} absent")
