"""Scale-out: accounts are leased through PostgreSQL (account_leases), 15 s leases renewed
every 5 s. Each worker holds at most ceil(accounts / live workers). A worker with no account
would be invisible, so each worker also keeps a presence row (account '~worker/<id>'); the
presence rows are what lets a newcomer get its fair share from a worker that holds them all.

Each lease carries a fencing token (`fence`): a claim that takes an account from another
worker (or a new lease) gets a new, higher one; a renewal or a re-claim of one's own lease
keeps it. The worker writes its token with every coverage row, session-log row and snapshot,
and PostgreSQL stores them only while the token is current (migration 2026_12_02_fencing). A
released lease is expired, not deleted, so its token stays current until another worker
claims the account: the releasing worker's last coverage updates are still accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from auditor.ingest.worker import Worker

log = logging.getLogger("auditor.ingest.leases")
PRESENCE = "~worker/"

# A hand-over (another worker's expired lease, or a new row) takes the identity's next value
# as its fence; the same worker's re-claim keeps its fence (no hand-over happened).
_CLAIM = """
INSERT INTO account_leases (account, worker_id, acquired_at, renewed_at, expires_at)
VALUES (%(account)s, %(me)s, now(), now(), now() + %(ttl)s * interval '1 second')
ON CONFLICT (account) DO UPDATE SET worker_id = excluded.worker_id,
    acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at,
    expires_at = excluded.expires_at,
    fence = CASE WHEN account_leases.worker_id = excluded.worker_id
                 THEN account_leases.fence ELSE excluded.fence END
WHERE account_leases.expires_at < now() OR account_leases.worker_id = excluded.worker_id
RETURNING account, fence
"""
_RENEW = """
UPDATE account_leases SET renewed_at = now(), expires_at = now() + %s * interval '1 second'
WHERE worker_id = %s AND account = ANY(%s) RETURNING account
"""
# Released leases expire now and keep their fence (see the module's docstring).
_RELEASE = """
UPDATE account_leases SET expires_at = now() WHERE worker_id = %s AND account = ANY(%s)
"""
# A hand-over waits for the old holder's writes in flight (they hold the row's FOR KEY SHARE
# lock); a holder frozen inside a transaction must not stall the claimer's other leases.
CLAIM_LOCK_TIMEOUT = "2s"


class Leases:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.me = worker.config.worker_id
        self.accounts = [a.name for a in worker.config.accounts]
        self.held: set[str] = set()
        self.fences: dict[str, int] = {}
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.worker.config.conninfo, connect_timeout=5)
        return self._conn

    def _tick(self) -> tuple[set[str], set[str], set[str]]:
        """Renew, compute the fair share, claim or release; returns (gained, lost, released)."""
        ttl = self.worker.config.lease_ttl
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(_CLAIM, {"account": PRESENCE + self.me, "me": self.me, "ttl": ttl})
            cur.execute(_RENEW, (ttl, self.me, sorted(self.held)))
            kept = {r[0] for r in cur.fetchall()}
            lost = self.held - kept
            cur.execute(
                "SELECT count(DISTINCT worker_id) FROM account_leases"
                " WHERE expires_at > now() AND worker_id <> %s",
                (self.me,),
            )
            row = cur.fetchone()
            live = 1 + (int(row[0]) if row else 0)
            share = math.ceil(len(self.accounts) / live)
            if self.worker.config.max_sessions:
                # A worker at capacity leaves the rest to workers that have room.
                share = min(share, self.worker.config.max_sessions)
            gained: set[str] = set()
            released: set[str] = set()
            if len(kept) > share:  # a newcomer: give back the surplus
                surplus = sorted(kept)[share:]
                cur.execute(_RELEASE, (self.me, surplus))
                kept -= set(surplus)
                released = set(surplus)
            candidates = [a for a in self.accounts if a not in kept]
            random.shuffle(candidates)
            fences: dict[str, int] = {}
            for account in candidates:
                if len(kept) + len(gained) >= share:
                    break
                try:
                    with conn.transaction():  # a savepoint: a lock timeout skips one account
                        cur.execute(f"SET LOCAL lock_timeout = '{CLAIM_LOCK_TIMEOUT}'")
                        cur.execute(_CLAIM, {"account": account, "me": self.me, "ttl": ttl})
                        row = cur.fetchone()
                        cur.execute("SET LOCAL lock_timeout = 0")
                except psycopg.errors.LockNotAvailable:
                    log.info(
                        "lease busy: its holder is writing; next round", extra={"account": account}
                    )
                    continue
                if row is not None:
                    gained.add(account)
                    fences[account] = int(row[1])
        self.held = kept | gained
        for account in lost | released:
            self.fences.pop(account, None)
        self.fences.update(fences)
        return gained, lost, released

    async def run(self) -> None:
        while True:
            try:
                gained, lost, released = await asyncio.to_thread(self._tick)
            except psycopg.Error as exc:
                log.warning("lease renewal failed", extra={"error": str(exc).splitlines()[0]})
                if self._conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        self._conn.close()
                self._conn = None
                await asyncio.sleep(self.worker.config.lease_renew)
                continue
            at = datetime.now(UTC)
            for account in sorted(lost):
                self.worker.coverage.log(at, account, "lease_lost")
                await self.worker.stop_account(account, "lease lost")
            for account in sorted(released):
                self.worker.coverage.log(at, account, "lease_released")
                await self.worker.stop_account(account, "lease released (fair share)")
            for account in sorted(gained):
                fence = self.fences[account]
                self.worker.coverage.fences[account] = fence
                self.worker.coverage.log(at, account, "lease_acquired", f"fence {fence}")
                self.worker.start_account(account)
            self.worker.metrics.leases.set(len(self.held))
            if gained or lost or released:
                log.info(
                    "leases changed",
                    extra={"held": len(self.held), "gained": sorted(gained), "lost": sorted(lost)},
                )
            await asyncio.sleep(self.worker.config.lease_renew)

    async def release_all(self) -> None:
        def release() -> None:
            conn = self._connection()
            with conn.transaction():
                conn.execute("DELETE FROM account_leases WHERE account = %s", (PRESENCE + self.me,))
                conn.execute(_RELEASE, (self.me, sorted(self.held)))
            conn.close()

        try:
            await asyncio.to_thread(release)
        except psycopg.Error:
            log.warning("could not release leases; they expire by themselves")
        at = datetime.now(UTC)
        for account in sorted(self.held):
            self.worker.coverage.log(at, account, "lease_released")
        self.held.clear()
