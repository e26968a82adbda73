"""The parser: every input yields a Record or a quarantine reason, and never raises."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.notifications import MAX_FIELD_CHARS, Record, Rejected, openmedia_of, parse
from auditor.sample import generate
from tests.unit import parse_reference as reference

ACCEPTED = {
    "messageType": "OpenmediaStateChangeMessage",
    "notificationType": "StatusChange",
    "referenceId": 6,
    "openmedia": {
        "id": "03W07R2K4VAYT010",
        "state": "Processing",
        "capabilities": ["Transfer", "Complete"],
        "mediaType": "promotion",
        "openmediaType": "Inbound",
        "uri": "http://localhost:8080/api/v2/openmedia/promotions/03W07R2K4VAYT010",
        "userData": {"RTenant": "Environment", "PegAGWorkitems": 2},
    },
}


def record(raw: Any, **kw: Any) -> Record:
    outcome = parse(raw, **kw)
    assert isinstance(outcome, Record), outcome
    return outcome


def test_all_three_documented_envelopes_give_the_same_fields() -> None:
    shapes = [
        {"data": ACCEPTED},
        {"channel": "/v2/me/openmedia", "data": ACCEPTED},
        ACCEPTED,
    ]
    for shape in shapes:
        r = record(json.dumps(shape), channel="/v2/me/openmedia")
        assert (r.interaction_id, r.state, r.reference_id) == (
            "03W07R2K4VAYT010",
            "Processing",
            "6",
        )
        assert (r.media_type, r.openmedia_type) == ("promotion", "Inbound")
        assert r.message_type == "OpenmediaStateChangeMessage"
        assert r.notification_type == "StatusChange"
        assert r.capabilities == ["Transfer", "Complete"]
        assert r.user_data == {"RTenant": "Environment", "PegAGWorkitems": 2}
        assert r.channel == "/v2/me/openmedia"
    assert [record(json.dumps(s)).envelope for s in shapes] == ["data", "data", "bare"]


def test_message_channel_wins_over_the_channel_it_was_received_on() -> None:
    r = record({"channel": "/v2/me/calls", "data": {}}, channel="/v2/me/*")
    assert r.channel == "/v2/me/calls"
    assert record({"data": {}}, channel="/v2/me/*").channel == "/v2/me/*"


def test_reference_id_absent_or_null_is_none() -> None:
    invited = {k: v for k, v in ACCEPTED.items() if k != "referenceId"}
    assert record({"data": invited}).reference_id is None
    assert record({"data": {**ACCEPTED, "referenceId": None}}).reference_id is None


def test_reference_id_as_string_is_kept() -> None:
    assert record({"data": {**ACCEPTED, "referenceId": "74"}}).reference_id == "74"


def test_outbound_item_without_user_data() -> None:
    om = {k: v for k, v in ACCEPTED["openmedia"].items() if k != "userData"}
    r = record({"data": {**ACCEPTED, "openmedia": {**om, "openmediaType": "Outbound"}}})
    assert r.user_data is None
    assert r.openmedia_type == "Outbound"


def test_error_with_openmedia_keeps_the_interaction_and_error_fields() -> None:
    error = {**ACCEPTED, "notificationType": "Error", "errorCode": 1203, "errorMessage": "locked"}
    r = record({"data": error})
    assert (r.notification_type, r.error_code, r.error_message) == ("Error", "1203", "locked")
    assert r.interaction_id == "03W07R2K4VAYT010"


def test_error_without_openmedia_is_an_event_without_interaction() -> None:
    r = record(
        {
            "data": {
                "messageType": "OpenmediaStateChangeMessage",
                "notificationType": "Error",
                "referenceId": 9,
            }
        }
    )
    assert r.interaction_id is None
    assert (r.notification_type, r.reference_id) == ("Error", "9")


def test_unknown_message_type_and_channel_are_kept_as_events() -> None:
    r = record(
        {
            "channel": "/v2/me/calls",
            "data": {"messageType": "CallStateChangeMessage", "call": {"id": "c1"}},
        }
    )
    assert (r.message_type, r.channel, r.interaction_id) == (
        "CallStateChangeMessage",
        "/v2/me/calls",
        None,
    )


def test_object_of_unknown_shape_is_an_event_with_nothing_extracted() -> None:
    r = record('{"hello": "world"}')
    assert r.envelope == "none"
    assert r.message_type is None
    assert r.interaction_id is None


def test_payload_text_is_the_text_as_received() -> None:
    raw = '{ "data" : {"messageType": "X"} }'
    assert record(raw).payload_text == raw
    assert json.loads(record({"data": {"a": 1}}).payload_text) == {"data": {"a": 1}}


def test_what_jsonb_cannot_store_is_quarantined_with_a_reason() -> None:
    cases = {
        "not json": "not JSON",
        "[1, 2]": "not a JSON object (a JSON array)",
        '"text"': "not a JSON object (a JSON string)",
        "null": "not a JSON object (a JSON null)",
        '{"a": "\\u0000"}': "NUL",
        '{"a": "\\ud800"}': "surrogate",
        '{"a": NaN}': "NaN",
        '{"a": 1e999}': "too large",
        "[" * 5000 + "]" * 5000: "nested deeper",
    }
    for raw, reason in cases.items():
        outcome = parse(raw)
        assert isinstance(outcome, Rejected), raw
        assert reason in outcome.reason


def test_invalid_utf8_bytes_are_quarantined() -> None:
    outcome = parse(b'{"a": "\xff"}')
    assert isinstance(outcome, Rejected)
    assert "UTF-8" in outcome.reason


def test_overlong_indexed_field_is_quarantined_not_truncated() -> None:
    long_id = "X" * (MAX_FIELD_CHARS + 1)
    outcome = parse({"data": {**ACCEPTED, "openmedia": {"id": long_id}}})
    assert isinstance(outcome, Rejected)
    assert "openmedia.id" in outcome.reason


def test_openmedia_of_reads_the_resource_from_a_stored_message() -> None:
    assert openmedia_of({"data": ACCEPTED})["id"] == "03W07R2K4VAYT010"
    assert openmedia_of(ACCEPTED)["state"] == "Processing"
    assert openmedia_of({"data": {"openmedia": "nope"}}) == {}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)

# Values shaped like notifications, with each field possibly of the wrong type.
field_values = st.none() | st.integers() | st.text(max_size=300) | st.lists(st.text(), max_size=3)
openmedia_like = st.fixed_dictionaries(
    {},
    optional={
        "id": field_values,
        "state": field_values,
        "capabilities": field_values,
        "mediaType": field_values,
        "userData": st.dictionaries(st.text(max_size=8), field_values, max_size=3) | field_values,
    },
)
notification_like = st.fixed_dictionaries(
    {},
    optional={
        "messageType": field_values,
        "notificationType": field_values,
        "referenceId": field_values | st.floats(),
        "openmedia": openmedia_like | field_values,
        "errorCode": field_values,
    },
)
message_like = st.one_of(
    notification_like,
    st.fixed_dictionaries(
        {"data": notification_like | json_values}, optional={"channel": field_values}
    ),
)


def _assert_outcome(outcome: Record | Rejected) -> None:
    assert isinstance(outcome, Record | Rejected)
    if isinstance(outcome, Record):
        assert isinstance(json.loads(outcome.payload_text), dict)
        for value in (outcome.interaction_id, outcome.state, outcome.reference_id):
            assert value is None or (isinstance(value, str) and len(value) <= MAX_FIELD_CHARS)
    else:
        assert outcome.reason


@settings(max_examples=200)
@given(json_values)
def test_any_json_value_yields_a_record_or_a_reason(value: Any) -> None:
    _assert_outcome(parse(value))
    _assert_outcome(parse(json.dumps(value)))


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_any_bytes_yield_a_record_or_a_reason(raw: bytes) -> None:
    _assert_outcome(parse(raw))


@settings(max_examples=150)
@given(st.text(max_size=300))
def test_any_text_yields_a_record_or_a_reason(raw: str) -> None:
    _assert_outcome(parse(raw))


@settings(max_examples=200)
@given(message_like)
def test_notification_shaped_values_yield_records_with_typed_fields(
    message: dict[str, Any],
) -> None:
    outcome = parse(json.dumps(message))
    _assert_outcome(outcome)
    if isinstance(outcome, Record) and outcome.interaction_id is not None:
        om = openmedia_of(message)
        assert outcome.interaction_id == str(om["id"])


# --- the fast parser against the plain reading (tests/unit/parse_reference.py) --------------
class _Text(str):
    """A str subclass: only an already-decoded value can hold one."""


class _Object(dict[str, Any]):
    """A dict subclass: likewise."""


# Values an extracted field may hold: mostly what GWS sends (short text, small integers),
# and every kind that takes another path: big integers (orjson reads those beyond 64 bits as
# floats), integral floats at and beyond 2**53, bools, text at the 256-character limit,
# lists and objects.
odd_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**53, 2**53 + 1, 2**63, -(2**63) - 1, 2**64 + 1, 10**100, 10**300])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([2.0**53, 2.0**64, -(2.0**60), 1e300, 0.5, -0.0, 3.0])
    | st.text(max_size=20)
    | st.text(min_size=MAX_FIELD_CHARS - 1, max_size=MAX_FIELD_CHARS + 1)
)
odd_values = (
    odd_scalars
    | st.lists(odd_scalars, max_size=2)
    | st.dictionaries(st.text(max_size=4), odd_scalars, max_size=2)
)
gws_text = st.sampled_from(
    ["OpenmediaStateChangeMessage", "StatusChange", "Processing", "email", "Inbound", ""]
)
field = gws_text | odd_values
odd_openmedia = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(
        ("id", "state", "mediaType", "openmediaType", "uri", "capabilities"), field
    )
    | {"userData": st.dictionaries(st.text(max_size=6), odd_scalars, max_size=3) | field},
)
odd_inner = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(
        ("messageType", "notificationType", "referenceId", "errorCode", "errorMessage"), field
    )
    | {"openmedia": odd_openmedia | field},
)
odd_message = st.fixed_dictionaries(
    {}, optional={"channel": st.sampled_from(["/v2/me/openmedia", ""]) | field}
) | st.fixed_dictionaries(
    {"data": odd_inner | field}, optional={"channel": st.sampled_from(["/v2/me/openmedia"]) | field}
)
odd_message = odd_message | odd_inner  # the bare inner object too
receipt_channels = st.none() | st.sampled_from(["/v2/me/openmedia", ""]) | st.text(max_size=300)


def _same(outcome: Record | Rejected, expected: Record | Rejected) -> None:
    """Same kind, same fields, and same types of values (1 and True and 1.0 differ)."""
    assert type(outcome) is type(expected)
    assert repr(outcome) == repr(expected)


def _subclassed(value: Any) -> Any:
    if isinstance(value, dict):
        return _Object({_Text(k): _subclassed(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_subclassed(v) for v in value]
    return _Text(value) if isinstance(value, str) else value


@settings(max_examples=100)
@given(odd_message, receipt_channels)
def test_parse_gives_what_the_plain_reading_gives_for_text_bytes_and_values(
    message: dict[str, Any], channel: str | None
) -> None:
    text = json.dumps(message)
    _same(parse(text, channel=channel), reference.parse(text, channel=channel))
    _same(parse(text.encode(), channel=channel), reference.parse(text.encode(), channel=channel))
    _same(parse(message, channel=channel), reference.parse(message, channel=channel))


@settings(max_examples=100)
@given(odd_message, receipt_channels)
def test_parse_of_decoded_values_with_str_and_dict_subclasses_matches_the_plain_reading(
    message: dict[str, Any], channel: str | None
) -> None:
    value = _subclassed(message)
    _same(parse(value, channel=channel), reference.parse(value, channel=channel))


def test_parse_of_the_sample_matches_the_plain_reading() -> None:
    lines = generate(interactions=300, agents=10, extra_updates=7, seed=3)
    assert len(lines) > 1000
    for line in lines:
        text = json.dumps(line.message)
        _same(parse(text, channel=line.channel), reference.parse(text, channel=line.channel))


def test_the_first_unfit_field_in_the_documented_order_names_the_reason() -> None:
    long = "x" * (MAX_FIELD_CHARS + 1)
    cases: list[tuple[Any, str | None]] = [
        ({"channel": long, "data": {"messageType": long}}, None),
        ({"data": {"messageType": 2.0**60, "referenceId": long}}, None),
        ('{"data": {"messageType": 123456789012345678901, "referenceId": "' + long + '"}}', None),
        ('{"data": {"referenceId": 123456789012345678901234567890}}', None),
        ({"data": {"openmedia": {"id": long, "state": long}}}, None),
        ({"data": {"errorCode": True, "referenceId": 10**300}}, None),
        ({"data": {}}, long),
        ({"channel": "/v2/me/calls", "data": {}}, long),
        ({"channel": "", "data": {}}, "/v2/me/*"),
        ({"channel": 7, "data": {}}, "/v2/me/*"),
        ({"messageType": "X", "openmedia": {"id": 5}}, None),
        ({"data": [], "referenceId": 1}, None),
    ]
    for message, channel in cases:
        _same(parse(message, channel=channel), reference.parse(message, channel=channel))
        if isinstance(message, str):
            continue
        text = json.dumps(message)
        _same(parse(text, channel=channel), reference.parse(text, channel=channel))
