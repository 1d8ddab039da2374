"""The ``report`` command: its summary equals ``status --json`` over the same span, its on-hand
figures equal the state minute by minute, and it refuses what it cannot report with one line."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from handlers.app import build_runtime
from handlers.runtime.invoke import load_state
from handlers.runtime.settings import Settings
from jobs.cli import main
from jobs.report_page import BAND_Z, daily_band
from jobs.schedule import Schedule
from jobs.simulate import simulate
from jobs.status import status_report
from tests.support.ticks import SMALL_CATALOG

FIRST_DAY = "2026-01-05T00:00:00Z"
MINUTES_AFTER = 300  # replayed one business minute at a time, the state read after each

pytestmark = pytest.mark.xdist_group("report")  # its replays (module fixtures) made once, on one worker


class _Table(HTMLParser):
    """The summary table's rows: {(product, warehouse): {data-key: text}}."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[tuple[str, str], dict[str, str]] = {}
        self._row: dict[str, str] | None = None
        self._key: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "data-product" in a:
            self._row = self.rows.setdefault((a["data-product"] or "", a["data-warehouse"] or ""), {})
        elif tag == "td" and self._row is not None:
            self._key = a.get("data-key")

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._key is not None:
            self._row[self._key] = self._row.get(self._key, "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._key = None
        elif tag == "tr":
            self._row = None


def _table(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    parser = _Table()
    parser.feed(path.read_text())
    return parser.rows


def _count(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with a day replayed at once (status A), then MINUTES_AFTER minutes one at a time
    (status B), and the on hand of every series at the end of each of those minutes."""
    root = tmp_path_factory.mktemp("report")
    catalog_file = root / "catalog.yaml"
    catalog_file.write_text(SMALL_CATALOG)
    store = f"file://{root}/store"
    runtime = build_runtime(Settings(store_url=store, catalog_path=str(catalog_file)))
    runtime = replace(runtime, publish=None)
    from handlers.model.events import parse_time

    simulate(runtime, start=parse_time(FIRST_DAY), days=1, schedule=Schedule.parse())
    state_a, _ = load_state(runtime.store, runtime.catalog)
    status_a = status_report(state_a, runtime.catalog, runtime.store)
    on_hand = []
    for _ in range(MINUTES_AFTER):
        result = simulate(runtime, start=None, days=1 / 1440, schedule=Schedule.parse())
        on_hand.append(result.after.on_hand.copy())
    state_b, _ = load_state(runtime.store, runtime.catalog)
    return {
        "root": root,
        "store": store,
        "catalog": str(catalog_file),
        "a": status_a,
        "b": status_report(state_b, runtime.catalog, runtime.store),
        "on_hand": np.array(on_hand).T,
    }


def _report(run: dict[str, Any], capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict[str, Any], Path]:
    out = run["root"] / f"r{abs(hash(args))}.html"
    assert main(["report", "--store", run["store"], "--catalog", run["catalog"], "--out", str(out), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out), out


def _series(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["product_id"], r["warehouse_id"]): r for r in rows if r["level"] == "series"}


def test_whole_run_summary_equals_status_json(run, capsys):
    """GIVEN a replayed store WHEN `report` covers all of it THEN per series and in total, units sold,
    lost sales, fill rate, reorders, received and end on hand equal `status --json`, in the JSON and
    in the page's summary table."""
    assert main(["status", "--json", "--store", run["store"], "--catalog", run["catalog"]]) == 0
    status = json.loads(capsys.readouterr().out)
    summary, page = _report(run, capsys)
    rows, table = _series(summary["rows"]), _table(page)
    assert len(rows) == len(status["series"]) == 4
    for s in status["series"]:
        key = (s["product_id"], s["warehouse_id"])
        r, cells = rows[key], table[key]
        assert (r["units_sold"], r["lost_sales"], r["reorders"], r["received"], r["end_on_hand"]) == (
            s["shipped"],
            s["lost_sales"],
            s["reorders"],
            s["received"],
            s["on_hand"],
        )
        assert r["fill_rate"] == pytest.approx(s["shipped"] / (s["shipped"] + s["lost_sales"]))
        assert [_count(cells[k]) for k in ("units_sold", "lost_sales", "reorders", "received", "end_on_hand")] == [
            s["shipped"],
            s["lost_sales"],
            s["reorders"],
            s["received"],
            s["on_hand"],
        ]
        assert cells["fill_rate"] == f"{s['shipped'] / (s['shipped'] + s['lost_sales']):.1%}"
    c = status["counters"]
    total = summary["rows"][-1]
    assert (total["units_sold"], total["lost_sales"], total["reorders"], total["received"]) == (
        c["shipped_total"],
        c["lost_sales_total"],
        c["reorder_events_total"],
        c["received_total"],
    )
    assert _count(table[("total", "")]["lost_sales"]) == c["lost_sales_total"] > 0  # the catalog runs out


def test_a_span_equals_the_difference_of_two_status_snapshots(run, capsys):
    """GIVEN status A after the first day and B at the end WHEN `report --from A --to B` THEN every
    series' figures are B minus A."""
    a, b = run["a"], run["b"]
    summary, page = _report(run, capsys, "--from", a["orders_through"], "--to", b["orders_through"])
    rows, table = _series(summary["rows"]), _table(page)
    for sa, sb in zip(a["series"], b["series"]):
        key = (sb["product_id"], sb["warehouse_id"])
        want = [sb[k] - sa[k] for k in ("shipped", "lost_sales", "reorders", "received")]
        assert [rows[key][k] for k in ("units_sold", "lost_sales", "reorders", "received")] == want
        assert [_count(table[key][k]) for k in ("units_sold", "lost_sales", "reorders", "received")] == want
        assert rows[key]["end_on_hand"] == sb["on_hand"]
    assert sum(sb["shipped"] - sa["shipped"] for sa, sb in zip(a["series"], b["series"])) > 0


def test_mean_on_hand_and_stockout_minutes_equal_the_state_minute_by_minute(run, capsys):
    """GIVEN the on hand read from the state after each of the last minutes WHEN `report` covers
    those minutes THEN mean on hand and stockout minutes per series are those of the state."""
    summary, _ = _report(run, capsys, "--from", run["a"]["orders_through"], "--to", run["b"]["orders_through"])
    rows = [r for r in summary["rows"] if r["level"] == "series"]
    on_hand = run["on_hand"]
    assert [r["mean_on_hand"] for r in rows] == pytest.approx(on_hand.mean(axis=1).tolist())
    assert [r["stockout_minutes"] for r in rows] == (on_hand <= 0).sum(axis=1).tolist()
    assert sum(r["stockout_minutes"] for r in rows) > 0  # the comparison covers empty shelves too


def test_forecast_wape_is_the_scored_days_error_over_their_demand(run, capsys):
    """GIVEN a run with scored days WHEN `report` THEN the total WAPE equals the forecast metric's
    sums kept in the state (forecast_abs_error / forecast_actual), to the events' rounding."""
    summary, _ = _report(run, capsys)
    state, _ = load_state(build_runtime(Settings(store_url=run["store"], catalog_path=run["catalog"])).store)
    total = summary["rows"][-1]
    assert total["scored_days"] == 4  # one complete day x 4 series
    assert total["forecast_wape"] == pytest.approx(state.score_abs_error.sum() / state.score_actual.sum(), abs=1e-3)


def test_the_demand_band_is_the_forecast_plus_minus_z_sigma_of_the_warehouses_summed():
    """GIVEN two warehouses' scores of a day, sigma 3 and 4 WHEN the band is computed THEN it is the
    summed forecast +- 1.2816 x 5 (variances add), clipped at 0; a day with an unknown spread has none."""
    scores = pd.DataFrame(
        {
            "day": ["2026-01-06", "2026-01-06", "2026-01-07", "2026-01-07"],
            "forecast_units": [1.0, 2.0, 10.0, 10.0],
            "forecast_std_units": [3.0, 4.0, 1.0, None],
            "actual_units": [2.0, 2.0, 9.0, 11.0],
        }
    )
    band = daily_band(scores).set_index("day")
    assert band.loc["2026-01-06", "band_high"] == pytest.approx(3.0 + BAND_Z * 5.0)
    assert band.loc["2026-01-06", "band_low"] == 0.0  # 3 - 6.4 clipped
    assert band.loc["2026-01-07", "forecast_units"] == 20.0
    assert np.isnan(band.loc["2026-01-07", "band_low"]) and np.isnan(band.loc["2026-01-07", "band_high"])


def test_the_demand_chart_draws_the_band(run, capsys):
    """GIVEN a run with scored days WHEN `report` THEN each demand chart has an "80% band" area series."""
    _, out = _report(run, capsys)
    page = out.read_text()
    assert page.count('"80% band"') == 2  # one legend item per product's demand chart
    assert '"name":"VArea"' in page.replace(" ", "")


def test_product_filter_keeps_only_that_product(run, capsys):
    """GIVEN two products WHEN `report --product P-2` THEN only P-2's rows and charts are there."""
    summary, page = _report(run, capsys, "--product", "P-2")
    assert {r["product_id"] for r in summary["rows"]} == {"P-2", "total"}
    text = page.read_text()
    dash = r"(—|\\u2014)"  # the chart titles travel in the page's JSON
    assert re.search(f"Inventory on hand {dash} P-2", text) and not re.search(f"Inventory on hand {dash} P-1", text)


def test_the_page_is_self_contained(run, capsys):
    """GIVEN a report WHEN its HTML is read THEN no script, style or image is loaded from elsewhere,
    and BokehJS is inline."""
    _, page = _report(run, capsys)
    text = page.read_text()
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=", text, re.IGNORECASE)
    assert "@import" not in text
    assert re.search(r"Bokeh\s*=|window\.Bokeh", text)
    assert page.stat().st_size < 3_000_000


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["--product", "NOPE"], 2, ["--product", "unknown 'NOPE'", "P-1"]),
        (["--from", "2027-01-01T00:00:00Z"], 1, ["--from/--to", "no data", "the store has data from"]),
        (["--to", "2025-12-01T00:00:00Z"], 1, ["--from/--to", "no data"]),
        (["--from", "2026-01-05T06:00:00Z", "--to", "2026-01-05T05:00:00Z"], 2, ["--from", "not before --to"]),
        (["--from", "yesterday"], 2, ["--from", "ISO-8601"]),
    ],
)
def test_what_cannot_be_reported_is_one_line_and_a_non_zero_exit(run, capsys, args, code, words):
    """GIVEN a store WHEN the span or product holds nothing THEN one line says why, non-zero exit, no file."""
    out = run["root"] / "refused.html"
    assert main(["report", "--store", run["store"], "--catalog", run["catalog"], "--out", str(out), *args]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(w in err[0] for w in words), err
    assert not out.exists()


def test_an_empty_store_is_one_line_and_exit_1(tmp_path, capsys):
    """GIVEN an empty store WHEN `report` THEN one line says it holds no state, exit 1, no file."""
    out = tmp_path / "r.html"
    assert main(["report", "--store", f"file://{tmp_path}/empty", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no state yet" in err[0]
    assert not out.exists()


def test_simulate_says_how_to_get_the_report_and_writes_it_with_report(tmp_path, capsys):
    """GIVEN an empty store WHEN `simulate` runs THEN its last line is the report command; with
    `--report FILE` the file is written and covers the replay."""
    store = f"file://{tmp_path}/s"
    assert main(["simulate", "--days", "0.05", "--store", store, "-q"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"report: python -m jobs report --store {store} --out stockpulse-report.html"
    page = tmp_path / "run.html"
    assert main(["simulate", "--days", "0.05", "--store", store, "-q", "--report", str(page)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"report: {page}"
    assert "2026-01-05T01:12:00Z .. 2026-01-05T02:24:00Z" in page.read_text()


# -- damaged log objects: skipped with a warning, counted ------------------------------------------


def _damaged(payload: bytes, how: str) -> bytes:
    import gzip

    return {
        "truncated": payload[: len(payload) // 2],
        "not-gzip": b"not a gzip stream at all",
        "crc": payload[:20] + bytes([payload[20] ^ 0xFF]) + payload[21:],
        "not-json": gzip.compress(b'{"type": "order", nope\n'),
        "not-an-event": gzip.compress(b'{"quantity": 3}\n'),
        "bad-timestamp": gzip.compress(
            b'{"type": "order", "@timestamp": "yesterday", "product_id": "P-1", '
            b'"warehouse_id": "W-A", "quantity": 1, "remaining_inventory": 5}\n'
        ),
    }[how]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A quarter of a day replayed, and status at its end."""
    root = tmp_path_factory.mktemp("damaged")
    (root / "catalog.yaml").write_text(SMALL_CATALOG)
    args = ["--store", f"file://{root}/store", "--catalog", str(root / "catalog.yaml")]
    assert main(["simulate", "--days", "0.25", "-q", "--json", *args]) == 0
    return {"root": root, "args": args}


@pytest.mark.parametrize("how", ["truncated", "not-gzip", "crc", "not-json", "not-an-event", "bad-timestamp"])
def test_a_damaged_log_object_is_skipped_with_a_warning_and_counted(small_run, tmp_path, capsys, how):
    """GIVEN an old order_tick log object that cannot be read (truncated: EOFError; not gzip:
    BadGzipFile; a failed CRC; a line that is not JSON, not an event, or not stamped with a time) WHEN `report` runs THEN it
    writes the page, warns once naming the key, lists it in --json and on the page, and every figure
    is the status figure less exactly that object's events (report stopped with a traceback)."""
    import shutil

    from handlers.model.logs import decode_events

    store = tmp_path / "store"
    shutil.copytree(small_run["root"] / "store", store)
    args = ["--store", f"file://{store}", "--catalog", small_run["args"][3]]
    assert main(["status", "--json", *args]) == 0
    status = json.loads(capsys.readouterr().out)
    keys = sorted(str(p.relative_to(store)) for p in (store / "logs" / "order_tick").rglob("*.ndjson.gz"))
    key = next(k for k in keys if any(e["type"] == "order" for e in decode_events((store / k).read_bytes())))
    lost = sum(e["quantity"] for e in decode_events((store / key).read_bytes()) if e["type"] == "order")
    (store / key).write_bytes(_damaged((store / key).read_bytes(), how))
    page = tmp_path / "r.html"
    assert main(["report", *args, "--out", str(page), "--json"]) == 0
    captured = capsys.readouterr()
    (warning,) = captured.err.strip().splitlines()
    assert warning.startswith(f"stockpulse: warning: skipped the damaged log object {key} (")
    summary = json.loads(captured.out)
    assert [d["key"] for d in summary["damaged_log_objects"]] == [key]
    assert summary["rows"][-1]["units_sold"] == status["counters"]["shipped_total"] - lost
    assert lost > 0 and f"1 damaged log object skipped, its events in no figure: {key}" in page.read_text()
    assert main(["report", *args, "--out", str(page)]) == 0
    assert "1 damaged log objects skipped" in capsys.readouterr().out


def test_control_an_undamaged_store_reports_no_damage(small_run, tmp_path, capsys):
    assert main(["report", *small_run["args"], "--out", str(tmp_path / "r.html"), "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and json.loads(captured.out)["damaged_log_objects"] == []
    assert 'id="damaged-objects"' not in (tmp_path / "r.html").read_text()


# -- a span reads what it needs, and says how many objects fell in it -------------------------------

SLOW_CATALOG = """
seed: 4
products:
  - {id: FAST, base_demand_per_day: 480, lead_time_hours: 6, pack_size: 10}
  - {id: SLOW, base_demand_per_day: 3, lead_time_hours: 24, pack_size: 1}
warehouses: [{id: W, timezone: UTC}]
initial_stock: 400
"""


def _status_of(args: list[str]) -> dict[str, Any]:
    runtime = build_runtime(Settings(store_url=args[1], catalog_path=args[3]))
    state, _ = load_state(runtime.store, runtime.catalog)
    return status_report(state, runtime.catalog, runtime.store)


@pytest.fixture(scope="module")
def slow_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A day and a half replayed (status A), then half an hour more (status B), on a catalog with one
    product whose on hand changes only a few times a day."""
    root = tmp_path_factory.mktemp("span")
    (root / "catalog.yaml").write_text(SLOW_CATALOG)
    args = ["--store", f"file://{root}/store", "--catalog", str(root / "catalog.yaml")]
    assert main(["simulate", "--days", "1.5", "-q", "--json", *args]) == 0
    a = _status_of(args)
    assert main(["simulate", "--days", str(1 / 48), "-q", "--json", *args]) == 0
    return {"root": root, "args": args, "a": a, "b": _status_of(args)}


def _stock_keys(store: Path, until: float) -> list[Path]:
    """The order_tick and restock log objects keyed at or before ``until``."""
    from handlers.model.logs import parse_log_key

    return [
        p
        for handler in ("order_tick", "restock")
        for p in (store / "logs" / handler).rglob("*.ndjson.gz")
        if parse_log_key(str(p))[1] <= until
    ]


def _slow_changes(store: Path) -> list[float]:
    from handlers.model.events import parse_time
    from handlers.model.logs import decode_events

    return sorted(
        parse_time(e["@timestamp"]).timestamp()
        for p in (store / "logs").rglob("*.ndjson.gz")
        for e in decode_events(p.read_bytes())
        if e.get("product_id") == "SLOW" and e["type"] in ("order", "lost_sale", "restock")
    )


def test_a_span_reads_the_objects_before_it_only_back_to_each_series_last_change(slow_run, capsys):
    """GIVEN a store of a day and a half WHEN `report --from A --to B` covers its last half hour THEN
    it says how many log objects fell in the span and how many before it it read, far fewer than
    every earlier object, and SLOW — unchanged in the span, last changed hours before it, beyond the
    first batch read — stands at its on hand of A for the whole span."""
    from handlers.model.events import parse_time
    from jobs.report import BEFORE_BATCH

    a, b = slow_run["a"], slow_run["b"]
    store = slow_run["root"] / "store"
    start, end = parse_time(a["orders_through"]).timestamp(), parse_time(b["orders_through"]).timestamp()
    changes = _slow_changes(store)
    before = [t for t in changes if t <= start]
    assert before and start - before[-1] > 2 * BEFORE_BATCH * 60 and not [t for t in changes if start < t <= end], (
        "precondition: SLOW changed hours before the span and not in it"
    )
    slow_a = next(s["on_hand"] for s in a["series"] if s["product_id"] == "SLOW")
    assert slow_a != 400, "precondition: SLOW's on hand at A is not its initial stock"
    out = slow_run["root"] / "span.html"
    capsys.readouterr()
    assert main(["report", *slow_run["args"], "--from", a["orders_through"], "--to", b["orders_through"], "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    objects = summary["log_objects"]
    assert objects["span"] == 30 + 6 + 2 and objects["after"] == 0  # order_tick, restock, alert in half an hour
    earlier = _stock_keys(store, start)
    needed = len(_stock_keys(store, start)) - len(_stock_keys(store, before[-1] - 60))  # back to SLOW's last change
    assert needed <= objects["before"] <= 2 * needed + BEFORE_BATCH and objects["before"] < len(earlier)
    slow = next(r for r in summary["rows"] if r["level"] == "series" and r["product_id"] == "SLOW")
    assert slow["mean_on_hand"] == slow["end_on_hand"] == slow_a
    ends = {r["product_id"]: r["end_on_hand"] for r in summary["rows"] if r["level"] == "series"}
    assert ends == {s["product_id"]: s["on_hand"] for s in b["series"]}
    assert main(["report", *slow_run["args"], "--from", a["orders_through"], "--to", b["orders_through"], "--out", str(out)]) == 0
    assert (
        f"{sum(objects.values()):,} log objects read: {objects['span']:,} in the span, "
        f"{objects['before']:,} before it (the on hand at its start)" in capsys.readouterr().out
    )


def test_control_without_the_objects_before_the_span_the_on_hand_at_its_start_is_wrong(slow_run, tmp_path, capsys):
    """The check above can fail: with the earlier objects gone, SLOW stands at its initial stock."""
    import shutil

    from handlers.model.events import parse_time

    a, b = slow_run["a"], slow_run["b"]
    store = tmp_path / "store"
    shutil.copytree(slow_run["root"] / "store", store)
    for path in _stock_keys(store, parse_time(a["orders_through"]).timestamp()):
        path.unlink()
    capsys.readouterr()
    assert (
        main(
            [
                "report",
                "--store",
                f"file://{store}",
                "--catalog",
                slow_run["args"][3],
                "--from",
                a["orders_through"],
                "--to",
                b["orders_through"],
                "--out",
                str(tmp_path / "r.html"),
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["log_objects"]["before"] == 0
    slow = next(r for r in summary["rows"] if r["level"] == "series" and r["product_id"] == "SLOW")
    assert slow["end_on_hand"] == 400 != next(s["on_hand"] for s in a["series"] if s["product_id"] == "SLOW")


def test_the_whole_store_is_all_in_the_span(small_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["report", *small_run["args"], "--out", str(tmp_path / "r.html"), "--json"]) == 0
    objects = json.loads(capsys.readouterr().out)["log_objects"]
    store = small_run["root"] / "store"
    assert objects == {"span": len(list((store / "logs").rglob("*.ndjson.gz"))), "before": 0, "after": 0}


def test_an_unknown_product_lists_ten_known_ids_and_the_count(tmp_path, capsys):
    """GIVEN a catalog of 24 products WHEN `report --product NOPE` THEN the one line lists the first
    ten ids and says how many there are (it listed every id: a 100,000-product catalog made one
    line of a megabyte)."""
    from tests.support.catalogs import catalog_text

    (tmp_path / "catalog.yaml").write_text(catalog_text(24))
    args = ["--store", f"file://{tmp_path}/s", "--catalog", str(tmp_path / "catalog.yaml")]
    assert main(["invoke", "order_tick", "--time", "2026-01-05T00:01:00Z", *args]) == 0
    capsys.readouterr()
    assert main(["report", *args, "--product", "NOPE", "--out", str(tmp_path / "r.html")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith(
        "--product: unknown 'NOPE' (one of SKU-000, SKU-001, SKU-002, SKU-003, SKU-004, SKU-005, "
        "SKU-006, SKU-007, SKU-008, SKU-009, ... (24 products))"
    )


# -- a shop's feeds: backorders, returns, receipts and counts in the figures and the on hand -------------


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two hours of a shop's feeds, an order tick every minute: orders beyond the shelf (backorders),
    returns, receipts and stock counts at random seconds, several kinds in one minute of one series;
    the on hand read from the state after every order tick."""
    from datetime import timedelta

    from handlers.model.events import scheduled_event
    from handlers.runtime.feeds import Feeds
    from handlers.runtime.invoke import Runtime, invoke
    from handlers.storage.file import FileStore
    from tests.support.emitted import CATALOG, CATALOG_TEXT, START, ticks
    from tests.support.feeds import line, ndjson, put

    root = tmp_path_factory.mktemp("fed")
    (root / "catalog.yaml").write_text(CATALOG_TEXT)
    store = FileStore(root / "store")
    feeds = {kind: FileStore(root / kind) for kind in ("orders", "receipts", "counts")}
    runtime = Runtime(store=store, catalog=CATALOG, feeds=Feeds(feeds))
    rng = np.random.default_rng(7)
    at, series = START.replace(hour=9), list(zip(CATALOG.series_product_ids, CATALOG.series_warehouse_ids))
    orders, receipts, counts = [], [], []
    for n in range(600):
        p, w = series[int(rng.integers(len(series)))]
        moment = at + timedelta(seconds=int(rng.integers(60, 120 * 60)))
        what = rng.random()
        if what < 0.8:
            orders.append(line(f"o{n}", moment, p, w, int(rng.integers(1, 12))))
        elif what < 0.88:
            orders.append(line(f"o{n}", moment, p, w, int(rng.integers(1, 4)), type="return"))
        elif what < 0.96:
            receipts.append(line(f"r{n}", moment, p, w, int(rng.integers(10, 80))))
        else:
            counts.append(
                {**{k: v for k, v in line(f"c{n}", moment, p, w).items() if k != "quantity"}, "on_hand": int(rng.integers(0, 60))}
            )
    for kind, lines in (("orders", orders), ("receipts", receipts), ("counts", counts)):
        put(feeds[kind], at, f"{kind}.ndjson", ndjson(sorted(lines, key=lambda row: row["time"])))
    on_hand, first = [], None
    for name, moment in ticks(start=at, minutes=120, every={"restock": 5, "order_tick": 1, "forecast": 60, "alert": 15}):
        invoke(name, scheduled_event(moment, name.replace("_", "-"), event_id=f"f-{name}-{moment:%s}"), runtime)
        if name == "order_tick":
            first = first or moment
            on_hand.append(load_state(store, CATALOG)[0].on_hand.copy())
    state, _ = load_state(store, CATALOG)
    return {
        "root": root,
        "store": f"file://{store.root}",
        "catalog": str(root / "catalog.yaml"),
        "first": first,
        "on_hand": np.array(on_hand).T,
        "status": status_report(state, CATALOG, store),
    }


def test_a_fed_stores_report_counts_backorders_returns_receipts_and_counts_as_status_does(fed, capsys):
    """GIVEN a store run on a shop's feeds WHEN `report` covers all of it THEN per series backordered,
    returned, stock-count adjustments, received and end on hand equal `status --json`; the fill rate is
    the units filled from the shelf at once; the page's table shows the feed columns."""
    summary, page = _report(fed, capsys)
    rows, table = _series(summary["rows"]), _table(page)
    for s in fed["status"]["series"]:
        key = (s["product_id"], s["warehouse_id"])
        r = rows[key]
        assert (r["backordered"], r["returned"], r["adjusted"], r["received"], r["end_on_hand"]) == (
            s["backordered"],
            s["returned"],
            s["adjusted"],
            s["received"],
            s["on_hand"],
        ), key
        assert r["fill_rate"] == pytest.approx((r["units_sold"] - r["backordered"]) / r["units_sold"])
        assert _count(table[key]["backordered"]) == s["backordered"]
    total = fed["status"]["counters"]
    assert total["backordered_total"] > 0 and total["returned_total"] > 0 and total["adjusted_total"] != 0


def test_a_fed_stores_on_hand_is_the_states_minute_by_minute(fed, capsys):
    """GIVEN the on hand read from the state after every order tick of the fed store WHEN `report` covers
    those minutes THEN mean on hand and stockout minutes per series are the state's: the events of one
    minute (orders, returns, receipts, counts of one series) are taken in the order they were applied.
    Control: taken by kind instead, the on hand differs."""
    from handlers.model.events import format_epoch

    start = format_epoch(fed["first"].timestamp())
    summary, _ = _report(fed, capsys, "--from", start)
    rows = [r for r in summary["rows"] if r["level"] == "series"]
    on_hand = fed["on_hand"][:, 1:]
    assert [r["mean_on_hand"] for r in rows] == pytest.approx(on_hand.mean(axis=1).tolist())
    assert [r["stockout_minutes"] for r in rows] == (on_hand <= 0).sum(axis=1).tolist()
    assert sum(r["stockout_minutes"] for r in rows) > 0


def test_control_a_fed_stores_on_hand_taken_by_kind_within_a_minute_is_wrong(fed, capsys, monkeypatch):
    """The control of the test above: with the order of the events in their log object forgotten (each
    minute's changes taken kind by kind), the on hand is not the state's."""
    import jobs.report as report
    from handlers.model.events import format_epoch

    events_of = report._events_of

    def unordered(payload: bytes, index: dict[tuple[str, str], int]) -> Any:
        return {kind: [(row[0], row[1], 0, *row[3:]) for row in rows] for kind, rows in events_of(payload, index).items()}

    monkeypatch.setattr(report, "_events_of", unordered)
    summary, _ = _report(fed, capsys, "--from", format_epoch(fed["first"].timestamp()))
    rows = [r for r in summary["rows"] if r["level"] == "series"]
    assert [r["mean_on_hand"] for r in rows] != pytest.approx(fed["on_hand"][:, 1:].mean(axis=1).tolist())
