"""Ports for servers we start: never from the range outgoing connections draw from, so that
no connection made meanwhile can take the port before the server binds it."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

import pytest

from auditor.ports import ephemeral_range, free_port, free_ports


def test_a_free_port_lies_outside_the_ephemeral_range_and_can_be_bound() -> None:
    low, high = ephemeral_range()
    for _ in range(20):
        port = free_port()
        assert not low <= port <= high
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        # One range outside, from 10000 up to the taken port: the first draw is that port.
        first = [port - 10000]
        randbelow = secrets.randbelow

        def draw(n: int) -> int:
            return first.pop() if first and n > 1 else randbelow(n)

        monkeypatch.setattr("auditor.ports.secrets.randbelow", draw)
        chosen = free_port((port + 1, 65535))
        assert not first, "the taken port was drawn"
        assert 10000 <= chosen < port


def test_without_room_outside_the_kernel_chooses(tmp_path: Path) -> None:
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("1024\t65535\n")
    low, high = ephemeral_range(ranges)
    assert (low, high) == (1024, 65535)
    assert 1024 <= free_port((low, high)) <= 65535


def test_ports_for_servers_started_together_differ() -> None:
    assert len(set(free_ports(5))) == 5


def test_an_unreadable_range_file_means_the_linux_default(tmp_path: Path) -> None:
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)
