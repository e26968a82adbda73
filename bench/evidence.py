"""Benchmark: verify, signed checkpoints, evidence export with proofs, offline pack verify.

    python bench/evidence.py [--notifications 120000] [--runs 3]
                             [--before /work/main] [--export-only]

On a fresh embedded PostgreSQL (durable) the batch writer stores the notifications (all for
one account, so that one `--account` pack holds them all), then, each measured --runs times:

- `auditor verify` over the whole record (recompute every leaf from the rows + the chain),
  in one process and with --jobs worker processes (the order alternating between runs);
- a signed checkpoint (the first one builds the tiles of the whole record);
- an evidence export of every event with its inclusion proof (streamed to files, as the CLI);
- the standalone offline verifier (auditor/evidence_verify.py) on that pack.

The record is written by the writer as shipped (record format 2: one record row per batch)
and, into a second database, as main's writer did (format 1: one record row per event);
verify, export and the offline pack verify run on both in the same runs, so format 2's
effect is a ratio of one run. Rates count stored rows (events), not record positions.

``--before DIR`` first exports the same pack with DIR's checkout (its own .venv) and with
this one, alternating, each in a child process (bench/export_child.py; the CPU is the
child's around the export, PostgreSQL's over the child's life), prints both, their ratio,
and whether the two packs are byte for byte the same (made_at fixed, so the manifest and
its signature too). ``--export-only`` skips everything else (verify, the pack verify, the
format-1 database): short runs for the export alone.

Targets (issue 16): verify >= 100,000 rows/s, export >= 30,000 rows/s including proofs,
offline verify of a 100,000-row pack <= 10 s. A benchmark that prints numbers; it asserts
nothing. The machine is shared: beside wall time it prints this process's CPU time (the
client side; PostgreSQL's work is in another process), which load on other cores does not
inflate as much.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import psycopg
from cpu import tree_cpu
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from store import fresh_database

from auditor import evidence_verify
from auditor.config import libpq_conninfo, parse_database_url
from auditor.evidence import checkpoints, keys, native, pack
from auditor.notifications import Record, parse
from auditor.pgserver import EmbeddedPostgres
from auditor.sample import generate
from auditor.store import integrity, leaf_copy, leaf_reader, sealer
from auditor.store import writer as batch_writer
from auditor.store.receipts import Receipt
from auditor.store.sources import Hasher, select_range
from auditor.store.writer import store_batch

ACCOUNT = "bench-agent"


def _receipts(count: int) -> list[Receipt]:
    lines = generate(interactions=max(1, count // 10), agents=50, extra_updates=7, seed=1)
    if len(lines) < count:
        raise SystemExit(f"generator made only {len(lines)} notifications")
    return [
        Receipt(
            line.receipt_id,
            line.received_at,
            ACCOUNT,
            line.channel,
            json.dumps(line.message, separators=(",", ":")),
        )
        for line in lines[:count]
    ]


def _careful_submit(self: leaf_reader.LocalLeaves, want: leaf_reader.Wanted) -> Any:
    """verify's leaves as before leaf_sql and the reading thread: every column read and
    encoded in Python, in this thread."""

    def result() -> leaf_reader.Leaves:
        found = leaf_reader.Leaves()
        for source, (lo, hi) in want.items():
            hasher = Hasher(source)
            with self.conn.cursor() as cur:
                cur.execute(select_range(source), (lo, hi))
                for source_id, leaf in hasher.leaves(cur.fetchall()):
                    found[(source, source_id)] = leaf
        return found

    return result


def _one_query_chunks(
    self: pack.PackStream,
    source: str,
    table: str,
    where: Any,
    params: list[Any],
    prefetch: Any = None,
) -> Iterator[Any]:
    """The export's rows as before auditor/evidence/pack_rows.py: one query that sorts
    whole rows (leaf pieces included) by position, read on this thread (no proof data read
    ahead: the caller reads it per chunk, as it does for any rows)."""
    with self.conn.cursor(name=f"pack_{source}", binary=True) as cur:
        cur.itersize = self.chunk_rows
        cur.execute(pack._select(source, table, where), params)
        while rows := cur.fetchmany(self.chunk_rows):
            yield rows


class Meter:
    """Wall time and the CPU of this process tree and of PostgreSQL's, per row."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster

    @contextmanager
    def measure(self, out: dict[str, float]) -> Iterator[None]:
        time.sleep(0.3)  # the postmaster reaps backends that ended before: their CPU is counted
        t0, c0, p0 = time.perf_counter(), tree_cpu(os.getpid()), tree_cpu(self.postmaster)
        yield
        out["wall"] = time.perf_counter() - t0
        out["client"] = tree_cpu(os.getpid()) - c0
        time.sleep(0.3)  # ...and those that ended in the block, so it is counted here
        out["pg"] = tree_cpu(self.postmaster) - p0


def _rate(rows: int, m: dict[str, float]) -> str:
    """rows/s wall, and CPU per row (client + PostgreSQL) in microseconds."""
    return (
        f"{rows / m['wall']:,.0f} (CPU {m['client'] / rows * 1e6:.1f} + {m['pg'] / rows * 1e6:.1f}"
        " us/row)"
    )


def _formatted(row: dict[str, Any]) -> tuple[Any, ...]:
    """An event row as auditor.store.sources reads it back: PostgreSQL's strings."""
    out = dict(row)
    out["receipt_id"] = str(row["receipt_id"])
    out["received_at"] = row["received_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return tuple(out[f] for f in batch_writer._EVENT_LEAF.fields)


def leaf_micro(events: int, rounds: int) -> None:
    """The event leaf per event, the C encoder against the Python path, alternating in this
    process (no database): the writer's `_leaf` (COPY row + leaf + SHA-256), the COPY row
    alone (the writer builds it either way), and a row as verify's careful path and the
    sealer read it back (strings from PostgreSQL, the payload as JSON text)."""
    lines = generate(interactions=max(1, events // 9), agents=50, extra_updates=7, seed=1)
    items = []
    formatted = []
    for event_id, line in enumerate(lines[:events], start=1):
        text = json.dumps(line.message, separators=(",", ":"))
        receipt = Receipt(line.receipt_id, line.received_at, line.account, line.channel, text)
        record = parse(text, channel=line.channel)
        assert isinstance(record, Record)
        items.append((event_id, receipt, record))
        row: dict[str, Any] = dict.fromkeys(batch_writer._EVENT_LEAF.fields)
        row.update(
            zip(batch_writer._COPY_COLUMNS, batch_writer._copy_row(receipt, record), strict=True)
        )
        row["id"] = event_id
        formatted.append(_formatted(row))
    count = len(items)
    size = sum(len(record.payload_text) for _, _, record in items) / count
    hasher = Hasher("event")
    leaf = batch_writer._leaf
    copy_row = batch_writer._copy_row

    def writer_leaf() -> list[bytes]:
        return [leaf(i, receipt, record)[1] for i, receipt, record in items]

    def careful_leaf() -> list[bytes]:
        return [hasher.leaf(row) for row in formatted]

    def copy_rows() -> list[Any]:
        return [copy_row(receipt, record) for _, receipt, record in items]

    best: dict[str, float] = {}
    results: dict[str, list[Any]] = {}
    native_on = batch_writer._EVENT_NATIVE is not None
    variants = ["C", "Python"] if native_on else ["Python"]
    for round_ in range(rounds):
        for variant in variants if round_ % 2 == 0 else variants[::-1]:
            with ExitStack() as stack:
                if variant == "Python" and native_on:
                    stack.enter_context(patch.object(batch_writer, "_EVENT_NATIVE", None))
                    stack.enter_context(patch.object(batch_writer._EVENT_LEAF, "_native", None))
                    stack.enter_context(patch.object(hasher.encoder, "_native", None))
                for part, run in (
                    ("writer", writer_leaf),
                    ("careful", careful_leaf),
                    ("copy row", copy_rows),
                ):
                    began = time.process_time()
                    got = run()
                    took = (time.process_time() - began) / count * 1e6
                    key = f"{part} {variant}"
                    best[key] = min(best.get(key, took), took)
                    if part != "copy row":
                        results.setdefault(part, []).append(got)
    for part, runs in results.items():  # every variant and round gave the same hashes
        assert all(got == runs[0] for got in runs), part
    print(
        f"LEAF: {count:,} sample events (~{size:.0f}-byte payloads), CPU per event, best of"
        f" {rounds}, load average {os.getloadavg()[0]:.1f}; C encoder"
        f" {'on' if native_on else 'off (' + str(native.UNAVAILABLE) + ')'}"
    )
    copy = min(v for k, v in best.items() if k.startswith("copy row"))
    for variant in variants:
        writer_us = best[f"writer {variant}"]
        print(
            f"  {variant:>6}: writer's _leaf {writer_us:5.2f} us (its leaf + hash"
            f" {writer_us - copy:5.2f} us beside the COPY row's {copy:.2f});"
            f" verify's careful leaf {best[f'careful {variant}']:5.2f} us"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notifications", type=int, default=120_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="verify's worker processes")
    parser.add_argument(
        "--leaf",
        action="store_true",
        help="only the leaf microbenchmark (C encoder against Python), no database",
    )
    parser.add_argument("--leaf-events", type=int, default=20_000)
    parser.add_argument(
        "--verify-only",
        action="store_true",
        help="only the verify variants (no checkpoint, export or pack verify): more runs in"
        " the same time; prints the fast-path table and the verify lines",
    )
    parser.add_argument(
        "--before",
        help="another checkout with its own .venv (e.g. /work/main): its export against this"
        " one's, alternating in the same runs",
    )
    parser.add_argument(
        "--export-only", action="store_true", help="only the export (with --before: both)"
    )
    parser.add_argument("--profile", help="cProfile of this tree's export (last run) to PATH")
    args = parser.parse_args()
    if not args.export_only:
        leaf_micro(args.leaf_events, max(3, args.runs))
    if args.leaf:
        return

    receipts = _receipts(args.notifications)
    data_dir = Path(tempfile.mkdtemp(prefix="auditor-bench-evidence-"))
    out_dir = Path(tempfile.mkdtemp(prefix="auditor-bench-packs-"))
    server = EmbeddedPostgres(data_dir, durable=True).start()
    signer = keys.Signer(Ed25519PrivateKey.generate())
    public = keys.load_public(keys.public_pem(signer.public).encode())
    try:
        dsn = libpq_conninfo(parse_database_url(fresh_database(server, "bench_evidence")))
        dsn_1 = libpq_conninfo(parse_database_url(fresh_database(server, "bench_evidence_f1")))
        formats = ((2, dsn),) if args.export_only else ((2, dsn), (1, dsn_1))
        for record_format, target_dsn in formats:
            began = time.perf_counter()
            with (
                patch.object(batch_writer, "RECORD_FORMAT", record_format),
                psycopg.connect(target_dsn) as conn,
            ):
                for start in range(0, len(receipts), 2000):
                    with conn.transaction():
                        store_batch(conn, receipts[start : start + 2000])
                with conn.transaction():
                    sealer.seal(conn)
            print(
                f"stored and sealed {len(receipts):,} notifications in record format"
                f" {record_format} in {time.perf_counter() - began:.1f} s (one account: {ACCOUNT})"
            )
        first = min(r.received_at for r in receipts)
        last = max(r.received_at for r in receipts)
        query = pack.Query(account=ACCOUNT, start=first, end=last + timedelta(seconds=1))
        postmaster = server.postmaster_pid()
        assert postmaster is not None
        meter = Meter(postmaster)
        if args.before or args.export_only:
            key = signer.private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            spec = {
                "dsn": dsn,
                "key": key,
                "account": ACCOUNT,
                "start": query.start.isoformat() if query.start else None,
                "end": query.end.isoformat() if query.end else None,
                "made_at": "2026-12-01T00:00:00+00:00",
                "profile": args.profile,
            }
            compare_exports(meter, spec, args.before, args.runs, out_dir, receipts, signer)
            if args.export_only:
                return
        print(
            "rows/s wall (CPU per row: this process and its children + PostgreSQL's"
            f" processes); load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"| run | verify, 1 process (+ reading thread) | verify, {args.jobs} jobs"
            " | verify as before (1 process, careful leaves, no reading thread) | checkpoint s"
            " | export (with proofs) | export as before (one sorted query) | pack verify s"
            " | format 1: verify, 1 process | format 1: export | format 1: pack verify s |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        variants: list[tuple[str, int]] = [
            ("1", 1),
            ("jobs", args.jobs),
            ("careful", 1),
            ("format 1", 1),
            ("leaf_sql", 1),  # the fast path off (as AUDITOR_NATIVE=0), same runs
            ("leaf_sql jobs", args.jobs),
        ]
        summary: dict[str, list[float]] = {
            "verify": [],
            "export": [],
            "pack": [],
            "verify1": [],
            "export1": [],
            "pack1": [],
            "verify_sql": [],
        }
        fast_rows: list[str] = []
        for run in range(1, args.runs + 1):
            rates: dict[str, dict[str, float]] = {}
            checked: dict[str, int] = {}
            for name, jobs in variants if run % 2 else variants[::-1]:
                target_dsn = dsn_1 if name == "format 1" else dsn
                rates[name] = {}
                careful = patch.object(leaf_reader.LocalLeaves, "submit", _careful_submit)
                slow = patch.object(leaf_copy, "hash_copy", None)
                with (
                    psycopg.connect(target_dsn) as conn,
                    careful if name == "careful" else nullcontext(),
                    slow if name.startswith("leaf_sql") else nullcontext(),
                    meter.measure(rates[name]),
                ):
                    report = integrity.verify(
                        conn,
                        with_unsealed=False,
                        workers=jobs,
                        conninfo=None if name == "careful" else target_dsn,
                    )
                    conn.rollback()
                assert report.problem is None, report.problem
                checked[name] = report.rows
            verified = checked["1"]
            if not args.verify_only:
                exports: dict[str, dict[str, float]] = {}
                manifests: dict[str, dict[str, Any]] = {}
                pack_s: dict[str, tuple[float, float]] = {}
                for db_name, target_dsn in (
                    (("2", dsn), ("1", dsn_1))
                    if run % 2
                    else (
                        ("1", dsn_1),
                        ("2", dsn),
                    )
                ):
                    with psycopg.connect(target_dsn) as conn:
                        _, checkpoint_s = _new_checkpoint(conn, receipts, signer)
                        names = ("now", "before") if db_name == "2" else ("format 1",)
                        for name in names if run % 2 else names[::-1]:
                            exports[name] = exported = {}
                            before = patch.object(pack.PackStream, "_chunks", _one_query_chunks)
                            with (
                                before if name == "before" else nullcontext(),
                                meter.measure(exported),
                            ):
                                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                                target = out_dir / f"run{run}-{name.replace(' ', '')}"
                                shutil.rmtree(target, ignore_errors=True)
                                plan = pack.prepare(conn, query, signer, made_by="bench")
                                stream = pack.PackStream(conn, plan)  # as the CLI
                                pack.write_directory(stream, target)
                                conn.rollback()
                            manifests[name] = stream.manifest
                            if name != "before":
                                t0, c0 = time.perf_counter(), time.process_time()
                                evidence_verify.verify(target, public)
                                pack_s[name] = (time.perf_counter() - t0, time.process_time() - c0)
                            shutil.rmtree(target)
                    if db_name == "2":
                        checkpoint_2 = checkpoint_s
                rows = manifests["now"]["counts"]["events"]
                rows_1 = manifests["format 1"]["counts"]["events"]
                print(
                    f"| {run} | {_rate(verified, rates['1'])} | {_rate(verified, rates['jobs'])}"
                    f" | {_rate(verified, rates['careful'])} | {checkpoint_2:.2f}"
                    f" | {_rate(rows, exports['now'])} | {_rate(rows, exports['before'])}"
                    f" | {pack_s['now'][0]:.2f} (CPU {pack_s['now'][1]:.2f}; {rows:,} rows)"
                    f" | {_rate(checked['format 1'], rates['format 1'])}"
                    f" | {_rate(rows_1, exports['format 1'])}"
                    f" | {pack_s['format 1'][0]:.2f} (CPU {pack_s['format 1'][1]:.2f}) |"
                )
            fast_rows.append(
                f"| {run} | {_rate(verified, rates['1'])} | {_rate(verified, rates['leaf_sql'])}"
                f" | {rates['leaf_sql']['wall'] / rates['1']['wall']:.2f}"
                f" | {_rate(verified, rates['jobs'])} | {_rate(verified, rates['leaf_sql jobs'])}"
                f" | {rates['leaf_sql jobs']['wall'] / rates['jobs']['wall']:.2f}"
                f" | {os.getloadavg()[0]:.1f} |"
            )
            summary["verify"].append(verified / rates["1"]["wall"])
            summary["verify_sql"].append(verified / rates["leaf_sql"]["wall"])
            summary["verify1"].append(checked["format 1"] / rates["format 1"]["wall"])
            if not args.verify_only:
                summary["export"].append(rows / exports["now"]["wall"])
                summary["pack"].append(pack_s["now"][0])
                summary["export1"].append(rows_1 / exports["format 1"]["wall"])
                summary["pack1"].append(pack_s["format 1"][0])
        print(f"load average {os.getloadavg()[0]:.1f}")
        for label, key, target_text, fmt in (
            ("VERIFY rows/s (1 process)", "verify", ">= 100,000", "{:,.0f}"),
            ("EXPORT rows/s (with proofs)", "export", ">= 30,000", "{:,.0f}"),
            ("PACK VERIFY s (offline)", "pack", "<= 10", "{:.2f}"),
            ("format 1 (same runs): VERIFY rows/s", "verify1", ">= 100,000", "{:,.0f}"),
            ("fast path off (same runs): VERIFY rows/s", "verify_sql", ">= 100,000", "{:,.0f}"),
            ("format 1 (same runs): EXPORT rows/s", "export1", ">= 30,000", "{:,.0f}"),
            ("format 1 (same runs): PACK VERIFY s", "pack1", "<= 10", "{:.2f}"),
        ):
            if not summary[key]:  # --verify-only
                continue
            values = ", ".join(fmt.format(v) for v in summary[key])
            best = max(summary[key]) if "pack" not in key else min(summary[key])
            print(f"{label} (target {target_text}): {values}; best {fmt.format(best)}")
        print(
            f"verify's fast path (C: {'on' if leaf_copy.hash_copy else 'off'}) against the"
            " leaf_sql path in the same runs (ratio: leaf_sql wall / fast wall)"
        )
        print(
            f"| run | fast, 1 process | leaf_sql, 1 process | ratio | fast, {args.jobs} jobs"
            f" | leaf_sql, {args.jobs} jobs | ratio | load |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for line in fast_rows:
            print(line)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)


def _child_export(
    meter: Meter, spec: dict[str, Any], checkout: str | None, out: Path
) -> dict[str, Any]:
    """An export by bench/export_child.py with ``checkout``'s .venv (None: this tree's)."""
    root = Path(checkout) if checkout else Path(__file__).resolve().parent.parent
    python = root / ".venv" / "bin" / "python"
    child = Path(__file__).resolve().parent / "export_child.py"
    spec = dict(spec, out=str(out))
    if checkout:
        spec["profile"] = None
    measured: dict[str, float] = {}
    with meter.measure(measured):
        done = subprocess.run(
            [str(python), str(child), json.dumps(spec)],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONFAULTHANDLER="1"),
        )
    got: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    got["pg"] = measured["pg"]
    return got


def compare_exports(
    meter: Meter,
    spec: dict[str, Any],
    before: str | None,
    runs: int,
    out_dir: Path,
    receipts: list[Receipt],
    signer: keys.Signer,
) -> None:
    """The export of ``before``'s checkout and of this tree, alternating, each run on a new
    checkpoint (the same for both)."""
    names = ["now", "before"] if before else ["now"]
    print(
        "EXPORT: rows/s wall (CPU per row: the exporting process + PostgreSQL's processes)"
        + (f"; before = {before}" if before else "")
    )
    header = "| run | load | now |" + (" before | now / before (rows/s) | CPU now / before |")
    print(header if before else "| run | load | now |")
    print("|---|---|---|---|---|---|" if before else "|---|---|---|")
    rates: dict[str, list[float]] = {name: [] for name in names}
    ratios: list[float] = []
    for run in range(1, runs + 1):
        with psycopg.connect(spec["dsn"]) as conn:
            _new_checkpoint(conn, receipts, signer)
        got: dict[str, dict[str, Any]] = {}
        for name in names if run % 2 else names[::-1]:
            target = out_dir / f"export-{run}-{name}"
            shutil.rmtree(target, ignore_errors=True)
            got[name] = _child_export(meter, spec, before if name == "before" else None, target)
            shutil.rmtree(target)
            rates[name].append(got[name]["rows"] / got[name]["wall"])

        def cell(m: dict[str, Any]) -> str:
            return _rate(m["rows"], m)

        load = os.getloadavg()[0]
        if not before:
            print(f"| {run} | {load:.1f} | {cell(got['now'])} |")
            continue
        now, old = got["now"], got["before"]
        ratio = rates["now"][-1] / rates["before"][-1]
        ratios.append(ratio)
        cpu = (now["client"] + now["pg"]) / (old["client"] + old["pg"])
        same = "identical" if now["files"] == old["files"] else "DIFFERENT"
        print(
            f"| {run} | {load:.1f} | {cell(now)} | {cell(old)} | {ratio:.2f}"
            f" | {cpu:.2f} (client {now['client'] / old['client']:.2f},"
            f" PostgreSQL {now['pg'] / old['pg']:.2f}); packs {same} |"
        )
        if now["files"] != old["files"]:
            for name in sorted(set(now["files"]) | set(old["files"])):
                if now["files"].get(name) != old["files"].get(name):
                    print(f"  differs: {name}", file=sys.stderr)
    for name in names:
        values = ", ".join(f"{v:,.0f}" for v in rates[name])
        print(f"EXPORT {name} rows/s (target >= 30,000): {values}; best {max(rates[name]):,.0f}")
    if ratios:
        print(f"EXPORT now / before, same runs: {', '.join(f'{r:.2f}' for r in ratios)}")


def _new_checkpoint(
    conn: psycopg.Connection[Any], receipts: list[Receipt], signer: keys.Signer
) -> tuple[Any, float]:
    """A few new rows, so that each run signs a new checkpoint; the checkpoint and its time."""
    with conn.transaction():
        store_batch(
            conn,
            [
                Receipt(uuid.uuid4(), r.received_at, "bench-other", r.channel, r.raw)
                for r in receipts[:10]
            ],
        )
    t0 = time.perf_counter()
    with conn.transaction():
        made = checkpoints.make(conn, signer)
    assert made is not None
    return made, time.perf_counter() - t0


if __name__ == "__main__":
    main()
