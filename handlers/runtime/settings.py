"""Settings: one frozen object built from the environment in one place.

Every value has a ``STOCKPULSE_*`` environment variable (the Lambda configuration) and most have a
command-line flag that overrides it; invalid values fail at start-up naming both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from handlers.errors import ConfigError, redact
from handlers.model.numbers import decimal
from handlers.model.policy import Policy
from handlers.runtime.catalogs import parse_reference
from handlers.runtime.clock import DEFAULT_CATCH_UP_MINUTES, DEFAULT_MAX_LEAD, Limits, format_max_lead, parse_max_lead
from handlers.runtime.shards import MAX_SHARDS

__all__ = ["Settings", "ENV"]


def _url(value: str) -> str:
    if "://" not in value:
        raise ValueError("must be a URL")
    return value.rstrip("/") if not value.startswith("file://") else value


def _optional_url(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _bounded(low: float, high: float, *, inclusive: bool = False) -> Callable[[str], float]:
    def parse(value: str) -> float:
        number = decimal(value)
        ok = math.isfinite(number) and (low <= number <= high if inclusive else low < number < high)
        if not ok:
            raise ValueError(f"must be a number in {'[' if inclusive else '('}{low:g}, {high:g}{']' if inclusive else ')'}")
        return number

    return parse


def _optional_path(value: str) -> str | None:
    return value.strip() or None


def _catalog(value: str) -> str | None:
    """A local catalog file, or ``store:catalogs/source/<sha>.yaml``: a file kept in the store
    (handlers/runtime/catalogs.py), whose key is checked here."""
    path = _optional_path(value)
    if path is not None:
        parse_reference(path)  # a malformed store: reference fails at start-up
    return path


def _feed_url(value: str) -> str | None:
    """A feed's location: ``file:///DIR``, ``file://./DIR`` or ``s3://BUCKET/PREFIX`` (checked as a store URL)."""
    value = value.strip()
    if not value:
        return None
    if not value.startswith(("file://", "s3://")):
        raise ValueError("must be a file:// or s3:// URL")
    return value.rstrip("/") if value.startswith("s3://") else value


def _lateness(value: str) -> float:
    seconds = _duration(value)
    if not 60 <= seconds <= 7 * 86400:
        raise ValueError("must be a duration from 1m to 7d, like 1h or 90m")
    return seconds


def _duration(value: str) -> float:
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd])\s*", value)
    if match is None:
        raise ValueError("must be a duration like 90m, 1h or 2d")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _flag(value: str) -> bool:
    text = value.strip().lower()
    if text not in ("", "0", "1", "true", "false", "yes", "no"):
        raise ValueError("must be true or false")
    return text in ("1", "true", "yes")


def _series_cap(value: str) -> int:
    number = decimal(value)
    if not (number.is_integer() and 0 <= number <= 1_000_000):
        raise ValueError("must be a whole number of series in [0, 1000000]")
    return int(number)


def _shards(value: str) -> int:
    number = decimal(value)
    if not (number.is_integer() and 1 <= number <= MAX_SHARDS):
        raise ValueError(f"must be a whole number of shards in [1, {MAX_SHARDS}]")
    return int(number)


def _minutes(value: str) -> int:
    number = decimal(value)
    if not (number.is_integer() and 1 <= number <= 10080):
        raise ValueError("must be a whole number of minutes in [1, 10080]")
    return int(number)


#: field -> (environment variable, command-line flag, parser, default as text)
ENV: dict[str, tuple[str, str, Callable[[str], Any], str]] = {
    "store_url": ("STOCKPULSE_STORE_URL", "--store", _url, "file://./data"),
    # a local file, or store:catalogs/source/<sha256[:32]>.yaml: one kept in the store (what deploy uploads)
    "catalog_path": ("STOCKPULSE_CATALOG", "--catalog", _catalog, ""),
    "pushgateway_url": ("STOCKPULSE_PUSHGATEWAY_URL", "--pushgateway", _optional_url, ""),
    "push_timeout_seconds": ("STOCKPULSE_PUSH_TIMEOUT_SECONDS", "--push-timeout", _bounded(0, 300), "5"),
    "invocation_budget_seconds": ("STOCKPULSE_INVOCATION_BUDGET_SECONDS", "--invocation-budget", _bounded(0, 3600), "300"),
    "alert_threshold_hours": (
        "STOCKPULSE_ALERT_THRESHOLD_HOURS",
        "--alert-threshold-hours",
        _bounded(0, 168, inclusive=True),
        f"{Policy.alert_threshold_hours:g}",
    ),
    "service_level": ("STOCKPULSE_SERVICE_LEVEL", "--service-level", _bounded(0.5, 1.0), f"{Policy.service_level:g}"),
    "cover_days": ("STOCKPULSE_COVER_DAYS", "--cover-days", _bounded(0, 60), f"{Policy.cover_days:g}"),
    "pushgateway_username": ("STOCKPULSE_PUSHGATEWAY_USERNAME", "--pushgateway-username", _optional_path, ""),
    "pushgateway_password": ("STOCKPULSE_PUSHGATEWAY_PASSWORD", "--pushgateway-password", _optional_path, ""),
    "pushgateway_ca_file": ("STOCKPULSE_PUSHGATEWAY_CA_FILE", "--pushgateway-ca-file", _optional_path, ""),
    "max_tick_lead": ("STOCKPULSE_MAX_TICK_LEAD", "--max-tick-lead", parse_max_lead, format_max_lead(DEFAULT_MAX_LEAD)),
    "max_catch_up_minutes": ("STOCKPULSE_MAX_CATCH_UP_MINUTES", "--max-catch-up-minutes", _minutes, str(DEFAULT_CATCH_UP_MINUTES)),
    # a shop's own feeds (handlers/runtime/feeds.py, docs/feeds.md): orders replace the simulated demand
    "orders_url": ("STOCKPULSE_ORDERS_URL", "--orders", _feed_url, ""),
    "receipts_url": ("STOCKPULSE_RECEIPTS_URL", "--receipts", _feed_url, ""),
    "counts_url": ("STOCKPULSE_COUNTS_URL", "--counts", _feed_url, ""),
    "feed_max_lateness": ("STOCKPULSE_FEED_MAX_LATENESS", "--feed-max-lateness", _lateness, "1h"),
    # simulated demand: the history records what sold, not what was demanded (a stockout hides demand)
    "censor_lost_sales": ("STOCKPULSE_CENSOR_LOST_SALES", "--censor-lost-sales", _flag, "false"),
    # the catalog split into this many shards by a stable hash of the product id (handlers/runtime/shards.py)
    "num_shards": ("STOCKPULSE_NUM_SHARDS", "--num-shards", _shards, "1"),
    # per-series gauges of a large catalog: every series up to the cap, else only those that matter
    "metrics_series_cap": ("STOCKPULSE_METRICS_SERIES_CAP", "--metrics-series-cap", _series_cap, "1000"),
    "metrics_risk_probability": (
        "STOCKPULSE_METRICS_RISK_PROBABILITY",
        "--metrics-risk-probability",
        _bounded(0, 1, inclusive=True),
        "0.5",
    ),
    "metrics_low_cover_days": ("STOCKPULSE_METRICS_LOW_COVER_DAYS", "--metrics-low-cover-days", _bounded(0, 60, inclusive=True), "2"),
}


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


_FORMAT: dict[str, Callable[[Any], str]] = {
    "max_tick_lead": format_max_lead,
    "feed_max_lateness": lambda seconds: f"{seconds / 60:g}m",
    "censor_lost_sales": lambda flag: "true" if flag else "false",
}


@dataclass(frozen=True)
class Settings:
    store_url: str = "file://./data"
    catalog_path: str | None = None
    pushgateway_url: str | None = field(default=None, repr=False)  # may hold user:password@
    push_timeout_seconds: float = 5.0
    invocation_budget_seconds: float = 300.0  # every storage call and the push, outside Lambda
    alert_threshold_hours: float = Policy.alert_threshold_hours  # the policy's defaults, in one place
    service_level: float = Policy.service_level
    cover_days: float = Policy.cover_days
    pushgateway_username: str | None = None
    pushgateway_password: str | None = field(default=None, repr=False)  # never shown
    pushgateway_ca_file: str | None = None  # CA bundle for an https:// Pushgateway (default: the system's)
    max_tick_lead: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MAX_LEAD))
    max_catch_up_minutes: int = DEFAULT_CATCH_UP_MINUTES
    orders_url: str | None = None  # a shop's order feed (its orders and returns replace the simulated demand)
    receipts_url: str | None = None  # goods that arrive outside stockpulse's purchase orders
    counts_url: str | None = None  # on-hand counts (cycle counts, nightly snapshots)
    feed_max_lateness: float = 3600.0  # seconds a feed line may come after its minute was applied
    censor_lost_sales: bool = False  # simulated demand: record sales, as a shop sees them
    num_shards: int = 1  # shards of the catalog; each invocation handles one (event detail.shard)
    metrics_series_cap: int = 1000  # per-series gauges for every series of a catalog up to this size
    metrics_risk_probability: float = 0.5  # above it a series is at risk (and exposed) in a large catalog
    metrics_low_cover_days: float = 2.0  # below it a series has low cover (and is exposed) in a large catalog

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Build from ``environ``; ``overrides`` (from flags, ``None`` = not given) win."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            variable, flag, parse, default = ENV[f.name]
            override = overrides.get(f.name)
            raw = str(override) if override is not None else environ.get(variable, default)
            try:
                values[f.name] = parse(raw)
            except ValueError as exc:
                reason = str(exc) if "must" in str(exc) else "must be a number"
                shown = "(hidden)" if f.name == "pushgateway_password" else redact(raw[:200])
                raise ConfigError(f"{flag} / {variable}: {reason}, got {shown!r}") from exc
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment that builds these settings back (``from_env``), for the settings that
        differ from the defaults: what ``deploy`` gives a function."""
        defaults = type(self)()
        environment = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == getattr(defaults, f.name):
                continue
            environment[ENV[f.name][0]] = _FORMAT.get(f.name, _text)(value)
        return environment

    @property
    def policy(self) -> Policy:
        return Policy(alert_threshold_hours=self.alert_threshold_hours, service_level=self.service_level, cover_days=self.cover_days)

    @property
    def limits(self) -> Limits:
        return Limits(max_lead=dict(self.max_tick_lead), catch_up_minutes=self.max_catch_up_minutes)
