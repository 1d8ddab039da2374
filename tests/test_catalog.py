"""The catalog: the default 5 x 3, custom files, and one-line errors naming row and field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from handlers.errors import CatalogError
from handlers.model.catalog import parse_catalog
from handlers.runtime.catalogs import default_catalog, load_catalog


def test_default_catalog_is_the_original_five_products_in_three_warehouses():
    """GIVEN no catalog file WHEN the default loads THEN it is the original 5 x 3 with its ids and zones."""
    catalog = default_catalog()
    assert [p.id for p in catalog.products] == ["LAPTOP-001", "PHONE-002", "HEADPHONES-003", "MOUSE-004", "KEYBOARD-005"]
    assert [(w.id, w.timezone) for w in catalog.warehouses] == [
        ("WH-NYC", "America/New_York"),
        ("WH-LDN", "Europe/London"),
        ("WH-TYO", "Asia/Tokyo"),
    ]
    assert catalog.num_series == 15
    assert catalog.series_product_ids[4] == "PHONE-002" and catalog.series_warehouse_ids[4] == "WH-LDN"


def test_series_parameters_are_arrays_over_product_x_warehouse(small_catalog):
    """GIVEN 2 products x 2 warehouses WHEN per-series arrays are read THEN they follow product-major order."""
    np.testing.assert_array_equal(small_catalog.base_demand_per_day, [240, 120, 60, 30])
    np.testing.assert_array_equal(small_catalog.lead_time_hours, [12, 12, 30, 30])
    np.testing.assert_array_equal(small_catalog.pack_size, [10, 10, 25, 25])
    np.testing.assert_array_equal(small_catalog.initial_stock, [60, 60, 60, 60])


def test_initial_stock_per_product_and_warehouse_with_default_days_of_demand():
    """GIVEN initial stock for one cell only WHEN parsed THEN the others default to 5 days of demand in packs."""
    catalog = parse_catalog("""
products: [{id: A, base_demand_per_day: 9, lead_time_hours: 24, pack_size: 10}]
warehouses: [{id: X, timezone: UTC}, {id: Y, timezone: UTC}]
initial_stock: {A: {Y: 3}}
""")
    np.testing.assert_array_equal(catalog.initial_stock, [50, 3])  # ceil(45 / 10) * 10


def test_catalog_file_loads_from_disk(tmp_path: Path):
    """GIVEN a YAML file WHEN loaded THEN its seed and source are kept."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "seed: 3\nproducts: [{id: A, base_demand_per_day: 1, lead_time_hours: 1, pack_size: 1}]\n"
        "warehouses: [{id: X, timezone: Europe/Paris}]\n"
    )
    catalog = load_catalog(path)
    assert catalog.seed == 3 and catalog.source == str(path)


def test_fingerprint_changes_with_the_catalog(small_catalog):
    """GIVEN two catalogs differing in one number WHEN fingerprinted THEN the digests differ."""
    other = parse_catalog(SMALL.replace("pack_size: 10", "pack_size: 20"))
    assert other.fingerprint != small_catalog.fingerprint


SMALL = """
products: [{id: A, base_demand_per_day: 1, lead_time_hours: 1, pack_size: 10}]
warehouses: [{id: X, timezone: UTC}]
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("products: [}", "not valid YAML at line 1"),
        ("[]", "must be a mapping"),
        ("products: []\nwarehouses: [{id: X, timezone: UTC}]", "products: must be a non-empty list"),
        (SMALL.replace("pack_size: 10", "pack_size: 2.5"), "products[0].pack_size: must be an integer"),
        (SMALL.replace("base_demand_per_day: 1", "base_demand_per_day: -4"), "products[0].base_demand_per_day"),
        (SMALL.replace("lead_time_hours: 1, ", ""), "products[0].lead_time_hours: missing"),
        (SMALL.replace("id: A,", "id: A, colour: red,"), "products[0].colour: unknown field"),
        (SMALL.replace("timezone: UTC", "timezone: Mars/Olympus"), "warehouses[0].timezone: must be an IANA"),
        (SMALL + "initial_stock: {B: 3}", "initial_stock.B: not a product id"),
        (SMALL + "initial_stock: {A: {Z: 3}}", "initial_stock.A.Z: not a warehouse id"),
        (SMALL + "initial_stock: many", "initial_stock: must be an integer"),
        (SMALL + "seed: yes", "seed: must be a non-negative integer"),
        (
            SMALL.replace("warehouses: [{id: X, timezone: UTC}]", "warehouses: [{id: X, timezone: UTC}, {id: X, timezone: UTC}]"),
            "warehouses[1].id: duplicate id 'X'",
        ),
    ],
)
def test_invalid_catalog_is_one_line_naming_the_field(text, expected):
    """GIVEN an invalid catalog WHEN parsed THEN one CatalogError line names the row and field."""
    with pytest.raises(CatalogError) as info:
        parse_catalog(text, source="bad.yaml")
    message = str(info.value)
    assert message.startswith("bad.yaml: ") and expected in message
    assert "\n" not in message


def test_missing_catalog_file_names_the_path(tmp_path: Path):
    """GIVEN a path that does not exist WHEN loaded THEN the error names the path."""
    with pytest.raises(CatalogError, match="nope.yaml"):
        load_catalog(tmp_path / "nope.yaml")


def test_the_busy_benchmark_catalog_is_the_default_shop_ten_times_busier():
    """GIVEN benchmarks/catalogs/busy.yaml (the busy shop of docs/replenishment.md) WHEN it loads
    THEN it has the default's series, seed and lead times, with demand and packs x 10."""
    busy = load_catalog(str(Path(__file__).resolve().parent.parent / "benchmarks" / "catalogs" / "busy.yaml"))
    default = default_catalog()
    assert busy.series_product_ids == default.series_product_ids
    assert busy.series_warehouse_ids == default.series_warehouse_ids
    assert busy.seed == default.seed
    np.testing.assert_array_equal(busy.lead_time_hours, default.lead_time_hours)
    np.testing.assert_allclose(busy.base_demand_per_day, 10 * default.base_demand_per_day)
    np.testing.assert_array_equal(busy.pack_size, 10 * default.pack_size)


LONG = "7" * 5000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SMALL.replace("pack_size: 10", f"pack_size: {LONG}"), "products[0].pack_size: must be an integer > 0"),
        (SMALL.replace("base_demand_per_day: 1", f"base_demand_per_day: -{LONG}"), "products[0].base_demand_per_day"),
        (SMALL.replace("timezone: UTC", f"timezone: UTC, demand_factor: 0x{'f' * 4000}"), "warehouses[0].demand_factor"),
        (SMALL + f"seed: {LONG}", "seed: must be a non-negative integer"),
        (SMALL + f"initial_stock: {LONG}", "initial_stock: must be an integer"),
        (SMALL + f"initial_stock: {{A: {{X: {LONG}}}}}", "initial_stock.A.X: must be an integer"),
        (SMALL + f"initial_stock:\n  ? {LONG}\n  : 3\n", "initial_stock.<an integer of 5,000 digits>: not a product id"),
        (SMALL.replace("id: A,", f"id: {LONG},"), "products[0].id: must be a non-empty string, got <an integer of 5,000"),
        (SMALL.replace("pack_size: 10", "pack_size: 1" + "0" * 400), "products[0].pack_size: must be an integer > 0"),
    ],
    ids=["pack_size", "demand", "hex", "seed", "stock", "stock-cell", "stock-key", "id", "400-digits"],
)
def test_an_integer_of_thousands_of_digits_is_one_line_naming_the_field(text, expected):
    """GIVEN a catalog holding a 5,000-digit integer (YAML builds it; Python cannot print it:
    ValueError: Exceeds the limit, or OverflowError comparing it as a float) WHEN parsed THEN one
    CatalogError line names the row and field."""
    with pytest.raises(CatalogError) as info:
        parse_catalog(text, source="bad.yaml")
    message = str(info.value)
    assert message.startswith("bad.yaml: ") and expected in message and "\n" not in message and len(message) < 300


@pytest.mark.parametrize(
    ("ident", "code"),
    [
        ('"\\e[31mRED"', "U+001B"),
        ('"A\\nB"', "U+000A"),
        ('"tab\\there"', "U+0009"),
        ('"\\u202eevil"', "U+202E"),
        ('"zero\\u200bwidth"', "U+200B"),
        ('"bell\\a"', "U+0007"),
    ],
    ids=["ansi", "newline", "tab", "bidi-override", "zero-width", "bell"],
)
@pytest.mark.parametrize("row", ["products", "warehouses"])
def test_an_id_with_a_control_character_is_refused_naming_the_row(ident, code, row):
    """GIVEN a product or warehouse id holding a character that acts instead of showing (an ANSI escape
    sequence, a newline, a bidi override) WHEN parsed THEN one line names the row, field and character."""
    text = SMALL.replace("id: A,", f"id: {ident},") if row == "products" else SMALL.replace("id: X,", f"id: {ident},")
    with pytest.raises(CatalogError) as info:
        parse_catalog(text, source="bad.yaml")
    message = str(info.value)
    assert message.startswith(f"bad.yaml: {row}[0].id: contains the control character {code}") and "\n" not in message


def test_control_ids_that_look_like_markup_or_are_not_ascii_load_as_written():
    """Printable ids load as they are: markup-like text is escaped where it is printed, not refused."""
    text = SMALL.replace("id: A,", 'id: "[/]",').replace("id: X,", 'id: "[bold red]Café ☕ Lager 1",')
    catalog = parse_catalog(text, source="ok.yaml")
    assert catalog.series_product_ids == ["[/]"] and catalog.series_warehouse_ids == ["[bold red]Café ☕ Lager 1"]
