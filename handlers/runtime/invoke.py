"""One invocation, exactly once: read state, run the pure core, commit, write the log, publish.

The commit protocol — written down here once; docs/storage.md explains why it is exactly once. Every
step may crash; the retry of the same tick repairs it. :func:`apply_tick` follows the steps in order:

1. read the state's parts and their ETags (none yet: a fresh state at the tick time) — the hot
   ``state/state.bin``; ``state/forecast.bin`` when the handler's declaration reads it; the demand
   history when the declaration says this tick's core needs it (handlers/runtime/layout.py). An
   object the hot part references that newer commits pruned meanwhile: start again from 1; one the
   newest hot part references and the store lacks is damage, a ``StorageError`` naming it;
2. write out the *outbox* of the previous commit of each part read (write-once log objects;
   "already there with the promised bytes" is success, an object that differs is rewritten) — this
   repairs a crash between a commit and its log write: the hot part's by any invocation, the
   forecast part's by the next ``forecast`` or ``alert``;
3. if this handler already applied a tick at or after this time, stop: nothing is written;
   if the tick leads the store's clock by more than the handler's maximum lead, refuse it
   (``InputError`` naming ``event.time``): nothing is written (handlers/runtime/clock.py). Every
   refusal an invocation makes — this one, and before step 1 the store's shard split, the shard and
   size of the catalog, and in step 1 another catalog or a damaged state — comes before its first
   write; that lead is checked before step 2, and a first sharded invocation's split
   (``state/shards.json``) and a compiled catalog the process loaded without writing are written
   right after the checks;
4. run the pure core with its ``Inputs`` (an order tick catches up at most ``catch_up_minutes`` of
   a long gap; a pooling core gets every shard's statistics of the day before,
   handlers/runtime/pool.py); encode its events and a ``job_run`` event as one gzip NDJSON object;
   write the statistics the core computed (write-once: the forecast's of today);
5. compare-and-swap the part this handler owns (``forecast``: ``state/forecast.bin``; the others:
   ``state/state.bin``, after writing a new history object when a day closed and the delta — or a
   new base — of its per-series arrays), which carries the new log object in its outbox. On a
   conflict — someone else committed first — count it and start again from 1; the count goes into
   the handler's ``conflicts`` counter and the ``job_run`` event of the commit that wins;
6. write the log object (write-once; if that fails the tick is still committed and the result says
   ``log_error``); when the commit referenced a new history object (a day closed), delete the
   history objects older than the one it replaced; when it referenced a new base, delete the hot
   part's objects older than the base it replaced (both best effort, layout.py ``prune_history``,
   ``prune_hot``);
7. publish metrics (never fatal; a failure is counted in the handler's ``push_failures``).

The compare-and-swap of step 5 is the single commit point: before it nothing is visible, after it
the log object is guaranteed to be written by this or a later invocation. No event is lost, none is
duplicated, no order is applied twice.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from handlers.errors import ConfigError, ConflictError, InputError, StorageError
from handlers.forecasting.censored import close_day_arrays
from handlers.model.bounds import MAX_SERIES
from handlers.model.catalog import Catalog
from handlers.model.events import Tick, format_epoch, format_time, parse_event
from handlers.model.feed import Batch
from handlers.model.history import order_window
from handlers.model.logs import CONTENT_TYPE, encode_events, event, log_key
from handlers.model.outcome import Inputs
from handlers.model.policy import Policy
from handlers.model.state import EXPOSED, HANDLERS, LATENCY_BUCKETS, STATE_KEY, State
from handlers.runtime import catalogs, feeds, layout, pool, shards
from handlers.runtime.clock import Limits, check_lead
from handlers.runtime.declarations import DECLARATIONS, Declaration
from handlers.runtime.feeds import Feeds
from handlers.storage.base import Store
from handlers.storage.deadline import Deadline, DeadlineStore

__all__ = ["Runtime", "invoke", "apply_tick", "invoke_all", "load_state", "shard_states", "flush_outbox", "Publisher"]

log = logging.getLogger("stockpulse")


class Publisher(Protocol):
    """Publishes a committed state's metrics; returns an error text on failure, None on success."""

    def __call__(
        self,
        handler: str,
        state: State,
        catalog: Catalog,
        *,
        deadline: Deadline | None = None,
        exposed: Mapping[str, np.ndarray] | None = None,
        shard: int | None = None,
    ) -> str | None: ...


@dataclass(frozen=True)
class Runtime:
    store: Store
    catalog: Catalog
    policy: Policy = Policy()
    limits: Limits = field(default_factory=Limits)  # each handler's max lead; the order tick's catch-up bound
    publish: Publisher | None = None
    clock: Callable[[], float] = time.perf_counter
    max_attempts: int = 25
    handlers: Mapping[str, Declaration] = field(default_factory=lambda: DECLARATIONS)  # swap a core in benchmarks
    budget_seconds: float | None = None  # per invocation when no Lambda context gives a deadline
    num_shards: int = 1  # the catalog's shards (handlers/runtime/shards.py); an event's detail.shard picks one
    shard: int | None = None  # a runtime built for one shard: ``catalog`` is that shard's sub-catalog
    feeds: Feeds | None = None  # a shop's feeds (handlers/runtime/feeds.py); None: simulated demand
    censor_lost_sales: bool = False  # simulated demand: the history records sales, not demand
    #: how a censored day's demand is recovered (handlers/forecasting/censored.py); None keeps the raw sales
    #: (what a fit on sales alone sees: the benchmarks' and tests' control)
    recover_day: Callable[..., Any] | None = close_day_arrays

    @property
    def censored(self) -> bool:
        """Whether the history sees sales, not demand (a shop's orders, or the simulator told to hide its
        lost sales): each closed day's demand is then recovered (handlers/forecasting/censored.py)."""
        return self.censor_lost_sales or (self.feeds is not None and "orders" in self.feeds.stores)

    #: compiled catalog objects the catalog was loaded without writing (handlers/runtime/catalogs.py): the
    #: first invocation whose checks pass writes them, so that a refused one writes nothing
    compiled: Mapping[str, bytes] = field(default_factory=dict)


def load_state(store: Store, catalog: Catalog | None = None, *, num_shards: int | None = None) -> tuple[State | None, str | None]:
    """The whole current state (every part, handlers/runtime/layout.py) and its hot part's ETag (``None, None``
    when the store is empty). A sharded store (``num_shards``; ``None``: the count the store
    records) gives every shard's state merged over the whole catalog (:func:`handlers.runtime.shards.merge`;
    a shard not run yet counts as fresh) and no ETag."""
    count = shards.recorded(store) if num_shards is None else num_shards
    if count == 1:
        loaded = layout.load(store, catalog, at=0.0)
        return (None, None) if loaded is None else (loaded.state, loaded.etags["hot"])
    if catalog is None:
        raise ValueError("a sharded state is read with its catalog")
    found = shard_states(store, catalog, count)
    if not found:
        return None, None
    return shards.merge(catalog, found), None


def shard_states(store: Store, catalog: Catalog, num_shards: int) -> list[tuple[shards.Shard, State]]:
    """The state of every shard that holds products (a shard not run yet: fresh at the earliest
    creation time of the others); empty when no shard has a state yet."""
    found = [
        (part, layout.load(shards.ShardStore(store, part.number), part.catalog, at=0.0))
        for part in shards.split(catalog, num_shards)
        if not part.empty
    ]
    states = [loaded.state for _, loaded in found if loaded is not None]
    if not states:
        return []
    at = min(state.created_at for state in states)
    return [(part, (loaded or layout.fresh(part.catalog, at)).state) for part, loaded in found]


def flush_outbox(store: Store, state: State) -> int:
    """Write the log objects a commit promised; returns how many were missing or damaged."""
    written = 0
    for key, payload in state.outbox:
        found = store.matches(key, payload)
        if found is None and store.put_once(key, payload, content_type=CONTENT_TYPE):
            written += 1
        elif found is False:
            log.warning("%s: the log object differs from what its commit promised (damaged or truncated); rewritten", key)
            store.replace(key, payload, content_type=CONTENT_TYPE)
            written += 1
    return written


def _record(state: State, handler: str, tick: Tick, seconds: float, key: str, payload: bytes, conflicts: int) -> State:
    h = HANDLERS.index(handler)
    buckets = state.latency_buckets.copy()
    buckets[h, np.searchsorted(np.array(LATENCY_BUCKETS), seconds, side="left") :] += 1
    latency_sum, invocations = state.latency_sum.copy(), state.invocations.copy()
    latency_sum[h] += seconds
    invocations[h] += 1
    return state.replace(
        applied={**state.applied, handler: tick.epoch},
        latency_buckets=buckets,
        latency_sum=latency_sum,
        invocations=invocations,
        outbox=((key, payload),),
        conflicts={**state.conflicts, handler: state.conflicts[handler] + conflicts},
    )


def count_push_failure(store: Store, declared: Declaration, attempts: int = 10) -> None:
    """Add one to the handler's push-failure counter (best effort, compare-and-swap of its part)."""
    for _ in range(attempts):
        loaded = layout.load(store, None, at=0.0, history=False, forecast=declared.owns == "forecast")
        if loaded is None:
            return
        failures = loaded.state.push_failures.copy()
        failures[HANDLERS.index(declared.name)] += 1
        try:
            layout.commit(store, loaded, loaded.state.replace(push_failures=failures), declared.owns)
            return
        except ConflictError:
            continue


def invoke(handler: str, event_doc: Any, runtime: Runtime, *, deadline: Deadline | None = None) -> dict[str, Any]:
    """Apply one tick of ``handler`` for an EventBridge event; returns a small JSON-safe summary.

    With a ``deadline`` (the Lambda function's) — or, without one, the runtime's
    ``budget_seconds`` from now — every storage call checks it first and the metrics push gets at
    most the time left (handlers/storage/deadline.py)."""
    if handler not in runtime.handlers:
        raise InputError(f"handler: unknown {handler!r} (one of {', '.join(runtime.handlers)})")
    tick = parse_event(event_doc)
    return apply_tick(handler, tick, shards.resolve(tick.shard, tick.num_shards, runtime.num_shards), runtime, deadline=deadline)


def apply_tick(handler: str, tick: Tick, number: int | None, runtime: Runtime, *, deadline: Deadline | None = None) -> dict[str, Any]:
    """:func:`invoke` for an event already parsed and its shard resolved (``number``; ``None``:
    unsharded): the commit protocol of the module docstring, step by step."""
    declared = runtime.handlers[handler]
    result: dict[str, Any] = {"handler": handler, "time": format_time(tick.time)}
    if deadline is None and runtime.budget_seconds is not None:
        deadline = Deadline(runtime.budget_seconds)
    timed: Callable[[Store], Store] = (lambda store: store) if deadline is None else (lambda store: DeadlineStore(store, deadline))
    manifest = shards.check_manifest(timed(runtime.store), runtime.num_shards)  # refusals only: nothing written
    whole = runtime.store
    if number is not None:  # one shard: its sub-catalog and its own state objects (handlers/runtime/shards.py)
        if runtime.shard is None:
            catalog = shards.shard(runtime.catalog, number, runtime.num_shards).catalog
        elif runtime.shard == number:
            catalog = runtime.catalog  # built for this shard (handlers/app.py)
        else:
            raise InputError(f"event.detail.shard: {number}, but this runtime serves shard {runtime.shard}")
        result["shard"] = number
        if not catalog.products:
            return {**result, "status": "skipped", "reason": f"shard {number} of {runtime.num_shards} holds no product"}
        check_size(catalog, runtime.num_shards, number)
        runtime = replace(runtime, store=shards.ShardStore(runtime.store, number), catalog=catalog)
    else:
        check_size(runtime.catalog, 1, None)
    whole = timed(whole)  # the forecast reads every shard's statistics (handlers/runtime/pool.py)
    untimed = runtime.store  # counting a failed push comes after the invocation's budget, on its own
    runtime = replace(runtime, store=timed(runtime.store))
    started = runtime.clock()
    conflicts = 0  # compare-and-swap writes lost to another writer in this invocation
    checked = False  # every refusal is made before the invocation's first write
    for attempt in range(runtime.max_attempts):
        loaded = layout.load(
            runtime.store, runtime.catalog, at=tick.epoch, history=False, forecast=declared.reads_forecast
        ) or layout.fresh(runtime.catalog, tick.epoch)
        state = loaded.state
        if tick.epoch > state.applied[handler]:
            check_lead(handler, tick.epoch, state, runtime.limits)
        if not checked:  # what the checks deferred: the split of a first sharded invocation, the compiled catalog
            if manifest is not None:
                shards.record_manifest(whole, runtime.num_shards, manifest)
            catalogs.store_compiled(whole, runtime.compiled)
            checked = True
        repaired = flush_outbox(runtime.store, state)
        if repaired:
            log.info("wrote %d log object(s) promised by an earlier commit (interrupted, or still running concurrently)", repaired)
        if tick.epoch <= state.applied[handler]:
            last = format_epoch(state.applied[handler])
            return {**result, "status": "skipped", "reason": f"already applied (last applied tick {last})"}
        part = declared.owns
        if part != "hot" and loaded.etags["hot"] is None:  # the hot part comes first: it creates the store
            try:
                layout.commit(runtime.store, loaded, state, "hot")
            except ConflictError:
                conflicts += 1
            continue
        if declared.reads_history(state, tick):
            try:
                loaded = layout.with_history(runtime.store, loaded)
            except layout.Moved:  # newer commits replaced the history it referenced: from step 1 again
                continue
            state = loaded.state
        pooled = None
        if declared.pools:  # the pooled fit: every shard's statistics of the day before
            pooled = pool.gather(whole, runtime.num_shards, state.history_day - 1, warehouses=[w.id for w in runtime.catalog.warehouses])
            if pooled is None and number is not None and bool(np.isfinite(state.daily_demand).any()):
                log.warning(
                    "shard %d: not every shard has published its forecast statistics of the day before; "
                    "this forecast fits on the shard's own series (job_run pool: own)",
                    number,
                )
        prepared = None
        if declared.reads_feeds and runtime.feeds is not None:  # the shop's lines due by this tick
            try:
                prepared = feeds.prepare(
                    runtime.feeds,
                    runtime.store,
                    state,
                    tick.epoch,
                    runtime.catalog,
                    catch_up_minutes=runtime.limits.catch_up_minutes,
                    shard=None if number is None else (number, runtime.num_shards),
                )
            except feeds.JournalMissing:
                if layout.replaced_since(runtime.store, loaded.etags["hot"]):
                    continue  # newer commits pruned a journal it referenced: from step 1 again
                raise
        inputs = Inputs(
            policy=runtime.policy,
            catch_up_minutes=runtime.limits.catch_up_minutes,
            pooled=pooled,
            feed=None if prepared is None else prepared.batch,
            censor_lost_sales=runtime.censor_lost_sales,
            recover_day=runtime.recover_day if runtime.censored else None,
        )
        outcome = declared.core(state, tick, runtime.catalog, inputs)
        if runtime.feeds is not None and declared.owns == "hot":  # its journal: what a later tick must know
            window = (
                order_window(state, tick.epoch, runtime.limits.catch_up_minutes)
                if declared.reads_feeds
                else (state.orders_through, state.orders_through)
            )
            moves = feeds.moves_of(state, outcome.state, None if prepared is None else prepared.batch, tick.epoch)
            journal = feeds.write_journal(runtime.store, prepared or feeds.Prepared(Batch.empty()), moves, window[1])
            outcome = replace(outcome, state=outcome.state.replace(feed_journals=feeds.referenced(state, window, journal, runtime.feeds)))
        seconds = runtime.clock() - started
        run = event(
            "job_run",
            handler,
            tick.time,
            "run" if number is None else f"run:shard-{number}",
            tick_id=tick.event_id,
            status="applied",
            events=len(outcome.events),
            duration_ms=round(seconds * 1000, 3),
            conflicts=conflicts,
            shard=number,
            pool=outcome.summary.get("pool"),
        )
        payload = encode_events([*outcome.events, run])
        key = log_key(handler, tick.time, number)
        new_state = _record(outcome.state, handler, tick, seconds, key, payload, conflicts)
        if declared.keeps_exposed:  # what its metrics expose, as the core computed it, committed with its part
            unknown = np.full(new_state.num_series, np.nan)  # a core that does not compute one (another policy's)
            new_state = new_state.replace(
                forecast_exposed=np.stack([np.asarray(outcome.exposed.get(name, unknown), dtype=np.float64) for name in EXPOSED], axis=1)
            )
        pool.publish(runtime.store, outcome.statistics)  # before the commit: what a commit used is out there
        try:
            committed = layout.commit(runtime.store, loaded, new_state, part, outbox=((key, payload),))  # the commit point
        except ConflictError:  # counted, and carried into the commit that finally wins
            conflicts += 1
            time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
            continue
        result.update(status="applied", events=len(outcome.events), log_key=key, conflicts=conflicts, **outcome.summary)
        try:
            runtime.store.put_once(key, payload, content_type=CONTENT_TYPE)
        except StorageError as exc:  # committed: the outbox guarantees a later invocation writes it
            log.warning("%s: committed, but the log object is not written yet (%s); the next invocation writes it", key, exc)
            result["log_error"] = str(exc)
        referenced = committed.history
        if referenced is not None and loaded.history_ref not in (None, referenced):  # a day closed
            try:
                result["history_pruned"] = layout.prune_history(runtime.store, {referenced, loaded.history_ref}, state.history_day)
            except StorageError as exc:  # garbage only: the next day's prune removes it
                log.warning("old history objects not deleted yet: %s", exc)
        if runtime.feeds is not None and declared.owns == "hot" and state.feed_journals != new_state.feed_journals:
            try:  # the journals no later tick needs
                result["journals_pruned"] = feeds.prune_journals(runtime.store, new_state)
            except StorageError as exc:  # garbage only: a later tick's prune removes it
                log.warning("old feed journals not deleted yet: %s", exc)
        if committed.base not in (None, loaded.base):  # a new base of the hot part
            try:
                result["hot_pruned"] = layout.prune_hot(runtime.store, loaded, committed)
            except StorageError as exc:  # garbage only: the next new base's prune removes it
                log.warning("old objects of the hot part not deleted yet: %s", exc)
        if runtime.publish is not None:
            error = runtime.publish(handler, new_state, runtime.catalog, deadline=deadline, exposed=outcome.exposed, shard=number)
            if error is not None:
                log.warning("metrics for %s not published: %s", handler, error)
                count_push_failure(untimed, declared)
                result["metrics_error"] = error
        return result
    raise StorageError(f"{STATE_KEY}: gave up after {runtime.max_attempts} conflicting writes")


def check_size(catalog: Catalog, num_shards: int, number: int | None) -> None:
    """Refuse an invocation over more series than one invocation handles (handlers/model/bounds.py)."""
    if catalog.num_series <= MAX_SERIES:
        return
    what = "the catalog" if number is None else f"shard {number} of {num_shards}"
    needed = math.ceil(catalog.num_series * num_shards / MAX_SERIES)
    raise ConfigError(
        f"--num-shards / STOCKPULSE_NUM_SHARDS: {what} holds {catalog.num_series} series, more than the "
        f"{MAX_SERIES} one invocation handles; split the catalog into more shards (at least {needed})"
    )


def invoke_all(handler: str, event_doc: Any, runtime: Runtime, *, deadline: Deadline | None = None) -> list[dict[str, Any]]:
    """Apply one tick of ``handler`` to every shard in turn (what the deployment's fan-out does in
    parallel, handlers/runtime/shards.py), or once when the catalog is not sharded: ``simulate``, ``run``
    and ``invoke`` without ``--shard``. An event that names its shard is applied to that one."""
    detail = event_doc.get("detail") if isinstance(event_doc, dict) else None
    if runtime.num_shards == 1 or (isinstance(detail, dict) and detail.get("shard") is not None):
        return [invoke(handler, event_doc, runtime, deadline=deadline)]
    if runtime.shard is not None:
        return [invoke(handler, {**event_doc, "detail": {**(detail or {}), "shard": runtime.shard}}, runtime, deadline=deadline)]
    return [
        invoke(handler, {**event_doc, "detail": {**(detail or {}), "shard": k}}, runtime, deadline=deadline)
        for k in range(runtime.num_shards)
    ]
