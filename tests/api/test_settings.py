from __future__ import annotations

import pytest

from auditor.config import API_POOL_SIZE, API_SECRET, ApiSettings, Settings
from auditor.errors import ConfigError

URL = "postgresql://u@h/db"


def test_api_settings_are_optional_until_serving() -> None:
    settings = Settings.from_env({"AUDITOR_DATABASE_URL": URL})
    assert settings.api.secret is None
    with pytest.raises(ConfigError) as caught:
        settings.api.require_secret()
    assert caught.value.setting == API_SECRET


@pytest.mark.parametrize(
    ("env", "setting", "problem"),
    [
        ({API_SECRET: "short"}, API_SECRET, "shorter than 32"),
        ({API_POOL_SIZE: "many"}, API_POOL_SIZE, "not a whole number"),
        ({API_POOL_SIZE: "0"}, API_POOL_SIZE, "out of range"),
        ({"AUDITOR_API_STATEMENT_TIMEOUT_MS": "5"}, "AUDITOR_API_STATEMENT_TIMEOUT_MS", "range"),
    ],
)
def test_bad_api_settings_name_the_setting(env: dict[str, str], setting: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AUDITOR_DATABASE_URL": URL, **env})
    assert caught.value.setting == setting
    assert problem in str(caught.value)


def test_the_secret_is_never_in_the_settings_repr() -> None:
    secret = "s" * 40
    settings = ApiSettings.from_env({API_SECRET: secret, API_POOL_SIZE: "8"})
    assert settings.pool_size == 8
    assert secret not in repr(settings)
