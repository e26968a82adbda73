"""GET /api/v1/checkpoints and GET /api/v1/evidence/export: roles, problems, a verifiable zip."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import psycopg
import pytest

from auditor import evidence_verify
from auditor.config import libpq_conninfo
from auditor.evidence import checkpoints, keys
from tests.api.conftest import Api
from tests.helpers import om_message, receipt


@pytest.fixture
def signer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> keys.Signer:
    path = tmp_path / "signing.pem"
    made = keys.create(path)
    monkeypatch.setenv("AUDITOR_SIGNING_KEY_FILE", str(path))
    return made


def _checkpoint(api: Api, signer: keys.Signer) -> checkpoints.Checkpoint:
    with psycopg.connect(libpq_conninfo(api.url)) as conn:
        made = checkpoints.make(conn, signer)
        conn.commit()
    assert made is not None
    return made


def test_checkpoints_are_listed_newest_first_for_readers(
    committed_api: Api, signer: keys.Signer
) -> None:
    api = committed_api  # checkpoints and evidence exports use connections of their own
    api.store([receipt(om_message("API-1", "Invited"), at=0)])
    first = _checkpoint(api, signer)
    api.store([receipt(om_message("API-1", "Processing"), at=1)])
    second = _checkpoint(api, signer)
    answer = api.get("/api/v1/checkpoints", role="reader")
    assert answer.status_code == 200
    listed = answer.get_json()["checkpoints"]
    assert [c["tree_size"] for c in listed] == [second.tree_size, first.tree_size]
    assert listed[0] == second.to_json()
    checkpoints.check_signature(listed[1], signer.public)
    page = api.get("/api/v1/checkpoints", role="reader", limit=1).get_json()
    assert page["next_before"] == second.tree_size
    assert api.get("/api/v1/checkpoints", role=None).status_code == 401
    assert api.get("/api/v1/checkpoints", limit=0).status_code == 400


def test_the_export_is_a_zip_the_offline_verifier_accepts(
    committed_api: Api, signer: keys.Signer, tmp_path: Path
) -> None:
    api = committed_api  # checkpoints and evidence exports use connections of their own
    api.store([receipt(om_message("API-2", "Invited"), at=i) for i in range(4)])
    _checkpoint(api, signer)
    answer = api.get("/api/v1/evidence/export", role="exporter", interaction_id="API-2")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.get_data())) as archive:
        archive.extractall(tmp_path / "pack")
    manifest = evidence_verify.verify(tmp_path / "pack", signer.public)
    assert manifest["counts"]["events"] == 4
    assert manifest["made_by"] == "api token test-exporter"
    assert api.access_log()[-1][3] == "/api/v1/evidence/export"


def test_the_export_needs_the_exporter_role_and_a_whole_query(
    api: Api, signer: keys.Signer
) -> None:
    assert api.get("/api/v1/evidence/export", role="reader", interaction_id="X").status_code == 403
    assert api.get("/api/v1/evidence/export", role="exporter").status_code == 400
    partial = api.get("/api/v1/evidence/export", role="exporter", account="agent001")
    assert partial.status_code == 400
    assert partial.mimetype == "application/problem+json"
    assert api.get("/api/v1/evidence/export", role="exporter", bogus="1").status_code == 400


def test_without_a_checkpoint_or_a_key_the_export_says_why(
    committed_api: Api, monkeypatch: pytest.MonkeyPatch, signer: keys.Signer
) -> None:
    api = committed_api  # checkpoints and evidence exports use connections of their own
    api.store([receipt(om_message("API-3", "Invited"), at=0)])
    early = api.get("/api/v1/evidence/export", role="exporter", interaction_id="API-3")
    assert early.status_code == 409
    assert "checkpoint" in early.get_json()["detail"]
    monkeypatch.delenv("AUDITOR_SIGNING_KEY_FILE")
    api.app.extensions.pop("auditor_signer", None)
    keyless = api.get("/api/v1/evidence/export", role="exporter", interaction_id="API-3")
    assert keyless.status_code == 503
    assert "AUDITOR_SIGNING_KEY_FILE" in keyless.get_json()["detail"]


def test_a_large_pack_streams_in_pieces_and_the_log_says_how_it_ended(
    committed_api: Api, signer: keys.Signer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = committed_api  # checkpoints and evidence exports use connections of their own
    from auditor.evidence import pack, pack_zip

    # a note no compressor shrinks much, so the zip is large enough to come in many pieces
    api.store(
        [
            receipt(om_message("API-4", "Invited", user_data={"note": os.urandom(256).hex()}), at=i)
            for i in range(300)
        ]
    )
    _checkpoint(api, signer)
    monkeypatch.setattr(pack, "CHUNK_ROWS", 20)
    monkeypatch.setattr(pack_zip, "PIECE_BYTES", 2048)
    headers = {"Authorization": f"Bearer {api.tokens['exporter']}"}
    answer = api.client.get(
        "/api/v1/evidence/export",
        query_string={"interaction_id": "API-4"},
        headers=headers,
        buffered=False,
    )
    assert answer.status_code == 200
    pieces = list(answer.response)
    answer.close()
    # handed on while written (zlib gives out ~32 KB at a time), not built first
    total = sum(len(p) for p in pieces)
    assert len(pieces) >= 6
    assert max(len(p) for p in pieces) < total / 2
    (tmp_path / "pack").mkdir()
    with zipfile.ZipFile(io.BytesIO(b"".join(pieces))) as archive:
        archive.extractall(tmp_path / "pack")
    manifest = evidence_verify.verify(tmp_path / "pack", signer.public)
    assert manifest["counts"]["events"] == manifest["counts"]["proven"] == 300
    outcomes = [row for row in api.access_log() if row[3] == "/api/v1/evidence/export"]
    assert [row[6] for row in outcomes][-1] == 300  # the ending row counts what was handed on


def test_a_range_with_an_offset_postgresql_cannot_write_streams_whole(
    committed_api: Api, signer: keys.Signer, tmp_path: Path
) -> None:
    api = committed_api  # checkpoints and evidence exports use connections of their own
    # +16:00 is valid ISO 8601 but beyond PostgreSQL's offsets: the COPY of events.csv, which
    # carries its parameters in the statement, once failed half-way through the zip
    api.store([receipt(om_message("API-5", "Invited"), at=i) for i in range(2)])
    _checkpoint(api, signer)
    answer = api.get(
        "/api/v1/evidence/export",
        role="exporter",
        account="agent001",
        **{"from": "2000-01-01T00:00:00+16:00", "to": "2100-01-01T00:00:00Z"},
    )
    assert answer.status_code == 200
    with zipfile.ZipFile(io.BytesIO(answer.get_data())) as archive:
        archive.extractall(tmp_path / "pack")
    manifest = evidence_verify.verify(tmp_path / "pack", signer.public)
    assert manifest["counts"]["events"] >= 2
