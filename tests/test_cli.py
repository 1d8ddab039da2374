"""The command line: one-line errors naming the field, non-zero exits, nothing written."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.cli import build_parser, main
from tests.support.cli import REPO, assert_one_line_error, cli
from tests.support.ticks import load_event


def test_invoke_with_time_prints_the_result_and_writes_state(tmp_path: Path):
    """GIVEN an empty store WHEN `invoke order_tick --time T` runs THEN it prints JSON and writes one log object."""
    proc = cli("invoke", "order_tick", "--time", "2026-11-23T10:05:00Z", "--store", f"file://{tmp_path}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "applied" and result["time"] == "2026-11-23T10:05:00Z"
    assert (tmp_path / result["log_key"]).is_file()


def test_invoke_reads_the_event_from_stdin(tmp_path: Path):
    """GIVEN an EventBridge event on stdin WHEN `invoke restock --event -` runs THEN it is applied."""
    proc = cli("invoke", "restock", "--event", "-", "--store", f"file://{tmp_path}", stdin=json.dumps(load_event()))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "applied"


@pytest.mark.parametrize(
    ("event", "fragments"),
    [
        ({k: v for k, v in load_event().items() if k != "time"}, ["event.time", "missing"]),
        (load_event(time="23/11/2026 10:05"), ["event.time", "ISO-8601"]),
        (load_event(detail={"shard": 0, "speed": 2}), ["event.detail.speed", "unknown key"]),
        (load_event(detail={"shard": 1}), ["event.detail.shard", "not sharded"]),
        (load_event(detail={"shard": -1}), ["event.detail.shard", "whole number"]),
        (load_event(detail={"shard": True}), ["event.detail.shard", "whole number"]),
        (load_event(detail={"num_shards": 4}), ["event.detail.num_shards", "num_shards = 1"]),
    ],
)
def test_bad_event_is_rejected_with_nothing_written(tmp_path: Path, event, fragments):
    """GIVEN a bad event file WHEN invoked THEN one line names the field, exit 2, the store stays empty."""
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    store = tmp_path / "store"
    proc = cli("invoke", "order_tick", "--event", str(path), "--store", f"file://{store}")
    assert_one_line_error(proc, *fragments)
    assert not store.exists()


def test_event_file_that_is_not_json_names_the_file(tmp_path: Path):
    path = tmp_path / "event.json"
    path.write_text("{nope")
    assert_one_line_error(cli("invoke", "alert", "--event", str(path), "--store", f"file://{tmp_path}/s"), "--event", "not valid JSON")


def test_unknown_handler_is_rejected(tmp_path: Path):
    """GIVEN a handler name that does not exist WHEN invoked THEN the error lists the real ones."""
    proc = cli("invoke", "reorder", "--time", "2026-11-23T10:05:00Z", "--store", f"file://{tmp_path}/s")
    assert_one_line_error(proc, "handler: unknown 'reorder'", "order_tick, restock, forecast, alert")
    assert not (tmp_path / "s").exists()


def test_bad_catalog_is_rejected_with_nothing_written(tmp_path: Path):
    """GIVEN a catalog with a bad field WHEN simulate runs THEN one line names row and field, nothing written."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "products: [{id: A, base_demand_per_day: ten, lead_time_hours: 1, pack_size: 1}]\nwarehouses: [{id: X, timezone: UTC}]\n"
    )
    proc = cli("simulate", "--days", "1", "--catalog", str(catalog), "--store", f"file://{tmp_path}/s")
    assert_one_line_error(proc, "products[0].base_demand_per_day", "'ten'")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["simulate", "--days", "0"], ["--days"]),
        (["simulate", "--days", "1", "--start", "soon"], ["--start", "ISO-8601"]),
        (["simulate", "--days", "1", "--every", "order_tick=90s"], ["--every order_tick", "whole minutes"]),
        (["simulate", "--days", "1", "--every", "tick=1m"], ["--every", "HANDLER=DURATION"]),
        (["simulate", "--days", "1", "--service-level", "1.5"], ["--service-level / STOCKPULSE_SERVICE_LEVEL"]),
        (["simulate", "--days", "1", "--store", "ftp://x"], ["store URL 'ftp://x'"]),
        (["simulate", "--days", "x"], ["--days: must be a number written with ASCII digits, got 'x'"]),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path: Path, args, fragments):
    """GIVEN a bad option WHEN the command runs THEN one line names it, exit 2, nothing written."""
    proc = cli(*args, cwd=tmp_path) if "--store" in args else cli(*args, "--store", f"file://{tmp_path}/s")
    assert_one_line_error(proc, *fragments)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["simulate", "--days", "٠.٥"], ["argument --days: must be a number written with ASCII digits, got '٠.٥'"]),
        (["simulate", "--days", "1" * 5000], ["argument --days: must be a number written with ASCII digits, got '1111"]),
        (["simulate", "--days", "1", "--every", "order_tick=٥m"], ["--every order_tick: not a positive duration"]),
        (["simulate", "--days", "1", "--service-level", "٠.٩"], ["--service-level / STOCKPULSE_SERVICE_LEVEL"]),
        (["simulate", "--days", "1", "--num-shards", "²"], ["--num-shards / STOCKPULSE_NUM_SHARDS"]),
        (["simulate", "--days", "1", "--max-tick-lead", "٧d"], ["--max-tick-lead / STOCKPULSE_MAX_TICK_LEAD"]),
        (["invoke", "order_tick", "--shard", "٣"], ["argument --shard: must be a whole number written with ASCII digits"]),
        (["run", "--speed", "²", "--for", "1s"], ["argument --speed: must be a number written with ASCII digits"]),
        (["run", "--speed", "600", "--for", "٣s"], ["--for: not a positive duration"]),
        (["status", "--watch", "١"], ["argument --watch: must be a number written with ASCII digits"]),
        (["backtest", "sales.csv", "--horizon", "٢٨"], ["argument --horizon: must be a whole number written with ASCII"]),
        (["replay", "sales.csv", "--days", "٣٠"], ["argument --days: must be a whole number written with ASCII digits"]),
        (["replay", "sales.csv", "--pack-size", "٥"], ["argument --pack-size: must be a whole number written with ASCII digits"]),
    ],
    ids=[
        "days",
        "days-5000-digits",
        "every",
        "service-level",
        "num-shards",
        "max-tick-lead",
        "shard",
        "speed",
        "for",
        "watch",
        "horizon",
        "replay-days",
        "replay-pack-size",
    ],
)
def test_only_ascii_digits_are_numbers_on_the_command_line(tmp_path: Path, args, fragments):
    """GIVEN a number written with other digits (``float("٠.٥")`` is 0.5, ``int("٣")`` is 3) or
    5,000 of them WHEN a command reads it THEN one short line names the flag, exit 2, nothing written."""
    proc = cli(*args, "--store", f"file://{tmp_path}/s") if args[0] not in ("backtest", "replay") else cli(*args, cwd=tmp_path)
    assert_one_line_error(proc, *fragments)
    assert len(proc.stderr) < 300 and not (tmp_path / "s").exists()


def test_control_ascii_numbers_with_spaces_still_read(tmp_path: Path, capsys):
    assert main(["simulate", "--days", " 0.01 ", "--service-level", " 0.95", "-q", "--json", "--store", f"file://{tmp_path}/s"]) == 0
    assert json.loads(capsys.readouterr().out)["invocations"]["order_tick"] == 14


def test_catalog_mismatch_with_the_store_is_refused(tmp_path: Path, capsys):
    """GIVEN a store started with the default catalog WHEN another catalog is used on it THEN it is refused."""
    store = f"file://{tmp_path}/s"
    assert main(["invoke", "order_tick", "--time", "2026-01-05T00:01:00Z", "--store", store]) == 0
    other = tmp_path / "other.yaml"
    other.write_text(
        "products: [{id: A, base_demand_per_day: 1, lead_time_hours: 1, pack_size: 1}]\nwarehouses: [{id: X, timezone: UTC}]\n"
    )
    capsys.readouterr()
    assert main(["invoke", "order_tick", "--time", "2026-01-05T00:02:00Z", "--store", store, "--catalog", str(other)]) == 2
    assert "--catalog" in capsys.readouterr().err


def test_status_on_an_empty_store_says_so(tmp_path: Path):
    proc = cli("status", "--store", f"file://{tmp_path}/s")
    assert proc.returncode == 1 and "holds no state yet" in proc.stderr


def test_simulate_prints_the_table_per_product_and_warehouse(tmp_path: Path):
    """GIVEN an empty store WHEN `simulate --days 0.25` runs THEN it prints a row per series and totals."""
    proc = cli("simulate", "--days", "0.25", "--store", f"file://{tmp_path}/s", "--every", "order_tick=5m")
    assert proc.returncode == 0, proc.stderr
    for word in ("LAPTOP-001", "KEYBOARD-005", "WH-TYO", "fill rate", "lost sales", "end inventory", "total"):
        assert word in proc.stdout


def test_simulate_continues_the_store_clock(tmp_path: Path, capsys):
    """GIVEN a store simulated for 2 hours WHEN simulate runs again without --start THEN it continues from there."""
    store = f"file://{tmp_path}/s"
    assert main(["simulate", "--days", "0.0833333", "--store", store, "--json", "-q"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["simulate", "--days", "0.0833333", "--store", store, "--json", "-q"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["start"] == first["end"] == "2026-01-05T02:00:00Z"


@pytest.mark.slow
def test_simulate_with_an_earlier_start_runs_only_the_ticks_not_yet_applied(tmp_path: Path, capsys):
    """GIVEN a store simulated for 4 hours from midnight WHEN the same replay is asked for a whole
    day from midnight THEN only the ticks after 04:00 run (each handler resumes after its own)."""
    store = f"file://{tmp_path}/s"
    args = ["--store", store, "--json", "-q", "--start", "2026-01-05T00:00:00Z"]
    assert main(["simulate", "--days", str(4 / 24), *args]) == 0
    capsys.readouterr()
    assert main(["simulate", "--days", "1", *args]) == 0
    rest = json.loads(capsys.readouterr().out)
    assert rest["invocations"] == {"order_tick": 20 * 60, "restock": 20 * 12, "forecast": 20, "alert": 20 * 4}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices)


def test_every_command_and_option_says_what_it_does():
    """GIVEN the parser THEN the nine commands are there, each with a description, and every
    option of every command has a help text (``--help`` explains every flag it lists)."""
    commands = subcommands()
    assert set(commands) == {"invoke", "simulate", "status", "report", "run", "backtest", "package", "deploy", "replay"}
    for name, parser in commands.items():
        assert parser.description, name
        for action in parser._actions:
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}: no help"


def test_help_lists_each_commands_own_options_and_exits_zero():
    """GIVEN ``python -m jobs COMMAND --help`` for each command THEN it exits 0 and shows that
    command's description and every one of its options (not just argparse's usage line)."""
    for name, parser in subcommands().items():
        proc = cli(name, "--help")
        assert proc.returncode == 0, proc.stderr
        assert " ".join(parser.description.split()[:4]) in " ".join(proc.stdout.split()), name
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in proc.stdout, f"{name} --help does not show {flag}"


def test_invoke_loads_no_reporting_or_model_libraries(tmp_path: Path):
    """`python -m jobs invoke order_tick` is the scale benchmark's unit of work: it must not pay for
    pandas or bokeh (reports), nor scipy (the forecast's fit)."""
    code = (
        "import sys; from jobs.cli import build_parser, main; "
        f"code = main(['invoke', 'order_tick', '--time', '2026-01-05T00:05:00Z', '--store', 'file://{tmp_path}']); "
        "print(sorted(m for m in ('pandas', 'bokeh', 'scipy', 'sklearn') if m in sys.modules)); sys.exit(code)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def piped_into_a_closed_reader(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m jobs ARGS | head`` where head has already gone: stdout is a pipe whose read end is closed."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "jobs", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd or REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=120,
        )
    finally:
        os.close(write)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    store = f"file://{tmp_path_factory.mktemp('piped')}/s"
    assert main(["simulate", "--days", "0.02", "-q", "--json", "--store", store]) == 0
    return store


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--json"],
        ["status"],
        ["simulate", "--days", "0.01", "-q"],
        ["simulate", "--days", "0.01", "--json"],
        ["invoke", "alert", "--time", "2026-01-05T00:45:00Z"],
        ["run", "--for", "1s", "--speed", "60", "--json"],
    ],
    ids=["status-json", "status", "simulate", "simulate-json", "invoke", "run"],
)
def test_output_into_a_reader_that_went_away_ends_quietly_with_epipe(small_store: str, args: list[str]):
    """GIVEN `python -m jobs ... | head` whose reader is gone WHEN the command prints THEN it ends
    with no traceback (it was a BrokenPipeError traceback) and exit 32 (EPIPE), as json.tool does."""
    proc = piped_into_a_closed_reader(*args, "--store", small_store)
    assert proc.returncode == 32, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr and "error" not in proc.stderr, proc.stderr


def test_control_the_same_output_into_a_reader_is_complete(small_store: str):
    proc = cli("status", "--json", "--store", small_store)
    assert proc.returncode == 0 and json.loads(proc.stdout)["store"] == small_store


MARKUP_CATALOG = """
products:
  - {id: "[/]", base_demand_per_day: 40, lead_time_hours: 24, pack_size: 5}
  - {id: "[bold red]X", base_demand_per_day: 40, lead_time_hours: 24, pack_size: 5}
warehouses: [{id: "[i]W", timezone: UTC}]
initial_stock: 20
"""


@pytest.mark.parametrize("command", [["simulate", "--days", "0.05", "-q"], ["status"]])
def test_ids_that_look_like_rich_markup_print_as_written(tmp_path: Path, command: list[str]):
    """GIVEN catalog ids `[/]` and `[bold red]X` WHEN simulate or status prints its table THEN they
    print as written (simulate crashed with a MarkupError after the whole replay; `[bold red]` was styled)."""
    (tmp_path / "catalog.yaml").write_text(MARKUP_CATALOG)
    args = ["--store", f"file://{tmp_path}/s", "--catalog", str(tmp_path / "catalog.yaml")]
    assert main(["invoke", "order_tick", "--time", "2026-01-05T00:01:00Z", *args]) == 0
    proc = cli(*command, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in ("[/]", "[bold red]X", "[i]W"):
        assert text in proc.stdout
    assert "\x1b" not in proc.stdout


def test_an_id_that_is_not_printable_is_shown_escaped_not_sent_to_the_terminal():
    """A catalog that did not come through the loader (an old compiled one) may still hold a control
    character: the console shows it escaped."""
    import io

    from rich.console import Console
    from rich.table import Table

    from jobs.console import plain

    table = Table()
    table.add_column("product")
    table.add_row(plain("\x1b[31mRED\nX"))
    console = Console(file=io.StringIO(), width=80, force_terminal=False)
    console.print(table)
    text = console.file.getvalue()
    assert "\\x1b[31mRED\\nX" in text and "\x1b" not in text


@pytest.mark.parametrize(
    ("option", "url", "fragments"),
    [
        ("--orders", "file://{tmp}/no-such-feed", ["(--orders)", "no directory", "no-such-feed"]),
        ("--receipts", "file://{tmp}/a-file", ["(--receipts)", "is a file, not a directory"]),
        ("--counts", "file://host/counts", ["(--counts)", "file:// URLs name no host"]),
        ("--orders", "ftp://x/orders", ["--orders / STOCKPULSE_ORDERS_URL", "file:// or s3://"]),
    ],
)
def test_a_feed_that_cannot_be_read_is_a_one_line_error_naming_its_option(tmp_path: Path, option, url, fragments):
    """GIVEN a feed URL that names no readable directory (a mistyped path used to read as an empty feed:
    every tick applied, no order ever seen) WHEN a handler is invoked THEN one line names the feed's
    option, exit 2, nothing written. Control: the same invocation with the directory made succeeds."""
    (tmp_path / "a-file").write_text("")
    args = ("invoke", "order_tick", "--time", "2026-01-05T09:01:00Z", "--store", f"file://{tmp_path}/s")
    proc = cli(*args, option, url.format(tmp=tmp_path))
    assert_one_line_error(proc, *fragments)
    assert not (tmp_path / "s").exists()
    if "no-such-feed" in url:
        (tmp_path / "no-such-feed").mkdir()
        assert cli(*args, option, url.format(tmp=tmp_path)).returncode == 0
        assert (tmp_path / "s" / "state").is_dir()


def test_replay_into_a_reader_that_went_away_ends_quietly_with_epipe(tmp_path: Path):
    """As above for `replay`'s table (it was printed by a console of its own: exit 1 from rich). 35 days:
    the first 28 set up the catalog, 7 are replayed."""
    rows = [f"S{s},{day:%Y-%m-%d},{(s + day.day) % 7}" for s in range(2) for day in _days(35)]
    (tmp_path / "sales.csv").write_text("unique_id,ds,y\n" + "\n".join(rows) + "\n")
    proc = piped_into_a_closed_reader(
        "replay", "sales.csv", "--date-col", "ds", "--value-col", "y", "--out", str(tmp_path / "out"), cwd=tmp_path
    )
    assert proc.returncode == 32, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr


def _days(count: int) -> list:
    from datetime import date, timedelta

    return [date(2025, 1, 1) + timedelta(days=d) for d in range(count)]
