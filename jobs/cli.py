"""``python -m jobs`` / ``stockpulse``: invoke, simulate, status, run, backtest, replay, report, package, deploy.

Every command exits 0 on success, 2 with one line ``stockpulse: error: <reason>`` on bad input
or configuration, 1 when the thing asked for is not there (e.g. ``status`` on an empty store) or
was done only in part (``invoke`` committed its tick but could not write the log object yet),
32 (EPIPE) quietly when the reader of its output went away (``| head``).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, NoReturn

from handlers.app import build_runtime
from handlers.errors import InputError, StockpulseError
from handlers.model.bounds import MAX_EVENT_BYTES
from handlers.model.events import load_event_json, parse_event, parse_time, scheduled_event
from handlers.model.state import HANDLERS
from handlers.runtime.invoke import invoke, invoke_all, load_state, shard_states
from handlers.runtime.shards import resolve

from . import backtest, console, deploy, package, replay, report
from .options import NUMBER, WHOLE, add_settings, settings_from
from .schedule import Schedule
from .simulate import DEFAULT_START, series_table, simulate
from .status import check_watch, show_status, status_report

__all__ = ["main", "build_parser"]


MAX_SIMULATE_DAYS = 3660  # ten years of business time in one replay
MAX_SPEED = 1e5  # business seconds per wall second: a business minute every 0.6 ms


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + line
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stockpulse", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the handlers do")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    common = (
        "store_url",
        "catalog_path",
        "pushgateway_url",
        "push_timeout_seconds",
        "invocation_budget_seconds",
        "alert_threshold_hours",
        "service_level",
        "cover_days",
        "max_tick_lead",
        "max_catch_up_minutes",
        "pushgateway_username",
        "pushgateway_ca_file",
        "num_shards",
        "orders_url",
        "receipts_url",
        "counts_url",
        "feed_max_lateness",
        "censor_lost_sales",
    )

    p = sub.add_parser(
        "invoke",
        help="run one handler invocation and print its result as JSON",
        description="Run one invocation of a handler with an EventBridge Scheduled Event.",
    )
    p.add_argument("handler", help=f"one of {', '.join(HANDLERS)}")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--time", help="business time of the tick, ISO-8601 (default: now, whole minute)")
    source.add_argument("--event", metavar="FILE", help="the event as a JSON file, or - for stdin")
    p.add_argument(
        "--shard", type=WHOLE, metavar="K", help="with --num-shards: handle shard K only (default: every shard in turn, one result each)"
    )
    add_settings(p, *common)
    p.set_defaults(func=cmd_invoke)

    p = sub.add_parser(
        "simulate",
        help="replay N business days as fast as possible and print a summary",
        description="Replay the schedule in business time on the store, then print per "
        "product x warehouse: units sold, lost sales, fill rate, reorders, end inventory.",
    )
    p.add_argument("--days", type=NUMBER, required=True, help="business days to replay")
    p.add_argument(
        "--start", help=f"business start time, ISO-8601 (default: continue the store's clock, or {DEFAULT_START} on an empty store)"
    )
    p.add_argument(
        "--every",
        action="append",
        default=[],
        metavar="HANDLER=DURATION",
        help="schedule override, repeatable (default order_tick=1m restock=5m forecast=1h alert=15m)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--report", metavar="FILE.html", help="also write the HTML report of this replay (see `report`)")
    add_settings(p, *common)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "status",
        help="current state per product x warehouse",
        description="Show on hand, initial, received, shipped, lost sales, open purchase "
        "orders, cumulative counters and the last applied tick of each handler.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=NUMBER,
        metavar="SECONDS",
        help="redraw every SECONDS (default 2; 0.2 to 3600) until Ctrl-C, e.g. while `run` is going",
    )
    add_settings(p, "store_url", "catalog_path")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "run",
        help="run the handlers on APScheduler in real time (business time x --speed)",
        description="Run every handler on its schedule in real time; business time runs "
        "--speed times faster than wall time. Stops on Ctrl-C/SIGTERM or after --for.",
    )
    p.add_argument("--speed", type=NUMBER, default=1.0, help="business seconds per wall second (default 1)")
    p.add_argument("--for", dest="duration", metavar="DURATION", help="stop after this wall time (e.g. 10s, 5m)")
    p.add_argument("--start", help="business start time, ISO-8601 (default: continue the store's clock, or now on an empty store)")
    p.add_argument(
        "--every",
        action="append",
        default=[],
        metavar="HANDLER=DURATION",
        help="schedule override in business time, repeatable (default order_tick=1m restock=5m forecast=1h alert=15m)",
    )
    p.add_argument("--json", action="store_true", help="print the final report as JSON")
    add_settings(p, *common)
    p.set_defaults(func=cmd_run)

    backtest.register(sub)
    replay.register(sub)
    report.register(sub)
    package.register(sub)
    deploy.register(sub)
    return parser


# ---------------------------------------------------------------------------------------------


def _read_event(source: str) -> Any:
    limit = MAX_EVENT_BYTES + 1
    try:
        if source == "-":
            data = sys.stdin.buffer.read(limit)
        else:
            with open(source, "rb") as handle:
                data = handle.read(limit)
    except OSError as exc:
        raise InputError(f"--event {source}: cannot read ({exc.strerror})") from exc
    return load_event_json(data, f"--event {source}")


def cmd_invoke(args: argparse.Namespace) -> int:
    if args.handler not in HANDLERS:
        raise InputError(f"handler: unknown {args.handler!r} (one of {', '.join(HANDLERS)})")
    if args.event is not None:
        event = _read_event(args.event)
    else:
        moment = parse_time(args.time, "--time") if args.time is not None else datetime.now(timezone.utc).replace(second=0, microsecond=0)
        event = scheduled_event(moment, args.handler.replace("_", "-"))
    if args.shard is not None and isinstance(event, dict):
        event = {**event, "detail": {**(event.get("detail") or {}), "shard": args.shard}}
    tick = parse_event(event)  # validate before any store is touched
    settings = settings_from(args)
    if settings.num_shards > 1 and tick.shard is not None:  # one shard: only its sub-catalog is read
        shard = resolve(tick.shard, tick.num_shards, settings.num_shards)
        results = [invoke(args.handler, event, build_runtime(settings, shard=shard))]
    else:
        results = invoke_all(args.handler, event, build_runtime(settings))
    print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    return 1 if any("log_error" in result for result in results) else 0  # committed; the log object waits


def cmd_simulate(args: argparse.Namespace) -> int:
    if not 0 < args.days <= MAX_SIMULATE_DAYS:
        raise InputError(f"--days: must be a number of days in (0, {MAX_SIMULATE_DAYS}], got {args.days:g}")
    schedule = Schedule.parse(args.every)
    start = parse_time(args.start, "--start") if args.start is not None else None
    runtime = build_runtime(settings_from(args))
    with console.progress_bar("simulating", enabled=not args.quiet and not args.json) as advance:
        # metrics are published once at the end, not after each of thousands of invocations
        result = simulate(replace(runtime, publish=None), start=start, days=args.days, schedule=schedule, progress=advance)
    if runtime.publish is not None:
        parts = (
            [(None, result.after, runtime.catalog)]
            if runtime.num_shards == 1
            else [(part.number, state, part.catalog) for part, state in shard_states(runtime.store, runtime.catalog, runtime.num_shards)]
        )
        for name in HANDLERS:
            for number, state, catalog in parts:
                error = runtime.publish(name, state, catalog, shard=number)
                if error is not None:
                    print(f"stockpulse: warning: metrics for {name} not published: {error}", file=sys.stderr)
    rows = series_table(result, runtime.catalog)
    if args.json:
        print(json.dumps(console.simulation_json(result, rows, runtime.store.url, schedule), indent=2))
    else:
        console.print_simulation(result, rows, runtime.store.url, schedule)
    span = (result.start, result.end) if result.before is not None else (None, None)
    if args.report is not None:
        report.write_report(
            runtime.store,
            runtime.catalog,
            args.report,
            start=datetime.fromtimestamp(result.start, timezone.utc),
            end=datetime.fromtimestamp(result.end, timezone.utc),
        )
        print(f"report: {args.report}", file=sys.stderr if args.json else sys.stdout)
    elif not args.json:
        print(f"report: {report.report_command(runtime.store.url, *span)}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.watch is not None:  # checked before the store is opened
        check_watch(args.watch)
        if args.json:
            raise InputError("--watch: redraws the terminal view; not with --json (run `status --json` again instead)")
    settings = settings_from(args)
    runtime = build_runtime(settings)
    if args.watch is not None:
        return show_status(runtime.store, runtime.catalog, watch=args.watch)
    state, _ = load_state(runtime.store, runtime.catalog)
    if state is None:
        print(f"stockpulse: {runtime.store.url} holds no state yet (run `simulate` or `invoke` first)", file=sys.stderr)
        return 1
    report = status_report(state, runtime.catalog, runtime.store)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        show_status(runtime.store, runtime.catalog)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import describe_run, run_scheduler
    from .schedule import parse_duration

    if not 0 < args.speed <= MAX_SPEED:
        raise InputError(f"--speed: must be a number in (0, {MAX_SPEED:g}], got {args.speed:g}")
    duration = parse_duration(args.duration, "--for") if args.duration is not None else None
    schedule = Schedule.parse(args.every)
    start = parse_time(args.start, "--start").timestamp() if args.start is not None else None
    runtime = build_runtime(settings_from(args))

    def status(report: Any) -> None:
        counts = " ".join(f"{k}={v}" for k, v in sorted(report.invocations.items()))
        print(f"stockpulse run: {counts or 'no invocations yet'}; errors {len(report.errors)}", file=sys.stderr)

    print(f"stockpulse run: {schedule.describe()}", file=sys.stderr)
    report = run_scheduler(
        runtime, schedule, speed=args.speed, duration=duration, business_start=start, on_status=None if args.json else status
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(describe_run(report, args.speed))
    return 1 if report.errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code. Output piped into a reader that stops early (``| head``) ends
    the command quietly, exit code EPIPE (32) as Python's own tools (``json.tool``, ``cProfile``)."""
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a reader that went away is found here, not at interpreter exit
    except BrokenPipeError as exc:
        _close_stdout()
        return exc.errno or errno.EPIPE


def _close_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file (a test's capture)
        pass


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        return int(args.func(args))
    except StockpulseError as exc:
        print(f"stockpulse: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stockpulse: interrupted", file=sys.stderr)
        return 130
