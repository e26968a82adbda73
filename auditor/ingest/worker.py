"""The supervisor: one Source per account, the drain process, the coverage flush, metrics,
and an orderly shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from auditor.evidence.schedule import Checkpointer
from auditor.ingest import memtrace, trim
from auditor.ingest.admission import Admission
from auditor.ingest.config import WorkerConfig
from auditor.ingest.coverage import Coverage
from auditor.ingest.coverage import flush as flush_coverage
from auditor.ingest.drain import Drainer, OnCommit
from auditor.ingest.drain_process import DrainProcess
from auditor.ingest.drained import DrainedWatch
from auditor.ingest.evidence_task import EvidenceTask
from auditor.ingest.health import Health
from auditor.ingest.items import ProjectionReader
from auditor.ingest.metrics import Metrics
from auditor.ingest.source import Source
from auditor.ingest.spool import Spool

log = logging.getLogger("auditor.ingest.worker")
GC_INTERVAL = 120.0  # seconds between full garbage collections
GC_DEFER = 600.0  # seconds a full collection waits at most for set-ups to finish
GC_RETRY = 5.0


def _quiet_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """aiocometd's connect-done callback logs a traceback for the CancelledError of every
    client.close() (COMETD-CLIENT.md gotcha 3); that is noise, anything else is not."""
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


def _give_up() -> None:
    """The shutdown deadline passed: end the process now (the spool keeps what it holds)."""
    log.critical("shutdown_timeout reached; exiting now, the spool keeps what it holds")
    logging.shutdown()
    os._exit(1)


class Worker:
    def __init__(self, config: WorkerConfig, on_commit: OnCommit | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.spool = Spool(
            config.spool_path, config.spool_synchronous, config.group_commit_interval
        )
        self.coverage = Coverage(config.worker_id)
        self.admission = Admission(
            self.metrics,
            config.max_setups,
            config.setup_rate,
            config.max_sessions,
            config.saturation_lag,
            self._not_served,
        )
        self.drain = DrainProcess(
            config.conninfo,
            config.spool_path,
            self.metrics,
            config.batch_size,
            config.drain_interval,
            on_commit,
        )
        # The final drain at shutdown runs here, after the drain process stopped.
        self.drainer = Drainer(
            config.conninfo, self.spool.reader, config.batch_size, on_commit is not None
        )
        # Drain progress every heartbeat and sealing (docs/evidence.md): the worker's one
        # evidence task besides checkpoints.
        self.evidence = EvidenceTask(
            config.conninfo, config.worker_id, self.spool, config.heartbeat_interval
        )
        # By name: a search of the list per account was quadratic, a tenth of the event
        # loop's time while 10,000 sessions were set up (py-spy).
        self._accounts = {a.name: a for a in config.accounts}
        self.sources: dict[str, Source] = {}
        self.source_tasks: dict[str, asyncio.Task[None]] = {}
        self.stop = asyncio.Event()
        self._cov_conn: psycopg.Connection[Any] | None = None
        self._cov_lock = threading.Lock()
        self.drained = DrainedWatch(self.spool)
        # The projection's view for the sessions' "Absent" checks (one connection for all).
        self.items = ProjectionReader(self._items_connection, self.drained.wait, config.media_types)
        self.sweep_items: ProjectionReader | None = None
        self.watchdog: threading.Timer | None = None
        self.health = Health(self)

    # -- accounts -----------------------------------------------------------------------------

    def start_account(self, name: str) -> None:
        account = self._accounts[name]
        self.coverage.close_stale(name)
        source = Source(
            self.config,
            account,
            self.spool,
            self.coverage,
            self.metrics,
            self.admission,
            self.items.active_items,
        )
        self.sources[name] = source
        self.source_tasks[name] = asyncio.create_task(source.run(), name=f"source:{name}")

    async def stop_account(self, name: str, reason: str) -> None:
        source = self.sources.pop(name, None)
        task = self.source_tasks.pop(name, None)
        if source is None or task is None:
            return
        source.stop_reason = reason
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _not_served(self, account: str, reason: str) -> None:
        self.coverage.log(datetime.now(UTC), account, "not_served", reason)
        log.warning("account not served", extra={"account": account, "reason": reason})

    def _items_connection(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.config.conninfo, connect_timeout=3, autocommit=True)

    # -- background tasks ---------------------------------------------------------------------

    def _flush_coverage(self) -> None:
        # One flush at a time: a flush abandoned by a cancelled task still runs in its thread.
        with self._cov_lock:
            self._flush_coverage_locked()

    def _flush_coverage_locked(self) -> None:
        if self._cov_conn is None or self._cov_conn.closed:
            # A worker frozen inside a flush must not hold its leases' FOR KEY SHARE locks
            # (which a hand-over waits for) for longer than this.
            self._cov_conn = psycopg.connect(
                self.config.conninfo,
                connect_timeout=5,
                options="-c idle_in_transaction_session_timeout=5000",
            )
        try:
            # This task owns the transaction: flush_coverage writes every queued
            # operation in one, on this connection.
            self.metrics.fenced.inc(flush_coverage(self.coverage, self._cov_conn))
        except psycopg.Error:
            with contextlib.suppress(psycopg.Error):
                self._cov_conn.close()
            self._cov_conn = None
            raise

    async def _coverage_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            with contextlib.suppress(psycopg.Error):
                await asyncio.to_thread(self._flush_coverage)

    async def _collect_garbage(self) -> None:
        """A full collection every GC_INTERVAL seconds (the automatic ones are off, see
        cli.py): cycles among old objects are freed at a known cadence. (Freezing the
        survivors between rounds made rounds cheap but kept cycles of objects that were in
        flight at a freeze: RSS grew 4 MB a minute in a soak.)"""
        while True:
            await asyncio.sleep(GC_INTERVAL)
            # A full collection stops the loop for seconds at thousands of sessions (7.4 s
            # at 6,000 on a starved machine), and set-ups in flight then miss their
            # deadlines: the server expires them and they come back as a storm. So it waits
            # while sessions are being set up, for at most GC_DEFER seconds.
            deferred = 0.0
            while self.admission.setting_up and deferred < GC_DEFER:
                await asyncio.sleep(GC_RETRY)
                deferred += GC_RETRY
            started = time.perf_counter()
            freed = gc.collect()
            took = time.perf_counter() - started
            if took > 0.1:
                log.info(
                    "full garbage collection", extra={"seconds": round(took, 3), "freed": freed}
                )

    async def _trim_memory(self) -> None:
        """Free heap pages back to the OS every TRIM_INTERVAL seconds (trim.py: without it
        RSS crept up under steady traffic though no Python object leaked)."""
        while True:
            await asyncio.sleep(trim.TRIM_INTERVAL)
            started = time.perf_counter()
            trim.release()
            took = time.perf_counter() - started
            if took > 0.05:
                log.info("heap trimmed", extra={"seconds": round(took, 3)})

    async def _gauges(self) -> None:
        while True:
            if self.spool.error is not None:
                log.critical("spool write failed; stopping", extra={"error": str(self.spool.error)})
                self.stop.set()
            self.drain.ensure_running()
            self.metrics.unacked_window.set(self.spool.last_commit_seconds)
            depth, oldest = await asyncio.to_thread(
                lambda: (self.spool.depth(), self.spool.oldest_received_at())
            )
            self.metrics.spool_depth.set(depth)
            age = 0.0
            if oldest is not None:
                age = max(0.0, time.time() - datetime.fromisoformat(oldest).timestamp())
            self.metrics.spool_oldest_age.set(age)
            await asyncio.sleep(1.0)

    async def _checkpoint_loop(self, checkpointer: Checkpointer) -> None:
        """Signed checkpoints (docs/evidence.md): the one evidence task of the worker."""
        try:
            while True:
                try:
                    await asyncio.to_thread(checkpointer.tick)
                except psycopg.Error as exc:
                    log.warning("checkpoint not made", extra={"error": str(exc).strip()})
                await asyncio.sleep(checkpointer.poll_seconds)
        finally:
            checkpointer.close()

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.set_exception_handler(_quiet_cancelled)
        self.health.serve(self.config.metrics_port)
        log.info(
            "worker starting",
            extra={
                "worker_id": self.config.worker_id,
                "accounts": len(self.config.accounts),
                "spool_rows": self.spool.depth(),
            },
        )
        self.drain.start()
        trace_seconds = memtrace.period(os.environ)
        if trace_seconds is not None:
            memtrace.start()
        background = [
            asyncio.create_task(self._coverage_loop(), name="coverage"),
            asyncio.create_task(self._gauges(), name="gauges"),
            asyncio.create_task(self.evidence.run(), name="evidence"),
            asyncio.create_task(self._collect_garbage(), name="gc"),
            asyncio.create_task(self._trim_memory(), name="trim"),
            asyncio.create_task(self.admission.dispatch(), name="admission"),
            asyncio.create_task(self.admission.watch_lag(), name="lag"),
        ]
        if trace_seconds is not None:
            background.append(asyncio.create_task(memtrace.run(trace_seconds), name="memtrace"))
        checkpointer = Checkpointer.from_env(self.config.conninfo, os.environ)
        if checkpointer is None:
            log.warning("no signing key (AUDITOR_SIGNING_KEY_FILE): no checkpoints are made")
        else:
            background.append(
                asyncio.create_task(self._checkpoint_loop(checkpointer), name="checkpoints")
            )
        if self.config.sweep_interval > 0:
            from auditor.ingest.sweep import Sweeper

            # A connection of its own, as the sweeps had before they shared the lookup's code.
            self.sweep_items = ProjectionReader(
                lambda: psycopg.connect(self.config.conninfo, connect_timeout=5, autocommit=True),
                self.drained.wait,
                self.config.media_types,
            )
            sweeper = Sweeper(
                self.config.sweep_interval,
                [a.name for a in self.config.accounts],
                self.sources,
                self.sweep_items,
                self.metrics.registry,
            )
            background.append(asyncio.create_task(sweeper.run(), name="sweep"))
        if self.config.bi_refresh_interval > 0:
            from auditor.ingest.bi_task import BiRefresher

            refresher = BiRefresher(
                self.config.conninfo, self.config.bi_refresh_interval, self.metrics.registry
            )
            background.append(asyncio.create_task(refresher.run(), name="bi-refresh"))
        leases = None
        if self.config.leases:
            from auditor.ingest.lease_task import LeaseTask

            leases = LeaseTask(self.config, self.coverage, self.metrics, self)
            background.append(asyncio.create_task(leases.run(), name="leases"))
        else:
            for account in self.config.accounts:
                self.start_account(account.name)
        await self.stop.wait()
        # Every phase of the shutdown has a share of shutdown_timeout, and a watchdog ends
        # the process at the deadline whatever still hangs (a saturated loop, a stuck
        # socket): what is committed in the spool is safe, the next start drains it.
        deadline = time.monotonic() + self.config.shutdown_timeout
        self.watchdog = threading.Timer(max(0.0, self.config.shutdown_timeout - 0.2), _give_up)
        self.watchdog.daemon = True
        self.watchdog.start()
        budget = self.config.shutdown_timeout
        log.info("stopping: disconnecting sessions", extra={"worker_id": self.config.worker_id})
        for task in background:
            task.cancel()
        await asyncio.wait(background, timeout=1.0)
        for rank, source in enumerate(self.sources.values()):
            source.polite_close = rank < self.config.polite_disconnects
        stopping = [
            asyncio.ensure_future(self.stop_account(n, "shutdown")) for n in list(self.sources)
        ]
        if stopping:
            _, late = await asyncio.wait(stopping, timeout=min(5.0, budget * 0.3))
            if late:
                log.warning("sessions still closing at shutdown", extra={"sessions": len(late)})
        if leases is not None:
            # The sessions' last coverage rows while the fences are surely current.
            with contextlib.suppress(TimeoutError, psycopg.Error):
                await asyncio.wait_for(asyncio.to_thread(self._flush_coverage), budget * 0.1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leases.release_all(), budget * 0.1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self.spool.wait_committed(self.spool.put_count), max(0.1, budget * 0.1)
            )
        log.info("stopping: sessions closed; stopping the drain process")
        await asyncio.to_thread(self.drain.stop, max(0.1, deadline - time.monotonic() - 2.0))
        log.info("stopping: drain process stopped; draining the rest")
        # The watchdog stays armed until the caller is done (asyncio.run still cancels the
        # leftover tasks and joins the executor threads after this returns).
        return await asyncio.to_thread(self._final_drain, deadline)

    def _final_drain(self, deadline: float) -> int:
        # Leave a second for the coverage flush and closing the files.
        drain_until = deadline - 1.0
        drained = True
        while time.monotonic() < drain_until:
            try:
                report = self.drainer.drain_once()
            except psycopg.Error:
                self.metrics.drain_errors.inc()
                time.sleep(0.5)
                continue
            if report is None:
                break
            self.drain.take(report)
        else:
            drained = self.spool.depth() == 0
        try:
            self._flush_coverage()
        except psycopg.Error:
            log.error("PostgreSQL unreachable at shutdown; coverage updates not written")
        try:
            self.evidence.final()
        except psycopg.Error:
            log.error("PostgreSQL unreachable at shutdown; drain progress not recorded")
        self.evidence.close()
        left = self.spool.depth()
        self.drainer.close()
        if self._cov_conn is not None:
            self._cov_conn.close()
        self.items.close()
        if self.sweep_items is not None:
            self.sweep_items.close()
        self.spool.close()
        self.health.close()
        if left or not drained:
            log.error(
                "PostgreSQL unreachable at shutdown; the spool keeps the rest for the next start",
                extra={"spool_rows": left, "spool": str(self.config.spool_path)},
            )
        else:
            log.info("stopped; spool drained", extra={"at": datetime.now(UTC).isoformat()})
        return 0
