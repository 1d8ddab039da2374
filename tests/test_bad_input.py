"""Every bad input is one line naming the field, exit 2, nothing written — with the size and
magnitude limits of handlers/model/bounds.py — plus property tests (hypothesis) over events, catalogs
and backtest CSVs: whatever the input, the only failure is the project's own one-line error."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.errors import CatalogError, InputError
from handlers.model.bounds import MAX_BACKTEST_LINE, MAX_CATALOG_SERIES, MAX_EVENT_BYTES, MAX_EVENT_DEPTH, MAX_SERIES
from handlers.model.catalog import parse_catalog
from handlers.model.events import load_event_json, parse_event
from jobs.backtest import load_matrix, run_backtest
from tests.support.cli import assert_one_line_error, cli
from tests.support.ticks import load_event

CATALOG = """
products:
  - {{id: P, base_demand_per_day: {demand}, lead_time_hours: {lead}, pack_size: {pack}}}
warehouses: [{{id: W, timezone: UTC}}]
initial_stock: {stock}
"""
SANE = {"demand": 10, "lead": 24, "pack": 5, "stock": 50}


def invoke_with(tmp_path: Path, *args: str):
    return cli("invoke", "order_tick", "--time", "2026-01-05T00:01:00Z", "--store", f"file://{tmp_path}/s", *args)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[" * 100_000 + "]" * 100_000, f"nested deeper than {MAX_EVENT_DEPTH} levels"),
        (json.dumps({**load_event(), "pad": "x" * MAX_EVENT_BYTES}), "larger than 256 KiB"),
        ('{"time": "2026-01-05T00:00:00Z", "x": "\xff"}', "not UTF-8"),
    ],
    ids=["deep", "large", "latin-1"],
)  # short ids: the test id is in the subprocess's environment (PYTEST_CURRENT_TEST)
def test_bad_event_files_are_one_line(tmp_path: Path, text: str, fragment: str):
    path = tmp_path / "event.json"
    path.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
    proc = cli("invoke", "order_tick", "--event", str(path), "--store", f"file://{tmp_path}/s")
    assert_one_line_error(proc, f"--event {path}", fragment)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("pack", "1e20", "products[0].pack_size: must be an integer > 0 and <= 1e+06"),
        ("stock", "1e20", "initial_stock: must be an integer >= 0 and <= 1e+09"),
        ("demand", "1e300", "products[0].base_demand_per_day: must be a number > 0 and <= 1e+06"),
        ("lead", "1e15", "products[0].lead_time_hours: must be a number > 0 and <= 8760"),
    ],
)
def test_catalog_magnitudes_are_validated_at_load_before_any_store_is_tied(tmp_path: Path, field, value, fragment):
    """GIVEN a catalog value that passes 'positive number' but overflows the model WHEN invoked THEN
    one line names the row and field, and no store is created (so none is tied to the catalog)."""
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG.format(**{**SANE, field: value}))
    assert_one_line_error(invoke_with(tmp_path, "--catalog", str(path)), fragment)
    assert not (tmp_path / "s").exists()


def test_a_catalog_that_is_not_utf8_is_one_line(tmp_path: Path):
    path = tmp_path / "catalog.yaml"
    path.write_bytes(CATALOG.format(**SANE).replace("id: P", "id: P\xe9").encode("latin-1"))
    assert_one_line_error(invoke_with(tmp_path, "--catalog", str(path)), f"{path}: not UTF-8 text")


def test_a_catalog_with_more_series_than_the_limit_is_refused_before_it_is_built():
    products = 1 + MAX_CATALOG_SERIES // 250
    text = f"products: [{', '.join(['{}'] * products)}]\nwarehouses: [{', '.join(['{}'] * 250)}]\n"
    with pytest.raises(CatalogError, match=f"{products} products x 250 warehouses = .* more than the limit"):
        parse_catalog(text, source="big.yaml")


def test_an_invocation_over_more_series_than_it_handles_asks_for_shards(tmp_path: Path):
    """A catalog beyond MAX_SERIES parses, but one invocation refuses it (one line naming the
    setting, nothing written); split into shards, each invocation takes its part."""
    from handlers.errors import ConfigError
    from handlers.model.catalog import Catalog, Product, Warehouse
    from handlers.runtime.invoke import Runtime, invoke_all
    from handlers.storage.file import FileStore
    from tests.support.ticks import START, event_at

    products = tuple(Product(f"P-{i}", 1.0, 24, 1) for i in range(MAX_SERIES // 10 + 1))
    catalog = Catalog(products, tuple(Warehouse(f"W-{w}", "UTC") for w in range(10)), ((5,) * 10,) * len(products))
    store = FileStore(tmp_path)
    with pytest.raises(
        ConfigError,
        match=rf"^--num-shards / STOCKPULSE_NUM_SHARDS: the catalog holds {catalog.num_series} "
        rf"series, more than the {MAX_SERIES} one invocation handles; .* \(at least 2\)$",
    ):
        invoke_all("restock", event_at(START), Runtime(store=store, catalog=catalog))
    assert not list(store.list(""))
    results = invoke_all("restock", event_at(START), Runtime(store=store, catalog=catalog, num_shards=2))
    assert [r["status"] for r in results] == ["applied", "applied"]


def sales_csv(tmp_path: Path, rows: list[str], name: str = "sales.csv") -> Path:
    path = tmp_path / name
    path.write_text("unique_id,ds,y\n" + "".join(f"{row}\n" for row in rows))
    return path


def test_negative_sales_are_refused_naming_the_line(tmp_path: Path):
    rows = [f"A,2024-01-{d:02d},{3 if d != 9 else -2}" for d in range(1, 29)]
    assert_one_line_error(cli("backtest", str(sales_csv(tmp_path, rows))), "column 'y': negative sales '-2' at line 10")


@pytest.mark.parametrize("gz", [False, True])
def test_a_file_without_newlines_is_refused_after_reading_one_line(tmp_path: Path, gz: bool):
    data = b"unique_id,ds,y\n" + b"A,2024-01-01," + b"9" * (MAX_BACKTEST_LINE + 10)
    path = tmp_path / ("sales.csv.gz" if gz else "sales.csv")
    path.write_bytes(gzip.compress(data) if gz else data)
    assert_one_line_error(cli("backtest", str(path)), f"{path}: line 2 is longer than 65,536 characters")


def test_committed_but_log_not_written_exits_1_and_the_next_invocation_writes_it(tmp_path: Path):
    """GIVEN a store whose logs/ cannot be created WHEN a tick is invoked THEN the state is committed, the
    JSON result says the log is pending and the exit code is 1 (not 2: nothing was wrong with the input);
    once logs/ can be written, the next invocation writes the promised object."""
    store = tmp_path / "s"
    store.mkdir()
    (store / "logs").write_text("in the way")
    proc = invoke_with(tmp_path)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "applied" and "log_error" in result
    (store / "logs").unlink()
    proc = cli("invoke", "order_tick", "--time", "2026-01-05T00:02:00Z", "--store", f"file://{store}")
    assert proc.returncode == 0, proc.stderr
    assert (store / result["log_key"]).is_file()


# -- properties --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
times = st.one_of(st.text(max_size=40), st.datetimes().map(lambda d: d.isoformat() + "Z"), st.datetimes().map(lambda d: d.isoformat()))
events = st.fixed_dictionaries({"time": times}, optional={"id": json_values, "detail": json_values, "version": json_values})


@given(st.one_of(json_values, events))
@settings(max_examples=400, deadline=None)
def test_any_event_is_a_tick_or_an_input_error_naming_the_event(doc):
    try:
        tick = parse_event(doc)
    except InputError as exc:
        assert str(exc).startswith("event") and "\n" not in str(exc)
    else:
        assert 1971 <= tick.time.year <= 2199 and tick.time.utcoffset().total_seconds() == 0


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
@settings(max_examples=300, deadline=None)
def test_any_event_file_is_json_or_an_input_error(data: bytes):
    try:
        load_event_json(data, "--event f")
    except InputError as exc:
        assert str(exc).startswith("--event f: ") and "\n" not in str(exc)


numbers = st.one_of(
    st.integers(-(10**30), 10**30), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5), st.none(), st.booleans()
)
product = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=6)},
    optional={
        k: numbers
        for k in ("base_demand_per_day", "lead_time_hours", "pack_size", "trend_per_year", "promo_probability_per_day", "promo_lift")
    },
)
warehouse = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=6), "timezone": st.sampled_from(["UTC", "Asia/Tokyo", "Nowhere/Else", ""])},
    optional={"demand_factor": numbers},
)
catalogs = st.fixed_dictionaries(
    {"products": st.lists(product, max_size=3), "warehouses": st.lists(warehouse, max_size=3)},
    optional={"seed": numbers, "initial_stock": numbers},
)


@given(catalogs)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_catalog_document_loads_within_limits_or_is_one_catalog_error(doc):
    """GIVEN any catalog-shaped document THEN it loads with every magnitude finite and within the limits,
    or fails with one CatalogError line naming the source."""
    try:
        catalog = parse_catalog(
            json.dumps(doc, allow_nan=True).replace("NaN", ".nan").replace("-Infinity", "-.inf").replace("Infinity", ".inf"),
            source="c.yaml",
        )
    except CatalogError as exc:
        assert str(exc).startswith("c.yaml: ") and "\n" not in str(exc)
    else:
        assert catalog.num_series <= MAX_CATALOG_SERIES
        assert all(math.isfinite(p.base_demand_per_day) and p.base_demand_per_day <= 1e6 for p in catalog.products)
        assert int(catalog.initial_stock.max()) <= 10**10


cells = st.one_of(
    st.integers(-5, 50).map(str), st.floats(allow_nan=True).map(str), st.text(max_size=4), st.sampled_from(["", "1e400", "-0", "nan"])
)
sales_rows = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", ""]),
        st.dates(min_value=pd.Timestamp("2024-01-01").date(), max_value=pd.Timestamp("2024-03-31").date()).map(str) | st.text(max_size=6),
        cells,
    ),
    min_size=1,
    max_size=40,
)


@given(sales_rows)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_sales_table_is_a_matrix_of_non_negative_sales_or_one_input_error(rows):
    frame = pd.DataFrame(rows, columns=["unique_id", "ds", "y"]).astype(str)
    try:
        matrix, names, calendar = load_matrix(frame, id_cols=["unique_id"], date_col="ds", value_col="y", freq="D")
    except InputError as exc:
        assert "\n" not in str(exc)
    else:
        observed = matrix[~pd.isna(matrix)]
        assert (observed >= 0).all() and len(names) == matrix.shape[0] and len(calendar) == matrix.shape[1]


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30), min_size=1, max_size=20))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_csv_file_backtests_or_fails_in_one_line(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("csv") / "sales.csv"
    path.write_text("unique_id,ds,y\n" + "\n".join(lines), encoding="utf-8")
    try:
        run_backtest(path, horizon=2)
    except InputError as exc:
        assert "\n" not in str(exc)
