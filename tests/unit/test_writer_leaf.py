"""The batch writer's event leaf: the one-call orjson encoding, equal to the reference."""

from __future__ import annotations

import json
from typing import Any

import pytest

from auditor.evidence.canonical import leaf_hash
from auditor.evidence.leaves import LeafEncoder, leaf_bytes, load_json
from auditor.notifications import Record, parse
from auditor.sample import generate
from auditor.store import writer
from auditor.store.receipts import Receipt


def _parsed(count: int) -> list[tuple[Receipt, Record]]:
    out = []
    for line in generate(interactions=5, agents=2, extra_updates=2, seed=3)[:count]:
        raw = json.dumps(line.message, separators=(",", ":"))
        receipt = Receipt(line.receipt_id, line.received_at, line.account, line.channel, raw)
        record = parse(raw, channel=line.channel)
        assert isinstance(record, Record)
        out.append((receipt, record))
    return out


def test_the_writer_leaf_of_a_plain_event_takes_the_one_call_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A payload without floats never needs the careful encoding. It once took it for every
    event: the COPY columns were SQLAlchemy's names (a str subclass), which orjson refuses
    as keys, so the one-call path failed on each row and the writer paid for both."""
    items = _parsed(20)
    expected = []
    for event_id, (receipt, record) in enumerate(items, start=1):
        row: dict[str, Any] = dict.fromkeys(writer._EVENT_LEAF.fields)
        row.update(zip(writer._COPY_COLUMNS, writer._copy_row(receipt, record), strict=True))
        row.update(id=event_id, payload=load_json(record.payload_text))
        expected.append(leaf_hash(leaf_bytes("event", row)))

    def refuse(self: LeafEncoder, row: Any) -> bytes:
        raise AssertionError("the careful encoding was used for a plain payload")

    monkeypatch.setattr(LeafEncoder, "encode_careful", refuse)
    got = [
        writer._leaf(event_id, receipt, record)[1]
        for event_id, (receipt, record) in enumerate(items, start=1)
    ]
    assert got == expected
