"""The tile store in PostgreSQL: level 0 from `record.leaf_hash`, levels 4, 8... from
`record_tree` (migration 2026_12_01_checkpoints). Groups are read with one query per call,
consecutive groups as one range, so a batch of proofs costs a query per stored level."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from auditor.evidence.tiles import GROUP

_LEAVES = """
SELECT r.position - 1, r.leaf_hash FROM record AS r
JOIN unnest(%s::bigint[], %s::bigint[]) AS g(lo, hi) ON r.position BETWEEN g.lo + 1 AND g.hi + 1
"""
_NODES = """
SELECT t.index, t.hash FROM record_tree AS t
JOIN unnest(%s::bigint[], %s::bigint[]) AS g(lo, hi) ON t.index BETWEEN g.lo AND g.hi
WHERE t.level = %s
"""
_COPY = "COPY record_tree (level, index, hash) FROM STDIN (FORMAT BINARY)"


class PgTileStore:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def read_groups(self, level: int, groups: Iterable[int]) -> dict[int, list[bytes]]:
        wanted = sorted(set(groups))
        if not wanted:
            return {}
        # runs of consecutive groups -> node index ranges [lo, hi]
        los: list[int] = []
        his: list[int] = []
        for group in wanted:
            if his and group * GROUP == his[-1] + 1:
                his[-1] = group * GROUP + GROUP - 1
            else:
                los.append(group * GROUP)
                his.append(group * GROUP + GROUP - 1)
        if level == 0:
            rows = self.conn.execute(_LEAVES, (los, his)).fetchall()
        else:
            rows = self.conn.execute(_NODES, (los, his, level)).fetchall()
        found: dict[int, dict[int, bytes]] = {group: {} for group in wanted}
        for index, hash_ in rows:
            found[index // GROUP][index % GROUP] = bytes(hash_)
        out: dict[int, list[bytes]] = {}
        for group, nodes in found.items():
            row = []
            for offset in range(GROUP):  # stop at the first gap: the stored edge
                if offset not in nodes:
                    break
                row.append(nodes[offset])
            out[group] = row
        return out

    def stored_width(self, level: int) -> int:
        if level == 0:
            row = self.conn.execute("SELECT max(position) FROM record").fetchone()
        else:
            row = self.conn.execute(
                "SELECT max(index) + 1 FROM record_tree WHERE level = %s", (level,)
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def write(self, level: int, first: int, hashes: Sequence[bytes]) -> None:
        with self.conn.cursor() as cur, cur.copy(_COPY) as copy:
            copy.set_types(["int2", "int8", "bytea"])
            for offset, hash_ in enumerate(hashes):
                copy.write_row((level, first + offset, hash_))
