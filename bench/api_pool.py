"""The API's connection pool two ways, alternating in one run: SQLAlchemy's QueuePool around
psycopg connections (web/db.py until issue 10) and psycopg_pool (web/db.py now). Each request
is a checkout, one small query, a hand-back: from 1 thread and from 8 threads sharing a pool
of 4 (+4). Prints requests/s and the ratio. Prints numbers; asserts nothing.

    python bench/api_pool.py [--requests 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg_pool import ConnectionPool
from sqlalchemy.pool import QueuePool

from auditor.config import libpq_conninfo, parse_database_url
from auditor.pgserver import EmbeddedPostgres

SIZE = 4
OPTIONS = "-c TimeZone=UTC -c statement_timeout=5000"


def queue_pool(
    conninfo: str,
) -> tuple[Callable[[], AbstractContextManager[Any]], Callable[[], None]]:
    """The replaced web/db.py, as it was."""

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=5, options=OPTIONS)

    pool = QueuePool(
        cast(Any, connect), pool_size=SIZE, max_overflow=SIZE, reset_on_return="rollback"
    )

    @contextmanager
    def take() -> Iterator[psycopg.Connection[Any]]:
        fairy = pool.connect()
        connection = cast(psycopg.Connection[Any], fairy.driver_connection)
        if connection.closed or connection.broken:
            fairy.invalidate()
            fairy = pool.connect()
            connection = cast(psycopg.Connection[Any], fairy.driver_connection)
        try:
            yield connection
        finally:
            if connection.closed or connection.broken:
                fairy.invalidate()
            else:
                fairy.close()

    return take, pool.dispose


def psycopg_pool(
    conninfo: str,
) -> tuple[Callable[[], AbstractContextManager[Any]], Callable[[], None]]:
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        conninfo,
        kwargs={"autocommit": True, "connect_timeout": 5, "options": OPTIONS},
        min_size=0,
        max_size=2 * SIZE,
        open=True,
    )
    return pool.connection, pool.close


def run(take: Callable[[], AbstractContextManager[Any]], requests: int, threads: int) -> float:
    each = requests // threads

    def work() -> None:
        for _ in range(each):
            with take() as conn:
                conn.execute("SELECT 1").fetchone()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return each * threads / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="auditor-bench-pool-"))
    server = EmbeddedPostgres(data_dir).start()
    try:
        conninfo = libpq_conninfo(parse_database_url(server.url("postgres")))
        kinds = {"QueuePool": queue_pool, "psycopg_pool": psycopg_pool}
        for threads in (1, 8):
            totals = dict.fromkeys(kinds, 0.0)
            for n in range(args.rounds):
                for name in list(kinds) if n % 2 == 0 else list(reversed(kinds)):
                    take, close = kinds[name](conninfo)
                    try:
                        run(take, 200, threads)  # warm: the pool's connections made
                        rate = run(take, args.requests, threads)
                    finally:
                        close()
                    totals[name] += 1 / rate
                    print(
                        f"{threads} thread(s), round {n}: {name:12s} {rate:8,.0f} requests/s",
                        flush=True,
                    )
            before, now = totals.values()
            print(
                f"{threads} thread(s): psycopg_pool / QueuePool, time per request:"
                f" {now / before:.2f}",
                flush=True,
            )
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
