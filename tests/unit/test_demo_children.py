"""The demo's report of a service that stopped carries the cause from its log."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from auditor.demo import _Children
from auditor.errors import UserError


def test_a_stopped_service_is_reported_with_the_last_line_of_its_log(tmp_path: Path) -> None:
    children = _Children(tmp_path, dict(os.environ))
    # `auditor` with an unknown command exits 2 with one line on stderr, into the log
    children.start("worker", "no-such-command")
    _, proc = children.procs[0]
    proc.wait(60)
    with pytest.raises(UserError) as raised:
        children.check()
    message = str(raised.value)
    assert "demo: the worker stopped (exit 2): " in message
    assert "no-such-command" in message
    assert str(tmp_path / "worker.log") in message
