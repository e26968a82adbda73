"""One evidence export, as `auditor evidence export` makes it, with whichever ``auditor`` this
interpreter imports (bench/evidence.py --before runs it with another checkout's .venv).

    python bench/export_child.py '{"dsn": ..., "key": PEM, "account": ..., "start": ...,
                                   "end": ..., "made_at": ..., "out": DIR, "profile": PATH?}'

Prints one JSON line: rows, wall and CPU seconds of this process around the export (its
threads included; not the interpreter's start), and the SHA-256 of every file of the pack.
With a fixed ``made_at`` the whole pack, manifest and signature included, depends only on
the data and the code: two checkouts' packs over one database can be compared byte for byte.
Standard library, psycopg and cryptography only, so that an older checkout runs it too.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any


def main(spec: dict[str, Any]) -> dict[str, Any]:
    import psycopg
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from auditor.evidence import keys, pack

    key = load_pem_private_key(spec["key"].encode(), password=None)
    signer = keys.Signer(key)  # type: ignore[arg-type]
    query = pack.Query(
        account=spec["account"],
        start=datetime.fromisoformat(spec["start"]),
        end=datetime.fromisoformat(spec["end"]),
    )
    out = Path(spec["out"])
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    with psycopg.connect(spec["dsn"]) as conn:
        t0, c0 = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        plan = pack.prepare(
            conn, query, signer, made_by="bench", now=datetime.fromisoformat(spec["made_at"])
        )
        # as that checkout's CLI does: the CSV on a twin connection where it has one
        if "csv_conn" in inspect.signature(pack.PackStream).parameters:
            from auditor.evidence import pack_csv

            with pack_csv.twin(conn, spec["dsn"]) as other:
                stream = pack.PackStream(conn, plan, csv_conn=other)
                pack.write_directory(stream, out)
        else:
            stream = pack.PackStream(conn, plan)
            pack.write_directory(stream, out)
        conn.rollback()
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if profiler is not None:
        profiler.dump_stats(spec["profile"])
    files = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(out.iterdir())
    }
    return {
        "rows": stream.manifest["counts"]["events"],
        "wall": wall,
        "client": cpu,
        "files": files,
        "auditor": str(Path(pack.__file__).parent.parent.parent),
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
