"""CPU seconds of a process tree, from /proc (Linux): the process, its live descendants, and
the children they reaped. A benchmark on a shared machine prints these beside wall time:
other people's load stretches wall time, not the CPU a piece of work takes."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile
        return None
    return text.rsplit(")", 1)[1].split()


def tree_cpu(root: int) -> float:
    """utime + stime of ``root`` and every descendant, plus what each reaped (cutime,
    cstime): every process's CPU counted once, the exited ones' through their parent."""
    parents: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = fields
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    total = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        fields = stats.get(pid)
        if fields is None:
            continue
        total += sum(int(value) for value in fields[11:15])
        todo.extend(parents.get(pid, ()))
    return total / _TICK
