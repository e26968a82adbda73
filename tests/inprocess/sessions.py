"""The worker's Source for one simulator agent, in-process (the real simulator in a thread, a
spool twin), and the loop that runs its session beside a test's body."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from auditor.config import parse_database_url
from auditor.ingest.admission import Admission
from auditor.ingest.config import Account, WorkerConfig
from auditor.ingest.coverage import Coverage
from auditor.ingest.memspool import MemorySpool
from auditor.ingest.metrics import Metrics
from auditor.ingest.source import Source
from tests.simulator.support import PASSWORD, SimThread, fast_config


@contextmanager
def paused_simulator(timeout_ms: int) -> Iterator[SimThread]:
    """One agent's simulator in a thread, its generator paused (a test emits what it needs),
    holding long-polls ``timeout_ms``."""
    with SimThread(fast_config(agents=1, rate=0, timeout_ms=timeout_ms)) as server:
        server.control("pause")
        yield server


def simulator_source(
    sim: SimThread, spool: MemorySpool, tmp_path: Path, agent: str, **settings: Any
) -> Source:
    """A Source for ``agent`` of ``sim`` writing into ``spool``; ``settings`` are
    WorkerConfig's (the database is never reached: the spool is the twin)."""
    config = WorkerConfig(
        database_url=parse_database_url("postgresql://u@localhost/db"),
        base_url=sim.url,
        accounts=(Account(agent, PASSWORD),),
        spool_path=tmp_path / "unused.sqlite3",
        **settings,
    )
    metrics = Metrics()
    admission = Admission(metrics, 10, 1000.0, 0, 10.0)
    return Source(config, config.accounts[0], spool, Coverage("w1"), metrics, admission)


def run_session(source: Source, body: Coroutine[Any, Any, None]) -> None:
    """Run ``body`` while ``source`` holds its session (and its admission dispatches); end
    both when the body ends."""

    async def main() -> None:
        dispatcher = asyncio.ensure_future(source.admission.dispatch())
        session = asyncio.ensure_future(source.run())
        try:
            await body
        finally:
            session.cancel()
            dispatcher.cancel()
            await asyncio.gather(session, dispatcher, return_exceptions=True)

    asyncio.run(main())
