"""Checkpoints and evidence packs on real PostgreSQL, verified by the standalone verifier."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditor import evidence_verify
from auditor.evidence import checkpoints, keys, merkle, pack, tiles
from auditor.evidence.canonical import canonical_bytes
from auditor.evidence.pgtiles import PgTileStore
from auditor.store import integrity, sealer
from auditor.store.writer import store_batch
from tests.helpers import T0, om_message, receipt

Conn = psycopg.Connection[Any]


@pytest.fixture
def signer() -> keys.Signer:
    return keys.Signer(Ed25519PrivateKey.generate())


def _public_file(tmp_path: Path, signer: keys.Signer) -> Path:
    path = tmp_path / "public.pem"
    path.write_text(keys.public_pem(signer.public))
    return path


def _store(conn: Conn, interaction: str, account: str, first_ms: int, count: int) -> None:
    store_batch(
        conn,
        [
            receipt(om_message(interaction, "Processing"), account=account, at=first_ms + i)
            for i in range(count)
        ],
    )


def _interval(conn: Conn, account: str, start_s: int, end_s: int, reason: str) -> None:
    conn.execute(
        "INSERT INTO coverage_intervals (account, worker_id, channels, started_at,"
        " heartbeat_at, ended_at, end_reason) VALUES (%s, 'w1', ARRAY['/v2/me/openmedia'],"
        " %s, %s, %s, %s)",
        (
            account,
            T0 + timedelta(seconds=start_s),
            T0 + timedelta(seconds=end_s),
            T0 + timedelta(seconds=end_s),
            reason,
        ),
    )


def _leaves(conn: Conn) -> list[bytes]:
    return [bytes(h) for (h,) in conn.execute("SELECT leaf_hash FROM record ORDER BY position")]


@pytest.mark.usefixtures("record_format_1")  # counts one record row per event
def test_a_checkpoint_signs_the_merkle_root_and_enters_the_record(
    conn: Conn, signer: keys.Signer
) -> None:
    _store(conn, "CP-1", "cp-agent", 0, 40)
    made = checkpoints.make(conn, signer)
    assert made is not None
    stored = _leaves(conn)
    assert made.tree_size == len(stored) - 1  # the checkpoint itself came next
    assert made.root == merkle.root_of(stored[: made.tree_size])
    assert sum(made.counts.values()) == made.tree_size
    source = conn.execute("SELECT source, source_id FROM record ORDER BY position DESC LIMIT 1")
    assert source.fetchone() == ("checkpoint", made.id)
    checkpoints.check_signature(made.to_json(), signer.public)
    assert checkpoints.verify_against(conn, made.to_json(), signer.public) == []
    # the checkpoint's own leaf is what verify recomputes from its stored row
    report = integrity.verify(conn, made.tree_size + 1, made.tree_size + 1, with_unsealed=False)
    assert report.problem is None
    # nothing new but the checkpoint itself: no second checkpoint
    assert checkpoints.make(conn, signer) is None
    _store(conn, "CP-1", "cp-agent", 100, 3)
    later = checkpoints.make(conn, signer)
    assert later is not None
    assert later.tree_size == made.tree_size + 4
    view = tiles.TreeView(PgTileStore(conn), later.tree_size)
    proof = view.consistency_proof(made.tree_size)
    merkle.verify_consistency(made.tree_size, later.tree_size, made.root, later.root, proof)


def test_a_forged_or_foreign_checkpoint_is_refused(conn: Conn, signer: keys.Signer) -> None:
    _store(conn, "CP-2", "cp-agent", 0, 5)
    made = checkpoints.make(conn, signer)
    assert made is not None
    forged = {**made.to_json(), "tree_size": made.tree_size - 1}
    problems = checkpoints.verify_against(conn, forged, signer.public)
    assert any("signature" in p for p in problems)
    assert any("Merkle root" in p for p in problems)
    other = keys.Signer(Ed25519PrivateKey.generate())
    assert checkpoints.verify_against(conn, made.to_json(), other.public)


def _export(conn: Conn, signer: keys.Signer, tmp_path: Path, name: str, **query: Any) -> Path:
    made = pack.export(conn, pack.Query(**query), signer, made_by="test")
    out = tmp_path / name
    made.write(out)
    return out


def _verify(directory: Path, public: Path) -> tuple[int, str]:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = evidence_verify.main([str(directory), "--public-key", str(public)])
    return code, buffer.getvalue()


@pytest.fixture
def packs(conn: Conn, signer: keys.Signer, tmp_path: Path) -> dict[str, Path]:
    _interval(conn, "pk-agent", 0, 30, "disconnected")
    _interval(conn, "pk-agent", 60, 120, "stopped")
    _store(conn, "PK-1", "pk-agent", 1000, 12)
    _store(conn, "PK-2", "pk-agent", 2000, 7)
    sealer.seal(conn)
    assert checkpoints.make(conn, signer) is not None
    return {
        "one": _export(conn, signer, tmp_path, "one", interaction="PK-1"),
        "two": _export(conn, signer, tmp_path, "two", interaction="PK-2"),
        "range": _export(
            conn,
            signer,
            tmp_path,
            "range",
            account="pk-agent",
            start=T0,
            end=T0 + timedelta(seconds=100),
        ),
    }


def test_a_clean_pack_verifies_offline(
    packs: dict[str, Path], signer: keys.Signer, tmp_path: Path
) -> None:
    code, out = _verify(packs["one"], _public_file(tmp_path, signer))
    assert code == 0, out
    assert "13 rows proven" in out  # 12 events and the coverage interval around them
    assert "coverage: complete" in out
    assert len((packs["one"] / "events.ndjson").read_bytes().splitlines()) == 12


@pytest.mark.parametrize(
    "name", ["events.ndjson", "events.csv", "coverage.ndjson", "proofs.ndjson", "checkpoint.json"]
)
def test_one_changed_byte_in_any_file_fails(
    packs: dict[str, Path], signer: keys.Signer, tmp_path: Path, name: str
) -> None:
    path = packs["range"] / name
    data = bytearray(path.read_bytes())
    assert data, name
    middle = len(data) // 2
    data[middle] = data[middle] ^ 0x01
    path.write_bytes(bytes(data))
    code, out = _verify(packs["range"], _public_file(tmp_path, signer))
    assert code == 1
    assert "FAILED" in out


def test_a_changed_manifest_fails(
    packs: dict[str, Path], signer: keys.Signer, tmp_path: Path
) -> None:
    path = packs["one"] / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["counts"]["events"] += 0
    manifest["query"]["interaction_id"] = "PK-2"
    path.write_text(json.dumps(manifest))
    code, out = _verify(packs["one"], _public_file(tmp_path, signer))
    assert (code, "manifest's signature" in out) == (1, True)


def test_a_removed_row_fails(packs: dict[str, Path], signer: keys.Signer, tmp_path: Path) -> None:
    path = packs["one"] / "events.ndjson"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:5] + lines[6:]))
    code, out = _verify(packs["one"], _public_file(tmp_path, signer))
    assert code == 1
    assert "events.ndjson" in out


def test_a_row_from_another_pack_fails(
    packs: dict[str, Path], signer: keys.Signer, tmp_path: Path
) -> None:
    foreign_row = (packs["two"] / "events.ndjson").read_bytes().splitlines(keepends=True)[0]
    foreign_proof = (packs["two"] / "proofs.ndjson").read_bytes().splitlines(keepends=True)[0]
    events = packs["one"] / "events.ndjson"
    events.write_bytes(events.read_bytes() + foreign_row)
    proofs = packs["one"] / "proofs.ndjson"
    moved = json.loads(foreign_proof)
    moved["line"] = 13
    proofs.write_bytes(proofs.read_bytes() + json.dumps(moved).encode() + b"\n")
    code, out = _verify(packs["one"], _public_file(tmp_path, signer))
    assert code == 1
    assert "events.ndjson is not the file the manifest signed" in out


def test_a_wrong_proof_fails_even_with_matching_file_hashes(
    conn: Conn, signer: keys.Signer, tmp_path: Path
) -> None:
    """The verifier recomputes every path: a pack signed over a bad proof still fails."""
    _store(conn, "PK-3", "pk-agent", 5000, 4)
    checkpoints.make(conn, signer)
    made = pack.export(conn, pack.Query(interaction="PK-3"), signer, made_by="test")
    first = json.loads(made.files["proofs.ndjson"].splitlines()[0])
    # the path inside the event's batch (record format 2), else its path in the record
    key = "batch_path" if "batch_path" in first else "path"
    path = bytearray(base64.b64decode(first[key]))
    path[0] ^= 1
    first[key] = base64.b64encode(bytes(path)).decode()
    rest = made.files["proofs.ndjson"].splitlines(keepends=True)[1:]
    made.files["proofs.ndjson"] = json.dumps(first).encode() + b"\n" + b"".join(rest)
    resigned = pack.Pack(made.files)
    manifest = {k: v for k, v in made.manifest.items() if k != "signature"}
    import hashlib

    manifest["files"]["proofs.ndjson"] = hashlib.sha256(made.files["proofs.ndjson"]).hexdigest()
    from auditor.evidence.canonical import canonical_bytes

    manifest["signature"] = base64.b64encode(signer.sign(canonical_bytes(manifest))).decode()
    resigned.files["manifest.json"] = json.dumps(manifest).encode()
    resigned.write(tmp_path / "bad")
    code, out = _verify(tmp_path / "bad", _public_file(tmp_path, signer))
    assert code == 1
    assert "is not in the record" in out


def test_a_pack_over_a_range_with_a_gap_says_so(
    packs: dict[str, Path], signer: keys.Signer, tmp_path: Path
) -> None:
    manifest = json.loads((packs["range"] / "manifest.json").read_text())
    assert manifest["coverage"]["status"] == "gaps"
    gaps = manifest["coverage"]["gaps"]
    assert [(g["from"], g["to"]) for g in gaps] == [
        ("2026-11-02T09:00:30.000000Z", "2026-11-02T09:01:00.000000Z")
    ]
    assert "disconnected" in gaps[0]["reason"]
    assert manifest["counts"]["coverage_intervals"] == 2
    code, out = _verify(packs["range"], _public_file(tmp_path, signer))
    assert code == 0, out
    assert "gap pk-agent 2026-11-02T09:00:30.000000Z" in out


def test_rows_newer_than_the_checkpoint_are_listed_as_not_proven(
    packs: dict[str, Path], conn: Conn, signer: keys.Signer, tmp_path: Path
) -> None:
    _store(conn, "PK-1", "pk-agent", 3000, 2)
    out = _export(conn, signer, tmp_path, "newer", interaction="PK-1")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {
        "events": 14,
        "coverage_intervals": 1,
        "proven": 13,
        "unproven": 2,
    }
    code, text = _verify(out, _public_file(tmp_path, signer))
    assert code == 1
    assert "NOT PROVEN: 2 rows" in text


def test_a_pack_by_reference_id_and_an_empty_pack_verify(
    conn: Conn, signer: keys.Signer, tmp_path: Path
) -> None:
    store_batch(
        conn,
        [
            receipt(om_message("REF-1", "Processing", reference_id=4242), at=7000),
            receipt(om_message("REF-1", "Processing", reference_id=4243), at=7001),
        ],
    )
    checkpoints.make(conn, signer)
    public = _public_file(tmp_path, signer)
    by_ref = _export(conn, signer, tmp_path, "ref", reference_id="4242")
    code, out = _verify(by_ref, public)
    assert code == 0, out
    assert "verified: 1 rows proven" in out
    empty = _export(conn, signer, tmp_path, "empty", interaction="NO-SUCH-INTERACTION")
    code, out = _verify(empty, public)
    assert code == 0, out
    assert "verified: 0 rows proven" in out
    assert "coverage: empty" in out


def test_a_pack_over_events_sealed_in_both_record_formats_verifies_offline(
    conn: Conn, signer: keys.Signer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events sealed one record row each (format 1, as before migration 2026_12_03_chainv2)
    and events sealed in batch rows (format 2) in one pack: the old proof lines and the
    two-step ones verify side by side."""
    from auditor.store import writer

    monkeypatch.setattr(writer, "RECORD_FORMAT", 1)
    _store(conn, "MX-1", "mx-agent", 0, 5)
    monkeypatch.setattr(writer, "RECORD_FORMAT", 2)
    _store(conn, "MX-1", "mx-agent", 100, 6)
    _store(conn, "MX-1", "mx-agent", 200, 3)
    assert checkpoints.make(conn, signer) is not None
    out = _export(conn, signer, tmp_path, "mixed", interaction="MX-1")
    proofs = [json.loads(line) for line in (out / "proofs.ndjson").read_bytes().splitlines()]
    assert len(proofs) == 14
    assert sum("batch_index" not in p for p in proofs) == 5  # format-1 lines, as before
    batched = [p for p in proofs if "batch_index" in p]
    assert [(p["batch_index"], p["batch_size"]) for p in batched] == [
        *((i, 6) for i in range(6)),
        *((i, 3) for i in range(3)),
    ]
    assert len({p["position"] for p in batched}) == 2
    # events.csv names each event's record position: its own row's or its batch row's
    csv_rows = (out / "events.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in csv_rows] == [p["position"] for p in proofs]
    code, text = _verify(out, _public_file(tmp_path, signer))
    assert code == 0, text
    assert "14 rows proven" in text


def test_a_batch_line_claimed_for_another_slot_fails(
    conn: Conn, signer: keys.Signer, tmp_path: Path
) -> None:
    """Two lines of one batch trading their in-batch proofs: each leads to another root."""
    _store(conn, "SW-1", "sw-agent", 0, 4)
    checkpoints.make(conn, signer)
    made = pack.export(conn, pack.Query(interaction="SW-1"), signer, made_by="test")
    lines = [json.loads(line) for line in made.files["proofs.ndjson"].splitlines()]
    lines[0]["batch_path"], lines[1]["batch_path"] = lines[1]["batch_path"], lines[0]["batch_path"]
    made.files["proofs.ndjson"] = b"".join(json.dumps(p).encode() + b"\n" for p in lines)
    manifest = {k: v for k, v in made.manifest.items() if k != "signature"}
    manifest["files"]["proofs.ndjson"] = hashlib.sha256(made.files["proofs.ndjson"]).hexdigest()
    manifest["signature"] = base64.b64encode(signer.sign(canonical_bytes(manifest))).decode()
    made.files["manifest.json"] = json.dumps(manifest).encode()
    made.write(tmp_path / "swapped")
    code, out = _verify(tmp_path / "swapped", _public_file(tmp_path, signer))
    assert code == 1
    assert "is not in the record" in out
