"""Leak check of verify's C fast path (auditor/evidence/_leafcopy.c): RSS over 1,000,000
calls of hash_copy that hash, fall back, meet a repeated id and raise on a broken stream
(and of batch_leaf_hash).

    python bench/leafcopy_rss.py [--calls 1000000]

Prints RSS every tenth of the calls; flat (after the first tenth) means no reference or
buffer leaks on any of the four outcomes. Streams are built as tests/unit/test_leaf_copy.py
builds them (binary COPY as PostgreSQL writes it)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from auditor.store import leaf_copy
from tests.unit.test_leaf_copy import GOOD, PLAN, _event, _row, _stream


def _rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1_000_000)
    args = parser.parse_args()
    hash_copy = leaf_copy.hash_copy
    if hash_copy is None:
        raise SystemExit("_leafcopy is not built (or AUDITOR_NATIVE=0)")
    streams = [
        GOOD,
        _stream([_row(_event(1), '{"a": 1.5}')]),
        _stream([_row(_event(1), "{}"), _row(_event(1), "{}")]),
        GOOD[:-1],
    ]
    step = args.calls // 10
    began = time.perf_counter()
    for call in range(args.calls):
        with contextlib.suppress(ValueError):
            hash_copy(PLAN.fields, streams[call % 4])
        if call % 4 == 0:  # a format-2 batch's leaf hash too (one in five calls)
            leaf_copy.batch_leaf_hash(GOOD[: 32 * 12])
        if call % step == 0:
            print(f"{call:>9,} calls: RSS {_rss_kib():,} KiB", flush=True)
    print(f"{args.calls:,} calls: RSS {_rss_kib():,} KiB ({time.perf_counter() - began:.1f} s)")


if __name__ == "__main__":
    main()
