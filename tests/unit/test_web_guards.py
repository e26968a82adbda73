"""Pure parts of the API's defences: the failure limiter, the client address, redaction,
cursor decoding."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
import sys
from datetime import timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from web.client import REDACTED, RedactingFilter, client_address, redact_uri
from web.cursor import BadCursor, CursorCodec
from web.ratelimit import FailureLimiter, limit_key
from web.server import RedactingLogger

PROXY = (ipaddress.ip_network("10.0.0.0/8"),)
SECRET = "aud_" + "Q" * 43


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limiter_blocks_after_the_limit_until_the_window_ends() -> None:
    clock = Clock()
    limiter = FailureLimiter(3, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("192.0.2.1") is None
        limiter.failed("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") == 60
    assert limiter.retry_after("192.0.2.2") is None
    clock.now += 59.5
    assert limiter.retry_after("192.0.2.1") == 1
    clock.now += 0.5
    assert limiter.retry_after("192.0.2.1") is None


def test_the_limiter_remembers_a_bounded_number_of_addresses() -> None:
    limiter = FailureLimiter(1, capacity=100, clock=Clock())
    for n in range(10_000):
        limiter.failed(str(ipaddress.ip_address(0x0A000000 + n)))
    assert len(limiter) == 100
    assert limiter.retry_after("10.0.39.15") == 60  # the most recent are kept
    assert limiter.retry_after("10.0.0.0") is None  # the oldest forgotten


def test_ipv6_clients_are_limited_per_64() -> None:
    assert limit_key("2001:db8:1:2::1") == limit_key("2001:db8:1:2:ffff::9")
    assert limit_key("2001:db8:1:3::1") != limit_key("2001:db8:1:2::1")
    assert limit_key("::ffff:192.0.2.1") == "192.0.2.1"


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.4", "203.0.113.9", "198.51.100.4"),  # peer not a trusted proxy
        ("10.0.0.2", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.2", "6.6.6.6, 203.0.113.9, 10.0.0.3", "203.0.113.9"),  # rightmost untrusted
        ("10.0.0.2", "203.0.113.9, garbage", "10.0.0.2"),  # unparsable: stop at the proxy
        ("10.0.0.2", None, "10.0.0.2"),
        (None, "203.0.113.9", None),
    ],
)
def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    peer: str | None, forwarded: str | None, expected: str | None
) -> None:
    assert client_address(peer, forwarded, PROXY) == expected


def test_gunicorns_access_log_atoms_are_redacted() -> None:
    logger = RedactingLogger.__new__(RedactingLogger)
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/api/v1/events?api_key=k1&limit=5&x={SECRET}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "QUERY_STRING": f"api_key=k1&limit=5&x={SECRET}",
        "PATH_INFO": "/api/v1/events",
        "HTTP_REFERER": f"http://x/?password=hunter2&token={SECRET}",
    }
    req = SimpleNamespace(headers=[("AUTHORIZATION", f"Bearer {SECRET}")])
    resp = SimpleNamespace(status="200 OK", headers=[], sent=10)
    atoms = logger.atoms(resp, req, environ, timedelta(seconds=1))
    text = repr(atoms)
    assert SECRET not in text
    assert "k1" not in text
    assert "hunter2" not in text
    assert atoms["r"] == (f"GET /api/v1/events?api_key={REDACTED}&limit=5&x={REDACTED} HTTP/1.1")
    assert atoms["q"] == f"api_key={REDACTED}&limit=5&x={REDACTED}"
    assert atoms["{authorization}i"] == REDACTED


def test_log_records_and_tracebacks_are_redacted() -> None:
    try:
        raise ValueError(f"bad url /x?access_token={SECRET}")
    except ValueError:
        record = logging.LogRecord(
            "auditor.api", logging.ERROR, __file__, 1, "asked %s", ("?password=pw1",), None
        )
        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert SECRET not in formatted
    assert "pw1" not in formatted
    assert "access_token=" + REDACTED in formatted


def test_redact_uri_leaves_ordinary_queries_alone() -> None:
    assert redact_uri("/api/v1/events?limit=5&account=a%20b") == (
        "/api/v1/events?limit=5&account=a%20b"
    )


CODEC = CursorCodec("s" * 32)


@given(st.text(max_size=600))
def test_any_text_decodes_to_a_position_or_bad_cursor(text: str) -> None:
    with contextlib.suppress(BadCursor):
        assert isinstance(CODEC.decode(text, "digest"), list)


@given(st.binary(max_size=300))
def test_any_signed_body_decodes_to_a_position_or_bad_cursor(body: bytes) -> None:
    cursor = base64.urlsafe_b64encode(body + CODEC._mac(body)).rstrip(b"=").decode()
    with contextlib.suppress(BadCursor):
        assert isinstance(CODEC.decode(cursor, "digest"), list)


def test_a_cursor_round_trips() -> None:
    assert CODEC.decode(CODEC.encode("digest", [5]), "digest") == [5]
