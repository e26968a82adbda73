from __future__ import annotations

import pytest

from auditor.config import DATABASE_URL, Settings, libpq_conninfo, redacted
from auditor.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is empty"),
        ("not a url", "is not a URL"),
        ("mysql://u@h/db", "is not PostgreSQL"),
        ("postgresql://u@h", "names no database"),
        ("postgresql://u@h:99999/db", "out of range"),
        ("postgresql://u@h:port/db", "not a number"),
    ],
)
def test_bad_database_url_names_the_setting_and_the_problem(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({DATABASE_URL: value})
    assert caught.value.setting == DATABASE_URL
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_database_url_says_how_to_get_one() -> None:
    with pytest.raises(ConfigError, match="AUDITOR_DATABASE_URL: is not set"):
        Settings.from_env({})


def test_password_is_never_in_the_redacted_url() -> None:
    settings = Settings.from_env({DATABASE_URL: "postgresql://me:s3cret@db:5432/audit"})
    assert "s3cret" not in redacted(settings.database_url)
    assert "s3cret" in libpq_conninfo(settings.database_url)
