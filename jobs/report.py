"""``python -m jobs report``: one self-contained HTML page of a run, from the stored logs and state.

Reading: every log object of ``order_tick`` and ``restock`` up to the span's end (on-hand is rebuilt
minute by minute from their ``remaining_inventory`` / ``new_inventory``, starting at the state's
``initial``), and the ``forecast`` and ``alert`` objects of the span. S3 objects are fetched
concurrently by a thread pool; the file backend reads files directly. Every figure of the summary
counts the events with ``from < @timestamp <= to``, which is exactly what ``status --json`` adds up
between two moments (order events are stamped with the end of their business minute).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from handlers.errors import InputError, StockpulseError
from handlers.model.catalog import Catalog
from handlers.model.events import format_epoch, parse_time
from handlers.model.logs import LOG_PREFIX, parse_log_key
from handlers.model.numbers import shown
from handlers.model.state import HANDLERS, State
from handlers.runtime.catalogs import load_compiled
from handlers.runtime.invoke import load_state
from handlers.runtime.settings import ENV, Settings
from handlers.storage.base import Store
from handlers.storage.location import open_store
from handlers.storage.s3 import S3Store

from .report_data import RunData

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_OUT",
    "NoDataError",
    "RunData",
    "cmd_report",
    "load_run",
    "register",
    "report_command",
    "summary_rows",
    "write_report",
]

DEFAULT_OUT = "stockpulse-report.html"
S3_READERS = 32  # concurrent GETs: a week is ~13,000 small objects
CATCH_UP_MARGIN = 2 * 86400  # an order tick may stamp events up to its catch-up window before its key
#: Columns kept per event type (beyond the time and series).
COLUMNS: dict[str, tuple[str, ...]] = {
    "order": ("quantity", "remaining_inventory", "backordered"),  # backordered: a feed's orders only
    "lost_sale": ("lost_quantity", "remaining_inventory"),
    # a shop's feeds (handlers/model/feeding.py)
    "return": ("quantity", "new_inventory"),
    "receipt": ("received_quantity", "new_inventory"),
    "adjustment": ("difference", "new_inventory"),
    "restock": ("restocked_quantity", "new_inventory", "purchase_order_id"),
    "reorder_alert": (
        "current_inventory",
        "recommended_reorder_quantity",
        "purchase_order_id",
        "expected_arrival",
        "predicted_stockout_hours",
        "reason",
    ),
    "inventory": ("inventory_units", "predicted_stockout_hours", "stockout_probability", "reorder_point"),
    "forecast_score": ("day", "forecast_units", "forecast_std_units", "actual_units", "abs_error", "seasonal_naive_abs_error"),
}
#: The events that change on hand and the column holding it after the change. Within one business minute
#: restock runs before order_tick (jobs/schedule.py RUN_ORDER); within one order tick its events are in
#: the order it applied them (a feed's orders, returns, receipts and counts interleave).
_STOCK = {
    "restock": (0, "new_inventory"),
    "order": (1, "remaining_inventory"),
    "lost_sale": (1, "remaining_inventory"),
    "return": (1, "new_inventory"),
    "receipt": (1, "new_inventory"),
    "adjustment": (1, "new_inventory"),
}
_STOCK_HANDLERS = ("order_tick", "restock")  # their events change on hand
BEFORE_BATCH = 64  # objects before the span read at first, then twice as many each round
_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z")  # format_time's


class NoDataError(StockpulseError):
    """The store or the span holds nothing to report (``report`` exits 1 with one line)."""


# -- reading -------------------------------------------------------------------------------------


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _key_epoch(key: str) -> float:
    """``logs/<h>/YYYY/MM/DD/HH/<h>-20260105T000100Z[-shard-<k>].ndjson.gz`` -> epoch seconds of the tick
    (NaN for a key of another shape)."""
    parsed = parse_log_key(key)
    return math.nan if parsed is None else parsed[1]


def _wanted_keys(store: Store, start: float, end: float) -> tuple[list[str], list[str]]:
    """The log objects a report of (start, end] reads: every object keyed in (start, end + CATCH_UP_MARGIN],
    and, oldest first, the ``order_tick`` and ``restock`` objects keyed at or before ``start``, of which
    :func:`_read_run` reads only the latest it needs for the on hand at the span's start."""
    during, before = [], []
    for handler in HANDLERS:
        for key in store.list(f"{LOG_PREFIX}{handler}/"):
            if not key.endswith(".ndjson.gz"):
                continue
            epoch = _key_epoch(key)
            if start < epoch <= end + CATCH_UP_MARGIN:
                during.append(key)
            elif epoch <= start and handler in _STOCK_HANDLERS:
                before.append(key)
    return during, sorted(before, key=_key_epoch)


def read_objects(store: Store, keys: Sequence[str]) -> Iterable[bytes]:
    """The objects' bytes, in order: S3 concurrently (a thread pool), files directly."""
    if isinstance(store, S3Store):
        with ThreadPoolExecutor(max_workers=S3_READERS) as pool:
            yield from pool.map(store.get, keys)
    else:
        for key in keys:
            yield store.get(key)


Rows = dict[str, list[tuple[Any, ...]]]


def _collect(
    keys: Sequence[str], payloads: Iterable[bytes], index: dict[tuple[str, str], int], rows: Rows, damaged: list[tuple[str, str]]
) -> None:
    """Add the events of every object to ``rows``. An object that cannot be read whole (truncated,
    not gzip, a failed CRC, a line that is not an event) is left out entirely and listed in ``damaged``
    with the reason: none of its events is counted, and nothing else is."""
    for key, payload in zip(keys, payloads):
        try:
            mine = _events_of(payload, index)
        except (EOFError, OSError, zlib.error, ValueError, KeyError, TypeError) as exc:  # BadGzipFile is an OSError
            damaged.append((key, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'damaged'}"))
            continue
        for kind, found in mine.items():
            rows[kind].extend(found)


def _events_of(payload: bytes, index: dict[tuple[str, str], int]) -> Rows:
    mine: Rows = {kind: [] for kind in COLUMNS}
    for number, line in enumerate(gzip.decompress(payload).split(b"\n")):
        if not line:
            continue
        doc = json.loads(line)
        kind, stamp = doc["type"], doc["@timestamp"]
        if not isinstance(stamp, str) or not _STAMP.fullmatch(stamp):
            raise ValueError(f"@timestamp {shown(stamp)} is not an ISO-8601 UTC time")
        if kind in mine:
            series = index.get((doc["product_id"], doc["warehouse_id"]), -1)
            mine[kind].append((stamp, series, number, *(doc.get(c) for c in COLUMNS[kind])))
    return mine


def _last_changes(rows: Rows, start: float, num_series: int) -> np.ndarray:
    """Per catalog series, the time of its last change of on hand at or before ``start`` among ``rows``
    (-inf when none)."""
    last = np.full(num_series, -math.inf)
    for kind in _STOCK:
        if rows[kind]:
            stamps = _epochs([row[0] for row in rows[kind]])
            series = np.array([row[1] for row in rows[kind]], dtype=np.int64)
            keep = (stamps <= start) & (series >= 0)
            np.maximum.at(last, series[keep], stamps[keep])
    return last


def _epochs(stamps: Sequence[str]) -> np.ndarray:
    import pandas as pd  # only when a report is made: `python -m jobs invoke` does not pay for it

    parsed = pd.to_datetime(pd.Series(stamps, dtype=object), utc=True, format="ISO8601").dt.as_unit("s")
    return np.asarray(parsed.astype("int64").to_numpy(), dtype=np.float64)


def _frame(kind: str, rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame.from_records(rows, columns=["stamp", "series", "seq", *COLUMNS[kind]])
    stamps = pd.to_datetime(frame["stamp"], utc=True, format="ISO8601").dt.as_unit("s")
    frame.insert(0, "time", stamps.astype("int64"))
    return frame.drop(columns="stamp")


def _read_run(
    store: Store, catalog: Catalog, lo: float, hi: float, series: np.ndarray
) -> tuple[Rows, dict[str, int], list[tuple[str, str]]]:
    """The events a report of (lo, hi] needs, how many objects it read (in the span, before it,
    after it) and the damaged objects it left out.

    Every object keyed in the span (or within CATCH_UP_MARGIN after it) is read. The on hand at
    ``lo`` is the inventory after each series' last change at or before ``lo``: the ``order_tick``
    and ``restock`` objects before the span are read newest first, in growing batches, until every
    series shown has a change later than every object still unread (an object keyed at ``t`` holds
    no event after ``t``), or none is left (a series without a change starts from ``initial``)."""
    index = {(p, w): i for i, (p, w) in enumerate(zip(catalog.series_product_ids, catalog.series_warehouse_ids))}
    during, before = _wanted_keys(store, lo, hi)
    rows: Rows = {kind: [] for kind in COLUMNS}
    damaged: list[tuple[str, str]] = []
    _collect(during, read_objects(store, during), index, rows, damaged)
    last = _last_changes(rows, lo, catalog.num_series)
    read_before, batch = 0, BEFORE_BATCH
    while read_before < len(before):
        unread = before[: len(before) - read_before]
        if bool((last[series] > _key_epoch(unread[-1])).all()):
            break
        keys = unread[-batch:]
        found: Rows = {kind: [] for kind in COLUMNS}
        _collect(keys, read_objects(store, keys), index, found, damaged)
        last = np.maximum(last, _last_changes(found, lo, catalog.num_series))
        for kind in COLUMNS:
            rows[kind].extend(found[kind])
        read_before += len(keys)
        batch *= 2
    after = sum(_key_epoch(key) > hi for key in during)
    return rows, {"span": len(during) - after, "before": read_before, "after": after}, damaged


def _stock_path(frames: dict[str, pd.DataFrame], state: State, series: np.ndarray, minutes: np.ndarray) -> np.ndarray:
    """On hand at the end of every minute, per series, from the events' inventory after each change."""
    import pandas as pd

    parts = []
    for kind, (rank, column) in _STOCK.items():
        f = frames[kind]
        parts.append(pd.DataFrame({"time": f["time"], "rank": rank, "seq": f["seq"], "series": f["series"], "units": f[column]}))
    changes = pd.concat(parts).sort_values(["time", "rank", "seq"], kind="stable")
    out = np.empty((len(series), len(minutes)), dtype=np.int64)
    for row, i in enumerate(series.tolist()):
        mine = changes[changes["series"] == i]
        times, units = mine["time"].to_numpy(), mine["units"].to_numpy()
        at = np.searchsorted(times, minutes, side="right") - 1
        out[row] = np.where(at >= 0, units[np.maximum(at, 0)] if len(units) else 0, int(state.initial[i]))
    return out


def load_run(
    store: Store,
    catalog: Catalog,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    products: Sequence[str] = (),
    warn: Callable[[str], None] = _stderr,
) -> RunData:
    """Read the logs and state of ``store`` for the span (start, end] (default: the whole run);
    ``warn`` gets one line per damaged log object left out."""
    state, _ = load_state(store, catalog)
    if state is None:
        raise NoDataError(f"{store.url} holds no state yet (run `simulate` or `invoke` first)")
    known = list(dict.fromkeys(catalog.series_product_ids))
    unknown = [p for p in products if p not in known]
    if unknown:
        listed = ", ".join(shown(p, 64) if not p.isprintable() else p for p in known[:10])
        more = f", ... ({len(known):,} products)" if len(known) > 10 else ""
        raise InputError(f"--product: unknown {shown(unknown[0], 64)} (one of {listed}{more})")
    first = math.floor(state.created_at / 60) * 60 - 60.0  # the initial state's order clock
    lo = first if start is None else max(first, start.timestamp())
    hi = state.orders_through if end is None else min(state.orders_through, end.timestamp())
    if start is not None and end is not None and start >= end:
        raise InputError(f"--from: {format_epoch(start.timestamp())} is not before --to {format_epoch(end.timestamp())}")
    asked = (
        f"{'after ' + format_epoch(start.timestamp()) if start else 'from the start'} "
        f"{'through ' + format_epoch(end.timestamp()) if end else 'to the end'}"
    )
    stored = f"(the store has data from {format_epoch(first)} through {format_epoch(state.orders_through)})"
    if hi <= lo:
        raise NoDataError(f"--from/--to: no data {asked} {stored}")
    series = np.array([i for i, p in enumerate(catalog.series_product_ids) if not products or p in products])
    rows, counts, damaged = _read_run(store, catalog, lo, hi, series)
    for key, reason in damaged:
        warn(f"stockpulse: warning: skipped the damaged log object {key} ({reason}); its events are in no figure")
    frames = {kind: _frame(kind, r) for kind, r in rows.items()}
    lo_minute, hi_minute = math.floor(lo / 60) * 60, math.floor(hi / 60) * 60
    minutes = np.arange(lo_minute + 60, hi_minute + 1, 60, dtype=np.int64)
    on_hand = _stock_path(frames, state, series, minutes)
    chosen = set(series.tolist())
    spans = {kind: f[(f["time"] > lo) & (f["time"] <= hi) & f["series"].isin(chosen)].reset_index(drop=True) for kind, f in frames.items()}
    if not any(len(f) for f in spans.values()):
        raise NoDataError(f"--from/--to: no events of {', '.join(products) or 'any product'} {asked} {stored}")
    return RunData(catalog, state, store.url, lo, hi, series, spans, minutes, on_hand, counts, tuple(damaged))


# -- figures ---------------------------------------------------------------------------------------


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _figures(data: RunData, rows: np.ndarray) -> dict[str, Any]:
    """Sums over the series ``rows`` (positions in ``data.series``)."""
    ids = set(data.series[rows].tolist())
    e = {kind: f[f["series"].isin(ids)] for kind, f in data.events.items()}
    import pandas as pd

    shipped, lost = int(e["order"]["quantity"].sum()), int(e["lost_sale"]["lost_quantity"].sum())
    backordered = int(pd.to_numeric(e["order"]["backordered"]).fillna(0).sum())
    scores = e["forecast_score"]
    paired = scores[scores["seasonal_naive_abs_error"].notna()]
    naive = float(paired["seasonal_naive_abs_error"].sum())
    skill_err = _ratio(float(paired["abs_error"].sum()), naive)
    return {
        "units_sold": shipped,
        "lost_sales": lost,
        "backordered": backordered,
        "fill_rate": _ratio(shipped - backordered, shipped + lost),  # filled from the shelf at once
        "reorders": len(e["reorder_alert"]),
        "received": int(e["restock"]["restocked_quantity"].sum()) + int(e["receipt"]["received_quantity"].sum()),
        "returned": int(e["return"]["quantity"].sum()),
        "adjusted": int(e["adjustment"]["difference"].sum()),
        "mean_on_hand": float(data.on_hand[rows].sum(axis=0).mean()) if data.on_hand.shape[1] else 0.0,
        "end_on_hand": int(data.on_hand[rows, -1].sum()) if data.on_hand.shape[1] else 0,
        "stockout_minutes": int((data.on_hand[rows] <= 0).sum()),
        "forecast_wape": _ratio(float(scores["abs_error"].sum()), float(scores["actual_units"].sum())),
        "forecast_skill": None if skill_err is None else 1.0 - skill_err,
        "scored_days": len(scores),
    }


def summary_rows(data: RunData) -> list[dict[str, Any]]:
    """One row per product x warehouse shown, then one per product, then the total."""
    out = []
    products, warehouses = data.catalog.series_product_ids, data.catalog.series_warehouse_ids
    for row, i in enumerate(data.series.tolist()):
        out.append({"level": "series", "product_id": products[i], "warehouse_id": warehouses[i], **_figures(data, np.array([row]))})
    for product in data.product_ids:
        rows = np.array([r for r, i in enumerate(data.series.tolist()) if products[i] == product])
        out.append({"level": "product", "product_id": product, "warehouse_id": "", **_figures(data, rows)})
    out.append({"level": "total", "product_id": "total", "warehouse_id": "", **_figures(data, np.arange(len(data.series)))})
    return out


# -- command line ----------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "report",
        help="write one self-contained HTML report of a run (charts and a summary table)",
        description="Read the store's log objects and state and write one HTML file that opens with no "
        "network: inventory, purchase orders and stockouts; demand against the day-ahead "
        "forecast; predicted hours to stockout; alerts, lost sales and fill rate; a summary table.",
    )
    p.add_argument("--out", default=DEFAULT_OUT, metavar="FILE.html", help=f"where to write (default {DEFAULT_OUT})")
    p.add_argument("--from", dest="start", metavar="ISO", help="span start, exclusive (default: the store's start)")
    p.add_argument("--to", dest="end", metavar="ISO", help="span end, inclusive (default: the store's order clock)")
    p.add_argument("--product", action="append", default=[], metavar="ID", help="only this product (repeatable)")
    p.add_argument("--json", action="store_true", help="print the summary rows as JSON as well")
    for name in ("store_url", "catalog_path"):
        variable, flag, _, default = ENV[name]
        p.add_argument(flag, dest=name, metavar=name.split("_")[0].upper(), help=f"overrides ${variable} (default {default or 'unset'})")
    p.set_defaults(func=cmd_report)


def write_report(
    store: Store, catalog: Catalog, out: str, *, start: datetime | None = None, end: datetime | None = None, products: Sequence[str] = ()
) -> tuple[RunData, list[dict[str, Any]]]:
    """Read the span's logs and write the page to ``out`` (atomically); returns the data and summary rows."""
    from .report_page import render_page  # bokeh only for this command

    data = load_run(store, catalog, start=start, end=end, products=products)
    rows = summary_rows(data)
    html = render_page(data, rows)
    tmp = f"{out}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(html)
        os.replace(tmp, out)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write ({exc.strerror})") from exc
    return data, rows


def report_command(store_url: str, start: float | None = None, end: float | None = None) -> str:
    """The command that writes the report of ``store_url`` (over (start, end] when given)."""
    span = f" --from {format_epoch(start)} --to {format_epoch(end)}" if start is not None and end is not None else ""
    return f"python -m jobs report --store {store_url}{span} --out {DEFAULT_OUT}"


def cmd_report(args: argparse.Namespace) -> int:
    settings = Settings.from_env(os.environ, **{n: getattr(args, n, None) for n in ("store_url", "catalog_path")})
    start = parse_time(args.start, "--from") if args.start is not None else None
    end = parse_time(args.end, "--to") if args.end is not None else None
    try:
        store = open_store(settings.store_url)
        data, rows = write_report(store, load_compiled(settings.catalog_path, store), args.out, start=start, end=end, products=args.product)
    except NoDataError as exc:
        print(f"stockpulse: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "store": data.store_url,
                    "from": format_epoch(data.start),
                    "to": format_epoch(data.end),
                    "out": args.out,
                    "log_objects": dict(data.objects),
                    "damaged_log_objects": [{"key": key, "reason": reason} for key, reason in data.damaged],
                    "rows": rows,
                },
                indent=2,
            )
        )
    else:
        total = rows[-1]
        damaged = f"; {len(data.damaged):,} damaged log objects skipped (see the warnings)" if data.damaged else ""
        print(
            f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB): {format_epoch(data.start)} .. "
            f"{format_epoch(data.end)}, {len(data.series)} product x warehouse series, "
            f"{data.objects_note()}{damaged}; fill rate {_percent(total['fill_rate'])}, "
            f"lost sales {total['lost_sales']:,}, "
            f"{'backordered ' + format(total['backordered'], ',') + ', ' if total['backordered'] else ''}"
            f"reorders {total['reorders']:,}"
        )
    return 0


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"
