"""``python -m jobs replay FILE``: a real daily sales history through the live handlers, as a shop's feed.

What it does, from a long CSV (the same options as ``backtest``):

1. lays the history out per series and day (``jobs/backtest.py`` ``load_matrix``; ``--days`` keeps the
   last days) and, with ``--stockout-col``, recovers the demand the stockouts of the history hid
   (handlers/forecasting/censored.py): the policy faces demand, not the sales those stockouts cut;
2. builds a catalog: one product per series in one warehouse (``WH``, UTC); its declared demand is
   the mean of the first 28 days, lead time ``--lead-time-days``, pack ``--pack-size``, and it starts
   with ``--initial-days`` of that demand on hand;
3. turns each day's units into order lines, spread over the day's hours by a stated, deterministic
   profile (:data:`HOUR_PROFILE`, the simulator's diurnal curve in UTC; largest remainders, so a
   day's lines add up to its units exactly), one line per series and hour with units, at half past
   the hour, in that hour's partition (docs/feeds.md): the shop's order feed;
4. runs the live handlers over it (order tick, restock and alert hourly, the forecast daily) on the
   embedded store, once with stockpulse's policy and once with the original system's (the seed rule,
   ``jobs/original.py``), and prints for each: fill rate (units shipped when ordered / units ordered),
   backordered units, mean units on hand (sampled at the end of every day), purchase orders placed.

A feed's orders beyond on hand are backordered, not lost (the shop sold them): the fill rate says how
much was shipped at once.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from handlers.errors import InputError
from handlers.model.catalog import Catalog, parse_catalog
from handlers.model.demand import DIURNAL
from handlers.model.events import scheduled_event
from handlers.runtime.declarations import DECLARATIONS, Declaration
from handlers.runtime.feeds import Feeds
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.storage.file import FileStore

from . import backtest, console
from .options import NUMBER, WHOLE
from .original import original_cores

__all__ = ["HOUR_PROFILE", "ReplayResult", "register", "replay", "hour_units", "write_feed", "build_catalog"]

#: Share of a day's units in each UTC hour (the simulator's diurnal curve, handlers/model/demand.py).
HOUR_PROFILE = DIURNAL / DIURNAL.sum()
SCHEDULE = {"restock": 3600, "order_tick": 3600, "forecast": 86400, "alert": 3600}  # business seconds
RUN_ORDER = ("restock", "order_tick", "forecast", "alert")
MAX_REPLAY_SERIES = 20_000
MIN_DAYS = 35  # 28 days for the declared demand and a week to replay at least


@dataclass(frozen=True)
class ReplayResult:
    policy: str
    units_ordered: int
    units_shipped_at_once: int
    units_backordered: int
    backorder_end: int
    mean_on_hand: float
    purchase_orders: int
    units_received: int
    invocations: int
    seconds: float

    @property
    def fill_rate(self) -> float:
        return self.units_shipped_at_once / self.units_ordered if self.units_ordered else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "fill_rate": round(self.fill_rate, 6),
            "units_ordered": self.units_ordered,
            "units_backordered": self.units_backordered,
            "backorder_at_end": self.backorder_end,
            "mean_on_hand": round(self.mean_on_hand, 2),
            "purchase_orders": self.purchase_orders,
            "units_received": self.units_received,
            "invocations": self.invocations,
            "seconds": round(self.seconds, 2),
        }


def hour_units(units: np.ndarray) -> np.ndarray:
    """[S, D] whole units per day -> [S, D, 24] per UTC hour by :data:`HOUR_PROFILE`, largest remainders
    first (ties: the earlier hour), so each day's hours add up to its units exactly."""
    units = np.rint(np.nan_to_num(units)).astype(np.int64)
    exact = units[..., None] * HOUR_PROFILE
    whole = np.floor(exact).astype(np.int64)
    short = units - whole.sum(axis=-1)
    remainder = exact - whole
    rank = np.argsort(np.argsort(-remainder, axis=-1, kind="stable"), axis=-1, kind="stable")
    return np.asarray(whole + (rank < short[..., None]))


def build_catalog(ids: list[str], units: np.ndarray, *, lead_time_days: float, pack_size: int, initial_days: float) -> Catalog:
    """One product per series in warehouse ``WH`` (UTC): declared demand the mean of the first 28 days."""
    first = np.nanmean(np.where(np.isfinite(units[:, :28]), units[:, :28], np.nan), axis=1)
    first = np.nan_to_num(first, nan=0.0)
    products = []
    for name, demand in zip(ids, first.tolist()):
        stock = math.ceil(max(demand, 0.0) * initial_days / pack_size) * pack_size
        products.append(
            {
                "id": name,
                "base_demand_per_day": max(round(demand, 4), 0.01),
                "lead_time_hours": lead_time_days * 24,
                "pack_size": pack_size,
                "trend_per_year": 0.0,
                "promo_probability_per_day": 0.0,
                "initial": stock,
            }
        )
    doc = {
        "seed": 1,
        "products": [{k: v for k, v in p.items() if k != "initial"} for p in products],
        "warehouses": [{"id": "WH", "timezone": "UTC"}],
        "initial_stock": {p["id"]: p["initial"] for p in products},
    }
    return parse_catalog(json.dumps(doc), source="replay catalog")


def write_feed(store: FileStore, ids: list[str], first_day: int, units: np.ndarray) -> int:
    """The order feed of ``units`` [S, D] (day ``first_day`` = days since 1970): one object per hour;
    returns the lines written."""
    hourly = hour_units(units)  # [S, D, 24]
    written = 0
    for d in range(hourly.shape[1]):
        day = first_day + d
        date = datetime.fromtimestamp(day * 86400, timezone.utc)
        for h in range(24):
            rows = np.flatnonzero(hourly[:, d, h])
            if not len(rows):
                continue
            moment = date.replace(hour=h, minute=30).isoformat().replace("+00:00", "Z")
            lines = "".join(
                json.dumps(
                    {
                        "line_id": f"{ids[i]}:{date:%Y%m%d}:{h:02d}",
                        "time": moment,
                        "product_id": ids[i],
                        "warehouse_id": "WH",
                        "quantity": int(hourly[i, d, h]),
                    }
                )
                + "\n"
                for i in rows.tolist()
            )
            store.put_once(f"{date:%Y/%m/%d}/{h:02d}/orders.ndjson", lines.encode())
            written += len(rows)
    return written


def _run(
    policy: str,
    handlers: dict[str, Declaration],
    root: Path,
    catalog: Catalog,
    feed: FileStore,
    first_day: int,
    days: int,
    progress: Callable[[int, int], None],
    offset: int,
    total: int,
) -> ReplayResult:
    store = FileStore(root / policy)
    runtime = Runtime(store=store, catalog=catalog, handlers=handlers, feeds=Feeds({"orders": feed}))
    begin = first_day * 86400
    done = 0
    on_hand_sum = 0.0
    started = time.perf_counter()
    for day in range(days):
        for hour in range(24):
            moment = begin + day * 86400 + hour * 3600 + 3600
            for name in RUN_ORDER:
                if moment % SCHEDULE[name] == 0:
                    when = datetime.fromtimestamp(moment, timezone.utc)
                    invoke(name, scheduled_event(when, name.replace("_", "-"), event_id=f"replay-{name}-{moment}"), runtime)
                    done += 1
                    progress(offset + done, total)
        state, _ = load_state(store, catalog)
        assert state is not None
        on_hand_sum += float(state.on_hand.sum())
    state, _ = load_state(store, catalog)
    assert state is not None
    ordered = int(state.shipped.sum() + state.backorder.sum())
    return ReplayResult(
        policy,
        ordered,
        int(state.shipped.sum() - _shipped_from_backorder(state)),
        int(state.backordered.sum()),
        int(state.backorder.sum()),
        on_hand_sum / max(days, 1),
        int(state.po_count.sum()),
        int(state.received.sum()),
        done,
        time.perf_counter() - started,
    )


def _shipped_from_backorder(state: Any) -> int:
    """Units shipped later, from a receipt, because they were backordered when ordered."""
    return int(state.backordered.sum() - state.backorder.sum())


def replay(
    path: str | Path,
    *,
    id_cols: list[str],
    date_col: str,
    value_col: str,
    date_format: str | None = None,
    stockout_col: str | None = None,
    days: int | None = None,
    lead_time_days: float = 2.0,
    pack_size: int = 1,
    initial_days: float = 7.0,
    out: Path,
    progress: Callable[[int, int], None] = lambda done, total: None,
    say: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Replay the history in ``path`` through the live handlers under both policies; the JSON result."""
    columns = list(dict.fromkeys([*id_cols, date_col, value_col, *([stockout_col] if stockout_col else [])]))
    say(f"reading {path}")
    frame = backtest._read_csv(Path(path), columns)
    matrix, names, calendar = backtest.load_matrix(
        frame, id_cols=id_cols, date_col=date_col, value_col=value_col, freq="D", date_format=date_format
    )
    if len(names) > MAX_REPLAY_SERIES:
        raise InputError(f"{path}: {len(names)} series, more than the {MAX_REPLAY_SERIES:,} a replay takes; cut the file to fewer series")
    units = matrix
    recovered = 0
    if stockout_col is not None:
        units, recovered = _recover(frame, stockout_col, matrix, names, calendar, id_cols, date_col)
    if days is not None:
        units, calendar = units[:, -days - 28 :], calendar[-days - 28 :]
    if units.shape[1] < MIN_DAYS:
        raise InputError(
            f"{path}: {units.shape[1]} days of history; a replay needs at least {MIN_DAYS} "
            "(28 for the declared demand, then the days it replays)"
        )
    warm, replayed = units[:, :28], units[:, 28:]
    first_day = int(calendar[28].timestamp() // 86400)
    catalog = build_catalog(names, warm, lead_time_days=lead_time_days, pack_size=pack_size, initial_days=initial_days)
    _claim(out)
    feed = FileStore(out / "feed" / "orders")
    say(f"writing the order feed of {len(names)} series x {replayed.shape[1]} days")
    lines = write_feed(feed, names, first_day, replayed)
    per_run = replayed.shape[1] * sum(86400 // every for every in SCHEDULE.values())
    results = []
    for k, (policy, handlers) in enumerate((("stockpulse", dict(DECLARATIONS)), ("original", original_cores(every_alert_orders=False)))):
        say(f"replaying under {policy}'s policy")
        results.append(_run(policy, handlers, out, catalog, feed, first_day, replayed.shape[1], progress, k * per_run, 2 * per_run))
    return {
        "file": str(path),
        "series": len(names),
        "days": int(replayed.shape[1]),
        "first_day": str(calendar[28].date()),
        "last_day": str(calendar[-1].date()),
        "order_lines": lines,
        "units": int(np.nansum(replayed)),
        "stockout_periods_recovered": recovered,
        "lead_time_days": lead_time_days,
        "pack_size": pack_size,
        "initial_days": initial_days,
        "store": f"file://{out}",
        "policies": [r.as_dict() for r in results],
    }


MARKER = ".stockpulse-replay"  # written into --out: what replay made and may replace
OWNED = ("feed", "stockpulse", "original")


def _claim(out: Path) -> None:
    """Make ``out`` replay's own: a new or empty directory gets the marker; one holding the marker has
    only what an earlier replay wrote replaced (its three folders); any other is refused, nothing
    deleted (``--out ./data`` must never delete a live store)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} is a file, not a directory")
    if out.is_dir() and not (out / MARKER).is_file() and any(out.iterdir()):
        raise InputError(f"--out: {out} holds files replay did not write (no {MARKER} in it); give a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(
        "written by python -m jobs replay: the feed and stores under it are replaced by the next replay into this directory\n"
    )
    for name in OWNED:
        if (out / name).is_symlink() or (out / name).is_file():
            (out / name).unlink()
        elif (out / name).is_dir():
            shutil.rmtree(out / name)


def _recover(
    frame: Any, column: str, matrix: np.ndarray, names: list[str], calendar: Any, id_cols: list[str], date_col: str
) -> tuple[np.ndarray, int]:
    """The daily demand the flagged periods hid (handlers/forecasting/censored.py), and how many were flagged."""
    from handlers.forecasting.censored import recover_censored

    shares = backtest.load_stockout(frame, column=column, id_cols=id_cols, date_col=date_col, freq="D", names=names, calendar=calendar)
    flagged = np.isfinite(matrix) & (shares > 0)
    return recover_censored(matrix, flagged), int(flagged.sum())


def _table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"replay: {result['series']} series, {result['days']} days ({result['first_day']} .. "
        f"{result['last_day']}), {result['units']:,} units ordered"
    )
    for column in ("policy", "fill rate", "backordered", "backorder at end", "mean on hand", "purchase orders"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for row in result["policies"]:
        table.add_row(
            row["policy"],
            f"{row['fill_rate']:.2%}",
            f"{row['units_backordered']:,}",
            f"{row['backorder_at_end']:,}",
            f"{row['mean_on_hand']:,.0f}",
            f"{row['purchase_orders']:,}",
        )
    return table


def run(args: argparse.Namespace) -> int:

    if args.lead_time_days <= 0 or args.lead_time_days > 365:
        raise InputError(f"--lead-time-days: must be a number of days in (0, 365], got {args.lead_time_days:g}")
    if not 1 <= args.pack_size <= 1_000_000:
        raise InputError(f"--pack-size: must be a whole number in [1, 1000000], got {args.pack_size}")
    if not 0 <= args.initial_days <= 365:
        raise InputError(f"--initial-days: must be a number of days in [0, 365], got {args.initial_days:g}")
    if args.days is not None and not 7 <= args.days <= 36_500:
        raise InputError(f"--days: must be a whole number of days in [7, 36500], got {args.days}")
    err = console.err
    with console.progress_bar("replaying", enabled=not args.json) as advance:
        result = replay(
            args.file,
            id_cols=args.id_col or ["unique_id"],
            date_col=args.date_col,
            value_col=args.value_col,
            date_format=args.date_format,
            stockout_col=args.stockout_col,
            days=args.days,
            lead_time_days=args.lead_time_days,
            pack_size=args.pack_size,
            initial_days=args.initial_days,
            out=Path(args.out),
            progress=advance,
            say=lambda message: err.print(message, style="dim") if err.is_terminal and not args.json else None,
        )
    if args.json:
        print(json.dumps(result))
    else:
        console.out.print(_table(result))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="run a real daily sales history through the live handlers as an order feed",
        description="Turn a daily sales history (long CSV, as backtest reads it) into a shop's order feed, build a "
        "catalog for its series, run the live handlers over it under stockpulse's policy and the "
        "original system's, and print fill rate, backorders, mean on hand and purchase orders.",
    )
    parser.add_argument("file", help="long CSV: one row per series and day (.csv or .csv.gz)")
    parser.add_argument("--id-col", action="append", metavar="COLUMN", help="series id column; repeat to join several (default: unique_id)")
    parser.add_argument("--date-col", default="ds", metavar="COLUMN", help="date column (default: ds)")
    parser.add_argument("--value-col", default="y", metavar="COLUMN", help="units sold column (default: y)")
    parser.add_argument("--date-format", metavar="FORMAT", help="strptime format of the dates when not ISO 8601")
    parser.add_argument(
        "--stockout-col",
        metavar="COLUMN",
        help="a per-day flag (0/1) or share out of stock: those days' demand is recovered before it "
        "is replayed (handlers/forecasting/censored.py)",
    )
    parser.add_argument("--days", type=WHOLE, metavar="N", help="replay only the last N days (default: all after the first 28)")
    parser.add_argument("--lead-time-days", type=NUMBER, default=2.0, help="lead time of every product (default: 2)")
    parser.add_argument("--pack-size", type=WHOLE, default=1, help="pack size of every product (default: 1)")
    parser.add_argument("--initial-days", type=NUMBER, default=7.0, help="days of declared demand on hand at the start (default: 7)")
    parser.add_argument(
        "--out",
        default="./data/replay",
        metavar="DIR",
        help="where the feed and the two stores go: a new or empty directory, or one an earlier replay "
        "wrote (its feed and stores are replaced; default: ./data/replay)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)
