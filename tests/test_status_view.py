"""The ``status`` terminal view (rich): risk colours, days of cover, purchase orders, handlers,
counters, ``--watch`` redraws; and ``status --json`` unchanged."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text

from handlers.app import build_runtime
from handlers.runtime.invoke import load_state
from handlers.runtime.settings import Settings
from jobs.cli import main
from jobs.console import status_view, watch_status
from jobs.status import risk_of, status_extras, status_report, status_screen
from tests.support.ticks import SMALL_CATALOG

JSON_KEYS = [
    "store",
    "catalog",
    "created_at",
    "orders_through",
    "last_applied",
    "series",
    "purchase_orders_open",
    "counters",
    "feeds",
    "pending_log_objects",
]
SERIES_KEYS = [
    "product_id",
    "warehouse_id",
    "on_hand",
    "initial",
    "received",
    "shipped",
    "lost_sales",
    "reorders",
    "backorder",
    "backordered",
    "returned",
    "adjusted",
    "open_purchase_orders",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("status")
    (root / "catalog.yaml").write_text(SMALL_CATALOG)
    args = ["--store", f"file://{root}/s", "--catalog", str(root / "catalog.yaml")]
    assert main(["simulate", "--days", "0.5", "-q", "--json", *args]) == 0
    runtime = build_runtime(Settings(store_url=args[1], catalog_path=args[3]))
    state, _ = load_state(runtime.store, runtime.catalog)
    return {"args": args, "runtime": runtime, "state": state}


def _render(renderable: Any, width: int = 200) -> Console:
    console = Console(record=True, width=width, file=io.StringIO(), color_system="truecolor")
    console.print(renderable)
    return console


@pytest.mark.parametrize(
    "on_hand, cover, restock_in, risk",
    [
        (0, 0.0, 1.0, "out"),
        (5, 0.4, 0.5, "high"),
        (5, 1.2, 0.5, "watch"),
        (5, 1.6, 0.5, "ok"),
        (5, float("inf"), 2.0, "ok"),
    ],
)
def test_risk_compares_cover_with_when_stock_can_arrive(on_hand, cover, restock_in, risk):
    """GIVEN on hand, days of cover and days until stock can arrive THEN the risk class follows."""
    assert risk_of(on_hand, cover, restock_in) == risk


def test_status_json_is_unchanged(store, capsys):
    """GIVEN a store WHEN `status --json` THEN it prints exactly status_report, with the contract's keys."""
    assert main(["status", "--json", *store["args"]]) == 0
    printed = capsys.readouterr().out
    runtime = store["runtime"]
    report = status_report(store["state"], runtime.catalog, runtime.store)
    assert printed == json.dumps(report, indent=2) + "\n"
    data = json.loads(printed)
    assert list(data) == JSON_KEYS and list(data["series"][0]) == SERIES_KEYS


def test_the_view_colours_an_empty_shelf_and_shows_cover_orders_and_handlers(store):
    """GIVEN a store where a shelf ran empty WHEN the view is drawn THEN that row says `out` on red,
    cover is on hand over forecast demand, open orders show their due time, each handler its tick."""
    runtime, state = store["runtime"], store["state"]
    report = status_report(state, runtime.catalog, runtime.store)
    extras = status_extras(state, runtime.catalog, runtime.store)
    risks = [x["risk"] for x in extras["series"]]
    assert "out" in risks
    empty = risks.index("out")
    assert report["series"][empty]["on_hand"] == 0
    x0, s0 = extras["series"][0], report["series"][0]
    assert x0["days_of_cover"] == pytest.approx(s0["on_hand"] / state.forecast_mean[0].mean())
    console = _render(status_view(report, extras, now=1.8e9))
    text = console.export_text(clear=False)
    html = console.export_html(inline_styles=True)
    assert f"{x0['days_of_cover']:.1f} d" in text
    assert "background-color: #800000" in html or "background-color: #ff0000" in html  # "out" on red
    for po in report["purchase_orders_open"]:
        assert po["id"] in text and po["due"] in text
    for name, applied in report["last_applied"].items():
        assert name in text and applied in text
    assert f"shipped {report['counters']['shipped_total']:,}" in text


def test_last_success_comes_from_the_metrics_files(store):
    """GIVEN a simulate that wrote metrics/<handler>.prom WHEN the extras are read THEN each handler's
    last success is the gauge's wall-clock time."""
    runtime = store["runtime"]
    extras = status_extras(store["state"], runtime.catalog, runtime.store)
    for name, seconds in extras["last_success"].items():
        prefix = f'handler_last_success_timestamp_seconds{{handler="{name}"}} '
        lines = [line for line in runtime.store.get(f"metrics/{name}.prom").decode().splitlines() if line.startswith(prefix)]
        assert len(lines) == 1 and seconds == float(lines[0][len(prefix) :]) > 1.7e9


def test_an_empty_store_says_it_waits(tmp_path):
    """GIVEN an empty store WHEN the watch screen is drawn THEN it says it waits for the first tick."""
    runtime = build_runtime(Settings(store_url=f"file://{tmp_path}/none"))
    assert "waiting for the first tick" in _render(status_screen(runtime.store, runtime.catalog)).export_text()


def test_watch_redraws_what_load_returns(tmp_path):
    """GIVEN a load that returns a new screen each time WHEN watch_status runs 3 rounds THEN it slept
    the interval between redraws and the last screen is the one shown."""
    screens = iter(Text(f"business time T{i}") for i in range(10))
    slept: list[float] = []
    console = Console(record=True, width=80, file=io.StringIO(), force_terminal=True)
    watch_status(lambda: next(screens), 0.25, console=console, sleep=slept.append, rounds=3)
    assert slept == [0.25, 0.25, 0.25]
    assert console.export_text().strip().endswith("business time T3")


@pytest.mark.parametrize("seconds", ["0", "1e-9", "0.19", "3601", "1e400"])
def test_watch_refuses_an_interval_out_of_bounds(tmp_path, seconds, capsys):
    """GIVEN `status --watch 1e-9` (it redrew in a tight loop) or another interval outside [0.2, 3600]
    THEN one line names --watch, exit 2, before any store is opened."""
    assert main(["status", "--watch", seconds, "--store", f"file://{tmp_path}/s"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("stockpulse: error: --watch: must be a number of seconds in [0.2, 3600], got ")
    assert not (tmp_path / "s").exists()


def test_watch_with_json_is_refused(tmp_path, capsys):
    """`--watch` redraws the terminal view; with `--json` it was silently ignored."""
    assert main(["status", "--json", "--watch", "1", "--store", f"file://{tmp_path}/s"]) == 2
    assert "--watch: redraws the terminal view; not with --json" in capsys.readouterr().err


def test_control_watch_takes_the_bounds(store):
    """The bounds themselves are accepted."""
    from jobs.status import WATCH_SECONDS, check_watch

    assert [check_watch(seconds) for seconds in WATCH_SECONDS] == [0.2, 3600.0]


def test_last_success_is_unknown_when_the_metrics_files_are_older_than_the_state(tmp_path):
    """GIVEN a store whose metrics files were written by a simulate, and later ticks whose metrics
    went elsewhere (a Pushgateway; here: not published) WHEN the extras are read THEN last success
    is unknown (—) for every handler that ran since, not the stale time of the old files; the
    handlers whose files are of their last tick still show theirs."""
    from datetime import datetime, timezone

    from handlers.model.events import scheduled_event
    from handlers.runtime.invoke import invoke

    (tmp_path / "catalog.yaml").write_text(SMALL_CATALOG)
    settings = Settings(store_url=f"file://{tmp_path}/s", catalog_path=str(tmp_path / "catalog.yaml"))
    assert main(["simulate", "--days", "0.1", "-q", "--json", "--store", settings.store_url, "--catalog", settings.catalog_path]) == 0
    runtime = build_runtime(settings)
    state, _ = load_state(runtime.store, runtime.catalog)
    before = status_extras(state, runtime.catalog, runtime.store)["last_success"]
    assert all(seconds is not None for seconds in before.values()), before  # the files are of the last ticks
    quiet = replace(runtime, publish=None)
    moment = datetime.fromtimestamp(state.orders_through + 3600, timezone.utc)
    for name in ("restock", "order_tick"):
        assert invoke(name, scheduled_event(moment, name), quiet)["status"] == "applied"
    state, _ = load_state(runtime.store, runtime.catalog)
    after = status_extras(state, runtime.catalog, runtime.store)["last_success"]
    assert after == {**before, "restock": None, "order_tick": None}
    view = _render(
        status_view(status_report(state, runtime.catalog, runtime.store), status_extras(state, runtime.catalog, runtime.store), now=1.8e9)
    ).export_text()
    assert [line.split("│")[4].strip() for line in view.splitlines() if "│ order_tick" in line] == ["—"]


def test_status_prints_the_view(store, capsys):
    """GIVEN a store WHEN `status` THEN the view is printed: inventory, purchase orders, handlers."""
    assert main(["status", *store["args"]]) == 0
    out = capsys.readouterr().out
    for text in ("business time", "Inventory", "days of cover", "Open purchase orders", "Handlers", "order_tick"):
        assert text in out


def test_a_stores_feeds_show_their_lines_lag_and_backorders_as_the_metrics_do(tmp_path):
    """GIVEN hours of a shop's feeds (backorders, a return, counts, duplicate, bad, unknown and damaged
    lines) WHEN status reads the store THEN --json gives each feed's lines by outcome, its newest line
    and lag, and per series the backorder, returns and adjustments, each equal to what the handlers
    published (metrics/*.prom: feed_lines_total, feed_lag_seconds, backorder_units...); the view shows
    the backorder column and a Feeds table. Control: a simulated store has no feeds and no Feeds table."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.support.emitted import CATALOG, replay_feed

    store = replay_feed(tmp_path)
    state, _ = load_state(store, CATALOG)
    report = status_report(state, CATALOG, store)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(store.get("metrics/order_tick.prom").decode())
        for sample in family.samples
    }
    for feed, shown in report["feeds"].items():
        for outcome, count in shown["lines"].items():
            assert samples[("feed_lines_total", (("feed", feed), ("outcome", outcome)))] == count, (feed, outcome)
        assert samples[("feed_lag_seconds", (("feed", feed),))] == shown["lag_seconds"]
    # a fresh store begins at its first tick (09:05): the lines of 09:02-09:04 come late, within the lateness
    assert report["feeds"]["orders"]["lines"] == {
        "applied": 3,
        "late": 3,
        "too_late": 0,
        "duplicate": 1,
        "bad": 1,
        "not_in_catalog": 1,
        "objects_damaged": 1,
    }
    for row in report["series"]:
        labels = (("product_id", row["product_id"]), ("warehouse_id", row["warehouse_id"]))
        assert samples[("backorder_units", labels)] == row["backorder"]
        assert row["on_hand"] == row["initial"] + row["received"] + row["returned"] + row["adjusted"] - row["shipped"]
    laptop = next(r for r in report["series"] if (r["product_id"], r["warehouse_id"]) == ("LAPTOP-001", "WH-NYC"))
    assert (laptop["returned"], laptop["backordered"] > 0, laptop["adjusted"] != 0) == (2, True, True)
    assert report["counters"]["backordered_total"] == sum(r["backordered"] for r in report["series"])
    view = _render(status_view(report, status_extras(state, CATALOG, store), now=1.8e9)).export_text()
    inventory, feeds_table = view.split("Open purchase orders")[0], view.split("Feeds")[1]
    assert "backorder" in inventory and "lost sales" not in inventory
    assert [line.split("│")[1].strip() for line in feeds_table.splitlines() if line.startswith("│")] == sorted(report["feeds"])


def test_a_simulated_store_has_no_feeds_and_keeps_the_lost_sales_column(store):
    """The control of the test above: no feed, no Feeds table, lost sales (not backorders) shown."""
    state, runtime = store["state"], store["runtime"]
    report = status_report(state, runtime.catalog, runtime.store)
    assert report["feeds"] == {} and report["counters"]["backordered_total"] == 0
    view = _render(status_view(report, status_extras(state, runtime.catalog, runtime.store), now=1.8e9)).export_text()
    assert "Feeds" not in view and "lost sales" in view.split("Open purchase orders")[0]
