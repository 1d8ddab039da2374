"""Terminal output: progress on stderr, tables on stdout (rich)."""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from handlers.model.events import format_epoch
from handlers.model.state import FEED_OUTCOMES

from .schedule import Schedule
from .simulate import SimulationResult

__all__ = ["PipeConsole", "plain", "print_simulation", "progress_bar", "simulation_json", "status_view", "watch_status"]


class PipeConsole(Console):
    """A rich Console that leaves a closed pipe (``| head``) to ``jobs.cli.main``, which ends every
    command the same way (rich's own handling would exit 1 from inside the command)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


out = PipeConsole(soft_wrap=True, width=None if Console().is_terminal else 120)
err = PipeConsole(stderr=True)


def plain(text: str, style: str = "") -> Text:
    """``text`` as it is: never read as rich markup (a catalog id ``[/]`` or ``[bold red]X`` prints as
    written), and a character that is not printable (an escape sequence, a newline) shown escaped
    (``\\x1b``) instead of acting on the terminal or the file the output goes to."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return Text(text, style=style)


@contextmanager
def progress_bar(label: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """Yields ``advance(done, total)``; a no-op when disabled or when stderr is not a terminal."""
    if not enabled or not err.is_terminal:
        yield lambda done, total: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("invocations"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            if done % 50 == 0 or done == total:
                progress.update(task, completed=done, total=total)

        yield advance


def simulation_json(result: SimulationResult, rows: list[dict[str, Any]], store: str, schedule: Schedule) -> dict[str, Any]:
    sold = sum(r["units_sold"] for r in rows)
    lost = sum(r["lost_sales"] for r in rows)
    return {
        "store": store,
        "start": format_epoch(result.start),
        "end": format_epoch(result.end),
        "schedule": schedule.intervals,
        "invocations": result.invocations,
        "wall_seconds": round(result.wall_seconds, 3),
        "totals": {
            "units_sold": sold,
            "lost_sales": lost,
            "fill_rate": sold / (sold + lost) if sold + lost else 1.0,
            "reorders": sum(r["reorders"] for r in rows),
            "end_inventory": sum(r["end_inventory"] for r in rows),
        },
        "series": rows,
    }


def print_simulation(result: SimulationResult, rows: list[dict[str, Any]], store: str, schedule: Schedule) -> None:
    summary = simulation_json(result, rows, store, schedule)
    table = Table(title=f"Business time {summary['start']} .. {summary['end']}")
    for column in ("product", "warehouse", "units sold", "lost sales", "fill rate", "reorders", "end inventory"):
        table.add_column(column, justify="left" if column in ("product", "warehouse") else "right")
    for r in rows:
        table.add_row(
            plain(r["product_id"]),
            plain(r["warehouse_id"]),
            f"{r['units_sold']:,}",
            f"{r['lost_sales']:,}",
            f"{r['fill_rate']:.1%}",
            str(r["reorders"]),
            f"{r['end_inventory']:,}",
        )
    t = summary["totals"]
    table.add_section()
    table.add_row(
        "total",
        "",
        f"{t['units_sold']:,}",
        f"{t['lost_sales']:,}",
        f"{t['fill_rate']:.1%}",
        str(t["reorders"]),
        f"{t['end_inventory']:,}",
        style="bold",
    )
    out.print(table)
    calls = sum(result.invocations.values())
    rate = calls / result.wall_seconds if result.wall_seconds else float("inf")
    out.print(
        plain(f"{calls:,} invocations ({schedule.describe()}) in {result.wall_seconds:.1f} s ({rate:,.0f}/s); state and logs in {store}")
    )


_RISK_STYLE = {"out": "bold white on red", "high": "bold red", "watch": "yellow", "ok": "green"}


def _age(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _epoch(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def status_view(report: dict[str, Any], extras: dict[str, Any], *, now: float) -> Group:
    """The ``status`` screen: inventory and days of cover coloured by risk, open purchase orders,
    the handlers' last ticks, successes and lag, and the cumulative counters."""
    clock = report["orders_through"]
    title = Text.assemble(
        ("business time ", "dim"),
        (clock or "—", "bold cyan"),
        ("   store ", "dim"),
        plain(report["store"]),
        ("   as of ", "dim"),
        datetime.fromtimestamp(now).strftime("%H:%M:%S"),
    )
    stock = Table(title="Inventory", title_justify="left", expand=False)
    c = report["counters"]
    fed = bool(report["feeds"]) or c["backordered_total"] > 0  # a shop's feeds: orders wait as backorders
    for column in (
        "product",
        "warehouse",
        "on hand",
        "days of cover",
        "demand/day",
        "restock in",
        "risk",
        "backorder" if fed else "lost sales",
        "reorders",
    ):
        stock.add_column(column, justify="left" if column in ("product", "warehouse", "risk") else "right")
    for s, x in zip(report["series"], extras["series"]):
        style = _RISK_STYLE[x["risk"]]
        cover = "∞" if x["days_of_cover"] == float("inf") else f"{x['days_of_cover']:.1f} d"
        unmet = s["backorder"] if fed else s["lost_sales"]
        stock.add_row(
            plain(s["product_id"]),
            plain(s["warehouse_id"]),
            Text(f"{s['on_hand']:,}", style=style),
            Text(cover, style=style),
            f"{x['daily_demand']:.1f}",
            f"{x['restock_in_days']:.1f} d",
            Text(x["risk"], style=style),
            Text(f"{unmet:,}", style="red" if unmet else ""),
            str(s["reorders"]),
        )
    stock.caption = (
        f"days of cover = on hand / demand per day ({extras['cover_basis']}); risk: high = runs out "
        "before stock can arrive (the open purchase order, or one placed now), watch = within a day of that"
    )
    orders = Table(title="Open purchase orders", title_justify="left")
    for column in ("purchase order", "quantity", "placed", "due", "due in"):
        orders.add_column(column, justify="right" if column in ("quantity", "due in") else "left")
    now_business = _epoch(clock)
    for po in report["purchase_orders_open"]:
        due = _epoch(po["due"])
        left = "" if due is None or now_business is None else _age(due - now_business)
        orders.add_row(plain(po["id"]), f"{po['quantity']:,}", po["placed"] or "", po["due"] or "", left)
    if not report["purchase_orders_open"]:
        orders.add_row("none", "", "", "", "")
    handlers = Table(title="Handlers", title_justify="left")
    for column in ("handler", "last applied tick", "behind order clock", "last success (wall)", "invocations", "push failures"):
        handlers.add_column(column, justify="right" if column in ("invocations", "push failures", "behind order clock") else "left")
    for name, applied in report["last_applied"].items():
        at = _epoch(applied)
        behind = "" if at is None or now_business is None else _age(now_business - at)
        success = extras["last_success"].get(name)
        shown = "—" if success is None else f"{datetime.fromtimestamp(success).strftime('%H:%M:%S')} ({_age(now - success)} ago)"
        handlers.add_row(name, applied or "never", behind, shown, f"{c['invocations'][name]:,}", str(c["metrics_push_failures"][name]))
    totals = Text.assemble(
        ("shipped ", "dim"),
        f"{c['shipped_total']:,}",
        ("   received ", "dim"),
        f"{c['received_total']:,}",
        ("   lost sales ", "dim"),
        (f"{c['lost_sales_total']:,}", "red" if c["lost_sales_total"] else ""),
        ("   reorder alerts ", "dim"),
        f"{c['reorder_events_total']:,}",
        ("   pending log objects ", "dim"),
        str(report["pending_log_objects"]),
    )
    if not fed:
        return Group(title, stock, orders, handlers, totals)
    feeds = Table(title="Feeds", title_justify="left")
    for column in ("feed", "newest line applied", "behind order clock", *FEED_OUTCOMES):
        feeds.add_column(column, justify="left" if column in ("feed", "newest line applied") else "right")
    for name, feed in report["feeds"].items():
        lag = feed["lag_seconds"]
        refused = {k: v for k, v in feed["lines"].items() if k not in ("applied", "late")}
        feeds.add_row(
            name,
            feed["newest_line"] or "none yet",
            "" if lag is None else _age(lag),
            *(Text(f"{feed['lines'][k]:,}", style="red" if k in refused and feed["lines"][k] else "") for k in FEED_OUTCOMES),
        )
    if not report["feeds"]:
        feeds.add_row("none", "", "", *("" for _ in FEED_OUTCOMES))
    feeds.caption = (
        "lines by outcome since the store began; late = applied after minutes already applied "
        "(within --feed-max-lateness); refused lines are feed_rejected events"
    )
    backorders = Text.assemble(
        ("backorder now ", "dim"),
        (f"{c['backorder_units']:,}", "red" if c["backorder_units"] else ""),
        ("   backordered ", "dim"),
        f"{c['backordered_total']:,}",
        ("   returned ", "dim"),
        f"{c['returned_total']:,}",
        ("   stock counts adjusted by ", "dim"),
        f"{c['adjusted_total']:+,}",
    )
    return Group(title, stock, orders, handlers, feeds, totals, backorders)


def watch_status(
    load: Callable[[], Any],
    seconds: float,
    *,
    console: Console | None = None,
    wall_clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    rounds: int | None = None,
) -> None:
    """Redraw ``load()`` (a renderable) every ``seconds`` until Ctrl-C (or ``rounds`` redraws)."""
    shown = 0
    # not ``out``: soft wrapping would leave the terminal's wrapped lines behind on every redraw
    with Live(load(), console=console or PipeConsole(), auto_refresh=False, screen=False) as live:
        while rounds is None or shown < rounds:
            sleep(seconds)
            live.update(load(), refresh=True)
            shown += 1
