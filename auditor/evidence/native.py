"""The C leaf encoder (auditor/evidence/_leafc.c), when it is built and not switched off.

``AUDITOR_NATIVE=0`` in the environment (read once, at import) turns it off: benchmarks
compare the two paths, and tests run the pure-Python one. Without the extension (no C
compiler when the package was installed) ``leafc`` is None and every leaf takes the Python
path, which writes the same bytes (docs/evidence.md)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from auditor.evidence._leafc import Plan

SWITCHED_OFF = os.environ.get("AUDITOR_NATIVE", "").strip() == "0"
# Why the extension is not used when it is not (None when it is).
UNAVAILABLE: str | None = "switched off (AUDITOR_NATIVE=0)" if SWITCHED_OFF else None


class Leafc(NamedTuple):
    """The extension's entry points (typed by auditor/evidence/_leafc.pyi)."""

    dumps: Callable[[object], bytes | None]
    Plan: type[Plan]
    # export (evidence packs: auditor/evidence/pack.py, pack_csv.py)
    canonical_json: Callable[[bytes], bytes | None]
    leaf_lines: Callable[[list[Any], int, bytes], list[bytes | None]]
    csv_rows: Callable[[list[Any], int, int, tuple[bytes, ...], tuple[str, ...]], bytes | None]


def _load() -> Leafc | None:
    global UNAVAILABLE
    if SWITCHED_OFF:
        return None
    try:
        from auditor.evidence import _leafc
    except ImportError as exc:
        UNAVAILABLE = f"not built ({exc})"
        return None
    return Leafc(
        _leafc.dumps, _leafc.Plan, _leafc.canonical_json, _leafc.leaf_lines, _leafc.csv_rows
    )


leafc = _load()
