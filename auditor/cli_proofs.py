"""`auditor keys`, `auditor checkpoint` and `auditor evidence`: signing key, signed
checkpoints and offline-verifiable evidence packs (docs/evidence.md)."""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import psycopg

from auditor.config import Settings
from auditor.db import connect
from auditor.errors import ConfigError, UserError
from auditor.evidence import checkpoints, keys

WITNESS_DIR = "AUDITOR_CHECKPOINT_WITNESS_DIR"


def _connect() -> psycopg.Connection[Any]:
    return connect(Settings.from_env(os.environ).database_url)


def witness_dir(environ: Any = None) -> Path | None:
    value = (os.environ if environ is None else environ).get(WITNESS_DIR)
    return Path(value) if value else None


@click.group("keys")
def keys_group() -> None:
    """The Ed25519 key that signs checkpoints and evidence packs."""


@keys_group.command("create")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="new key file")
def keys_create(out: Path) -> None:
    """Write a new private key (PKCS#8 PEM, mode 0600) and print its public key.

    Point AUDITOR_SIGNING_KEY_FILE at the file for the worker and the exporters; give the
    public key to auditors.
    """
    signer = keys.create(out)
    _print_public(signer)


@keys_group.command("show")
def keys_show() -> None:
    """Print the public key of AUDITOR_SIGNING_KEY_FILE / AUDITOR_SIGNING_KEY."""
    signer = keys.load_signer()
    assert signer is not None
    _print_public(signer)


def _print_public(signer: keys.Signer) -> None:
    click.echo(f"key id: {signer.key_id}")
    click.echo(f"public key (base64): {keys.public_base64(signer.public)}")
    click.echo(keys.public_pem(signer.public), nl=False)


@click.group("checkpoint")
def checkpoint_group() -> None:
    """Signed checkpoints of the record (the worker makes one every few minutes)."""


@checkpoint_group.command("make")
def checkpoint_make() -> None:
    """Sign the record as it stands now (nothing if only the last checkpoint is new)."""
    signer = keys.load_signer()
    assert signer is not None
    with _connect() as conn, conn.transaction():
        made = checkpoints.make(conn, signer)
    if made is None:
        click.echo("nothing new since the last checkpoint")
        return
    directory = witness_dir()
    if directory is not None:
        checkpoints.write_witness(directory, made)
    click.echo(json.dumps(made.to_json(), indent=2))


@checkpoint_group.command("latest")
@click.option("--json", "as_json", is_flag=True, help="the whole signed checkpoint as JSON")
def checkpoint_latest(as_json: bool) -> None:
    """The newest checkpoint: keep its JSON outside the database, then later run
    `auditor verify --against FILE`."""
    with _connect() as conn:
        latest = checkpoints.latest(conn)
    if latest is None:
        raise UserError("no checkpoint yet: run `auditor checkpoint make` or the worker")
    if as_json:
        click.echo(json.dumps(latest.to_json(), indent=2))
    else:
        click.echo(
            f"checkpoint {latest.id}: tree size {latest.tree_size}, made"
            f" {latest.made_at.isoformat()}, key {latest.key_id}"
        )


@checkpoint_group.command("consistency")
@click.argument("kept", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--public-key", type=click.Path(path_type=Path, exists=True), help="PEM/base64")
def checkpoint_consistency(kept: Path, public_key: Path | None) -> None:
    """Prove that the latest checkpoint's tree extends a KEPT checkpoint's (an RFC 6962
    consistency proof from the stored tiles): exit 1 if history was rewritten since."""
    from auditor.evidence import merkle, tiles
    from auditor.evidence.pgtiles import PgTileStore

    try:
        old = json.loads(kept.read_text(encoding="utf-8"))
        old_size, old_root = int(old["tree_size"]), _b64(old["root"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{kept}: not a checkpoint JSON file") from None
    with _connect() as conn:
        latest = checkpoints.latest(conn)
        if latest is None or latest.tree_size < old_size:
            raise UserError(f"no checkpoint at or beyond tree size {old_size} in the database")
        proof = tiles.TreeView(PgTileStore(conn), latest.tree_size).consistency_proof(old_size)
        conn.rollback()
    if public_key is not None:
        public = load_public_option(public_key)
        for name, document in (("kept", old), ("latest", latest.to_json())):
            try:
                checkpoints.check_signature(document, public)
            except keys.BadSignature as exc:
                click.echo(f"INCONSISTENT: the {name} checkpoint: {exc}")
                sys.exit(1)
    try:
        merkle.verify_consistency(old_size, latest.tree_size, old_root, latest.root, proof)
    except merkle.ProofError as exc:
        click.echo(f"INCONSISTENT: {exc}: the record was rewritten after tree size {old_size}")
        sys.exit(1)
    click.echo(
        f"consistent: the checkpoint of tree size {latest.tree_size} extends the kept one of"
        f" {old_size} ({len(proof)}-hash proof)"
    )


def _b64(value: Any) -> bytes:
    import base64

    return base64.b64decode(str(value), validate=True)


@click.group("evidence")
def evidence_group() -> None:
    """Evidence packs an auditor verifies offline with the public key alone."""


@evidence_group.command("export")
@click.option("--interaction", help="the events of one interaction")
@click.option("--reference-id", help="the events with one referenceId")
@click.option("--account", help="the events of one account over --from .. --to")
@click.option("--from", "start", type=click.DateTime(), help="start (UTC unless offset given)")
@click.option("--to", "end", type=click.DateTime(), help="end, exclusive")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="new directory")
@click.option(
    "--no-fresh-checkpoint",
    is_flag=True,
    help="do not sign a new checkpoint for rows newer than the last one (they stay unproven)",
)
def evidence_export(
    interaction: str | None,
    reference_id: str | None,
    account: str | None,
    start: datetime | None,
    end: datetime | None,
    out: Path,
    no_fresh_checkpoint: bool,
) -> None:
    """Write an evidence pack: events (NDJSON, CSV), coverage, proofs, signed manifest."""
    from auditor.evidence import pack

    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out: {out} exists and is not empty")
    try:
        query = pack.Query(interaction, reference_id, account, _utc(start), _utc(end))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    signer = keys.load_signer()
    assert signer is not None
    began = time.perf_counter()
    with _connect() as conn:
        if not no_fresh_checkpoint:
            with conn.transaction():
                made = checkpoints.make(conn, signer)
            directory = witness_dir()
            if made is not None and directory is not None:
                checkpoints.write_witness(directory, made)
        # One snapshot for rows, coverage and proofs.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        try:
            plan = pack.prepare(conn, query, signer, made_by=_who())
            stream = pack.PackStream(conn, plan)
            pack.write_directory(stream, out)  # file by file as the rows are read
        except pack.NothingToProve as exc:
            raise UserError(str(exc)) from None
        finally:
            conn.rollback()
    counts = stream.manifest["counts"]
    seconds = time.perf_counter() - began
    click.echo(
        f"wrote {out}: {counts['events']} events, {counts['coverage_intervals']} coverage"
        f" intervals, {counts['proven']} proven, {counts['unproven']} not proven"
        f" ({seconds:.2f} s); coverage {stream.manifest['coverage']['status']}"
    )


@evidence_group.command("verify")
@click.argument("directory", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--public-key", required=True, type=click.Path(path_type=Path, exists=True))
def evidence_verify_command(directory: Path, public_key: Path) -> None:
    """Verify a pack offline (the same as `python auditor/evidence_verify.py`)."""
    from auditor import evidence_verify

    code = evidence_verify.main([str(directory), "--public-key", str(public_key)])
    if code:
        sys.exit(code)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def load_public_option(path: Path, setting: str = "--public-key") -> Any:
    """A public key file for `auditor verify --against` (PEM or base64)."""
    try:
        return keys.load_public(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(setting, f"cannot use {path}: {exc}") from None
