"""Settings, read from the environment (prefix AUDITOR_) and validated in one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from auditor.errors import ConfigError

DATABASE_URL = "AUDITOR_DATABASE_URL"
_POSTGRES_DRIVERS = {"postgresql", "postgresql+psycopg", "postgres"}


def parse_database_url(value: str, setting: str = DATABASE_URL) -> URL:
    """Validate a PostgreSQL URL and return it with the psycopg 3 driver."""
    text = value.strip()
    if not text:
        raise ConfigError(setting, "is empty; expected postgresql://user@host:port/dbname")
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


def libpq_conninfo(url: URL) -> str:
    """The URL in the form psycopg.connect() takes (no SQLAlchemy driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def redacted(url: URL) -> str:
    """The URL safe for logs: the password is never shown."""
    return url.set(drivername="postgresql").render_as_string(hide_password=True)


@dataclass(frozen=True)
class Settings:
    database_url: URL

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        raw = environ.get(DATABASE_URL)
        if raw is None:
            raise ConfigError(
                DATABASE_URL,
                "is not set; export it (postgresql://user@host:port/dbname), "
                "or run `make demo`, which starts an embedded PostgreSQL",
            )
        return cls(database_url=parse_database_url(raw))

    @property
    def conninfo(self) -> str:
        return libpq_conninfo(self.database_url)
