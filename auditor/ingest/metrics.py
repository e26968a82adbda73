"""Prometheus metrics of the worker (served on [worker] metrics_port; 0 = off)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.received = Counter(
            "auditor_received", "Notifications received", ["account"], registry=r
        )
        self.redelivered = Counter(
            "auditor_redelivered", "Redelivered messages dropped (same Bayeux id)", registry=r
        )
        self.snapshots = Counter("auditor_snapshot_items", "Snapshot items spooled", registry=r)
        self.stored = Counter("auditor_stored", "Events newly stored in PostgreSQL", registry=r)
        self.duplicates = Counter("auditor_duplicates", "Receipts already stored", registry=r)
        self.quarantined = Counter("auditor_quarantined", "Receipts quarantined", registry=r)
        self.drain_errors = Counter("auditor_drain_errors", "Failed drain batches", registry=r)
        self.spool_depth = Gauge("auditor_spool_depth", "Rows waiting in the spool", registry=r)
        self.spool_oldest_age = Gauge(
            "auditor_spool_oldest_age_seconds", "Age of the oldest spooled row", registry=r
        )
        self.unacked_window = Gauge(
            "auditor_unacked_window_seconds",
            "Last group-commit time: what a kill could lose without server acks",
            registry=r,
        )
        self.batch_latency = Histogram(
            "auditor_batch_seconds", "Drain batch: read, store, commit, delete", registry=r
        )
        self.connected = Gauge("auditor_sessions_connected", "Subscribed sessions", registry=r)
        self.reconnects = Counter("auditor_reconnects", "Session restarts", ["account"], registry=r)
        self.gaps = Counter("auditor_gaps", "Coverage intervals closed", ["reason"], registry=r)
        self.login_failures = Counter(
            "auditor_login_failures", "Rejected logins", ["account"], registry=r
        )
        self.gws_errors = Counter(
            "auditor_gws_unreachable", "GWS unreachable or erroring", ["account"], registry=r
        )
        self.loop_lag = Gauge(
            "auditor_event_loop_lag_seconds", "How late a 100 ms timer fired", registry=r
        )
        self.saturated = Gauge(
            "auditor_saturated",
            "1 while the event loop lags or accounts wait for max_sessions",
            registry=r,
        )
        self.setups = Gauge(
            "auditor_setups_in_progress", "Logins/handshakes/snapshots under way", registry=r
        )
        self.waiting = Gauge(
            "auditor_setups_waiting", "Accounts and steps waiting for a set-up slot", registry=r
        )
        self.leases = Gauge("auditor_leases_held", "Accounts leased by this worker", registry=r)
        self.fenced = Counter(
            "auditor_fenced",
            "Snapshots, coverage intervals refused: their lease had passed to another worker",
            registry=r,
        )
