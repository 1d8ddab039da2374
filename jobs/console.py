"""Terminal output: progress on stderr, tables on stdout (rich)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from handlers.events import format_epoch

from .schedule import Schedule
from .simulate import SimulationResult

__all__ = ["progress_bar", "print_simulation", "simulation_json", "print_status"]

out = Console(soft_wrap=True, width=None if Console().is_terminal else 120)
err = Console(stderr=True)


@contextmanager
def progress_bar(label: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """Yields ``advance(done, total)``; a no-op when disabled or when stderr is not a terminal."""
    if not enabled or not err.is_terminal:
        yield lambda done, total: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("invocations"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            if done % 50 == 0 or done == total:
                progress.update(task, completed=done, total=total)

        yield advance


def simulation_json(result: SimulationResult, rows: list[dict[str, Any]], store: str,
                    schedule: Schedule) -> dict[str, Any]:
    sold = sum(r["units_sold"] for r in rows)
    lost = sum(r["lost_sales"] for r in rows)
    return {
        "store": store, "start": format_epoch(result.start), "end": format_epoch(result.end),
        "schedule": schedule.intervals, "invocations": result.invocations,
        "wall_seconds": round(result.wall_seconds, 3),
        "totals": {"units_sold": sold, "lost_sales": lost,
                   "fill_rate": sold / (sold + lost) if sold + lost else 1.0,
                   "reorders": sum(r["reorders"] for r in rows),
                   "end_inventory": sum(r["end_inventory"] for r in rows)},
        "series": rows,
    }


def print_simulation(result: SimulationResult, rows: list[dict[str, Any]], store: str, schedule: Schedule) -> None:
    summary = simulation_json(result, rows, store, schedule)
    table = Table(title=f"Business time {summary['start']} .. {summary['end']}")
    for column in ("product", "warehouse", "units sold", "lost sales", "fill rate", "reorders", "end inventory"):
        table.add_column(column, justify="left" if column in ("product", "warehouse") else "right")
    for r in rows:
        table.add_row(r["product_id"], r["warehouse_id"], f"{r['units_sold']:,}", f"{r['lost_sales']:,}",
                      f"{r['fill_rate']:.1%}", str(r["reorders"]), f"{r['end_inventory']:,}")
    t = summary["totals"]
    table.add_section()
    table.add_row("total", "", f"{t['units_sold']:,}", f"{t['lost_sales']:,}", f"{t['fill_rate']:.1%}",
                  str(t["reorders"]), f"{t['end_inventory']:,}", style="bold")
    out.print(table)
    calls = sum(result.invocations.values())
    rate = calls / result.wall_seconds if result.wall_seconds else float("inf")
    out.print(f"{calls:,} invocations ({schedule.describe()}) in {result.wall_seconds:.1f} s "
              f"({rate:,.0f}/s); state and logs in {store}")


def print_status(report: dict[str, Any]) -> None:
    table = Table(title=f"{report['store']} — orders through {report['orders_through']}")
    for column in ("product", "warehouse", "on hand", "initial", "received", "shipped", "lost sales",
                   "reorders", "open purchase orders"):
        table.add_column(column, justify="left" if column in ("product", "warehouse", "open purchase orders")
                         else "right")
    for s in report["series"]:
        po_text = "; ".join(f"{po['id']}: {po['quantity']} due {po['due']}" for po in s["open_purchase_orders"])
        table.add_row(s["product_id"], s["warehouse_id"], f"{s['on_hand']:,}", f"{s['initial']:,}",
                      f"{s['received']:,}", f"{s['shipped']:,}", f"{s['lost_sales']:,}", str(s["reorders"]), po_text)
    out.print(table)
    applied = ", ".join(f"{k} {v or 'never'}" for k, v in report["last_applied"].items())
    out.print(f"last applied: {applied}")
    c = report["counters"]
    out.print(f"shipped {c['shipped_total']:,}, received {c['received_total']:,}, lost {c['lost_sales_total']:,}, "
              f"reorder alerts {c['reorder_events_total']:,}; pending log objects {report['pending_log_objects']}")
