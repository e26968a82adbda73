"""Every shape a table takes on its way out is derived from its declaration in auditor.db, and
the derived shapes agree with each other: the writer's COPY row, the API's JSON objects and
response schemas, the CSV export's header and cells, the timeline's entry."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Column, MetaData, Table, Text

from auditor import db, shapes
from auditor.notifications import Record, parse
from auditor.store import access_queries, findings_queries, queries, timeline, writer
from auditor.store.receipts import Receipt
from web import findings, schemas


def _json_keys(json_sql: str) -> list[str]:
    return re.findall(r"'(\w+)', ", json_sql)


def _schema_fields(schema: type) -> list[str]:
    return list(schema().fields)


@pytest.mark.parametrize(
    ("shape", "json_sql", "schema"),
    [
        (shapes.EVENT, queries.EVENT_JSON, schemas.Event),
        (shapes.INTERACTION, queries.INTERACTION_JSON, schemas.Interaction),
        (shapes.INTERACTION, queries.INTERACTION_JSON, schemas.InteractionDetail),
        (shapes.ACCESS, access_queries.ACCESS_JSON, schemas.AccessEntry),
        (shapes.FINDING, findings_queries._FINDING_JSON, findings.Finding),
    ],
    ids=["event", "interaction", "interaction-detail", "access", "finding"],
)
def test_json_and_response_schema_name_the_same_fields_as_the_table(
    shape: shapes.Shape, json_sql: str, schema: type
) -> None:
    shown = [c.name for c in shape.table.columns if c.name not in shape.hidden]
    assert [f.column for f in shape.fields if f.column is not None] == shown
    assert _json_keys(json_sql) == list(shape.names)
    assert _schema_fields(schema) == list(shape.names)
    for field in shape.fields:
        assert schema().fields[field.name].allow_none == field.nullable, field.name


def test_event_json_hides_only_the_receipt_id_and_renames_by_the_gws_rule() -> None:
    assert set(shapes.EVENT.hidden) == {"receipt_id"}
    names = dict(zip([f.column for f in shapes.EVENT.fields], shapes.EVENT.names, strict=True))
    assert names["id"] == "event_id"
    assert names["media_type"] == "mediaType"
    assert names["interaction_id"] == "interaction_id"
    assert shapes.api_name("last_notification_type") == "last_notificationType"
    assert shapes.api_name("referenced") == "referenced"


def test_csv_export_has_one_cell_per_json_field_guarded_unless_it_cannot_be_a_formula() -> None:
    cells = shapes.csv_cells(shapes.EVENT)
    assert shapes.EVENT.names == queries.EVENT_CSV_COLUMNS
    assert len(cells) == len(queries.EVENT_CSV_COLUMNS)
    guarded = {
        name for name, cell in zip(shapes.EVENT.names, cells, strict=True) if "ascii(" in cell
    }
    # the id (identity), times and the payload (a CHECK keeps it an object) cannot start
    # with = + - @ TAB CR; every text column can
    assert guarded == set(shapes.EVENT.names) - {"event_id", "received_at", "stored_at", "payload"}


def test_the_writer_copies_every_column_but_those_postgresql_assigns_in_row_order() -> None:
    columns = {c.name for c in db.events.columns}
    assert set(writer._COPY_COLUMNS) | set(writer._UNWRITTEN) == columns - {"id", "stored_at"}
    # a column the parsed record or the receipt carries is written
    carried = {f.name for f in dataclasses.fields(Record)} | {
        f.name for f in dataclasses.fields(Receipt)
    }
    assert {c for c in writer._UNWRITTEN if c in carried or c == "payload"} == set()
    # a column left out stays NULL (so the hashed leaf is the stored row's)
    for name in writer._UNWRITTEN:
        assert db.events.columns[name].nullable
        assert db.events.columns[name].server_default is None
    raw = '{"data":{"messageType":"M","notificationType":"StateChange","openmedia":{"id":"i"}}}'
    receipt = Receipt(uuid.uuid4(), datetime.now(UTC), "acc", "/v2/me/openmedia", raw)
    record = parse(raw, channel=receipt.channel)
    assert isinstance(record, Record)
    row = dict(zip(writer._COPY_COLUMNS, writer._copy_row(receipt, record), strict=True))
    assert row["receipt_id"] == receipt.receipt_id
    assert row["account"] == "acc"
    assert row["kind"] == "notification"
    assert row["interaction_id"] == "i"
    assert row["notification_type"] == "StateChange"
    assert row["payload"] == record.payload_text


def test_timeline_entry_fields_are_columns_of_events_with_their_nullability() -> None:
    entry_fields = {f.name: str(f.type) for f in dataclasses.fields(timeline.TimelineEntry)}
    for column, attribute in timeline.ENTRY_COLUMNS.items():
        nullable = bool(db.events.columns[column].nullable)
        assert ("None" in entry_fields[attribute]) == nullable, attribute
    everything = {*timeline.ENTRY_COLUMNS.values(), *timeline.EXTRACTED, *timeline.COMPUTED}
    assert everything == set(entry_fields)


def test_timeline_event_schema_and_serialiser_agree() -> None:
    from web.api import _timeline_event

    entry = timeline.TimelineEntry(
        **{
            f.name: None
            for f in dataclasses.fields(timeline.TimelineEntry)
            if f.name not in ("kind",)
        },
        kind="snapshot",
    )
    shown = _timeline_event(entry)
    assert list(shown) == _schema_fields(schemas.TimelineEvent)
    assert shown["snapshot"] is True


def test_event_filters_of_the_query_schema_are_the_stores_filters() -> None:
    names = set(schemas._EventFilters().fields)
    assert names == set(queries.EVENT_EQUALS)
    finding_filters = set(findings.FindingQuery().fields) - set(schemas.Paging().fields)
    assert finding_filters == set(findings_queries.FINDING_EQUALS)


def test_a_column_added_to_a_table_reaches_its_shapes_without_another_edit() -> None:
    metadata = MetaData()
    table = Table(
        "things",
        metadata,
        Column("id", Text),
        Column("media_type", Text),
        Column("note", Text),
    )
    before = shapes.Shape(table, hidden={"id": "internal"})
    assert before.names == ("mediaType", "note")
    assert _json_keys(before.json_sql()) == ["mediaType", "note"]
    assert _schema_fields(schemas.shape_schema("Things", before)) == ["mediaType", "note"]


def test_a_shape_naming_a_column_its_table_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="no column"):
        shapes.Shape(db.events, hidden={"no_such_column": "why"})
