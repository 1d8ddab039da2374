"""The catalog: which products are stocked in which warehouses, and how demand behaves.

A catalog is a YAML file (see ``handlers/catalogs/default.yaml`` for the annotated default), parsed
and validated here from its text; reading it from a file or a store is handlers/runtime/catalogs.py.
Every product is stocked in every warehouse; one *series* is one product x warehouse pair, and
series are numbered product-major: series ``i`` is product ``i // W`` in warehouse ``i % W``.
All per-series parameters are numpy arrays of length ``S = P * W`` so the core never loops over
series in Python.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import yaml

from handlers.errors import CatalogError
from handlers.model.bounds import CATALOG_MAXIMA, MAX_CATALOG_BYTES, MAX_CATALOG_SERIES
from handlers.model.numbers import MAX_DIGITS, LongInteger, shown
from handlers.model.streams import mix, string_keys

__all__ = ["Product", "Warehouse", "Catalog", "parse_catalog", "parse_catalog_bytes"]

DEFAULT_INITIAL_STOCK_DAYS = 5.0
_PRODUCT_KEYS = {"id", "base_demand_per_day", "lead_time_hours", "pack_size", "trend_per_year", "promo_probability_per_day", "promo_lift"}
_WAREHOUSE_KEYS = {"id", "timezone", "demand_factor"}
_TOP_KEYS = {"seed", "products", "warehouses", "initial_stock"}


@dataclass(frozen=True)
class Product:
    id: str
    base_demand_per_day: float
    lead_time_hours: float
    pack_size: int
    trend_per_year: float = 0.05
    promo_probability_per_day: float = 0.03
    promo_lift: float = 1.8


@dataclass(frozen=True)
class Warehouse:
    id: str
    timezone: str
    demand_factor: float = 1.0


@dataclass(frozen=True)
class Catalog:
    products: tuple[Product, ...]
    warehouses: tuple[Warehouse, ...]
    initial_stock_table: tuple[tuple[int, ...], ...]  # [product][warehouse]
    seed: int = 42
    source: str = "<default>"

    # -- shape -----------------------------------------------------------------------------
    @property
    def num_series(self) -> int:
        return len(self.products) * len(self.warehouses)

    def series_product(self, i: int) -> Product:
        return self.products[i // len(self.warehouses)]

    def series_warehouse(self, i: int) -> Warehouse:
        return self.warehouses[i % len(self.warehouses)]

    @cached_property
    def product_index(self) -> np.ndarray:
        """Product number of every series."""
        return np.repeat(np.arange(len(self.products)), len(self.warehouses))

    @cached_property
    def warehouse_index(self) -> np.ndarray:
        """Warehouse number of every series."""
        return np.tile(np.arange(len(self.warehouses)), len(self.products))

    @cached_property
    def series_product_ids(self) -> list[str]:
        return [self.products[p].id for p in self.product_index]

    @cached_property
    def series_warehouse_ids(self) -> list[str]:
        return [self.warehouses[w].id for w in self.warehouse_index]

    @cached_property
    def zones(self) -> tuple[ZoneInfo, ...]:
        return tuple(ZoneInfo(w.timezone) for w in self.warehouses)

    # -- per-series parameters -------------------------------------------------------------
    def _per_product(self, field: str) -> np.ndarray:
        return np.asarray(np.array([getattr(p, field) for p in self.products], dtype=float)[self.product_index])

    @cached_property
    def base_demand_per_day(self) -> np.ndarray:
        factor = np.array([w.demand_factor for w in self.warehouses])[self.warehouse_index]
        return np.asarray(self._per_product("base_demand_per_day") * factor)

    @cached_property
    def lead_time_hours(self) -> np.ndarray:
        return self._per_product("lead_time_hours")

    @cached_property
    def pack_size(self) -> np.ndarray:
        return self._per_product("pack_size").astype(np.int64)

    @cached_property
    def trend_per_year(self) -> np.ndarray:
        return self._per_product("trend_per_year")

    @cached_property
    def initial_stock(self) -> np.ndarray:
        return np.array(self.initial_stock_table, dtype=np.int64).reshape(-1)

    # -- random stream keys (handlers/model/streams.py) -------------------------------------------
    @cached_property
    def product_keys(self) -> np.ndarray:
        """A 64-bit key of every product from (seed, product id), uint64 [P]."""
        return string_keys(self.seed, 1, [p.id for p in self.products])

    @cached_property
    def series_keys(self) -> np.ndarray:
        """A 64-bit key of every series from (seed, product id, warehouse id), uint64 [S]: a series'
        random draws depend on nothing else the catalog holds, nor on its order."""
        warehouses = mix(string_keys(self.seed, 2, [w.id for w in self.warehouses]))
        return mix(self.product_keys[self.product_index] + warehouses[self.warehouse_index])

    @cached_property
    def fingerprint(self) -> str:
        """A digest of everything that shapes a run; a store remembers the one it started with."""
        doc = {
            "seed": self.seed,
            "products": [vars(p) for p in self.products],
            "warehouses": [vars(w) for w in self.warehouses],
            "initial_stock": self.initial_stock_table,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Loading and validation


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's C SafeLoader when present (4x faster), whose integers longer than MAX_DIGITS are
    LongInteger: YAML would build them whatever their length, and Python refuses to print one of
    more than 4,300 digits; every field check refuses a LongInteger by its name."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | LongInteger:
    text = str(node.value)
    if len(text) > MAX_DIGITS:
        return LongInteger(sum(c.isalnum() for c in text))
    return int(yaml.SafeLoader.construct_yaml_int(loader, node))


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def parse_catalog_bytes(data: bytes, *, source: str) -> Catalog:
    """Catalog file bytes validated as a file is (size, UTF-8, content); errors name ``source``."""
    if len(data) > MAX_CATALOG_BYTES:
        raise CatalogError(f"{source}: larger than {MAX_CATALOG_BYTES // 2**20} MiB, the catalog size limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{source}: not UTF-8 text (byte {exc.start}: {data[exc.start : exc.start + 1]!r})") from exc
    return parse_catalog(text, source=source)


def parse_catalog(text: str, *, source: str = "<catalog>") -> Catalog:
    try:
        doc = yaml.load(text, Loader=_Loader)  # safe: a SafeLoader (_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise CatalogError(f"{source}: not valid YAML{where}: {problem}") from exc
    return _Parser(source).catalog(doc)


def _name(key: Any) -> str:
    """A mapping key as an error message shows it: as it is when it is printable text, else quoted."""
    return key if isinstance(key, str) and key.isprintable() and len(key) <= 64 else shown(key, 64)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> CatalogError:
        return CatalogError(f"{self.source}: {where}: {message}")

    def mapping(self, value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a mapping, got {type(value).__name__}")
        unknown = sorted(set(map(_name, value)) - allowed)
        if unknown:
            raise self.fail(
                f"{where}.{unknown[0]}" if where else unknown[0], f"unknown field (expected one of {', '.join(sorted(allowed))})"
            )
        return value

    def number(
        self,
        row: dict[str, Any],
        key: str,
        where: str,
        *,
        default: float | None = None,
        minimum: float = 0.0,
        strict: bool = True,
        integer: bool = False,
    ) -> float:
        if key not in row:
            if default is None:
                raise self.fail(f"{where}.{key}", "missing")
            return default
        return self.value(row[key], f"{where}.{key}", minimum=minimum, strict=strict, integer=integer, maximum=CATALOG_MAXIMA[key])

    def value(
        self, value: Any, field: str, *, minimum: float = 0.0, strict: bool = True, integer: bool = False, maximum: float = math.inf
    ) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and integer:
            ok = float(value).is_integer()
        if ok:
            ok = (value > minimum if strict else value >= minimum) and value <= maximum
        if not ok:
            kind = "an integer" if integer else "a number"
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            limit = f" and <= {maximum:g}" if math.isfinite(maximum) else ""
            raise self.fail(field, f"must be {kind} {bound}{limit}, got {shown(value)}")
        return int(value) if integer else float(value)

    def ident(self, row: dict[str, Any], where: str, seen: set[str]) -> str:
        value = row.get("id")
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{where}.id", f"must be a non-empty string, got {shown(value)}")
        unprintable = next((char for char in value if not char.isprintable()), None)
        if unprintable is not None:  # ids are printed: an escape sequence or a newline would act, not show
            raise self.fail(
                f"{where}.id",
                f"contains the control character U+{ord(unprintable):04X} at position "
                f"{value.index(unprintable)} (ids must be printable text), got {shown(value)}",
            )
        if value in seen:
            raise self.fail(f"{where}.id", f"duplicate id {shown(value)}")
        seen.add(value)
        return value

    def catalog(self, doc: Any) -> Catalog:
        doc = self.mapping(doc, "", _TOP_KEYS)
        for key in ("products", "warehouses"):
            if not isinstance(doc.get(key), list) or not doc[key]:
                raise self.fail(key, "must be a non-empty list")
        series = len(doc["products"]) * len(doc["warehouses"])
        if series > MAX_CATALOG_SERIES:
            raise self.fail(
                "products",
                f"{len(doc['products'])} products x {len(doc['warehouses'])} warehouses "
                f"= {series} series, more than the limit of {MAX_CATALOG_SERIES}",
            )
        seed = doc.get("seed", 42)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= CATALOG_MAXIMA["seed"]:
            raise self.fail("seed", f"must be a non-negative integer below 2**63, got {shown(seed)}")
        seen: set[str] = set()
        products = tuple(self.product(row, f"products[{i}]", seen) for i, row in enumerate(doc["products"]))
        seen = set()
        warehouses = tuple(self.warehouse(row, f"warehouses[{i}]", seen) for i, row in enumerate(doc["warehouses"]))
        table = self.initial_stock(doc.get("initial_stock"), products, warehouses)
        return Catalog(products, warehouses, table, seed=seed, source=self.source)

    def product(self, row: Any, where: str, seen: set[str]) -> Product:
        row = self.mapping(row, where, _PRODUCT_KEYS)
        return Product(
            id=self.ident(row, where, seen),
            base_demand_per_day=self.number(row, "base_demand_per_day", where),
            lead_time_hours=self.number(row, "lead_time_hours", where),
            pack_size=int(self.number(row, "pack_size", where, integer=True)),
            trend_per_year=self.number(row, "trend_per_year", where, default=0.05, minimum=-0.9),
            promo_probability_per_day=self.number(row, "promo_probability_per_day", where, default=0.03, strict=False),
            promo_lift=self.number(row, "promo_lift", where, default=1.8),
        )

    def warehouse(self, row: Any, where: str, seen: set[str]) -> Warehouse:
        row = self.mapping(row, where, _WAREHOUSE_KEYS)
        ident = self.ident(row, where, seen)
        zone = row.get("timezone")
        try:
            if not isinstance(zone, str):
                raise ValueError
            ZoneInfo(zone)
        except (ValueError, ZoneInfoNotFoundError) as exc:
            raise self.fail(f"{where}.timezone", f"must be an IANA time zone name, got {shown(zone)}") from exc
        return Warehouse(ident, zone, self.number(row, "demand_factor", where, default=1.0))

    def initial_stock(self, spec: Any, products: tuple[Product, ...], warehouses: tuple[Warehouse, ...]) -> tuple[tuple[int, ...], ...]:
        def units(value: Any, field: str) -> int:
            return int(self.value(value, field, strict=False, integer=True, maximum=CATALOG_MAXIMA["initial_stock"]))

        def days_of_demand(p: Product, w: Warehouse) -> int:
            raw = math.ceil(p.base_demand_per_day * w.demand_factor * DEFAULT_INITIAL_STOCK_DAYS)
            return -(-raw // p.pack_size) * p.pack_size

        if spec is None:
            return tuple(tuple(days_of_demand(p, w) for w in warehouses) for p in products)
        if not isinstance(spec, dict):
            n = units(spec, "initial_stock")
            return tuple(tuple(n for _ in warehouses) for _ in products)
        known = {p.id for p in products}
        for key in spec:
            if key not in known:
                raise self.fail(f"initial_stock.{_name(key)}", "not a product id of this catalog")
        rows = []
        for p in products:
            entry = spec.get(p.id)
            where = f"initial_stock.{p.id}"
            if entry is None:
                rows.append(tuple(days_of_demand(p, w) for w in warehouses))
            elif isinstance(entry, dict):
                for key in entry:
                    if key not in {w.id for w in warehouses}:
                        raise self.fail(f"{where}.{_name(key)}", "not a warehouse id of this catalog")
                rows.append(tuple(units(entry[w.id], f"{where}.{w.id}") if w.id in entry else days_of_demand(p, w) for w in warehouses))
            else:
                n = units(entry, where)
                rows.append(tuple(n for _ in warehouses))
        return tuple(rows)
