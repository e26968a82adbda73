"""Run the `auditor` command in a process of its own, without paying for Python's start-up and
auditor's imports at every call.

A test suite that runs the command a few hundred times spent most of that time (about 0.6 s of
CPU a call) starting an interpreter and importing auditor.cli, SQLAlchemy and psycopg. Here one
helper process per test process (a "zygote") imports what the `auditor` script imports, once;
each call forks it, and the child runs the command exactly as the script does (`sys.exit(main())`)
with the test's arguments, environment, working directory and its own stdin/stdout/stderr.
Exit codes, output, environment and the process boundary are a real process's; what is shared
is only the interpreter start and the imports of auditor.cli. Tests about start-up itself (which
modules a command imports, the installed script) keep `subprocess` and the real script, and
tests/unit/test_cli_runner.py checks that both ways give the same answers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

AUDITOR = str(Path(sys.executable).with_name("auditor"))

# The zygote: reads one request at a time (arguments as JSON, stdin/stdout/stderr as file
# descriptors), forks a child for it, answers with the child's pid, then with its exit status.
_ZYGOTE = r"""
import atexit, json, os, socket, sys, traceback
import auditor.cli  # what the `auditor` script imports, paid for once

channel = socket.socket(fileno=int(sys.argv[1]))
while True:
    try:
        message, fds, _, _ = socket.recv_fds(channel, 1 << 20, 3)
    except OSError:
        break
    if not message:
        break  # the test process is gone
    request = json.loads(message)
    pid = os.fork()
    if pid == 0:
        channel.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = [request["argv0"], *request["args"]]
        code = 0
        try:
            sys.exit(auditor.cli.main())  # the `auditor` script
        except SystemExit as exit:  # what the interpreter does with it
            if exit.code is None:
                code = 0
            elif isinstance(exit.code, int):
                code = exit.code
            else:
                print(exit.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    channel.send(str(pid).encode())
    _, status = os.waitpid(pid, 0)
    channel.send(str(os.waitstatus_to_exitcode(status)).encode())
"""


class _Zygote:
    def __init__(self) -> None:
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(
        self, args: Sequence[str], env: Mapping[str, str], cwd: str, stdin: int, timeout: float
    ) -> tuple[int, bytes, bytes]:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            request = {
                "args": [str(a) for a in args],
                "env": dict(env),
                "cwd": cwd,
                "argv0": AUDITOR,
            }
            socket.send_fds(
                self.channel, [json.dumps(request).encode()], [stdin, out.fileno(), err.fileno()]
            )
            self.channel.settimeout(30)
            pid = int(self.channel.recv(64))
            self.channel.settimeout(timeout)
            try:
                code = int(self.channel.recv(64))
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                self.channel.settimeout(30)
                self.channel.recv(64)
                raise subprocess.TimeoutExpired([AUDITOR, *args], timeout) from None
            finally:
                self.channel.settimeout(None)
            out.seek(0)
            err.seek(0)
            return code, out.read(), err.read()


_zygote: _Zygote | None = None
_lock = threading.Lock()


def _text(data: bytes) -> str:
    # What subprocess's text mode gives: universal newlines.
    return data.decode().replace("\r\n", "\n").replace("\r", "\n")


def run_auditor(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run([AUDITOR, *args], capture_output=True, text=True, check=False, ...)`,
    in a process forked from the zygote. stdin is ``input``, else empty (never the tests')."""
    global _zygote
    with _lock:
        if _zygote is None or not _zygote.alive():
            _zygote = _Zygote()
        with tempfile.TemporaryFile() as stdin:
            if input is not None:
                stdin.write(input.encode())
                stdin.seek(0)
            code, out, err = _zygote.run(
                args,
                os.environ if env is None else env,
                str(cwd or Path.cwd()),
                stdin.fileno(),
                timeout,
            )
    return subprocess.CompletedProcess([AUDITOR, *args], code, _text(out), _text(err))
