"""Leak check of the export's C writer (auditor/evidence/_leafcopy.c ``export_copy``): RSS
over 1,000,000 calls that write and check lines, leave rows to Python, meet a repeated id
and a NULL account, and raise on a broken stream (tests/unit/test_export_copy.py's cases).

    python bench/exportcopy_rss.py [--calls 1000000]

Prints RSS every tenth of the calls; flat (after the first tenth) means no reference or
buffer leaks on any outcome."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from auditor.store import leaf_copy
from tests.unit.test_export_copy import CASES, _export


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
    if leaf_copy.export_copy is None:
        raise SystemExit("_leafcopy is not built (or AUDITOR_NATIVE=0)")
    step = args.calls // 10
    began = time.perf_counter()
    for call in range(args.calls):
        data, order, hashes = CASES[call % len(CASES)]
        with contextlib.suppress(ValueError):
            _export(data, order, None, hashes)
        if call % step == 0:
            print(f"{call:>9,} calls: RSS {_rss_kib():,} KiB", flush=True)
    print(f"{args.calls:,} calls: RSS {_rss_kib():,} KiB ({time.perf_counter() - began:.1f} s)")


if __name__ == "__main__":
    main()
