"""``python -m jobs replay``: a daily sales history through the live handlers as a shop's order feed."""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from handlers.runtime.invoke import load_state
from handlers.storage.file import FileStore
from jobs.replay import HOUR_PROFILE, build_catalog, hour_units, replay
from tests.support.cli import assert_one_line_error, cli


def history(path: Path, per_day: dict[str, list[int]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "date", "units"])
        for name, days in per_day.items():
            for d, units in enumerate(days):
                writer.writerow([name, (date(2026, 1, 1) + timedelta(days=d)).isoformat(), units])
    return path


def test_a_days_units_spread_over_its_hours_add_up_exactly_and_follow_the_profile():
    """GIVEN daily units WHEN spread over the hours THEN each day's hours add up to its units exactly,
    every hour gets floor or ceil of its share, and the same input always gives the same hours."""
    units = np.array([[0, 1, 7, 24, 1000, 12345]])
    hours = hour_units(units)
    assert (hours.sum(axis=-1) == units).all() and (hours >= 0).all()
    exact = units[..., None] * HOUR_PROFILE
    assert (np.abs(hours - exact) < 1).all()
    assert (hour_units(units) == hours).all()


@pytest.mark.slow
def test_a_constant_history_replays_with_known_totals(tmp_path: Path):
    """GIVEN two series selling 24 units a day for 35 days WHEN replayed with a week on hand and a day
    of lead time THEN the last 7 days are replayed as 2 x 7 x 24 units in one line per series and
    non-empty hour; neither policy backorders; each store's ledger ends at initial + received -
    ordered."""
    path = history(tmp_path / "h.csv", {"A": [24] * 35, "B": [24] * 35})
    result = replay(path, id_cols=["id"], date_col="date", value_col="units", lead_time_days=1, out=tmp_path / "out")
    assert (result["series"], result["days"], result["units"]) == (2, 7, 2 * 7 * 24)
    assert result["order_lines"] == 2 * 7 * int((hour_units(np.array([[24]])) > 0).sum())
    for row in result["policies"]:
        assert (row["units_ordered"], row["units_backordered"], row["fill_rate"]) == (336, 0, 1.0)
    catalog = build_catalog(["A", "B"], np.full((2, 28), 24.0), lead_time_days=1, pack_size=1, initial_days=7)
    for policy in ("stockpulse", "original"):
        state, _ = load_state(FileStore(tmp_path / "out" / policy), catalog)
        assert (state.initial == 7 * 24).all()
        assert (state.on_hand == state.initial + state.received - state.shipped).all()
        assert int(state.shipped.sum()) == 336


@pytest.mark.slow
def test_with_nothing_on_hand_the_first_lead_time_is_backordered(tmp_path: Path):
    """GIVEN nothing on hand and a day of lead time THEN at least the first day's 24 units of each series
    are backordered (no purchase order can land before), and every backorder is shipped by the end."""
    path = history(tmp_path / "h.csv", {"A": [24] * 35, "B": [24] * 35})
    result = replay(path, id_cols=["id"], date_col="date", value_col="units", lead_time_days=1, initial_days=0, out=tmp_path / "out")
    stockpulse = result["policies"][0]
    assert stockpulse["units_backordered"] >= 2 * 24 and stockpulse["backorder_at_end"] == 0
    assert stockpulse["fill_rate"] == pytest.approx(1 - stockpulse["units_backordered"] / 336)


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path):
    path = history(tmp_path / "h.csv", {"A": [1] * 20})
    assert_one_line_error(
        cli("replay", str(path), "--id-col", "id", "--date-col", "day", "--value-col", "units", "--out", str(tmp_path / "o")),
        "no column 'day'",
    )
    assert_one_line_error(
        cli("replay", str(path), "--id-col", "id", "--date-col", "date", "--value-col", "units", "--out", str(tmp_path / "o")),
        "20 days of history",
        "at least 35",
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_the_json_result_names_both_policies(tmp_path: Path):
    path = history(tmp_path / "h.csv", {"A": [3] * 35})
    proc = cli("replay", str(path), "--id-col", "id", "--date-col", "date", "--value-col", "units", "--json", "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [p["policy"] for p in result["policies"]] == ["stockpulse", "original"]
    assert all((tmp_path / "o" / policy / "state").is_dir() for policy in ("stockpulse", "original"))
    assert (
        sum(1 for _ in FileStore(tmp_path / "o" / "feed" / "orders").list(""))
        == result["days"] * 24 - sum(1 for h in range(24) if hour_units(np.array([[3]]))[0, 0, h] == 0) * result["days"]
    )


@pytest.mark.slow
def test_out_is_replaced_only_where_replay_wrote_it(tmp_path: Path):
    """GIVEN --out naming a directory holding a store replay did not write (./data, say) WHEN replay runs
    THEN it exits 2 naming --out and deletes nothing; GIVEN a directory an earlier replay wrote, with a
    file of the user's beside its folders THEN the rerun replaces the feed and the stores, and the
    user's file stays (control: the rerun's stores are a clean run's, not the first run's plus it)."""
    path = history(tmp_path / "h.csv", {"A": [2] * 35})
    live = tmp_path / "data"
    (live / "state").mkdir(parents=True)
    (live / "state" / "state.bin").write_bytes(b"a live store")
    argv = ("replay", str(path), "--id-col", "id", "--date-col", "date", "--value-col", "units", "--json")
    assert_one_line_error(cli(*argv, "--out", str(live)), "--out", "did not write")
    assert sorted(p.relative_to(live).as_posix() for p in live.rglob("*")) == ["state", "state/state.bin"]
    (tmp_path / "file").write_text("x")
    assert_one_line_error(cli(*argv, "--out", str(tmp_path / "file")), "--out", "not a directory")

    out = tmp_path / "o"
    first = json.loads(cli(*argv, "--out", str(out)).stdout)
    (out / "notes.txt").write_text("mine")
    again = cli(*argv, "--out", str(out))
    assert again.returncode == 0, again.stderr

    def figures(result: dict) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in result["policies"]]

    assert figures(json.loads(again.stdout)) == figures(first)
    assert (out / "notes.txt").read_text() == "mine"
