"""CPU seconds of a process tree, from /proc (Linux): the process, its live descendants, and
the children they reaped. A benchmark on a shared machine prints these beside wall time:
other people's load stretches wall time, not the CPU a piece of work takes.

Run as a script, the writer's per-event CPU in Python, over bench/store.py's sample:

    python bench/cpu.py [--notifications 40000] [--rounds 3] [--against /work/main]

prints the CPU per notification of ``auditor.notifications.parse``, of the projection's
fold and of the user-data comparison (pure Python, best of the rounds), and of
``store_batch`` (client process + its PostgreSQL backend, each round on a fresh database),
with the hash chain's leaf and record rows patched out (bench/store.py ``chain_off``, the
part another engineer's native leaf replaces) and as shipped. ``--against DIR`` runs the
same measurements with DIR's checkout (its own .venv, so its own ``auditor``) in
alternation with this one, each in a child process, and prints both side by side.
Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


# --- the writer's CPU per event --------------------------------------------------------------
def _measure(notifications: int, rounds: int, batch: int) -> dict[str, Any]:
    """In this process, with whichever ``auditor`` this interpreter imports."""
    import shutil
    import tempfile

    import orjson
    import psycopg

    import auditor
    from auditor.notifications import parse
    from auditor.pgserver import EmbeddedPostgres
    from auditor.store import projection, userdata_values
    from auditor.store.writer import store_batch

    sys.path.insert(0, str(Path(__file__).parent))
    from store import chain_off, chunks, cpu_seconds, fresh_database, make_receipts

    receipts = make_receipts(notifications, max(notifications // 10, 1))
    raws = [(r.raw, r.channel) for r in receipts]
    gc.freeze()  # (as bench/store.py: the inputs stay alive and out of the collector's walk)
    out: dict[str, Any] = {"auditor": str(Path(auditor.__file__).parent.parent)}

    def per_event(work: Any) -> float:
        start = time.process_time()
        work()
        return (time.process_time() - start) / len(raws) * 1e6

    def parse_all() -> None:
        for raw, channel in raws:
            parse(raw, channel=channel)

    def loads_all() -> None:
        for raw, _ in raws:
            orjson.loads(raw)

    out["parse_us"] = min(per_event(parse_all) for _ in range(rounds))
    out["orjson_loads_us"] = min(per_event(loads_all) for _ in range(rounds))

    # The projection's fold (add per event, rows per batch) and the user-data comparison
    # (Changes.add per event), over the parsed sample in the writer's batches: no database.
    events = [(i, r, parse(r.raw, channel=r.channel)) for i, r in enumerate(receipts, 1)]
    batches = list(chunks(events, batch))

    def fold_all() -> None:
        for part in batches:
            fold = projection.Fold()
            for event in part:
                fold.add(*event)
            fold.rows()

    def changes_all() -> None:
        known = userdata_values.LastMaps()
        for part in batches:
            changes = userdata_values.Changes(known=known)
            for event_id, _, record in part:
                changes.add(event_id, record)

    out["fold_us"] = min(per_event(fold_all) for _ in range(rounds))
    out["changes_us"] = min(per_event(changes_all) for _ in range(rounds))

    data_dir = Path(tempfile.mkdtemp(prefix="auditor-bench-cpu-"))
    server = EmbeddedPostgres(data_dir, durable=True).start()
    try:
        for label, patched in (("store_no_leaf", True), ("store_shipped", False)):
            client: list[float] = []
            backend: list[float] = []
            for round_ in range(rounds):
                dsn = fresh_database(server, f"cpu_{label}_{round_}")
                with psycopg.connect(dsn) as conn:
                    pid = conn.info.backend_pid
                    c0, b0 = time.process_time(), cpu_seconds(pid)
                    with chain_off() if patched else contextlib.nullcontext():
                        for part in chunks(receipts, batch):
                            with conn.transaction():
                                store_batch(conn, part)
                    client.append((time.process_time() - c0) / len(receipts) * 1e6)
                    backend.append((cpu_seconds(pid) - b0) / len(receipts) * 1e6)
            out[label] = {"client_us": client, "backend_us": backend}
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return out


def _child(python: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [python, __file__, "--json", "--notifications", str(args.notifications)]
    command += ["--rounds", str(args.rounds), "--batch", str(args.batch)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _row(label: str, result: dict[str, Any]) -> str:
    cells = [
        f"{result[key]:.2f}" for key in ("parse_us", "orjson_loads_us", "fold_us", "changes_us")
    ]
    for key in ("store_no_leaf", "store_shipped"):
        client, backend = result[key]["client_us"], result[key]["backend_us"]
        cells.append(
            f"{min(client):.1f} ({', '.join(f'{c:.1f}' for c in client)}) + {min(backend):.1f}"
        )
    return f"| {label} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notifications", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--against", help="another checkout with its own .venv, e.g. /work/main")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        print(json.dumps(_measure(args.notifications, args.rounds, args.batch)))
        return
    runs: list[tuple[str, str]] = [("this checkout", sys.executable)]
    if args.against:
        runs.append((args.against, str(Path(args.against) / ".venv" / "bin" / "python")))
    print(
        f"{args.notifications:,} notifications of the sample, batches of {args.batch:,}, "
        f"{args.rounds} rounds each; us of CPU per notification (best, then each round)"
    )
    print(
        "| checkout | parse | of it orjson.loads | projection fold | user-data Changes.add |"
        " store_batch without the leaf: client (rounds) + backend |"
        " store_batch as shipped: client (rounds) + backend |"
    )
    print("|---|---|---|---|---|---|---|")
    # Alternating, twice: the second pass runs the checkouts in the other order.
    for order in (runs, runs[::-1]):
        for label, python in order:
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(_row(f"{label} (load {load})", _child(python, args)), flush=True)


if __name__ == "__main__":
    main()
