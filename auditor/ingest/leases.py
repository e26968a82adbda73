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

Leases decides; it never calls back into the worker. The worker's lease task (the edge) owns
the connection and the transaction, runs tick() in it, and then applies the Changes it
returns (stop and start sessions, session-log rows). The SQL is in auditor/store/leases.py,
behind ports.LeaseStorage.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from auditor.store import leases as lease_sql
from auditor.store.leases import BusyLease

if TYPE_CHECKING:
    from auditor.ingest.ports import LeaseStorage

log = logging.getLogger("auditor.ingest.leases")
PRESENCE = "~worker/"
CLAIM_LOCK_TIMEOUT = lease_sql.CLAIM_LOCK_TIMEOUT
_CLAIM = lease_sql._CLAIM  # its old home; tests/ingest/test_fencing_rules.py imports it here


def fair_share(accounts: int, live_workers: int, max_sessions: int = 0) -> int:
    """Accounts one of `live_workers` workers should hold; a worker at capacity
    (max_sessions) leaves the rest to workers that have room."""
    share = math.ceil(accounts / live_workers)
    return min(share, max_sessions) if max_sessions else share


@dataclass
class Changes:
    """One tick's outcome, applied by the worker after the commit."""

    gained: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    released: set[str] = field(default_factory=set)
    fences: dict[str, int] = field(default_factory=dict)  # of the gained accounts
    held: set[str] = field(default_factory=set)  # what the worker holds after the tick

    def __bool__(self) -> bool:
        return bool(self.gained or self.lost or self.released)


class Leases:
    def __init__(
        self,
        me: str,
        accounts: Sequence[str],
        ttl: float,
        max_sessions: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        self.me = me
        self.accounts = list(accounts)
        self.ttl = ttl
        self.max_sessions = max_sessions
        self.held: set[str] = set()
        self.fences: dict[str, int] = {}
        self._rng = rng or random.Random()

    def tick(self, storage: LeaseStorage) -> Changes:
        """Renew, compute the fair share, claim or release, in the caller's transaction.
        Nothing of this object changes until applied() is called after the commit."""
        ttl = self.ttl
        storage.claim(PRESENCE + self.me, self.me, ttl)
        kept = storage.renew(self.me, sorted(self.held), ttl)
        changes = Changes(lost=self.held - kept)
        share = fair_share(len(self.accounts), 1 + storage.live_others(self.me), self.max_sessions)
        if len(kept) > share:  # a newcomer: give back the surplus
            surplus = sorted(kept)[share:]
            storage.release(self.me, surplus)
            kept -= set(surplus)
            changes.released = set(surplus)
        candidates = [a for a in self.accounts if a not in kept]
        self._rng.shuffle(candidates)
        for account in candidates:
            if len(kept) + len(changes.gained) >= share:
                break
            try:
                fence = storage.try_claim(account, self.me, ttl)
            except BusyLease:
                log.info(
                    "lease busy: its holder is writing; next round", extra={"account": account}
                )
                continue
            if fence is not None:
                changes.gained.add(account)
                changes.fences[account] = fence
        changes.held = kept | changes.gained
        return changes

    def applied(self, changes: Changes) -> None:
        """The tick's transaction committed."""
        self.held = set(changes.held)
        for account in changes.lost | changes.released:
            self.fences.pop(account, None)
        self.fences.update(changes.fences)

    def release_all(self, storage: LeaseStorage) -> list[str]:
        """Give every lease back (shutdown), in the caller's transaction; the accounts."""
        storage.remove_presence(PRESENCE + self.me)
        storage.release(self.me, sorted(self.held))
        return sorted(self.held)


@dataclass(frozen=True)
class PgLeaseStorage:
    """ports.LeaseStorage on a PostgreSQL connection (auditor/store/leases.py)."""

    conn: psycopg.Connection[Any]

    def claim(self, account: str, me: str, ttl: float) -> int | None:
        return lease_sql.claim(self.conn, account, me, ttl)

    def try_claim(self, account: str, me: str, ttl: float) -> int | None:
        return lease_sql.try_claim(self.conn, account, me, ttl)

    def renew(self, me: str, accounts: list[str], ttl: float) -> set[str]:
        return lease_sql.renew(self.conn, me, accounts, ttl)

    def live_others(self, me: str) -> int:
        return lease_sql.live_others(self.conn, me)

    def release(self, me: str, accounts: list[str]) -> None:
        lease_sql.release(self.conn, me, accounts)

    def remove_presence(self, presence: str) -> None:
        lease_sql.remove_presence(self.conn, presence)
