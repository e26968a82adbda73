"""Evidence packs are written while the rows are read: the same files as a pack built in
memory, and memory that does not grow with the pack (tracemalloc, Python's allocations)."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditor.evidence import checkpoints, keys, pack, pack_zip
from auditor.store.writer import store_batch
from tests.helpers import om_message, receipt

Conn = psycopg.Connection[Any]


@pytest.fixture
def signer() -> keys.Signer:
    return keys.Signer(Ed25519PrivateKey.generate())


def _store(conn: Conn, interaction: str, count: int) -> None:
    for start in range(0, count, 500):
        store_batch(
            conn,
            [
                receipt(
                    om_message(interaction, "Invited", user_data={"n": os.urandom(64).hex()}),
                    at=i,
                )
                for i in range(start, min(count, start + 500))
            ],
        )


def _peak_while_streaming(conn: Conn, signer: keys.Signer, interaction: str) -> tuple[int, int]:
    """(peak Python memory while the zip is made and thrown away piece by piece, zip size)."""
    plan = pack.prepare(conn, pack.Query(interaction=interaction), signer, made_by="test")
    size = 0
    tracemalloc.start()
    try:
        for piece in pack_zip.zip_chunks(iter(pack.PackStream(conn, plan, chunk_rows=50))):
            size += len(piece)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, size


def test_a_pack_eight_times_larger_needs_no_more_memory_than_its_positions(
    conn: Conn, signer: keys.Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pack_zip, "PIECE_BYTES", 16384)  # what is held before it is handed on
    # events.csv waits in a spool file, in memory up to this bound, then on disk
    monkeypatch.setattr(pack.PackStream, "CSV_SPOOL_MEMORY", 16384)
    _store(conn, "ST-small", 400)
    _store(conn, "ST-large", 3200)
    assert checkpoints.make(conn, signer) is not None
    small_peak, small_size = _peak_while_streaming(conn, signer, "ST-small")
    large_peak, large_size = _peak_while_streaming(conn, signer, "ST-large")
    assert large_size > 7 * small_size
    # Flat: about 1 MB (the compressor's buffers and the chunks in flight on the reading and
    # writing threads) whatever the size. What grows is 16 bytes a row, the positions and
    # batch slots the proofs and the manifest are made from (twice that while an array
    # grows). Where the threads stand at the peak moves it by up to ~300 KB under load (a
    # ratio of 1.32 was seen at 400 against 1,600 rows), hence the fixed allowance: holding
    # the 8 times larger pack's events (~600 bytes a row) would exceed it several times over.
    growth = 32 * (3200 - 400)
    assert large_peak - small_peak < growth + 400_000, (small_peak, large_peak)


def test_the_streamed_files_are_the_in_memory_packs(
    conn: Conn, signer: keys.Signer, tmp_path: Path
) -> None:
    _store(conn, "ST-same", 130)
    made = checkpoints.make(conn, signer)
    assert made is not None
    now = made.made_at
    query = pack.Query(interaction="ST-same")
    whole = pack.export(conn, query, signer, made_by="test", now=now)
    plan = pack.prepare(conn, query, signer, made_by="test", now=now)
    pack.write_directory(pack.PackStream(conn, plan, chunk_rows=7), tmp_path / "streamed")
    streamed = {p.name: p.read_bytes() for p in (tmp_path / "streamed").iterdir()}
    # byte for byte, the signed manifest too (Ed25519 signatures are deterministic)
    assert streamed == whole.files
