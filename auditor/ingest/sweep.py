"""Reconciliation sweeps: every sweep_interval seconds (jittered), each subscribed account's
open items are re-read from GWS (GET /api/v2/me/openmedia/{mediaType}?fields=*) and compared
with what the projection shows for that account. GWS sends no notification for some changes
and none is replayed after a loss, so without a sweep such drift would show only at the next
re-handshake.

Every difference is spooled as a `kind=snapshot` receipt (the item as GWS shows it, with
"sweep": true and the reason in the message's "snapshot" member) and counted in
auditor_sweep_differences{kind}:

* ``state``: GWS shows another state than the projection's latest for this account;
* ``unknown``: GWS lists an item the projection does not have for this account;
* ``absent``: the projection shows an item open for this account that GWS no longer lists
  (recorded with state "Absent", as after a re-handshake).

Only projection entries older than the GET are compared: a notification that arrived during
the sweep is newer than what the GET saw. Before reading the projection, the sweep waits until
the spool has stored everything received before the GET answered. A difference is recorded
only if a second GET SETTLE_SECONDS later shows it again and no notification about the item
arrived meanwhile: GWS changes an item before its notification reaches the worker.

The sweeper gets what it needs passed in (the sessions by account, the projection lookup,
the clock), never the worker; each GET goes through the session's own GWS HTTP client
(`Source.http`) and the GET shared with snapshots (snapshot.get_items).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter

from auditor.ingest.ports import SYSTEM_CLOCK, Clock, ItemLookup
from auditor.ingest.snapshot import get_items, snapshot_row

if TYPE_CHECKING:
    from auditor.ingest.source import Source

log = logging.getLogger("auditor.ingest.sweep")
JITTER = 0.1  # each interval is drawn from interval * (1 +- JITTER)
CONCURRENT = 20  # accounts swept at once (each is a few GETs and one query)
SETTLE_SECONDS = 3.0  # a difference must still be there this much later (see sweep())
CLOSED = ("Completed", "Absent")


@dataclass(frozen=True)
class Difference:
    kind: str  # state, unknown, absent
    item: dict[str, Any]  # the item as GWS shows it (absent: id and state "Absent")
    reason: str


def compare(
    account: str,
    listed: list[dict[str, Any]],
    projected: dict[str, tuple[str | None, bool]],
) -> list[Difference]:
    """What GWS lists for ``account`` against the projection's view of it.

    ``projected``: interaction id -> (the account's latest state, whether that state is older
    than the GET), for the items the projection has for this account that are open or listed.
    """
    differences = []
    seen = set()
    for item in listed:
        item_id = item.get("id")
        if not isinstance(item_id, str):
            continue
        seen.add(item_id)
        if item_id not in projected:
            differences.append(
                Difference("unknown", item, f"GWS lists {item_id}; the projection has no state")
            )
            continue
        state, before_get = projected[item_id]
        if before_get and state != item.get("state"):
            differences.append(
                Difference(
                    "state",
                    item,
                    f"GWS says {item.get('state')!r}, the projection {state!r} for {account}",
                )
            )
    for item_id, (state, before_get) in sorted(projected.items()):
        if item_id not in seen and before_get and state not in CLOSED:
            differences.append(
                Difference(
                    "absent",
                    {"id": item_id, "state": "Absent"},
                    f"the projection shows {item_id} {state!r} for {account}; GWS lists it no more",
                )
            )
    return differences


class Sweeper:
    """One task for every account of the worker: a schedule of due times, not a task each."""

    def __init__(
        self,
        interval: float,
        accounts: Sequence[str],
        sessions: Mapping[str, Source],
        items: ItemLookup,
        registry: CollectorRegistry,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.interval = interval
        self.accounts = list(accounts)
        self.sessions = sessions
        self.items = items
        self.clock = clock
        self.sweeps = Counter(
            "auditor_sweeps", "Reconciliation sweeps of one account", ["outcome"], registry=registry
        )
        self.differences = Counter(
            "auditor_sweep_differences",
            "Differences between GWS and the projection found by a sweep",
            ["kind"],
            registry=registry,
        )
        self._rng = random.Random()
        self.settle = SETTLE_SECONDS

    def _next(self, after: float) -> float:
        return after + self.interval * self._rng.uniform(1 - JITTER, 1 + JITTER)

    async def run(self) -> None:
        """Until cancelled. The first sweep of each account falls anywhere in the first
        interval, so 10,000 accounts do not GET at once."""
        due: list[tuple[float, str]] = []
        clock = self.clock
        start = clock.monotonic()
        for account in self.accounts:
            heapq.heappush(due, (start + self.interval * self._rng.random(), account))
        slots = asyncio.Semaphore(CONCURRENT)
        running: set[asyncio.Task[None]] = set()
        try:
            while due:
                at, account = heapq.heappop(due)
                await clock.sleep(max(0.0, at - clock.monotonic()))
                heapq.heappush(due, (self._next(max(at, clock.monotonic())), account))
                source = self.sessions.get(account)
                if source is None or getattr(source, "interval", None) is None:
                    continue  # not subscribed here: the next handshake re-reads anyway
                await slots.acquire()
                task = asyncio.create_task(self._sweep_one(source, slots), name=f"sweep:{account}")
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()

    async def _sweep_one(self, source: Source, slots: asyncio.Semaphore) -> None:
        try:
            outcome = await self.sweep(source)
        except Exception as exc:  # one account's failure never ends the sweeps
            outcome = "failed"
            log.warning("sweep failed", extra={"account": source.account, "error": str(exc)})
        finally:
            slots.release()
        self.sweeps.labels(outcome).inc()

    async def _compare(
        self, source: Source, since: datetime
    ) -> tuple[list[dict[str, Any]], list[Difference]] | None:
        """GET the account's items, wait until the spool stored what arrived before the
        answer, compare with the projection's entries older than ``since``."""
        listed = await self._list(source)
        if listed is None:
            return None
        answered = self.clock.now().isoformat(timespec="microseconds")
        ids = [i["id"] for i in listed if isinstance(i.get("id"), str)]
        projected = await self.items.projected(source.account, ids, since, answered)
        return listed, compare(source.account, listed, projected)

    async def sweep(self, source: Source) -> str:
        """Re-read one account's items and spool a snapshot for every difference. Returns
        the outcome: "clean", "differences", or "skipped" (no session or GWS refused).

        GWS changes an item before its notification reaches us, so a difference is only
        recorded when it is still there SETTLE_SECONDS later, in a second GET, with no
        notification about the item received since the first one: otherwise the snapshot
        could land after that notification and set the projection back."""
        started = self.clock.now()
        first = await self._compare(source, started)
        if first is None:
            return "skipped"
        if not first[1]:
            return "clean"
        await self.clock.sleep(self.settle)
        second = await self._compare(source, started)
        if second is None:
            return "skipped"
        seen_first = {(d.kind, d.item.get("id"), d.item.get("state")) for d in first[1]}
        listed = second[0]
        differences = [
            d for d in second[1] if (d.kind, d.item.get("id"), d.item.get("state")) in seen_first
        ]
        if not differences:
            return "clean"
        at = self.clock.now().isoformat(timespec="microseconds")
        request = "GET /api/v2/me/openmedia/{" + ",".join(source.config.media_types) + "}?fields=*"
        source.spool.put_many(
            [
                snapshot_row(
                    source.account,
                    at,
                    d.item,
                    request,
                    len(listed),
                    # the lease's fencing token: a sweep by a worker that lost the account
                    # is refused like any stale snapshot (auditor/ingest/fencing.py)
                    source.coverage.fences.get(source.account),
                    sweep=True,
                    reason=d.reason,
                    **({"absent": True} if d.kind == "absent" else {}),
                )
                for d in differences
            ]
        )
        for d in differences:
            self.differences.labels(d.kind).inc()
        source.coverage.log(
            self.clock.now(), source.account, "sweep", f"{len(differences)} differences"
        )
        log.info(
            "sweep found differences",
            extra={"account": source.account, "differences": len(differences)},
        )
        return "differences"

    async def _list(self, source: Source) -> list[dict[str, Any]] | None:
        http = source.http
        if http is None:
            return None
        items: list[dict[str, Any]] = []
        for media in source.config.media_types:
            listing = await get_items(http, source.config.base_url, media, source.request_headers)
            if listing.status != 200:
                return None
            items.extend(i for i in listing.items if isinstance(i, dict))
        return items
