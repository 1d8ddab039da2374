"""A seeded random walk over the four handlers: random interleavings, ticks anywhere within the
accepted leads, cold processes between them, and the store's references checked after every step.

Used on ``file://`` (tests/test_interleavings.py) and on ``s3://`` against a real moto server
(tests/integration/test_storage_s3.py). The walk must reach what the invariants are about: new
bases of the hot part (every ``MAX_CHAIN`` deltas), closed business days (a new history object),
forecasts ahead of the order clock and the alerts that read them; :class:`Walked` counts them so
a test can say the walk really went there.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from handlers.errors import InputError
from handlers.model.catalog import Catalog
from handlers.model.state import STATE_KEY, unpack
from handlers.runtime import layout
from handlers.runtime.clock import DEFAULT_MAX_LEAD
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.storage.base import Store
from tests.support.ticks import START, event_at, zero_clock

#: how often each handler is picked (the order tick most: it moves the clock and fills the chain)
WEIGHTS = {"order_tick": 5, "restock": 2, "forecast": 2, "alert": 3}


def _references(header: dict[str, object]) -> list[str]:
    chain = header.get("chain") or []
    keys = [header.get("history"), header.get("base"), *(link[0] for link in chain)]  # type: ignore[attr-defined]
    return [str(key) for key in keys if key is not None]


def referenced(store: Store) -> list[str]:
    """Every object the current ``state/state.bin`` references: its history object, its base and
    the base's chain of deltas (none for a store without a hot part)."""
    found = store.read(STATE_KEY)
    return [] if found is None else _references(unpack(found.data, key=STATE_KEY)[0])


def missing_references(store: Store, refs: list[str] | None = None) -> list[str]:
    """The objects ``state/state.bin`` references (or ``refs``) that the store does not hold (should
    be none): one listing."""
    refs = referenced(store) if refs is None else refs
    present = set(store.list("state/"))
    return [key for key in refs if key not in present]


def _observe(store: Store) -> tuple[float, dict[str, float], list[str]]:
    """The order clock, each handler's last applied tick and the hot part's references, from the
    parts' headers."""
    found = store.read(STATE_KEY)
    if found is None:
        return START.timestamp(), {}, []
    header, _, _ = unpack(found.data, key=STATE_KEY)
    applied = {name: doc["applied"] for name, doc in header["handlers"].items() if doc["applied"] is not None}
    forecast = store.read(layout.FORECAST_KEY)
    if forecast is not None:
        fheader, _, _ = unpack(forecast.data, key=layout.FORECAST_KEY)
        applied.update({name: doc["applied"] for name, doc in fheader["handlers"].items() if doc["applied"] is not None})
    return float(header["orders_through"]), applied, _references(header)


@dataclass
class Walked:
    """What a walk did: steps, applied invocations per handler, refusals, new bases, closed days."""

    steps: int = 0
    applied: Counter[str] = field(default_factory=Counter)
    bases: set[str] = field(default_factory=set)
    history: set[str] = field(default_factory=set)
    forecast_ahead: int = 0  # forecasts applied ahead of the order clock
    hot_pruned: int = 0


def _moment(rng: random.Random, handler: str, clock: float, last: float) -> datetime:
    """A tick time: mostly the handler's next tick after its last one; else anywhere within its
    accepted lead of the order clock ``clock`` (an order tick mostly within the hour, sometimes
    hours or days ahead), or behind it (a late or redelivered tick)."""
    roll = rng.random()
    if handler == "forecast":  # a forecast ahead of the order clock: what the alerts after it read
        roll = rng.choice([0.0, 0.7, 0.7, 0.7])
    if roll < 0.65 and last > clock - 86400:
        at = last + 60 * rng.randrange(1, 16)
    elif roll < 0.9:
        lead = DEFAULT_MAX_LEAD[handler]
        if handler != "forecast":  # mostly within the hour; sometimes as far as the lead allows
            lead = rng.choices([3600, lead], [85, 15])[0]
        at = clock + rng.randrange(60, int(lead) + 1)
    else:
        at = clock - rng.randrange(0, 3 * 3600)
    return datetime.fromtimestamp(at // 60 * 60, timezone.utc)


def walk(
    store: Callable[[], Store],
    catalog: Catalog,
    *,
    seed: int,
    steps: int,
    on_step: Callable[[int, str, datetime, dict[str, object] | None], None] | None = None,
) -> Walked:
    """``steps`` invocations of random handlers at random times within their leads on the store
    that ``store()`` opens (a new handle for each cold process). After every step the current hot
    part's references must all exist; a cold process (a quarter of the steps, and at the end)
    loads the whole state from the objects alone."""
    rng = random.Random(seed)
    walked = Walked()
    handle = store()
    names, weights = list(WEIGHTS), list(WEIGHTS.values())
    clock, applied, _ = _observe(handle)
    for step in range(steps):
        if rng.random() < 0.25:  # a cold process (a Lambda cold start, `status`, `report`) reads every object
            layout.forget()
            handle = store()
            assert load_state(handle)[0] is not None or step == 0
        handler = rng.choices(names, weights)[0]
        last = applied.get(handler, clock)
        moment = _moment(rng, handler, clock, last if last > clock - 86400 else clock)
        try:
            result: dict[str, object] | None = invoke(handler, event_at(moment), Runtime(store=handle, catalog=catalog, clock=zero_clock))
        except InputError:
            result = None  # refused (beyond the lead): nothing written, the walk goes on
        walked.steps += 1
        if result is not None and result.get("status") == "applied":
            walked.applied[handler] += 1
            walked.hot_pruned += int(result.get("hot_pruned", 0) or 0)  # type: ignore[call-overload]
            if handler == "forecast" and moment.timestamp() > clock:
                walked.forecast_ahead += 1
        clock, applied, refs = _observe(handle)
        walked.history.update(key for key in refs if key.startswith(layout.HISTORY_PREFIX))
        walked.bases.update(key for key in refs if "-base-" in key)
        gone = missing_references(handle, refs)
        assert not gone, f"step {step} ({handler} at {moment:%Y-%m-%dT%H:%M}Z): state.bin references {gone}, missing"
        if on_step is not None:
            on_step(step, handler, moment, result)
    layout.forget()
    assert load_state(store())[0] is not None  # and a last cold process reads the whole state
    return walked
