from __future__ import annotations

import pytest

from auditor.config import (
    API_EXPORTS_PER_TOKEN,
    API_IO_TIMEOUT,
    API_METRICS_TOKEN,
    API_POOL_SIZE,
    API_SECRET,
    API_TRUSTED_PROXIES,
    ApiSettings,
    Settings,
)
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
        ({API_TRUSTED_PROXIES: "10.0.0.1, proxy.local"}, API_TRUSTED_PROXIES, "'proxy.local'"),
        ({API_METRICS_TOKEN: "short"}, API_METRICS_TOKEN, "shorter than 16"),
        ({API_EXPORTS_PER_TOKEN: "0"}, API_EXPORTS_PER_TOKEN, "out of range"),
        ({API_IO_TIMEOUT: "+5"}, API_IO_TIMEOUT, "not a whole number"),
        ({"AUDITOR_API_METRICS_ADDRESS": "9464"}, "AUDITOR_API_METRICS_ADDRESS", "HOST:PORT"),
        ({"AUDITOR_API_METRICS_ADDRESS": "h:99999"}, "AUDITOR_API_METRICS_ADDRESS", "range"),
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


def test_hardening_settings_are_read_and_the_metrics_token_is_never_shown() -> None:
    token = "m" * 20
    settings = ApiSettings.from_env(
        {API_TRUSTED_PROXIES: "10.0.0.0/8, ::1", API_METRICS_TOKEN: token}
    )
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    assert settings.metrics_token == token
    assert token not in repr(settings)
