"""Fixtures of the worker tests: a simulator streaming 60 notifications/s to three agents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ingest.support import Sim
from tests.simulator.support import fast_config


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    config = fast_config(
        agents=3,
        rate=60,
        timeout_ms=1000,
        max_interval_ms=1500,
        ground_truth=tmp_path / "truth.ndjson",
    )
    with Sim(config) as server:
        yield server
