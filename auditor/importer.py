"""Reading notifications from a file into receipts: NDJSON, or one JSON array.

A line (or array element) is either a receipt — an object with ``received_at`` and ``raw``
(the message as text) or ``message`` (the message as JSON), plus ``account``, and optionally
``receipt_id`` and ``channel`` — or a raw notification. Raw notifications carry no time, so
they are stamped with ``received_at`` (default: the file's modification time) plus one
microsecond per line, and get a receipt_id derived from the account, line number and content:
importing the same file twice stores nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from auditor.config import Settings
from auditor.db import connect
from auditor.errors import UserError
from auditor.store.receipts import Receipt
from auditor.store.writer import EMPTY, BatchResult, store_batch

_NAMESPACE = uuid.UUID("0b6c1f7e-52a4-4c8e-9a57-0f1e3c2d4b6a")


@dataclass(frozen=True)
class ImportSource:
    path: Path
    account: str
    base_time: datetime

    @classmethod
    def open(cls, path: Path, account: str, received_at: datetime | None) -> ImportSource:
        try:
            stat = path.stat()
            with path.open("rb"):
                pass
        except FileNotFoundError:
            raise UserError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise UserError(f"{path}: is a directory, expected a file") from None
        except PermissionError:
            raise UserError(f"{path}: not readable (permission denied)") from None
        except OSError as exc:
            raise UserError(f"{path}: cannot be read ({exc.strerror})") from None
        if path.is_dir():
            raise UserError(f"{path}: is a directory, expected a file")
        base = received_at or datetime.fromtimestamp(stat.st_mtime, UTC)
        return cls(path, account, base)

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def _is_array_file(handle: BinaryIO) -> bool:
    head = handle.read(4096).lstrip()
    handle.seek(0)
    return head.startswith(b"[")


def receipts(source: ImportSource, on_progress: Any = None) -> Iterator[Receipt]:
    """Yields one receipt per line or element; on_progress(bytes_done) is called as it goes."""
    with source.path.open("rb") as handle:
        if _is_array_file(handle):
            try:
                elements = json.load(handle)
            except (ValueError, RecursionError) as exc:
                raise UserError(f"{source.path}: not a valid JSON array ({exc})") from None
            for number, element in enumerate(elements, start=1):
                text = json.dumps(element, ensure_ascii=False)
                yield _receipt(source, number, text.encode(), element)
            if on_progress:
                on_progress(source.size)
            return
        done = 0
        for number, line in enumerate(handle, start=1):
            done += len(line)
            if on_progress:
                on_progress(done)
            stripped = line.strip()
            if not stripped:
                continue
            try:
                decoded: Any = json.loads(stripped)
            except (ValueError, RecursionError):
                decoded = None
            yield _receipt(source, number, stripped, decoded)


def _raw_receipt(source: ImportSource, number: int, raw: bytes) -> Receipt:
    digest = hashlib.sha256(raw).hexdigest()
    return Receipt(
        receipt_id=uuid.uuid5(_NAMESPACE, f"{source.account}|{number}|{digest}"),
        received_at=source.base_time + timedelta(microseconds=number),
        account=source.account,
        channel=None,
        raw=raw,
    )


def _receipt(source: ImportSource, number: int, raw: bytes, decoded: Any) -> Receipt:
    if not (isinstance(decoded, dict) and "received_at" in decoded):
        return _raw_receipt(source, number, raw)
    if not ("raw" in decoded or "message" in decoded):
        return _raw_receipt(source, number, raw)
    try:
        return _receipt_line(decoded)
    except (ValueError, TypeError) as exc:
        fallback = _raw_receipt(source, number, raw)
        return Receipt(
            fallback.receipt_id,
            fallback.received_at,
            fallback.account,
            None,
            raw,
            defect=f"line {number}: not a valid receipt: {exc}",
        )


def _receipt_line(obj: dict[str, Any]) -> Receipt:
    received_at = datetime.fromisoformat(str(obj["received_at"]))
    if received_at.tzinfo is None:
        raise ValueError("received_at has no UTC offset")
    account = obj.get("account")
    if not isinstance(account, str):
        raise ValueError("account is missing or not a string")
    channel = obj.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise ValueError("channel is not a string")
    if "raw" in obj:
        if not isinstance(obj["raw"], str):
            raise ValueError("raw must be the message as a JSON string")
        raw = obj["raw"]
    else:
        raw = json.dumps(obj["message"], ensure_ascii=False)
    receipt_id = uuid.UUID(str(obj["receipt_id"])) if "receipt_id" in obj else None
    if receipt_id is None:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()
        receipt_id = uuid.uuid5(_NAMESPACE, f"{account}|{received_at.isoformat()}|{digest}")
    return Receipt(receipt_id, received_at, account, channel, raw)


def run_import(
    settings: Settings,
    path: Path,
    *,
    account: str,
    received_at: datetime | None,
    batch_size: int,
    console: Console,
) -> BatchResult:
    """Import a file in batches, one transaction each, with a progress bar."""
    source = ImportSource.open(path, account, received_at)
    total = EMPTY
    columns = (
        TextColumn("importing"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[counts]}"),
    )
    with (
        connect(settings.database_url) as conn,
        Progress(*columns, console=console, transient=False) as progress,
    ):
        task = progress.add_task("import", total=source.size, counts="")
        batch: list[Receipt] = []

        def flush() -> None:
            nonlocal total
            with conn.transaction():
                total += store_batch(conn, batch)
            batch.clear()
            progress.update(
                task,
                counts=f"{total.stored} stored, {total.duplicates} dup, "
                f"{total.quarantined} quarantined",
            )

        for receipt in receipts(source, lambda done: progress.update(task, completed=done)):
            batch.append(receipt)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    return total
