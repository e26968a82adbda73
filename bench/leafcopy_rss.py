"""Leak check of the C fast paths in auditor/evidence/_leafcopy.c: RSS over 1,000,000 calls
of every outcome.

    python bench/leafcopy_rss.py [--calls 1000000] [--what verify|export]

- ``verify``: hash_copy hashing, falling back, meeting a repeated id and raising on a broken
  stream (and batch_leaf_hash one call in five); the streams as tests/unit/test_leaf_copy.py
  builds them (binary COPY as PostgreSQL writes it).
- ``export``: export_copy writing and checking lines, leaving rows to Python, meeting a
  repeated id and a NULL account, and raising on a broken stream (tests/unit/
  test_export_copy.py's cases).

Prints RSS every tenth of the calls; flat (after the first tenth) means no reference or
buffer leaks on any outcome."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from auditor.store import leaf_copy
from tests.leaks import rss_kib


def _verify_call() -> Callable[[int], None]:
    from tests.unit.test_leaf_copy import GOOD, PLAN, outcome_streams

    hash_copy = leaf_copy.hash_copy
    assert hash_copy is not None
    streams = outcome_streams()

    def call(n: int) -> None:
        with contextlib.suppress(ValueError):
            hash_copy(PLAN.fields, streams[n % 4])
        if n % 4 == 0:  # a format-2 batch's leaf hash too (one in five calls)
            leaf_copy.batch_leaf_hash(GOOD[: 32 * 12])

    return call


def _export_call() -> Callable[[int], None]:
    from tests.unit.test_export_copy import CASES, _export

    def call(n: int) -> None:
        data, order, hashes = CASES[n % len(CASES)]
        with contextlib.suppress(ValueError):
            _export(data, order, None, hashes)

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--what", choices=("verify", "export"), default="verify")
    args = parser.parse_args()
    if leaf_copy.hash_copy is None:
        raise SystemExit("_leafcopy is not built (or AUDITOR_NATIVE=0)")
    call = _verify_call() if args.what == "verify" else _export_call()
    step = max(1, args.calls // 10)
    began = time.perf_counter()
    for n in range(args.calls):
        call(n)
        if n % step == 0:
            print(f"{n:>9,} calls: RSS {rss_kib():,} KiB", flush=True)
    print(f"{args.calls:,} calls: RSS {rss_kib():,} KiB ({time.perf_counter() - began:.1f} s)")


if __name__ == "__main__":
    main()
