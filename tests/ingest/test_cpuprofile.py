"""AUDITOR_CPROFILE (auditor/ingest/cpuprofile.py): off unless set; when set, the block's
calls are written as a pstats file, with the thread's CPU time, under the suffix given."""

from __future__ import annotations

import pstats
from pathlib import Path

from auditor.ingest import cpuprofile


def _busy() -> int:
    return sum(i * i for i in range(20_000))


def test_without_the_variable_nothing_is_profiled_or_written(tmp_path: Path) -> None:
    with cpuprofile.profiled({}):
        _busy()
    assert list(tmp_path.iterdir()) == []


def test_with_the_variable_the_blocks_calls_are_written_as_pstats(tmp_path: Path) -> None:
    path = tmp_path / "worker.pstats"
    with cpuprofile.profiled({cpuprofile.ENV: str(path)}, ".drain"):
        _busy()
    written = tmp_path / "worker.pstats.drain"
    assert written.exists()
    assert not path.exists()
    table = pstats.Stats(str(written)).stats  # type: ignore[attr-defined]
    names = {name for (_, _, name) in table}
    assert "_busy" in names


def test_an_unwritable_path_is_logged_not_raised(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "worker.pstats"
    with cpuprofile.profiled({cpuprofile.ENV: str(target)}):
        _busy()
    assert not target.exists()


def _windowed() -> int:
    return sum(i * i for i in range(20_000))


def test_with_a_window_only_what_runs_between_the_two_signals_is_profiled(
    tmp_path: Path,
) -> None:
    import os
    import signal

    path = tmp_path / "worker.pstats"
    environ = {cpuprofile.ENV: str(path), cpuprofile.WINDOW_ENV: "1"}
    previous = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGUSR2)
    try:
        with cpuprofile.profiled(environ):
            _busy()  # before the window
            os.kill(os.getpid(), signal.SIGUSR1)
            _windowed()
            os.kill(os.getpid(), signal.SIGUSR2)
        names = {name for (_, _, name) in pstats.Stats(str(path)).stats}  # type: ignore[attr-defined]
        assert "_windowed" in names
        assert "_busy" not in names
    finally:
        signal.signal(signal.SIGUSR1, previous[0])
        signal.signal(signal.SIGUSR2, previous[1])
