"""The invocation event: business time from ``time``; bad events name the field."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from handlers.errors import InputError
from handlers.model.events import load_event_json, parse_event, scheduled_event
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


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({k: v for k, v in load_event().items() if k != "time"}, "event.time: missing"),
        (load_event(time="yesterday"), "event.time: not an ISO-8601 timestamp"),
        (load_event(time=1700000000), "event.time: must be an ISO-8601 timestamp string"),
        (load_event(detail={"colour": "red"}), "event.detail.colour: unknown key"),
        (load_event(detail=[1]), "event.detail: must be an object"),
        ([1, 2], "event: must be a JSON object"),
    ],
)
def test_bad_event_names_the_field(event, field):
    """GIVEN a bad event WHEN parsed THEN InputError names the field in one line."""
    with pytest.raises(InputError) as info:
        parse_event(event)
    assert str(info.value).startswith(field) and "\n" not in str(info.value)


# -- numbers: only ASCII digits, and none longer than it can mean (handlers/model/numbers.py) -----------


@pytest.mark.parametrize(
    "shard",
    ["²", "٠", "३", " ¹ ", "1_0", 10**5000, [10**5000], 1.5],
    ids=["superscript", "arabic-indic", "devanagari", "spaced", "underscore", "long", "list", "float"],
)
def test_a_shard_that_is_not_ascii_digits_is_an_input_error_naming_it(shard):
    """GIVEN detail.shard as superscript or other-script digits, or an integer Python cannot print
    WHEN parsed THEN one InputError names event.detail.shard (it was a ValueError traceback, or 0)."""
    with pytest.raises(InputError) as info:
        parse_event(load_event(detail={"shard": shard}))
    assert str(info.value).startswith("event.detail.shard: must be a whole number") and "\n" not in str(info.value)


@pytest.mark.parametrize(("shard", "number"), [("3", 3), (" 12 ", 12), (0, 0)])
def test_control_a_shard_of_ascii_digits_is_read(shard, number):
    assert parse_event(load_event(detail={"shard": shard})).shard == number


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (load_event(time=10**5000), "event.time: must be an ISO-8601 timestamp string, got <an integer of more than 40"),
        (load_event(id=10**5000), "event.id: must be a string"),
        (load_event(detail={10**5000: 1}), "event.detail.<an integer of more than 40 digits>: unknown key"),
    ],
    ids=["time", "id", "detail-key"],
)
def test_an_integer_too_long_to_print_is_named_not_a_traceback(event, field):
    with pytest.raises(InputError) as info:
        parse_event(event)
    assert str(info.value).startswith(field)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"time": "2026-01-05T00:01:00Z", "detail": {"shard": %s}}', "event.detail.shard"),
        ('{"time": "2026-01-05T00:01:00Z", "version": -%s}', "event.version"),
        ('{"time": "2026-01-05T00:01:00Z", "resources": [1, %s]}', "event.resources[1]"),
    ],
)
def test_an_event_file_with_a_5000_digit_integer_names_where_it_is(text, path):
    """GIVEN an event file holding a 5,000-digit integer WHEN read THEN one InputError names the
    file and the field (json.loads raised ValueError: Exceeds the limit)."""
    with pytest.raises(InputError) as info:
        load_event_json((text % ("7" * 5000)).encode(), "--event e.json")
    assert str(info.value) == f"--event e.json: {path}: an integer of 5,000 digits (at most 40 are read)"


def test_control_an_event_file_with_a_40_digit_integer_loads():
    doc = load_event_json(('{"time": "2026-01-05T00:01:00Z", "version": %s}' % ("9" * 40)).encode(), "--event e")
    assert doc["version"] == int("9" * 40)


def test_the_lambda_adapter_answers_a_superscript_shard_with_an_input_error(tmp_path, monkeypatch):
    """GIVEN handlers.app.handle (the Lambda path) and detail.shard "²" THEN InputError (it was a
    ValueError traceback through handlers.app.handle), and no store is written."""
    from handlers.app import handle

    monkeypatch.setenv("STOCKPULSE_STORE_URL", f"file://{tmp_path}/s")
    with pytest.raises(InputError, match=r"^event\.detail\.shard: "):
        handle("order_tick", load_event(detail={"shard": "²"}), None)
    assert not (tmp_path / "s").exists()
