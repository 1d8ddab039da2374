"""The feed format: the shipped JSON Schemas (infra/feed/*.schema.json) and the parser
(handlers/model/feed.py) accept and refuse the same lines, and the examples in docs/feeds.md parse."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from handlers.model.feed import parse_object

REPO = Path(__file__).resolve().parent.parent
GOOD = {"line_id": "ord-1001-1", "time": "2026-01-05T09:30:00+01:00", "product_id": "LAPTOP-001", "warehouse_id": "WH-NYC", "quantity": 2}
#: one change each to a good line, and whether the feed takes the result
CHANGES = [
    ({}, True),
    ({"type": "return"}, True),
    ({"type": "order"}, True),
    ({"time": "2026-01-05T08:30:00Z"}, True),
    ({"quantity": 1_000_000}, True),
    ({"line_id": "x" * 128}, True),
    ({"quantity": 0}, False),
    ({"quantity": -1}, False),
    ({"quantity": 2.5}, False),
    ({"quantity": "2"}, False),
    ({"quantity": 1_000_001}, False),
    ({"quantity": True}, False),
    ({"time": "2026-01-05T09:30:00"}, False),
    ({"time": "yesterday"}, False),
    ({"line_id": ""}, False),
    ({"line_id": "a\nb"}, False),
    ({"line_id": "x" * 129}, False),
    ({"type": "refund"}, False),
    ({"colour": "red"}, False),
    ({"product_id": ""}, False),
    ({"line_id": None}, False),
]


def schema(kind: str) -> dict:
    return json.loads((REPO / "infra" / "feed" / f"{kind}.schema.json").read_text())


def schema_takes(kind: str, doc: dict) -> bool:
    validator = jsonschema.Draft202012Validator(schema(kind), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return validator.is_valid(doc)


def parser_takes(kind: str, doc: dict) -> bool:
    parsed = parse_object((json.dumps(doc) + "\n").encode(), kind)
    return len(parsed.lines) == 1


@pytest.mark.parametrize(("change", "taken"), CHANGES)
def test_the_schema_and_the_parser_agree_on_an_order_line(change, taken):
    doc = {k: v for k, v in {**GOOD, **change}.items() if v is not None}  # None: the field left out
    assert parser_takes("orders", doc) is taken
    assert schema_takes("orders", doc) is taken


@pytest.mark.parametrize(
    ("kind", "doc", "taken"),
    [
        ("receipts", GOOD, True),
        ("receipts", {**GOOD, "type": "return"}, False),
        ("counts", {**{k: v for k, v in GOOD.items() if k != "quantity"}, "on_hand": 0}, True),
        ("counts", {**{k: v for k, v in GOOD.items() if k != "quantity"}, "on_hand": -3}, False),
        ("counts", GOOD, False),
    ],
)
def test_the_schemas_of_receipts_and_counts_agree_with_the_parser(kind, doc, taken):
    assert parser_takes(kind, doc) is taken and schema_takes(kind, doc) is taken


def test_the_schemas_are_valid_json_schemas():
    for kind in ("orders", "receipts", "counts"):
        jsonschema.Draft202012Validator.check_schema(schema(kind))


def test_every_example_in_the_docs_parses():
    """GIVEN docs/feeds.md THEN each ```ndjson block parses with no bad line, each ```csv block too."""
    text = (REPO / "docs" / "feeds.md").read_text()
    blocks = re.findall(r"```(ndjson|csv) (orders|receipts|counts)\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    for _, kind, body in blocks:
        parsed = parse_object(body.encode(), kind)
        assert parsed.damaged is None and not parsed.bad and len(parsed.lines) >= 1, (kind, parsed.bad)
