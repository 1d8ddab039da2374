"""The invocation event: business time from ``time``; bad events name the field."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from handlers.errors import InputError
from handlers.model.events import parse_event, scheduled_event
from tests.support.ticks import load_event


def test_scheduled_event_time_is_the_business_clock():
    """GIVEN a real EventBridge Scheduled Event WHEN parsed THEN the tick time is its ``time`` in UTC."""
    tick = parse_event(load_event())
    assert tick.time == datetime(2026, 11, 23, 10, 5, tzinfo=timezone.utc)
    assert tick.event_id == "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa"


def test_offsets_are_converted_to_utc():
    """GIVEN a time with an offset WHEN parsed THEN it is the same instant in UTC."""
    tick = parse_event(load_event(time="2026-11-23T11:05:00+01:00"))
    assert tick.time == datetime(2026, 11, 23, 10, 5, tzinfo=timezone.utc)


def test_built_event_round_trips():
    """GIVEN an event built for a rule WHEN parsed THEN it carries that time and the rule's ARN."""
    moment = datetime(2026, 1, 5, 0, 1, tzinfo=timezone.utc)
    event = scheduled_event(moment, "order-tick")
    assert parse_event(event).time == moment
    assert event["resources"] == ["arn:aws:events:us-east-1:000000000000:rule/order-tick"]


@pytest.mark.parametrize(("event", "field"), [
    ({k: v for k, v in load_event().items() if k != "time"}, "event.time: missing"),
    (load_event(time="yesterday"), "event.time: not an ISO-8601 timestamp"),
    (load_event(time=1700000000), "event.time: must be an ISO-8601 timestamp string"),
    (load_event(detail={"colour": "red"}), "event.detail.colour: unknown key"),
    (load_event(detail=[1]), "event.detail: must be an object"),
    ([1, 2], "event: must be a JSON object"),
])
def test_bad_event_names_the_field(event, field):
    """GIVEN a bad event WHEN parsed THEN InputError names the field in one line."""
    with pytest.raises(InputError) as info:
        parse_event(event)
    assert str(info.value).startswith(field) and "\n" not in str(info.value)
