"""Settings, read from the environment (prefix AUDITOR_) and validated in one place."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from auditor.errors import ConfigError

DATABASE_URL = "AUDITOR_DATABASE_URL"
# Optional: a hot standby that serves the API's reads (docs/scale.md); the access log and the
# tokens' last use still go to AUDITOR_DATABASE_URL.
READ_DATABASE_URL = "AUDITOR_READ_DATABASE_URL"
_POSTGRES_DRIVERS = {"postgresql", "postgresql+psycopg", "postgres"}


def parse_database_url(value: str, setting: str = DATABASE_URL) -> URL:
    """Validate a PostgreSQL URL and return it with the psycopg 3 driver."""
    text = value.strip()
    if not text:
        raise ConfigError(setting, "is empty; expected postgresql://user@host:port/dbname")
    text = _multi_host(text, setting)
    try:
        url = make_url(text)
    except ArgumentError:
        raise ConfigError(
            setting, "is not a URL; expected postgresql://user@host:port/dbname"
        ) from None
    except ValueError:
        raise ConfigError(setting, "has a port that is not a number") from None
    if url.drivername not in _POSTGRES_DRIVERS:
        raise ConfigError(
            setting, f"scheme {url.drivername!r} is not PostgreSQL; expected postgresql://..."
        )
    if not url.database:
        raise ConfigError(setting, "names no database; expected postgresql://user@host/dbname")
    port = url.port
    if port is not None and not 0 < port < 65536:
        raise ConfigError(setting, f"port {port} is out of range")
    return url.set(drivername="postgresql+psycopg")


_MULTI_HOST = re.compile(
    r"^(?P<scheme>[^:/?#]+://)(?P<auth>[^@/?#]*@)?(?P<hosts>[^/?#@]*,[^/?#@]*)(?P<rest>[/?#].*)?$"
)


def _multi_host(text: str, setting: str) -> str:
    """libpq's multi-host URL (postgresql://u@db1:5432,db2:5432/auditor, with
    target_session_attrs for failover: docs/scale.md) in the form SQLAlchemy's URL can hold,
    which has one host: the same hosts and ports as libpq's host= and port= list parameters,
    which reach libpq unchanged. Any other URL is returned as it is."""
    found = _MULTI_HOST.match(text)
    if found is None:
        return text
    hosts: list[str] = []
    ports: list[str] = []
    for part in found["hosts"].split(","):
        host, port = part, ""
        if part.startswith("[") and "]" in part:  # [IPv6 address]:port
            host, _, tail = part[1:].partition("]")
            port = tail.removeprefix(":")
        elif ":" in part:
            host, port = part.rsplit(":", 1)
        if not host:
            raise ConfigError(setting, f"has an empty host in {found['hosts']!r}")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(setting, f"has a port that is not a number 1-65535: {port!r}")
        hosts.append(host)
        ports.append(port)
    path, _, query = (found["rest"] or "").partition("?")
    params = [f"host={','.join(hosts)}"]
    if any(ports):
        params.append(f"port={','.join(ports)}")
    if query:
        params.append(query)
    return f"{found['scheme']}{found['auth'] or ''}{path}?{'&'.join(params)}"


def libpq_conninfo(url: URL) -> str:
    """The URL in the form psycopg.connect() takes (no SQLAlchemy driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def redacted(url: URL) -> str:
    """The URL safe for logs: the password is never shown."""
    return url.set(drivername="postgresql").render_as_string(hide_password=True)


@dataclass(frozen=True)
class Settings:
    database_url: URL
    api: ApiSettings = field(default_factory=lambda: ApiSettings())
    read_database_url: URL | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        raw = environ.get(DATABASE_URL)
        if raw is None:
            raise ConfigError(
                DATABASE_URL,
                "is not set; export it (postgresql://user@host:port/dbname), "
                "or run `make demo`, which starts an embedded PostgreSQL",
            )
        read = environ.get(READ_DATABASE_URL, "").strip()
        return cls(
            database_url=parse_database_url(raw),
            api=ApiSettings.from_env(environ),
            read_database_url=parse_database_url(read, READ_DATABASE_URL) if read else None,
        )

    @property
    def conninfo(self) -> str:
        return libpq_conninfo(self.database_url)

    @property
    def read_conninfo(self) -> str:
        """Where reads go: the standby when one is configured, else the primary."""
        return libpq_conninfo(self.read_database_url or self.database_url)


# --- Query API settings (auditor serve, web/) -------------------------------------------------

API_SECRET = "AUDITOR_API_SECRET"  # noqa: S105 (the setting's name, not a secret)
API_POOL_SIZE = "AUDITOR_API_POOL_SIZE"
API_STATEMENT_TIMEOUT_MS = "AUDITOR_API_STATEMENT_TIMEOUT_MS"
API_TRUSTED_PROXIES = "AUDITOR_API_TRUSTED_PROXIES"
API_AUTH_FAILURES = "AUDITOR_API_AUTH_FAILURES_PER_MINUTE"
API_EXPORTS_PER_TOKEN = "AUDITOR_API_EXPORTS_PER_TOKEN"  # noqa: S105 (the setting's name)
API_METRICS_TOKEN = "AUDITOR_API_METRICS_TOKEN"  # noqa: S105 (the setting's name)
API_HEADER_TIMEOUT = "AUDITOR_API_HEADER_TIMEOUT"
API_METRICS_ADDRESS = "AUDITOR_API_METRICS_ADDRESS"
API_IO_TIMEOUT = "AUDITOR_API_IO_TIMEOUT"
API_WORKER_METRICS_URL = "AUDITOR_API_WORKER_METRICS_URL"
MIN_METRICS_TOKEN_CHARS = 16
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MIN_API_SECRET_CHARS = 32


def _int_setting(environ: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    if not raw.strip().isascii() or not raw.strip().isdigit():  # no sign, `_` or other scripts
        raise ConfigError(name, f"{raw!r} is not a whole number")
    value = int(raw.strip())
    if not lo <= value <= hi:
        raise ConfigError(name, f"{value} is out of range; expected {lo}..{hi}")
    return value


def _networks(environ: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    found = []
    for item in environ.get(name, "").split(","):
        if not item.strip():
            continue
        try:
            found.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                name,
                f"{item.strip()!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/8)",
            ) from None
    return tuple(found)


def _metrics_token(environ: Mapping[str, str]) -> str | None:
    raw = environ.get(API_METRICS_TOKEN)
    if raw is None or not raw.strip():
        return None
    if len(raw.strip()) < MIN_METRICS_TOKEN_CHARS:
        raise ConfigError(
            API_METRICS_TOKEN, f"is shorter than {MIN_METRICS_TOKEN_CHARS} characters"
        )
    return raw.strip()


def _worker_metrics_url(environ: Mapping[str, str]) -> str | None:
    """The worker's Prometheus endpoint, shown on the overview page (optional)."""
    raw = environ.get(API_WORKER_METRICS_URL, "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?", raw):
        raise ConfigError(
            API_WORKER_METRICS_URL,
            f"{raw!r} is not an http(s) URL (e.g. http://127.0.0.1:9100/metrics)",
        )
    return raw


def _metrics_address(environ: Mapping[str, str]) -> tuple[str, int] | None:
    raw = environ.get(API_METRICS_ADDRESS, "").strip()
    if not raw:
        return None
    host, sep, port = raw.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isascii() or not port.isdigit():
        raise ConfigError(API_METRICS_ADDRESS, f"{raw!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    if not 0 < int(port) < 65536:
        raise ConfigError(API_METRICS_ADDRESS, f"port {port} is out of range")
    return host, int(port)


@dataclass(frozen=True)
class ApiSettings:
    """secret keys the HMAC of paging cursors; None is fine for everything but serving.

    trusted_proxies: peers whose X-Forwarded-For is believed (none: the socket's address is
    the client). metrics_token: when set, /metrics needs `Authorization: Bearer <it>`.
    metrics_address: when set, /metrics is served there (by gunicorn's master process) and
    not on the API's address.
    header_timeout and io_timeout (seconds) bound slow clients under gunicorn (web/server.py).
    worker_metrics_url: the worker's Prometheus endpoint, shown on the overview page.
    """

    secret: str | None = field(default=None, repr=False)
    pool_size: int = 4
    statement_timeout_ms: int = 30_000
    trusted_proxies: tuple[IPNetwork, ...] = ()
    auth_failures_per_minute: int = 20
    exports_per_token: int = 2
    metrics_token: str | None = field(default=None, repr=False)
    metrics_address: tuple[str, int] | None = None
    header_timeout: int = 10
    io_timeout: int = 30
    worker_metrics_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ApiSettings:
        secret = environ.get(API_SECRET)
        if secret is not None and len(secret.strip()) < MIN_API_SECRET_CHARS:
            raise ConfigError(
                API_SECRET,
                f"is shorter than {MIN_API_SECRET_CHARS} characters; "
                "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
            )
        return cls(
            secret=secret.strip() if secret is not None else None,
            pool_size=_int_setting(environ, API_POOL_SIZE, 4, 1, 64),
            statement_timeout_ms=_int_setting(
                environ, API_STATEMENT_TIMEOUT_MS, 30_000, 100, 3_600_000
            ),
            trusted_proxies=_networks(environ, API_TRUSTED_PROXIES),
            auth_failures_per_minute=_int_setting(environ, API_AUTH_FAILURES, 20, 1, 10_000),
            exports_per_token=_int_setting(environ, API_EXPORTS_PER_TOKEN, 2, 1, 64),
            metrics_token=_metrics_token(environ),
            metrics_address=_metrics_address(environ),
            header_timeout=_int_setting(environ, API_HEADER_TIMEOUT, 10, 1, 300),
            io_timeout=_int_setting(environ, API_IO_TIMEOUT, 30, 1, 3_600),
            worker_metrics_url=_worker_metrics_url(environ),
        )

    def require_secret(self) -> str:
        if self.secret is None:
            raise ConfigError(
                API_SECRET,
                "is not set; the API signs paging cursors with it. Generate one with: "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
            )
        return self.secret
