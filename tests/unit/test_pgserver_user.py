"""The OS user for embedded PostgreSQL is created once when several processes start at once.

On a fresh machine pytest's workers each start a cluster; each saw the user missing, ran
useradd, and all but the first failed ("user already exists") with every test erroring.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import pwd
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from auditor.pgserver import ensure_system_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creating an OS user needs root")


def _ensure(name: str, result: multiprocessing.Queue, inherited_lock: int = -1) -> None:  # type: ignore[type-arg]
    if inherited_lock >= 0:
        # A forked child shares the parent's flock through the inherited descriptor.
        os.close(inherited_lock)
    try:
        result.put(ensure_system_user(name).pw_uid)
    except Exception as exc:
        result.put(repr(exc))


def test_a_user_created_by_another_process_while_waiting_is_used_not_created_again() -> None:
    name = f"aud{uuid.uuid4().hex[:8]}"
    lock_path = Path(tempfile.gettempdir()) / f"auditor-useradd-{name}.lock"
    ctx = multiprocessing.get_context("fork")
    result = ctx.Queue()
    try:
        with open(lock_path, "a") as lock:
            # Another process is creating the user: the child finds it missing and waits.
            fcntl.flock(lock, fcntl.LOCK_EX)
            child = ctx.Process(target=_ensure, args=(name, result, lock.fileno()))
            child.start()
            subprocess.run(["useradd", "-s", "/bin/bash", name], check=True, capture_output=True)
        child.join(timeout=30)
        assert result.get(timeout=5) == pwd.getpwnam(name).pw_uid
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        lock_path.unlink(missing_ok=True)


def test_processes_starting_at_once_all_get_the_one_user() -> None:
    name = f"aud{uuid.uuid4().hex[:8]}"
    ctx = multiprocessing.get_context("fork")
    result = ctx.Queue()
    try:
        children = [ctx.Process(target=_ensure, args=(name, result)) for _ in range(6)]
        for child in children:
            child.start()
        for child in children:
            child.join(timeout=30)
        uids = {result.get(timeout=5) for _ in children}
        assert uids == {pwd.getpwnam(name).pw_uid}
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
