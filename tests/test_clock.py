"""A clock that can't be poisoned: ticks too far ahead of the store's clock are refused with
nothing written; long gaps are caught up a bounded piece per tick; extreme times are one line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from handlers import app
from handlers.alert import handler as alert_handler
from handlers.errors import ConfigError, InputError
from handlers.model.events import format_epoch
from handlers.runtime import layout
from handlers.runtime.clock import DEFAULT_MAX_LEAD, Limits, parse_max_lead
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.runtime.settings import Settings
from handlers.storage.file import FileStore
from jobs.cli import main
from tests.support.cli import assert_one_line_error, cli
from tests.support.crash import BUSY_CATALOG, Crash, CrashingStore, snapshot
from tests.support.ticks import START, event_at, zero_clock


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def started(tmp_path: Path) -> FileStore:
    """A store whose clock is 2026-01-05T12:00Z: one tick of every handler applied."""
    store = FileStore(tmp_path / "s")
    runtime = Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock)
    for name in ("restock", "order_tick", "forecast", "alert"):
        invoke(name, event_at(START.replace(hour=12)), runtime)
    return store


@pytest.mark.parametrize("handler", ["order_tick", "restock", "forecast", "alert"])
def test_a_tick_beyond_the_maximum_lead_is_refused_and_changes_nothing(started: FileStore, handler: str):
    """GIVEN a store at 12:00 WHEN a tick comes 10 years later THEN an InputError names event.time,
    the handler and the setting, and no file of the store changes."""
    before = files(started.root)
    runtime = Runtime(store=FileStore(started.root), catalog=BUSY_CATALOG, clock=zero_clock)
    with pytest.raises(InputError) as refused:
        invoke(handler, event_at(START.replace(year=2036)), runtime)
    message = str(refused.value)
    assert message.startswith("event.time: 2036-01-05T00:00:00Z is ") and "ahead of the store's clock" in message
    assert handler in message and "STOCKPULSE_MAX_TICK_LEAD" in message
    assert files(started.root) == before


def test_after_a_refused_future_tick_the_handler_keeps_applying_its_ticks(started: FileStore):
    """GIVEN a refused alert at 9999-12-31 and one in 2199 WHEN the next alert tick comes THEN it applies (the
    clock was not poisoned)."""
    runtime = Runtime(store=started, catalog=BUSY_CATALOG, clock=zero_clock)
    for far in ("2199-12-30T00:00:00Z", "2036-01-01T00:00:00Z"):
        with pytest.raises(InputError):
            invoke("alert", event_at(START, time=far), runtime)
    assert invoke("alert", event_at(START.replace(hour=12, minute=15)), runtime)["status"] == "applied"


def test_each_handler_has_its_own_lead(started: FileStore):
    """GIVEN the default leads (order_tick 7 d, the others 6 h) WHEN ticks come 2 days ahead THEN the
    order tick is applied and the alert is refused; with alert=3d it is applied."""
    later = START.replace(hour=12) + timedelta(days=2)
    runtime = Runtime(store=started, catalog=BUSY_CATALOG, clock=zero_clock)
    with pytest.raises(InputError, match="alert accepts at most 6.0 h"):
        invoke("alert", event_at(later), runtime)
    relaxed = Runtime(store=started, catalog=BUSY_CATALOG, clock=zero_clock, limits=Limits(max_lead=parse_max_lead("alert=3d")))
    assert invoke("alert", event_at(later), relaxed)["status"] == "applied"
    assert invoke("order_tick", event_at(later + timedelta(days=5)), runtime)["status"] == "applied"


def test_a_long_gap_is_caught_up_in_bounded_pieces_with_the_same_result(tmp_path: Path):
    """GIVEN a 3-day gap WHEN order ticks catch up at most 1 day each THEN the first simulates 1440
    minutes and says 2880 remain, its redelivery is 'already applied', and after 3 more ticks the
    stock, sales and history equal those of catching up the gap at once."""
    t0 = START.replace(hour=12)
    gap = t0 + timedelta(days=3)
    bounded = Runtime(store=FileStore(tmp_path / "bounded"), catalog=BUSY_CATALOG, clock=zero_clock, limits=Limits(catch_up_minutes=1440))
    at_once = Runtime(store=FileStore(tmp_path / "once"), catalog=BUSY_CATALOG, clock=zero_clock, limits=Limits(catch_up_minutes=10080))
    for runtime in (bounded, at_once):
        invoke("order_tick", event_at(t0), runtime)
    first = invoke("order_tick", event_at(gap), bounded)
    assert (first["minutes"], first["behind_minutes"]) == (1440, 2880)
    assert invoke("order_tick", event_at(gap), bounded)["status"] == "skipped"
    for m in (1, 2, 3):
        invoke("order_tick", event_at(gap + timedelta(minutes=m)), bounded)
    invoke("order_tick", event_at(gap + timedelta(minutes=3)), at_once)
    a, _ = load_state(bounded.store)
    b, _ = load_state(at_once.store)
    assert a.orders_through == b.orders_through == (gap + timedelta(minutes=3)).timestamp()
    for name in ("on_hand", "shipped", "lost_sales", "order_rate", "daily_demand", "today_hours", "hour_profile"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def gap_ticks() -> list[tuple[str, object]]:
    t0 = START.replace(hour=12)
    gap = t0 + timedelta(days=2)
    return [
        ("order_tick", t0),
        ("alert", t0),
        ("order_tick", gap),
        ("order_tick", gap + timedelta(minutes=1)),
        ("alert", gap + timedelta(minutes=1)),
        ("restock", gap + timedelta(minutes=1)),
        ("order_tick", gap + timedelta(minutes=2)),
    ]


def run_gap(store) -> None:
    for name, moment in gap_ticks():
        while True:
            try:
                invoke(
                    name,
                    event_at(moment),
                    Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock, limits=Limits(catch_up_minutes=1440)),
                )
                break
            except Crash:  # a new process: it knows nothing of the old one's
                layout.forget()
                store = FileStore(store.inner.root)


def test_a_crash_before_any_storage_call_of_a_catch_up_then_retry_equals_a_clean_run(tmp_path: Path):
    """GIVEN a 2-day gap caught up in 1-day pieces WHEN the process dies before its n-th storage call
    (every n) and the tick is retried THEN state and logs equal a clean run's, byte for byte."""
    clean = FileStore(tmp_path / "clean")
    counter = CrashingStore(clean, crash_at=10**9)
    run_gap(counter)
    expected = snapshot(clean)
    for crash_at in range(1, counter.calls + 1):
        crashing = CrashingStore(FileStore(tmp_path / f"crash-{crash_at}"), crash_at)
        run_gap(crashing)
        assert snapshot(FileStore(tmp_path / f"crash-{crash_at}")) == expected, crash_at


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:00Z", "0001-01-01T00:00:00+01:00"])
@pytest.mark.parametrize("handler", ["order_tick", "alert"])
def test_extreme_times_are_one_line_errors(tmp_path: Path, moment: str, handler: str):
    """GIVEN a time before 1971 or after 2199 WHEN invoked THEN one line names --time, nothing is written."""
    store = tmp_path / "s"
    assert_one_line_error(
        cli("invoke", handler, "--time", moment, "--store", f"file://{store}"), "--time", "outside the supported business times"
    )
    assert not store.exists()


def test_invoke_far_ahead_of_the_store_is_exit_2_naming_event_time(tmp_path: Path):
    """GIVEN a store at 2026-01-05 WHEN `invoke alert --time 2199-12-30` THEN exit 2, one line naming event.time."""
    store = f"file://{tmp_path}/s"
    assert main(["invoke", "order_tick", "--time", "2026-01-05T00:01:00Z", "--store", store]) == 0
    before = files(tmp_path / "s")
    assert_one_line_error(
        cli("invoke", "alert", "--time", "2199-12-30T00:00:00Z", "--store", store),
        "event.time: 2199-12-30T00:00:00Z is",
        "alert accepts at most",
    )
    assert files(tmp_path / "s") == before


def test_the_lambda_entry_point_refuses_a_future_tick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """GIVEN the Lambda handler on a started store WHEN EventBridge delivers a tick 10 years ahead THEN it
    raises InputError naming event.time and the store is unchanged."""
    monkeypatch.setattr(app, "_cached", {})
    monkeypatch.setenv("STOCKPULSE_STORE_URL", f"file://{tmp_path}/s")
    assert alert_handler(event_at(START))["status"] == "applied"
    before = files(tmp_path / "s")
    with pytest.raises(InputError, match="^event.time: "):
        alert_handler(event_at(START.replace(year=2036)))
    assert files(tmp_path / "s") == before
    monkeypatch.setattr(app, "_cached", {})


def test_simulate_start_far_ahead_is_refused(tmp_path: Path):
    """GIVEN a store at 2026-01-05 WHEN `simulate --start` is a year later THEN one line names --start."""
    store = f"file://{tmp_path}/s"
    assert main(["invoke", "order_tick", "--time", "2026-01-05T00:01:00Z", "--store", store]) == 0
    assert_one_line_error(
        cli("simulate", "--days", "1", "--start", "2027-01-05T00:00:00Z", "--store", store),
        "--start: 2027-01-05T00:00:00Z is",
        "order_tick accepts at most 7.0 days",
    )


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["simulate", "--days", "inf"], ["--days", "got 'inf'"]),  # not a number written with ASCII digits
        (["simulate", "--days", "nan"], ["--days"]),
        (["simulate", "--days", "2", "--start", "2199-12-30T00:00:00Z"], ["--days", "after the last supported"]),
        (["run", "--speed", "1e308", "--for", "1s"], ["--speed", "got 1e+308"]),
        (
            ["invoke", "alert", "--time", "2026-01-05T00:00:00Z", "--max-tick-lead", "alert=forever"],
            ["--max-tick-lead / STOCKPULSE_MAX_TICK_LEAD"],
        ),
        (["invoke", "alert", "--time", "2026-01-05T00:00:00Z", "--max-catch-up-minutes", "0"], ["--max-catch-up-minutes", "[1, 10080]"]),
    ],
)
def test_out_of_range_numbers_are_one_line_errors(tmp_path: Path, args, fragments):
    store = tmp_path / "s"
    assert_one_line_error(cli(*args, "--store", f"file://{store}"), *fragments)
    assert not store.exists()


def test_max_tick_lead_setting_takes_one_duration_or_per_handler_overrides():
    assert parse_max_lead("2d") == dict.fromkeys(DEFAULT_MAX_LEAD, 2 * 86400.0)
    assert parse_max_lead("alert=30m, forecast=1h") == {**DEFAULT_MAX_LEAD, "alert": 1800.0, "forecast": 3600.0}
    assert Settings.from_env({"STOCKPULSE_MAX_TICK_LEAD": "1d"}).limits.max_lead["order_tick"] == 86400.0
    with pytest.raises(ConfigError, match="--max-tick-lead / STOCKPULSE_MAX_TICK_LEAD"):
        Settings.from_env({"STOCKPULSE_MAX_TICK_LEAD": "shop=1d"})


def test_the_last_supported_business_day_replays_without_overflow(tmp_path: Path):
    """GIVEN a catalog whose trend compounds for 170 years WHEN the last supported day is replayed THEN
    demand saturates instead of overflowing and the replay succeeds."""
    proc = cli("simulate", "--days", "0.05", "--start", "2199-12-30T00:00:00Z", "--json", "-q", "--store", f"file://{tmp_path}/s")
    assert proc.returncode == 0, proc.stderr


def _order_clock(store: FileStore) -> float:
    layout.forget()
    state, _ = load_state(store)
    return state.orders_through


def test_no_chain_of_accepted_ticks_walks_the_clock_forward(started: FileStore):
    """GIVEN a store WHEN, round after round, every handler is sent the farthest tick it accepts —
    forecast, alert (which reads the forecast part), restock, then the order tick — THEN each is
    measured against the order clock alone: a tick one minute past its lead of the order clock is
    refused every time, and the order clock moves only by the minutes the order ticks simulated
    (was: a forecast 6 h ahead let the next forecast go 6 h further, the alert after it further still,
    and then an order tick 8 days ahead of the simulated minutes through)."""
    runtime = Runtime(store=started, catalog=BUSY_CATALOG, clock=zero_clock)
    for _ in range(3):
        for handler in ("forecast", "alert", "forecast", "alert", "restock", "order_tick"):
            clock = _order_clock(started)
            farthest = clock + DEFAULT_MAX_LEAD[handler]
            with pytest.raises(InputError, match=f"{handler} accepts at most"):
                invoke(handler, event_at(START, time=format_epoch(farthest + 60)), runtime)
            result = invoke(handler, event_at(START, time=format_epoch(farthest)), runtime)
            assert result["status"] in ("applied", "skipped"), result
            after = _order_clock(started)
            assert after == clock if handler != "order_tick" else clock < after <= farthest
    state, _ = load_state(started)
    assert max(state.applied.values()) <= state.orders_through + DEFAULT_MAX_LEAD["order_tick"]


def test_a_forecast_ahead_does_not_let_an_order_tick_lead_further(started: FileStore):
    """The issue's chain: forecast 6 h ahead -> alert 6 h ahead -> order tick 7 days and a minute
    ahead of the simulated minutes: refused; 7 days: applied."""
    runtime = Runtime(store=started, catalog=BUSY_CATALOG, clock=zero_clock)
    noon = START.replace(hour=12)
    assert invoke("forecast", event_at(noon + timedelta(hours=6)), runtime)["status"] == "applied"
    assert invoke("alert", event_at(noon + timedelta(hours=6)), runtime)["status"] == "applied"
    with pytest.raises(InputError, match="forecast accepts at most 6.0 h"):
        invoke("forecast", event_at(noon + timedelta(hours=12)), runtime)
    with pytest.raises(InputError, match="alert accepts at most 6.0 h"):
        invoke("alert", event_at(noon + timedelta(hours=6, minutes=15)), runtime)
    with pytest.raises(InputError, match="order_tick accepts at most 7.0 days"):
        invoke("order_tick", event_at(noon + timedelta(days=7, minutes=1)), runtime)
    assert invoke("order_tick", event_at(noon + timedelta(days=7)), runtime)["status"] == "applied"


def test_a_refused_tick_names_the_handlers_next_tick(started: FileStore):
    """GIVEN a store whose order clock is 2026-01-05T12:00Z WHEN an order tick or an alert comes a year
    later THEN the one line names the exact next tick to send (the one minute, the next quarter hour)."""
    runtime = Runtime(store=started, catalog=BUSY_CATALOG, clock=zero_clock)
    with pytest.raises(InputError, match="the store's next order_tick is 2026-01-05T12:01:00Z"):
        invoke("order_tick", event_at(START.replace(year=2027)), runtime)
    with pytest.raises(InputError, match="the store's next alert is 2026-01-05T12:15:00Z"):
        invoke("alert", event_at(START.replace(year=2027)), runtime)


@pytest.mark.slow
def test_the_readme_tour_invokes_the_next_order_tick_after_a_week_of_simulate(tmp_path: Path):
    """GIVEN an empty store WHEN the README's tour runs `simulate --days 7` THEN its next line,
    `invoke order_tick --time 2026-01-12T00:01:00Z`, is applied; and `invoke` without --time (today's
    wall-clock minute, months ahead of the store) is one line that names that exact --time (was: only
    '328 days ahead of the store's clock')."""
    store = f"file://{tmp_path}/data"
    # the week's clock ends where the README's does; hourly ticks make it in a twentieth of the invocations
    hourly = [f"--every={name}=1h" for name in ("order_tick", "restock", "alert")]
    assert cli("simulate", "--days", "7", "--quiet", *hourly, "--store", store).returncode == 0
    before = files(tmp_path / "data")
    assert_one_line_error(
        cli("invoke", "order_tick", "--store", store), "ahead of the store's clock", "the store's next order_tick is 2026-01-12T00:01:00Z"
    )
    assert files(tmp_path / "data") == before
    tour = cli("invoke", "order_tick", "--time", "2026-01-12T00:01:00Z", "--store", store)
    assert tour.returncode == 0, tour.stderr
    assert '"status": "applied"' in tour.stdout
