"""The ``backtest`` command: protocol, calendar rules, output and one-line errors (seeded data only)."""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from handlers.errors import InputError
from handlers.forecasting.baselines import baselines_for
from handlers.forecasting.censored import recover_censored, recover_hourly
from handlers.forecasting.censored_shop import CensoredShop, fresh_shop
from handlers.forecasting.model import forecast
from jobs import backtest
from jobs.backtest import load_matrix, register, run_backtest

REPO = Path(__file__).resolve().parent.parent
PATTERN = np.array([3.0, 1.0, 1.0, 2.0, 4.0, 8.0, 6.0])


def periodic_frame(n_series: int = 6, n_days: int = 84) -> pd.DataFrame:
    """Series that repeat the same week exactly, each at its own multiple."""
    days = pd.date_range("2024-01-01", periods=n_days, freq="D")
    rows = [
        {"store": f"S{i % 2}", "item": f"I{i}", "day": day.strftime("%Y-%m-%d"), "units": (i + 1) * PATTERN[t % 7]}
        for i in range(n_series)
        for t, day in enumerate(days)
    ]
    return pd.DataFrame(rows)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as handle:
            frame.to_csv(handle, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def by_model(result: dict) -> dict[str, dict]:
    return {row["model"]: row for row in result["models"]}


def cli_args(file: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs")
    register(parser.add_subparsers(dest="command"))
    base = ["backtest", str(file), "--id-col", "store", "--id-col", "item", "--date-col", "day", "--value-col", "units"]
    return parser.parse_args([*base, *extra])


def test_seasonal_naive_is_perfect_on_a_perfectly_periodic_series(tmp_path: Path) -> None:
    """GIVEN a gzipped CSV of series that repeat one week exactly
    WHEN the backtest holds out the last 14 days
    THEN seasonal naive scores RMSSE 0 and WAPE 0, and the model beats the moving average."""
    path = write_csv(periodic_frame(), tmp_path / "sales.csv.gz")
    result = run_backtest(path, id_cols=["store", "item"], date_col="day", value_col="units", horizon=14)
    models = by_model(result)
    assert models["seasonal_naive_7"]["rmsse"] == 0.0 and models["seasonal_naive_7"]["wape"] == 0.0
    assert models["stockpulse"]["rmsse"] < models["moving_average_28"]["rmsse"]
    assert (result["series"], result["horizon"], result["freq"]) == (6, 14, "D")


def test_every_model_is_reported_with_its_timing() -> None:
    """GIVEN a long table in a DataFrame with the default column names
    WHEN the backtest runs
    THEN the project model and every baseline appear, each with finite scores and seconds."""
    frame = periodic_frame().rename(columns={"item": "unique_id", "day": "ds", "units": "y"})
    result = run_backtest(frame, horizon=7)
    assert [row["model"] for row in result["models"]] == ["stockpulse", "naive", "seasonal_naive_7", "moving_average_28", "linear_trend_7"]
    assert all(row["seconds"] >= 0 and row["rmsse"] is not None for row in result["models"])
    assert result["file"] is None


def test_missing_days_are_zero_sales_and_days_before_the_first_row_are_nan() -> None:
    """GIVEN series A with a gap on day 3 and series B whose first row is day 2
    WHEN the table is laid out on the calendar
    THEN A's gap is 0 and B is NaN before day 2."""
    frame = pd.DataFrame(
        {
            "unique_id": ["A", "A", "A", "B", "B"],
            "ds": ["2024-01-01", "2024-01-02", "2024-01-04", "2024-01-02", "2024-01-04"],
            "y": [1, 2, 4, 5, 7],
        }
    )
    matrix, names, calendar = load_matrix(frame, id_cols=["unique_id"], date_col="ds", value_col="y", freq="D")
    assert names == ["A", "B"] and len(calendar) == 4
    np.testing.assert_array_equal(matrix[0], [1.0, 2.0, 0.0, 4.0])
    np.testing.assert_array_equal(matrix[1], [np.nan, 5.0, 0.0, 7.0])


def test_hourly_data_uses_a_24_hour_season() -> None:
    """GIVEN hourly sales that repeat every 24 hours
    WHEN the backtest runs with freq H
    THEN the seasonal naive is named for 24 hours and is perfect."""
    hours = pd.date_range("2024-03-01", periods=24 * 10, freq="h")
    values = np.where((hours.hour >= 9) & (hours.hour < 18), 5.0, 1.0)
    frame = pd.DataFrame({"unique_id": "X", "ds": hours.astype(str), "y": values})
    models = by_model(run_backtest(frame, horizon=24, freq="H"))
    assert models["seasonal_naive_24"]["rmsse"] == 0.0


def test_the_cli_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a CSV and the --json flag
    WHEN the backtest subcommand runs
    THEN it exits 0 and prints the documented JSON structure."""
    path = write_csv(periodic_frame(), tmp_path / "sales.csv")
    args = cli_args(path, "--horizon", "7", "--json")
    assert args.func is backtest.run
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"models", "series", "horizon", "freq", "file"}
    assert set(result["models"][0]) == {"model", "rmsse", "wape", "seconds"}
    assert result["file"] == str(path)


def test_the_cli_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a CSV and no --json flag
    WHEN the backtest subcommand runs
    THEN the table lists every model with RMSSE and WAPE columns."""
    path = write_csv(periodic_frame(), tmp_path / "sales.csv")
    args = cli_args(path, "--horizon", "7")
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "RMSSE" in out and "WAPE" in out and "stockpulse" in out and "linear_trend_7" in out


def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a CSV without the requested value column
    WHEN ``python -m jobs backtest`` runs on it
    THEN it exits 2 and prints one line on stderr naming the column, no traceback."""
    from jobs.cli import main

    path = write_csv(periodic_frame().rename(columns={"units": "qty"}), tmp_path / "sales.csv")
    argv = ["backtest", str(path), "--id-col", "item", "--date-col", "day", "--value-col", "units"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'units'" in err and "Traceback" not in err


def _bad(frame: pd.DataFrame, tmp_path: Path, **options: object) -> str:
    path = write_csv(frame, tmp_path / "bad.csv")
    settings = {"id_cols": ["store", "item"], "date_col": "day", "value_col": "units", "horizon": 7, **options}
    with pytest.raises(InputError) as caught:
        run_backtest(path, **settings)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    """GIVEN a CSV without the id column asked for
    WHEN the backtest runs
    THEN the InputError names the missing column."""
    assert "'sku'" in _bad(periodic_frame(), tmp_path, id_cols=["sku"])


def test_a_non_numeric_value_is_named_with_its_line(tmp_path: Path) -> None:
    """GIVEN a sales value "lots" on the fifth data row
    WHEN the backtest runs
    THEN the InputError names the value column, the value and the file line (6)."""
    frame = periodic_frame().astype({"units": object})
    frame.loc[4, "units"] = "lots"
    message = _bad(frame, tmp_path)
    assert "'units'" in message and "'lots'" in message and "line 6" in message


def test_an_unparseable_date_is_named_with_its_line(tmp_path: Path) -> None:
    """GIVEN a date "soon" on the third data row
    WHEN the backtest runs
    THEN the InputError names the date column, the value and the file line (4)."""
    frame = periodic_frame()
    frame.loc[2, "day"] = "soon"
    message = _bad(frame, tmp_path)
    assert "'day'" in message and "'soon'" in message and "line 4" in message


def test_day_first_dates_need_and_take_a_date_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN a shop's export with day-first dates (31/01/2024)
    WHEN the backtest runs without --date-format
    THEN the one-line error names the first ambiguous date and suggests --date-format;
    WITH --date-format %d/%m/%Y it scores exactly what the ISO file scores."""
    frame = periodic_frame()
    iso = run_backtest(frame, id_cols=["store", "item"], date_col="day", value_col="units", horizon=7)
    day_first = frame.assign(day=pd.to_datetime(frame["day"]).dt.strftime("%d/%m/%Y"))
    message = _bad(day_first, tmp_path)
    assert "'day'" in message and "'13/01/2024'" in message and "--date-format" in message
    path = write_csv(day_first, tmp_path / "eu.csv")
    args = cli_args(path, "--horizon", "7", "--json", "--date-format", "%d/%m/%Y")
    assert args.func(args) == 0
    scored = {row["model"]: (row["rmsse"], row["wape"]) for row in json.loads(capsys.readouterr().out)["models"]}
    assert scored == {row["model"]: (row["rmsse"], row["wape"]) for row in iso["models"]}


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_semicolon_tab_and_pipe_separated_files_score_like_the_comma_file(tmp_path: Path, sep: str) -> None:
    """GIVEN a shop's export separated by ';' (or tab, or '|') instead of commas
    WHEN the backtest reads it, with no option
    THEN it scores exactly what the comma-separated file scores; a missing column is still named."""
    frame = periodic_frame()
    expected = run_backtest(
        write_csv(frame, tmp_path / "comma.csv"), id_cols=["store", "item"], date_col="day", value_col="units", horizon=7
    )
    path = tmp_path / "other.csv.gz"
    with gzip.open(path, "wt") as handle:
        frame.to_csv(handle, index=False, sep=sep)
    result = run_backtest(path, id_cols=["store", "item"], date_col="day", value_col="units", horizon=7)
    assert [(m["model"], m["rmsse"], m["wape"]) for m in result["models"]] == [
        (m["model"], m["rmsse"], m["wape"]) for m in expected["models"]
    ]
    with pytest.raises(InputError, match="no column 'sku' \\(columns: store, item, day, units\\)"):
        run_backtest(path, id_cols=["sku"], date_col="day", value_col="units", horizon=7)


def test_a_horizon_as_long_as_a_series_is_rejected(tmp_path: Path) -> None:
    """GIVEN series of 84 days
    WHEN the backtest is asked to hold out 84 days
    THEN the InputError names --horizon and the series that is too short."""
    message = _bad(periodic_frame(), tmp_path, horizon=84)
    assert "--horizon 84" in message and "S0|I0" in message


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    """GIVEN a path with no file behind it
    WHEN the backtest runs
    THEN the InputError names the file."""
    missing = tmp_path / "nowhere.csv.gz"
    with pytest.raises(InputError, match="nowhere.csv.gz"):
        run_backtest(missing, horizon=7)


def test_a_corrupt_gzip_is_named(tmp_path: Path) -> None:
    """GIVEN a .gz file that is not gzip data
    WHEN the backtest runs
    THEN the InputError names the file instead of leaking a decompression traceback."""
    path = tmp_path / "sales.csv.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(InputError, match="sales.csv.gz"):
        run_backtest(path, horizon=7)


def test_an_unknown_frequency_is_named() -> None:
    """GIVEN a frequency the backtest does not support
    WHEN the backtest runs
    THEN the InputError names --freq."""
    with pytest.raises(InputError, match="--freq"):
        run_backtest(periodic_frame(), id_cols=["item"], date_col="day", value_col="units", freq="W")


# -- --stockout-col: fitted on the recovered demand, scored over in-stock periods ----------------------


def shop_frame(shop: CensoredShop, *, hourly: bool = False, start: str = "2024-01-01") -> pd.DataFrame:
    """The shop's feed as a long table: sales, a 0/1 stockout flag and the share of the period out of stock."""
    if hourly:
        sales, flag, share = shop.hourly_sales, shop.hour_flags, 1.0 - shop.hourly_minutes / 60.0
    else:
        sales, flag, share = shop.sales, shop.flags, 1.0 - shop.in_stock
    series, periods = sales.shape
    stamps = pd.date_range(start, periods=periods, freq="h" if hourly else "D").strftime("%Y-%m-%d %H:%M")
    return pd.DataFrame(
        {
            "unique_id": np.repeat([f"s{i:03d}" for i in range(series)], periods),
            "ds": np.tile(stamps, series),
            "y": sales.ravel(),
            "oos": flag.ravel().astype(int),
            "share": share.ravel(),
        }
    )


@pytest.fixture(scope="module")
def censored_shop() -> CensoredShop:
    """300 fresh-retail series, 63 days, seed 12 (tests/test_censored.py measures the estimators on it)."""
    return fresh_shop(series=300, days=63, seed=12)


def test_a_stockout_flag_fits_every_model_on_recovered_demand(censored_shop: CensoredShop) -> None:
    """GIVEN a shop's daily sales with a 0/1 stockout flag column
    WHEN the backtest runs with --stockout-col
    THEN each model's scores are those of the model fitted on recover_censored's history and scored over
    the in-stock test days (checked by hand for stockpulse and the moving average), the stockpulse
    fit is within 3 % of the true demand, and the JSON says how many periods were censored and scored."""
    shop, horizon = censored_shop, 7
    result = run_backtest(shop_frame(shop), horizon=horizon, stockout_col="oos")
    models = by_model(result)
    history = recover_censored(shop.sales[:, :-horizon], shop.flags[:, :-horizon])
    scored = ~shop.flags[:, -horizon:]
    actual = shop.sales[:, -horizon:]
    recovered = recover_censored(shop.sales, shop.flags)[:, -horizon:]
    for name, model in (("stockpulse", forecast), ("moving_average_28", baselines_for(7)["moving_average_28"])):
        pred = model(history, horizon, season=7).mean
        error = np.where(scored, pred - actual, 0.0)
        assert models[name]["bias"] == round(error.sum() / actual[scored].sum(), 6)
        assert models[name]["wape"] == round(np.abs(error).sum() / actual[scored].sum(), 6)
        assert models[name]["bias_recovered"] == round(pred.sum() / recovered.sum() - 1, 6)
    truth = shop.demand[:, -horizon:]
    assert abs(forecast(history, horizon).mean.sum() / truth.sum() - 1) <= 0.03
    assert result["stockout"] == {
        "column": "oos",
        "kind": "flag",
        "censored_train_periods": int(shop.flags[:, :-horizon].sum()),
        "train_periods": shop.sales[:, :-horizon].size,
        "scored_test_periods": int(scored.sum()),
        "test_periods": scored.size,
        "seconds": result["stockout"]["seconds"],
    }


def test_a_stockout_share_scores_like_the_flag_it_implies(censored_shop: CensoredShop) -> None:
    """GIVEN the same daily feed with the share of each day out of stock instead of the flag
    WHEN the backtest runs with --stockout-col share
    THEN it is read as a share and scores exactly what the flag scores (daily data: a share > 0 is a
    stockout; a share of time is not a share of demand)."""
    frame = shop_frame(censored_shop)
    by_flag = run_backtest(frame, horizon=7, stockout_col="oos")
    by_share = run_backtest(frame, horizon=7, stockout_col="share")
    assert by_share["stockout"]["kind"] == "share"
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in by_share["models"]] == [
        {k: v for k, v in row.items() if k != "seconds"} for row in by_flag["models"]
    ]


@pytest.mark.parametrize(("column", "first_hour"), [("oos", 0), ("share", 0), ("oos", 13)])
def test_hourly_stockouts_are_recovered_by_the_hour(column: str, first_hour: int) -> None:
    """GIVEN an hourly feed (--freq H) with hourly stockout flags or shares, starting at midnight or at 05:00
    WHEN the backtest runs with --stockout-col
    THEN stockpulse's in-stock bias is that of the model fitted on recover_hourly's history (flags: an
    hour flagged with sales counts as half in stock; shares: the time out of stock), the hours before
    the calendar's first being not observed."""
    shop, horizon = fresh_shop(series=40, days=22, seed=5), 24
    frame = shop_frame(shop, hourly=True)
    frame = frame[pd.to_datetime(frame["ds"]) >= pd.Timestamp("2024-01-01") + pd.Timedelta(hours=first_hour)]
    result = run_backtest(frame, horizon=horizon, freq="H", stockout_col=column)
    sales = shop.hourly_sales.copy()
    sales[:, :first_hour] = np.nan
    minutes = shop.hourly_minutes if column == "share" else np.where(shop.hour_flags, 0.0, 60.0)
    history = recover_hourly(sales[:, :-horizon], minutes[:, :-horizon], flags=column == "oos").hourly[:, first_hour:]
    pred = forecast(history, horizon, season=24).mean
    scored = ~shop.hour_flags[:, -horizon:]
    actual = shop.hourly_sales[:, -horizon:]
    assert result["stockout"]["kind"] == ("flag" if column == "oos" else "share")
    assert by_model(result)["stockpulse"]["bias"] == round((pred - actual)[scored].sum() / actual[scored].sum(), 6)


def test_the_cli_prints_the_stockout_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str], censored_shop: CensoredShop) -> None:
    """GIVEN a CSV with a stockout column
    WHEN the backtest subcommand runs with --stockout-col and --json, then without --json
    THEN the JSON gains "stockout" and, per model, bias and bias_recovered; the table shows both biases."""
    path = write_csv(shop_frame(censored_shop).drop(columns="share"), tmp_path / "shop.csv")
    parser = argparse.ArgumentParser(prog="python -m jobs")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["backtest", str(path), "--horizon", "7", "--stockout-col", "oos", "--json"])
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"models", "series", "horizon", "freq", "file", "stockout"}
    assert set(result["models"][0]) == {"model", "rmsse", "wape", "bias", "bias_recovered", "seconds"}
    args = parser.parse_args(["backtest", str(path), "--horizon", "7", "--stockout-col", "oos"])
    assert args.func(args) == 0
    out = " ".join(capsys.readouterr().out.split())  # the title wraps
    assert "bias (recovered)" in out and "in-stock test periods" in out and "stockpulse" in out


@pytest.mark.parametrize(("value", "shown"), [("1.5", "'1.5'"), ("-0.2", "'-0.2'"), ("yes", "'yes'"), ("", "''")])
def test_a_bad_stockout_value_is_named_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, shown: str) -> None:
    """GIVEN a stockout column holding 1.5, -0.2, "yes" or nothing on the fifth data row
    WHEN ``python -m jobs backtest --stockout-col oos`` runs
    THEN it exits 2 with one line naming the column, the value and the file line (6)."""
    from jobs.cli import main

    frame = periodic_frame().assign(oos="0")
    frame.loc[4, "oos"] = value
    path = write_csv(frame, tmp_path / "sales.csv")
    argv = [
        "backtest",
        str(path),
        "--id-col",
        "item",
        "--date-col",
        "day",
        "--value-col",
        "units",
        "--horizon",
        "7",
        "--stockout-col",
        "oos",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'oos'" in err and shown in err and "line 6" in err, err


def test_a_missing_stockout_column_is_named(tmp_path: Path) -> None:
    """GIVEN a CSV, or a table, without the stockout column asked for
    WHEN the backtest runs
    THEN the InputError names the column."""
    assert "'oos'" in _bad(periodic_frame(), tmp_path, stockout_col="oos")
    frame = periodic_frame().rename(columns={"item": "unique_id", "day": "ds", "units": "y"})
    with pytest.raises(InputError, match="no column 'oos' for --stockout-col"):
        run_backtest(frame, horizon=7, stockout_col="oos")


def test_without_stockouts_nothing_changes(censored_shop: CensoredShop) -> None:
    """GIVEN a table with a stockout column that is never set
    WHEN the backtest runs with --stockout-col on it, and without
    THEN the fit and the scores are the same (no stockout: the recovery returns the sales as they are),
    and the run without the option gains no field."""
    frame = shop_frame(censored_shop).assign(oos=0)
    plain = run_backtest(frame, horizon=7)
    flagged = run_backtest(frame, horizon=7, stockout_col="oos")
    assert "stockout" not in plain and set(plain["models"][0]) == {"model", "rmsse", "wape", "seconds"}
    for a, b in zip(plain["models"], flagged["models"]):
        assert (a["model"], a["rmsse"], a["wape"]) == (b["model"], b["rmsse"], b["wape"])


def test_a_date_in_other_digits_is_named_with_its_line(tmp_path: Path) -> None:
    """GIVEN a date written in Arabic-Indic digits on the third data row (pandas reads it as 2024-01-03)
    WHEN the backtest runs THEN the InputError names the date column and the line: only ASCII digits are numbers."""
    frame = periodic_frame()
    frame.loc[2, "day"] = "٢٠٢٤-٠١-٠٣"
    message = _bad(frame, tmp_path)
    assert "column 'day': date not written in ASCII '٢٠٢٤-٠١-٠٣' at line 4" in message


def test_a_value_of_5000_digits_is_shown_short(tmp_path: Path) -> None:
    frame = periodic_frame().astype({"units": object})
    frame.loc[4, "units"] = "9" * 5000
    message = _bad(frame, tmp_path)
    assert "'units'" in message and "line 6" in message and len(message) < 200


# -- memory: the matrix is series x the span of the dates, however few the rows ----------------------


def sparse_centuries(path: Path, series: int = 1790) -> Path:
    """A 33 KB CSV: every series sold once in 1900, one of them once more in 2199 — 196 million cells."""
    rows = [f"S{i},1900-01-01,1" for i in range(series)] + ["S0,2199-12-31,1"]
    path.write_text("unique_id,ds,y\n" + "\n".join(rows) + "\n")
    return path


def backtest_under_a_memory_limit(*args: str, limit: int = 2 * 1024**3) -> Any:
    """``python -m jobs backtest ARGS`` with its address space limited (``ulimit -v``), as a container would."""
    import os
    import resource
    import subprocess
    import sys

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "jobs", "backtest", *args],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limited,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"},
    )


def test_a_few_rows_over_three_centuries_are_refused_before_the_matrix_is_allocated(tmp_path: Path) -> None:
    """GIVEN a 33 KB CSV whose dates span 1900..2199 (1,790 series x 109,573 days) and a 2 GiB
    address-space limit WHEN backtest runs THEN one line names the date column, the size and the
    limit, exit 2 (it was a numpy MemoryError traceback after allocating 1.5 GiB)."""
    proc = backtest_under_a_memory_limit(str(sparse_centuries(tmp_path / "sales.csv")))
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(
        "stockpulse: error: column 'ds': 1,790 series x 109,573 days (1900-01-01 .. 2199-12-31) "
        "= 196,135,670 cells need about 7.8 GB, more than the address-space limit (ulimit -v)"
    ), line


def test_control_a_small_file_backtests_under_the_same_limit(tmp_path: Path) -> None:
    path = write_csv(periodic_frame().rename(columns={"item": "unique_id", "day": "ds", "units": "y"}), tmp_path / "sales.csv")
    proc = backtest_under_a_memory_limit(str(path), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["series"] == 6


def test_the_dense_size_is_checked_against_the_room_given() -> None:
    """GIVEN 6 series x 84 days and room for 10 KB WHEN laid out THEN refused naming that room;
    with room for 1 MB THEN laid out (the check is the cells' peak bytes against the room)."""
    frame = periodic_frame()
    options = {"id_cols": ["store", "item"], "date_col": "day", "value_col": "units", "freq": "D"}
    with pytest.raises(
        InputError,
        match=r"^column 'day': 6 series x 84 days .* = 504 cells need about 0\.0 GB, "
        r"more than a test budget \(0\.0 GB\)",
    ):
        load_matrix(frame, **options, room=lambda: (504 * backtest.PEAK_BYTES_PER_CELL - 1, "a test budget"))
    matrix, _, _ = load_matrix(frame, **options, room=lambda: (504 * backtest.PEAK_BYTES_PER_CELL, "a test budget"))
    assert matrix.shape == (6, 84)


def test_a_stockout_column_is_counted_in_the_room_it_needs() -> None:
    """GIVEN room for exactly the plain backtest of 6 series x 84 days WHEN it runs THEN it runs; with
    --stockout-col THEN refused before anything is allocated (the recovery's arrays are counted too)."""
    frame = periodic_frame().assign(oos=0)
    options = {
        "id_cols": ["store", "item"],
        "date_col": "day",
        "value_col": "units",
        "horizon": 7,
        "room": lambda: (504 * backtest.PEAK_BYTES_PER_CELL, "a test budget"),
    }
    assert run_backtest(frame, **options)["series"] == 6
    need = 504 * (backtest.PEAK_BYTES_PER_CELL + backtest.STOCKOUT_BYTES_PER_CELL)
    with pytest.raises(InputError, match=rf"504 cells need about {need / 1e9:.1f} GB, more than a test budget"):
        run_backtest(frame, stockout_col="oos", **options)


def test_memory_room_reads_the_limit_this_process_runs_under(tmp_path: Path) -> None:
    """GIVEN a process with a 3 GiB address-space limit THEN memory_room() is that limit less what it
    holds, and says so; without a limit it is not the address-space limit."""
    import subprocess
    import sys

    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30)); "
        "from jobs.backtest import memory_room; room, what = memory_room(); print(round(room / 2**30, 1), what)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    room, what = proc.stdout.split(" ", 1)
    assert 2.0 < float(room) < 3.0 and what.strip() == "the address-space limit (ulimit -v)", proc.stdout + proc.stderr
    proc = subprocess.run([sys.executable, "-c", code.split("; ", 1)[1]], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert "ulimit -v" not in proc.stdout, proc.stdout
