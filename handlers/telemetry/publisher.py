"""The runtime's metrics publisher: one Pushgateway group per handler (and shard), or a file.

Each invocation's group is PUT as a whole (``/metrics/job/<handler>[/shard/<k>]``) within the push
budget (handlers/telemetry/push.py); without a Pushgateway URL the same text is written to the
store as ``metrics/<handler>[/shard/<k>].prom``. A failed publish never fails the handler: the
publisher returns the error text (credentials redacted) and the runtime logs and counts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway

from handlers.errors import redact
from handlers.model.catalog import Catalog
from handlers.model.state import State
from handlers.runtime.invoke import Publisher
from handlers.runtime.settings import Settings
from handlers.storage.base import Store
from handlers.storage.deadline import Deadline
from handlers.storage.location import open_store
from handlers.telemetry.metrics import Focus, build_registry, grouping_key, metrics_key
from handlers.telemetry.push import pushgateway_handler, split_credentials

__all__ = ["publisher"]


def _push(
    url: str,
    timeout: float,
    handler: str,
    registry: CollectorRegistry,
    *,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
    grouping_key: dict[str, str] | None = None,
) -> None:
    """PUT the group within ``timeout`` seconds in total (handlers/telemetry/push.py)."""
    target, user, secret = split_credentials(url)
    push_to_gateway(
        target,
        job=handler,
        registry=registry,
        timeout=timeout,
        grouping_key=grouping_key or None,
        handler=pushgateway_handler(
            timeout, username=user if user is not None else username, password=secret if user is not None else password, ca_file=ca_file
        ),
    )


def publisher(
    settings: Settings,
    *,
    store: Store | None = None,
    push: Callable[..., None] = _push,  # (url, seconds, handler, registry[, grouping_key=])
    wall_clock: Callable[[], float] = time.time,
) -> Publisher:
    """The runtime's metrics publisher: push to the Pushgateway, or write ``metrics/<handler>.prom``.

    A shard's group is ``/metrics/job/<handler>/shard/<k>`` (``metrics/<handler>/shard/<k>.prom``);
    ``push`` is then called with ``grouping_key={"shard": "<k>"}``."""
    focus = Focus.from_settings(settings)
    target = store

    if push is _push:
        push = partial(
            _push, username=settings.pushgateway_username, password=settings.pushgateway_password, ca_file=settings.pushgateway_ca_file
        )

    def publish(
        handler: str,
        state: State,
        catalog: Catalog,
        *,
        deadline: Deadline | None = None,
        exposed: Mapping[str, np.ndarray] | None = None,
        shard: int | None = None,
    ) -> str | None:
        nonlocal target
        registry = build_registry(handler, state, catalog, exposed=exposed, focus=focus, wall_time=wall_clock())
        try:
            if settings.pushgateway_url:
                budget = settings.push_timeout_seconds
                if deadline is not None:
                    budget = min(budget, deadline.remaining())
                    if budget <= 0:
                        raise TimeoutError("the invocation's time budget is spent")
                if shard is None:
                    push(settings.pushgateway_url, budget, handler, registry)
                else:
                    push(settings.pushgateway_url, budget, handler, registry, grouping_key=grouping_key(shard))
            else:
                target = target or open_store(settings.store_url)
                target.replace(metrics_key(handler, shard), generate_latest(registry))
        except Exception as exc:  # noqa: BLE001 - metrics must never fail the handler
            where = settings.pushgateway_url or settings.store_url
            text = f"{where}: {type(exc).__name__}: {exc}"
            for secret in (settings.pushgateway_password, split_credentials(where)[2]):
                if secret:
                    text = text.replace(secret, "***")
            return redact(text)
        return None

    return publish
