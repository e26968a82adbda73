"""Retention settings: how many months of events to keep, per media type if needed.

AUDITOR_RETENTION_MONTHS (1..1200; unset: nothing is ever dropped by a scheduled run) and
AUDITOR_RETENTION_MONTHS_BY_MEDIA_TYPE (``email=84,chat=24``): a partition goes only when
every row in it is past its own media type's keep (a whole partition is dropped or kept).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from auditor.errors import ConfigError, UserError

MONTHS = "AUDITOR_RETENTION_MONTHS"
MONTHS_BY_MEDIA_TYPE = "AUDITOR_RETENTION_MONTHS_BY_MEDIA_TYPE"
MAX_MONTHS = 1200
_AGE = re.compile(r"^\s*(\d{1,5})\s*(mo|months?|y|years?)?\s*$", re.IGNORECASE)
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def _months(text: str, setting: str) -> int:
    value = text.strip()
    if not value.isascii() or not value.isdigit():
        raise ConfigError(setting, f"{text!r} is not a whole number of months")
    months = int(value)
    if not 1 <= months <= MAX_MONTHS:
        raise ConfigError(setting, f"{months} is out of range; expected 1..{MAX_MONTHS} months")
    return months


def parse_age(text: str, option: str = "--older-than") -> int:
    """``24mo``, ``24``, ``2y`` -> months (at least 1)."""
    match = _AGE.match(text)
    if match is None:
        raise UserError(f"{option} {text!r}: expected months like 24mo, or years like 2y")
    months = int(match.group(1)) * (12 if (match.group(2) or "mo").lower().startswith("y") else 1)
    if not 1 <= months <= MAX_MONTHS:
        raise UserError(f"{option} {text!r}: expected 1..{MAX_MONTHS} months")
    return months


@dataclass(frozen=True)
class RetentionSettings:
    months: int | None = None  # None: keep forever unless --older-than says otherwise
    by_media_type: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RetentionSettings:
        raw = environ.get(MONTHS, "").strip()
        months = _months(raw, MONTHS) if raw else None
        overrides: dict[str, int] = {}
        for item in environ.get(MONTHS_BY_MEDIA_TYPE, "").split(","):
            if not item.strip():
                continue
            name, sep, value = item.partition("=")
            if not sep or not _MEDIA_TYPE.match(name.strip()):
                raise ConfigError(
                    MONTHS_BY_MEDIA_TYPE, f"{item.strip()!r} is not MEDIATYPE=MONTHS (email=84)"
                )
            if name.strip() in overrides:
                raise ConfigError(MONTHS_BY_MEDIA_TYPE, f"{name.strip()!r} is given twice")
            overrides[name.strip()] = _months(value, MONTHS_BY_MEDIA_TYPE)
        return cls(months, overrides)

    def with_default(self, months: int | None) -> RetentionSettings:
        return self if months is None else RetentionSettings(months, self.by_media_type)

    def keep_for(self, media_type: str | None) -> int | None:
        if media_type is not None and media_type in self.by_media_type:
            return self.by_media_type[media_type]
        return self.months

    def as_json(self) -> dict[str, object]:
        return {"months": self.months, "by_media_type": dict(sorted(self.by_media_type.items()))}


def month_start(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def months_before(start: datetime, months: int) -> datetime:
    """The first instant of the UTC month ``months`` before the month of ``start``."""
    index = start.year * 12 + (start.month - 1) - months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
