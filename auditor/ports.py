"""A free TCP port on 127.0.0.1 for a server that is started now and binds it a moment later.

The usual probe, bind(("127.0.0.1", 0)) then close, takes a port from the kernel's ephemeral
range, the range every outgoing connection's local port is drawn from too. Between the probe
and the server's own bind (a process start, seconds on a loaded machine), any connection made
on this host meanwhile (a database client, an HTTP request) may take that port, and the
server then dies with "address in use": the demo's worker failed that way in a busy test run.
A port below the ephemeral range is never handed to a connection; only a server binding that
very port could take it, so the window is closed but for a collision between two pickers.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_DEFAULT_RANGE = (32768, 60999)  # Linux's default
_LOWEST = 10000  # above the well-known and most registered ports
_TRIES = 50


def ephemeral_range(path: Path = _RANGE_FILE) -> tuple[int, int]:
    """The kernel's range for ephemeral ports (Linux; the default elsewhere)."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_RANGE
    return low, high


def _bindable(port: int) -> bool:
    # No SO_REUSEADDR: a port with a connection in TIME_WAIT is skipped too.
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(ephemeral: tuple[int, int] | None = None) -> int:
    """A port nothing is bound to, outside the ephemeral range where there is room for one."""
    low, high = ephemeral or ephemeral_range()
    outside = [r for r in ((_LOWEST, low - 1), (high + 1, 65535)) if r[1] - r[0] >= 1000]
    for _ in range(_TRIES if outside else 0):
        first, last = outside[secrets.randbelow(len(outside))]
        port = first + secrets.randbelow(last - first + 1)
        if _bindable(port):
            return port
    with socket.socket() as sock:  # no room outside: the kernel's choice, with its race
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` different free ports, for servers started together."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports
