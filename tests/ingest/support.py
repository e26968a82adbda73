"""Helpers for the worker's integration tests: a real simulator (in a thread), the worker as
a real subprocess, and the comparison of the store with the simulator's ground truth."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo, parse_database_url
from auditor.ingest.admission import Admission
from auditor.ingest.config import Account, WorkerConfig
from auditor.ingest.coverage import Coverage
from auditor.ingest.metrics import Metrics
from auditor.ingest.source import Source
from auditor.ingest.spool import Spool
from auditor.simulator.app import Simulator
from tests import helpers
from tests.logins import as_login
from tests.simulator.support import SimThread, basic

AUDITOR = str(Path(sys.executable).parent / "auditor")
PASSWORD = "secret"


def write_config(
    path: Path,
    base_url: str,
    agents: list[str],
    spool: Path,
    transport: str = "long-polling",
    **worker: Any,
) -> Path:
    settings = {
        "heartbeat_interval": 0.3,
        "backoff_base": 0.1,
        "backoff_cap": 1.0,
        "login_retry": 1.0,
        "drain_interval": 0.02,
        "shutdown_timeout": 10,
        **worker,
    }
    lines = [
        "[gws]",
        f'base_url = "{base_url}"',
        'media_types = ["workitem"]',
        f'transport = "{transport}"',
        "connection_timeout = 2",
        "",
        "[worker]",
        f'spool = "{spool}"',
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    for agent in agents:
        lines += ["", "[[accounts]]", f'name = "{agent}"', 'password_env = "GWS_PASSWORD"']
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class WorkerProcess:
    config: Path
    db: URL
    log_path: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = dict(os.environ)
        env.update(
            # The worker runs as the writer's login, as deployed: every statement it issues
            # is checked against auditor_writer's privileges.
            AUDITOR_DATABASE_URL=as_login(self.db, "writer").render_as_string(hide_password=False),
            GWS_PASSWORD=PASSWORD,
            **self.env_extra,
        )
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [AUDITOR, "ingest", "--config", str(self.config)], env=env, stderr=log, stdout=log
        )
        log.close()
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def children(self) -> list[int]:
        """Pids of the worker's child processes (its drain process)."""
        assert self.proc is not None
        pids: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                pids += [int(pid) for pid in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue  # the thread ended meanwhile
        return pids

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def worker_process(config: Path, db: URL, log_path: Path) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(config, db, log_path).start()
    try:
        yield worker
    finally:
        worker.ensure_dead()


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def query(db: URL, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_conninfo(db), connect_timeout=3) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


V = TypeVar("V")


def wait_for(
    what: str,
    check: Callable[[], V],
    timeout: float = 30,
    *,
    until: Callable[[V], object] = bool,
) -> V:
    """tests.helpers.wait_for for checks that query PostgreSQL: a server that is restarting
    (an outage test) is polled again; every probe opens a connection, so not too often."""
    return helpers.wait_for(
        what, check, timeout, until=until, interval=0.1, retry_on=(psycopg.OperationalError,)
    )


def notifications_per_account(
    db: URL, accounts: list[str], since: datetime | None = None
) -> dict[str, int]:
    """Stored notifications per account (received after ``since``, if given)."""
    rows = query(
        db,
        "SELECT account, count(*) FROM events WHERE kind = 'notification'"
        " AND account = ANY(%s) AND (%s::timestamptz IS NULL OR received_at > %s)"
        " GROUP BY account",
        (accounts, since, since),
    )
    counts = dict.fromkeys(accounts, 0)
    counts.update({account: int(n) for account, n in rows})
    return counts


def subscribed_since(db: URL, agents: list[str], since: datetime) -> bool:
    rows = query(
        db,
        "SELECT count(DISTINCT account) FROM coverage_intervals"
        " WHERE ended_at IS NULL AND started_at > %s AND account = ANY(%s)",
        (since, agents),
    )
    return rows[0][0] == len(agents)


def canonical(message: dict[str, Any]) -> str:
    message = {k: v for k, v in message.items() if k != "id"}  # the ack extension's message id
    return json.dumps(message, sort_keys=True, separators=(",", ":"))


def ground_truth(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stored(db: URL) -> Counter[tuple[str, str]]:
    rows = query(db, "SELECT account, payload FROM events WHERE kind = 'notification'")
    return Counter((account, canonical(payload)) for account, payload in rows)


def delivered_all_stored(db: URL, truth_path: Path) -> bool:
    truth = ground_truth(truth_path)
    want = Counter(
        (t["agent"], canonical(t["message"])) for t in truth if t["status"] == "delivered"
    )
    have = stored(db)
    return not (want - have)


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Comparison:
    delivered: int
    missing: int
    duplicated: int
    unexpected: int
    undeliverable: int
    undeliverable_stored: int
    undeliverable_covered: int


def compare(db: URL, truth_path: Path) -> Comparison:
    """The store against the ground truth. A message the server sent but could not see
    acknowledged ('session lost before ack') may be stored at most once: only the client
    knows whether it reached its spool."""
    truth = ground_truth(truth_path)
    have = stored(db)
    want = Counter(
        (t["agent"], canonical(t["message"])) for t in truth if t["status"] == "delivered"
    )
    maybe = Counter(
        (t["agent"], canonical(t["message"]))
        for t in truth
        if t["status"] == "undeliverable" and t["reason"] == "session lost before ack"
    )
    # A copy lost with one session of an agent while another session of the same agent got
    # its own copy (a killed worker's session lingering until maxInterval) is no loss.
    lost = [
        t
        for t in truth
        if t["status"] == "undeliverable"
        and t["reason"] != "session lost before ack"
        and (t["agent"], canonical(t["message"])) not in want
    ]
    missing = sum((want - have).values())
    extra = have - want
    duplicated = sum(min(n, want[k]) for k, n in extra.items() if k in want)
    unexpected = sum((extra - maybe).values()) - duplicated
    lost_keys = Counter((t["agent"], canonical(t["message"])) for t in lost)
    lost_stored = sum((lost_keys & (have - want)).values())
    intervals = query(
        db,
        "SELECT account, started_at, coalesce(ended_at, heartbeat_at) FROM coverage_intervals",
    )
    covered = 0
    for t in lost:
        at = parse_ts(t["generated_at"])
        if any(a == t["agent"] and s <= at < e for a, s, e in intervals):
            covered += 1
    return Comparison(
        delivered=sum(want.values()),
        missing=missing,
        duplicated=duplicated,
        unexpected=max(0, unexpected),
        undeliverable=len(lost),
        undeliverable_stored=lost_stored,
        undeliverable_covered=covered,
    )


def current_items(base_url: str, agent: str) -> dict[str, str]:
    request = urllib.request.Request(  # noqa: S310  (127.0.0.1 only)
        f"{base_url}/api/v2/me/openmedia/workitem?fields=*",
        headers={"Authorization": basic(agent)},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        body = json.load(response)
    return {item["id"]: item["state"] for item in body["openmedia"]}


def projected_states(db: URL, agent: str) -> dict[str, str]:
    rows = query(
        db,
        "SELECT interaction_id, account_states -> %s ->> 'state' FROM interactions"
        " WHERE account_states ? %s",
        (agent, agent),
    )
    return {r[0]: r[1] for r in rows}


class Sim(SimThread):
    """A SimThread that may be stopped by the test (to flush its ground truth) and again by
    the fixture."""

    _stopped = False

    def in_loop(self, call: Callable[[Simulator], V]) -> V:
        """``call(simulator)`` on the simulator's own thread, between two of its steps."""
        assert self.sim is not None
        simulator = self.sim

        async def run() -> V:
            return call(simulator)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def settled(self) -> bool:
        """Nothing in flight: no session holds a queued or unacknowledged notification, so
        every notification generated so far is in the ground truth, which is flushed. With
        the generator paused, the ground truth is then complete."""

        def check(simulator: Simulator) -> bool:
            busy = any(s.queue or s.unacked for s in simulator.bayeux.sessions.values())
            if not busy:
                simulator.ground_truth.flush()
            return not busy

        return self.in_loop(check)

    def __exit__(self, *exc: object) -> None:
        if not self._stopped:
            self._stopped = True
            super().__exit__(None, None, None)


def standalone_source(tmp_path: Path, **settings: Any) -> tuple[Source, Spool]:
    """One account's Source with a real spool and no server: for driving its hooks
    (before_connect, on_payload, accept) directly. Close the spool after."""
    config = WorkerConfig(
        database_url=parse_database_url("postgresql://u@localhost/db"),
        base_url="http://127.0.0.1:1",
        accounts=(Account("agent001", "pw"),),
        spool_path=tmp_path / "spool.sqlite3",
        **{"connect_delay": 0.0, **settings},
    )
    metrics = Metrics()
    spool = Spool(config.spool_path, "NORMAL")
    admission = Admission(metrics, 1, 1.0, 0, 1.0)
    return Source(config, config.accounts[0], spool, Coverage("w"), metrics, admission), spool


def stream_on_and_settle(
    db: URL, sim: Sim, agents: list[str], after: int, *, fault: str, all_stored: bool = True
) -> Path:
    """After a fault the stream runs on and what it brings is stored too: ``after`` more
    notifications per agent, then the generator paused and the simulator settled (its last
    batches acknowledged, sessions that died with a killed worker swept, the ground truth
    flushed: it then holds every notification ever generated). With ``all_stored``, waits
    until every delivered notification is stored. Returns the ground truth's path."""
    recovered = datetime.now(UTC)
    wait_for(
        f"{after} notifications received after the {fault} stored for every agent",
        lambda: notifications_per_account(db, agents, since=recovered),
        until=lambda stored: min(stored.values()) >= after,
        timeout=60,
    )
    sim.control("pause")
    truth = sim.config.ground_truth
    assert truth is not None
    wait_for("the simulator settled", sim.settled)
    if all_stored:
        wait_for("everything delivered is stored", lambda: delivered_all_stored(db, truth))
    return truth
