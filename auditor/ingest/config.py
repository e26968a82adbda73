"""Worker settings: a TOML file (path from --config or AUDITOR_CONFIG) plus environment
variables for secrets. Every problem is a ConfigError naming the file and the setting."""

from __future__ import annotations

import difflib
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from auditor.config import DATABASE_URL, libpq_conninfo, parse_database_url
from auditor.errors import ConfigError
from auditor.ingest.pacing import MAX_MIN_CYCLE

CONFIG_ENV = "AUDITOR_CONFIG"
TRANSPORTS = ("long-polling", "websocket")
EVENT_LOOPS = ("uvloop", "asyncio")
HTTP_CLIENTS = ("lean", "aiohttp")
# Every key the file may hold, per table: anything else is a typo that would silently leave
# a default in force, so it stops start-up.
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "": ("gws", "worker", "database", "accounts"),
    "gws": (
        "base_url",
        "transport",
        "topics",
        "media_types",
        "connection_timeout",
        "poll_timeout",
        "connect_delay",
        "min_cycle",
        "ack",
        "http_client",
    ),
    "worker": (
        "spool",
        "spool_synchronous",
        "metrics_port",
        "id",
        "batch_size",
        "drain_interval",
        "group_commit_interval",
        "heartbeat_interval",
        "backoff_base",
        "backoff_cap",
        "login_retry",
        "shutdown_timeout",
        "polite_disconnects",
        "leases",
        "lease_ttl",
        "lease_renew",
        "max_sessions",
        "max_setups",
        "setup_rate",
        "saturation_lag",
        "sweep_interval",
        "bi_refresh_interval",
        "event_loop",
    ),
    "database": ("url",),
    "accounts": ("name", "password_env", "password"),
}


@dataclass(frozen=True)
class Account:
    name: str
    password: str = field(repr=False)  # never in repr, so never in a log line by accident


@dataclass(frozen=True)
class WorkerConfig:
    database_url: URL
    base_url: str
    accounts: tuple[Account, ...]
    spool_path: Path
    transport: str = "long-polling"
    # The long-poll's HTTP client: "lean" (auditor/ingest/lean_http.py) or "aiohttp".
    http_client: str = "lean"
    topics: tuple[str, ...] = ("/v2/me/openmedia",)
    media_types: tuple[str, ...] = ("workitem",)
    worker_id: str = ""
    metrics_port: int = 0
    batch_size: int = 2000
    drain_interval: float = 0.05
    group_commit_interval: float = 0.005
    spool_synchronous: str = "FULL"
    heartbeat_interval: float = 1.0
    connection_timeout: float = 10.0
    poll_timeout: float = 10.0
    connect_delay: float = 0.25
    # The least time between two /meta/connect sends of a session (auditor/ingest/pacing.py)
    min_cycle: float = 0.0
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    login_retry: float = 60.0
    shutdown_timeout: float = 20.0
    # At shutdown at most this many sessions send /meta/disconnect; the others just close
    # their sockets and the server expires them: 10,000 disconnects at once on a busy loop
    # overran the shutdown's budget (docs/worker.md "Shutdown").
    polite_disconnects: int = 200
    # Overload (docs/worker.md "Overload"): at most max_sessions held (0: no limit); at most
    # max_setups logins/handshakes/snapshots at once, started at most setup_rate per second;
    # none started while the event loop lags more than saturation_lag seconds.
    max_sessions: int = 0
    max_setups: int = 200
    setup_rate: float = 200.0
    saturation_lag: float = 0.5
    ack: bool = True
    leases: bool = False
    lease_ttl: float = 15.0
    lease_renew: float = 5.0
    # Reconciliation sweeps (auditor.ingest.sweep): seconds between re-reads of each
    # account's open items, jittered; 0 turns them off. AUDITOR_SWEEP_INTERVAL overrides.
    sweep_interval: float = 900.0
    # auditor_bi_refresh() every this many seconds (docs/bi.md); 0 turns it off.
    bi_refresh_interval: float = 10.0
    # uvloop (libuv) runs the same asyncio code with a cheaper loop, tasks and sockets: the
    # receive loop's cost per long-poll cycle (docs/worker.md, "Sizing"); asyncio: the
    # standard library's loop.
    event_loop: str = "uvloop"

    @property
    def conninfo(self) -> str:
        return libpq_conninfo(self.database_url)


class _Reader:
    """Typed access to one TOML table; errors name `<file>: <section>.<key>`."""

    def __init__(self, source: str, table: Mapping[str, Any], prefix: str) -> None:
        self.source, self.table, self.prefix = source, table, prefix

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.prefix}{key}", problem)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = self.table.get(key, default)
        if value is None:
            raise self.fail(key, "is required")
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.fail(key, f"must be a number, not {value!r}")
        if not isinstance(value, kind):
            name = kind.__name__ if isinstance(kind, type) else "number"
            raise self.fail(key, f"must be a {name}, not {value!r}")
        return value

    def number(self, key: str, default: float, minimum: float = 0.0) -> float:
        value = float(self.get(key, (int, float), default))
        if value < minimum:
            raise self.fail(key, f"must be >= {minimum}, not {value}")
        return value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(key, list, list(default))
        if not value or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "must be a non-empty list of non-empty strings")
        return tuple(value)


def _table(source: str, data: Mapping[str, Any], name: str) -> _Reader:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {name}", "must be a table")
    return _Reader(source, table, f"{name}.")


def _accounts(
    source: str, data: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[Account, ...]:
    raw = data.get("accounts")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source}: accounts", "must list at least one [[accounts]] entry")
    accounts: list[Account] = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: accounts[{index}]", "must be a table")
        reader = _Reader(source, entry, f"accounts[{index}].")
        if "password" in entry:
            raise reader.fail("password", "plaintext passwords are not accepted; use password_env")
        name = reader.get("name", str, None)
        env = reader.get("password_env", str, None)
        password = environ.get(env)
        if password is None:
            raise reader.fail("password_env", f"environment variable {env} is not set")
        accounts.append(Account(name, password))
    names = [a.name for a in accounts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: accounts", f"names appear twice: {', '.join(dupes)}")
    return tuple(accounts)


def load(path: str | None, environ: Mapping[str, str]) -> WorkerConfig:
    path = path or environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError("--config", f"no config file given (or set {CONFIG_ENV})")
    source = Path(path).name
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"is not valid TOML: {exc}") from None
    return from_mapping(data, environ, source, Path(path).resolve().parent)


def _unknown(source: str, table: str, keys: Any, where: str | None = None) -> None:
    known = KNOWN_KEYS[table]
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            name = f"[{where or table}] {key}" if (where or table) else str(key)
            raise ConfigError(f"{source}: {name}", f"unknown key{hint}")


def check_keys(source: str, data: Mapping[str, Any]) -> None:
    """Stop at the first key the worker does not know, naming the closest one it does."""
    _unknown(source, "", data)
    for name in ("gws", "worker", "database"):
        table = data.get(name)
        if isinstance(table, dict):
            _unknown(source, name, table)
    accounts = data.get("accounts")
    if isinstance(accounts, list):
        for index, entry in enumerate(accounts):
            if isinstance(entry, dict):
                _unknown(source, "accounts", entry, f"accounts[{index}]")


def from_mapping(
    data: Mapping[str, Any], environ: Mapping[str, str], source: str, base: Path
) -> WorkerConfig:
    check_keys(source, data)
    gws, worker, db = (_table(source, data, n) for n in ("gws", "worker", "database"))
    if environ.get(DATABASE_URL):
        url = parse_database_url(environ[DATABASE_URL])
    else:
        raw_url = db.table.get("url")
        if raw_url is None:
            raise ConfigError(DATABASE_URL, "is not set, and the config has no [database] url")
        url = parse_database_url(db.get("url", str, None), f"{source}: database.url")
    base_url = gws.get("base_url", str, None).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise gws.fail("base_url", f"must start with http:// or https://, not {base_url!r}")
    transport = gws.get("transport", str, "long-polling")
    if transport not in TRANSPORTS:
        raise gws.fail("transport", f"must be one of {', '.join(TRANSPORTS)}")
    topics = gws.strings("topics", ("/v2/me/openmedia",))
    if not all(t.startswith("/") for t in topics):
        raise gws.fail("topics", "every topic must start with /")
    synchronous = worker.get("spool_synchronous", str, "FULL").upper()
    if synchronous not in ("FULL", "NORMAL"):
        raise worker.fail("spool_synchronous", "must be FULL or NORMAL")
    port = int(worker.number("metrics_port", 0))
    if port > 65535:
        raise worker.fail("metrics_port", "must be 0..65535")
    spool = Path(worker.get("spool", str, "auditor-spool.sqlite3"))
    http_client = gws.get("http_client", str, "lean")
    if http_client not in HTTP_CLIENTS:
        raise gws.fail("http_client", f"must be one of {', '.join(HTTP_CLIENTS)}")
    poll_timeout = gws.number("poll_timeout", 10.0)
    min_cycle = _min_cycle(gws, poll_timeout)
    event_loop = worker.get("event_loop", str, "uvloop")
    if event_loop not in EVENT_LOOPS:
        raise worker.fail("event_loop", f"must be one of {', '.join(EVENT_LOOPS)}")
    return WorkerConfig(
        database_url=url,
        base_url=base_url,
        accounts=_accounts(source, data, environ),
        spool_path=spool if spool.is_absolute() else base / spool,
        transport=transport,
        http_client=http_client,
        topics=topics,
        media_types=gws.strings("media_types", ("workitem",)),
        worker_id=worker.get("id", str, f"{socket.gethostname()}:{os.getpid()}"),
        metrics_port=port,
        batch_size=int(worker.number("batch_size", 2000, 1)),
        drain_interval=worker.number("drain_interval", 0.05, 0.001),
        group_commit_interval=worker.number("group_commit_interval", 0.005, 0.0),
        spool_synchronous=synchronous,
        heartbeat_interval=worker.number("heartbeat_interval", 1.0, 0.05),
        connection_timeout=gws.number("connection_timeout", 10.0),
        poll_timeout=poll_timeout,
        connect_delay=gws.number("connect_delay", 0.25),
        min_cycle=min_cycle,
        backoff_base=worker.number("backoff_base", 0.5, 0.0),
        backoff_cap=worker.number("backoff_cap", 30.0, 0.0),
        login_retry=worker.number("login_retry", 60.0, 0.0),
        shutdown_timeout=worker.number("shutdown_timeout", 20.0, 0.0),
        polite_disconnects=int(worker.number("polite_disconnects", 200, 0)),
        max_sessions=int(worker.number("max_sessions", 0, 0)),
        max_setups=int(worker.number("max_setups", 200, 1)),
        setup_rate=worker.number("setup_rate", 200.0, 0.1),
        saturation_lag=worker.number("saturation_lag", 0.5, 0.01),
        ack=bool(gws.get("ack", bool, True)),
        leases=bool(worker.get("leases", bool, False)),
        lease_ttl=worker.number("lease_ttl", 15.0, 1.0),
        lease_renew=worker.number("lease_renew", 5.0, 0.1),
        sweep_interval=_sweep_interval(worker, environ),
        bi_refresh_interval=worker.number("bi_refresh_interval", 10.0, 0.0),
        event_loop=event_loop,
    )


def _min_cycle(gws: _Reader, poll_timeout: float) -> float:
    """At most half of CometD's default maxInterval (the server expires a session whose
    client waits longer), and below poll_timeout (the heartbeat's cadence)."""
    value = gws.number("min_cycle", 0.0)
    if value > MAX_MIN_CYCLE:
        raise gws.fail(
            "min_cycle",
            f"must be <= {MAX_MIN_CYCLE} s (half the server's 10 s maxInterval), not {value}",
        )
    if 0 < poll_timeout <= value:
        raise gws.fail("min_cycle", f"must be below poll_timeout ({poll_timeout} s), not {value}")
    return value


SWEEP_ENV = "AUDITOR_SWEEP_INTERVAL"


def _sweep_interval(worker: _Reader, environ: Mapping[str, str]) -> float:
    raw = environ.get(SWEEP_ENV)
    if raw is None:
        return worker.number("sweep_interval", 900.0, 0.0)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(SWEEP_ENV, f"must be a number of seconds, not {raw!r}") from None
    if not 0 <= value < float("inf"):
        raise ConfigError(SWEEP_ENV, "must be 0 (off) or a positive number of seconds")
    return value
