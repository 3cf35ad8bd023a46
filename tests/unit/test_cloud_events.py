"""CloudEvents binary content mode round trip (CONTRACT §5)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from deltawatch.cloud_events import (
    CloudEventDecodeError,
    from_kafka,
    new_event,
    rfc3339_ms,
    to_kafka,
)


def test_binary_round_trip_preserves_every_attribute() -> None:
    moment = datetime(2026, 11, 24, 10, 15, 30, 123456, tzinfo=UTC)
    event = new_event(
        event_type="org.deltawatch.instance.status.delta",
        source="/deltawatch/clusters/c1",
        event_id="inst-1:7",
        subject="inst-1",
        time=moment,
        dataschema="urn:example:schema",
        extensions={"correlationid": "ds1:inst-1"},
        data={"instance-id": "inst-1", "sequence": 7, "nested": {"ü": [1, None]}},
    )
    record = to_kafka(event, "inst-1")
    headers = dict(record.headers)
    assert record.key == b"inst-1"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == b"inst-1:7"
    assert headers["ce_source"] == b"/deltawatch/clusters/c1"
    assert headers["ce_type"] == b"org.deltawatch.instance.status.delta"
    assert headers["ce_subject"] == b"inst-1"
    assert headers["ce_time"] == b"2026-11-24T10:15:30.123Z"
    assert headers["ce_dataschema"] == b"urn:example:schema"
    assert headers["ce_correlationid"] == b"ds1:inst-1"
    assert headers["content-type"] == b"application/json"

    decoded = from_kafka(record.key, record.value, record.headers)
    assert decoded.get_id() == "inst-1:7"
    assert decoded.get_source() == "/deltawatch/clusters/c1"
    assert decoded.get_type() == "org.deltawatch.instance.status.delta"
    assert decoded.get_subject() == "inst-1"
    assert decoded.get_dataschema() == "urn:example:schema"
    assert decoded.get_extension("correlationid") == "ds1:inst-1"
    assert decoded.get_time() == moment.replace(microsecond=123000)
    assert decoded.get_data() == {
        "instance-id": "inst-1",
        "sequence": 7,
        "nested": {"ü": [1, None]},
    }


def test_time_format_has_milliseconds() -> None:
    assert rfc3339_ms(datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)) == "2026-01-02T03:04:05.006Z"


@pytest.mark.parametrize(
    ("value", "headers"),
    [
        (b'{"a": 1}', []),
        (
            b"not json",
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"1"),
                ("ce_source", b"/s"),
                ("ce_type", b"t"),
                ("content-type", b"application/json"),
            ],
        ),
        (b'{"a": 1}', [("ce_specversion", b"1.0"), ("content-type", b"application/json")]),
    ],
)
def test_records_that_are_not_cloud_events_are_refused(
    value: bytes, headers: list[tuple[str, bytes]]
) -> None:
    with pytest.raises(CloudEventDecodeError):
        from_kafka(b"k", value, headers)
