"""A shard's forecast statistics of one history day, which add up over shards (pure).

``Pool`` holds the exact integer sums of handlers/forecasting/model.py (``Stats``) and each
warehouse's hour-of-day profile summed, so the statistics of any split of the catalog add up to
those of the whole bit for bit. How the forecast handler gathers and publishes them, and why the
fit lags a day, is handlers/runtime/pool.py.

**What a real catalog can produce, and nothing more, is accepted** (:func:`check_bounds`,
:func:`max_bytes`). Every value entering a sum is clipped to ``±FIXED_LIMIT`` (model.py ``_fixed``):
at most ``VALUE`` = 2**40 in units of 2**-16 — the clip, not the demand, bounds it: demand of 10⁶ a
minute (1.44·10⁹ a day, the catalog's limit) over a spread of 1 is beyond it. An object is one
shard's: at most ``MAX_SERIES`` (120,000) series, each with at most 16 days of one weekday in the
112 kept (``PHASE_DAYS``) and at most ``ROWS_PER_SERIES`` training rows (every origin and step of
112 days: 112·113/2). So, for an object of ``n`` series:

- ``series`` ≤ 120,000; profile counts ≤ 16 n, each weekday's sum ≤ its count × VALUE;
- the regression's and the variance's cross products are what a Gram matrix is: symmetric, a
  non-negative diagonal, ``G_ij² ≤ G_ii G_jj``, a corner (the rows, in 2**-32) ≤ n ×
  ROWS_PER_SERIES rows, every diagonal entry ≤ rows × VALUE²;
- the tails' counts are ≥ 0 and add up to at most the variance's rows (the same training rows);
- each warehouse's 24 hour sums ≤ n × VALUE, and the warehouses are the catalog's.

The largest integers that leaves are about 2**110 (10³³): the sum over 256 shards stays within a
float by far (the fit takes floats of the sums). An object beyond any bound — 10⁴⁰⁰ once crashed
every shard's forecast with ``OverflowError``, 10³⁰⁰ silently changed every forecast — is refused
as damaged, and its size is bounded before it is read: :func:`max_bytes` is the size of the
largest object this version can write for the catalog's warehouses (about 58 KB + 0.5 KB per
warehouse).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from handlers.forecasting.model import FIXED_BITS, FIXED_LIMIT, HISTORY_DAYS, Stats, exact_sum
from handlers.model.bounds import MAX_SERIES

__all__ = ["Pool", "own", "describe", "check_bounds", "max_bytes", "VALUE", "ROWS_PER_SERIES", "PHASE_DAYS"]

_VERSION = 1
VALUE = int(FIXED_LIMIT * 2**FIXED_BITS) + 1  # |a value entering a sum|, in units of 2**-16 (2**40)
PHASE_DAYS = -(-HISTORY_DAYS // 7)  # days of one weekday in the kept history (16)
ROWS_PER_SERIES = HISTORY_DAYS * (HISTORY_DAYS + 1) // 2  # every (origin, step) of the kept history, at most
_ROW = 1 << (2 * FIXED_BITS)  # one training row in the corner of a cross product (1 x 1, in 2**-32)


@dataclass(frozen=True)
class Pool:
    """The statistics of one history day of one shard's series, or the sum over shards."""

    day: int
    model: Stats
    hours: dict[str, list[int]]  # warehouse id -> its series' hour-of-day profile summed, [24] in 2**-16
    shards: int = 1  # how many shards' statistics are in the sum

    def __add__(self, other: Pool) -> Pool:
        if other.day != self.day:
            raise ValueError(f"statistics of days {self.day} and {other.day} do not add up")
        hours = dict(self.hours)
        for warehouse, row in other.hours.items():
            hours[warehouse] = [a + b for a, b in zip(hours[warehouse], row, strict=True)] if warehouse in hours else row
        return Pool(self.day, self.model + other.model, hours, self.shards + other.shards)

    def to_bytes(self) -> bytes:
        return json.dumps(
            {"version": _VERSION, "day": self.day, "model": self.model.to_json(), "hours": self.hours},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str, day: int | None = None, *, warehouses: Sequence[str] | None = None) -> Pool:
        """Validated (of ``day`` and the catalog's ``warehouses``, when given) and within the bounds a
        real catalog can produce (:func:`check_bounds`); a damaged object is a ``ValueError`` naming
        ``where``."""
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("version") != _VERSION or not isinstance(doc.get("day"), int):
                raise ValueError("not version 1 with a day")
            if day is not None and doc["day"] != day:
                raise ValueError(f"of day {doc['day']}, not {day}")
            hours = doc.get("hours")
            if not isinstance(hours, dict) or not all(
                isinstance(row, list) and len(row) == 24 and all(isinstance(x, int) for x in row) for row in hours.values()
            ):
                raise ValueError("hours: not 24 integers per warehouse")
            if warehouses is not None and set(hours) != set(warehouses):
                raise ValueError("hours: not the catalog's warehouses")
            found = cls(doc["day"], Stats.from_json(doc.get("model")), hours)
            check_bounds(found)
            return found
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: damaged forecast statistics ({exc})") from exc


def _gram(name: str, table: list[list[int]] | None, limit_rows: int) -> int:
    """Check a table of cross products (with a column of ones: its corner counts the rows) is what
    ``exact_cross`` of real rows gives; returns the rows."""
    if table is None:
        return 0
    size = len(table)
    corner = table[-1][-1] if name == "regression" else table[0][0]
    if any(len(row) != size for row in table) or corner < 0 or corner % _ROW:
        raise ValueError(f"{name}: not the cross products of training rows")
    rows = corner // _ROW
    if rows > limit_rows:
        raise ValueError(f"{name}: {rows} training rows, more than {limit_rows} series can give")
    diagonal = [table[i][i] for i in range(size)]
    if any(not 0 <= d <= rows * VALUE * VALUE for d in diagonal):
        raise ValueError(f"{name}: a sum of squares beyond what {rows} rows can give")
    for i in range(size):
        for j in range(i):
            if table[i][j] != table[j][i] or table[i][j] * table[i][j] > diagonal[i] * diagonal[j]:
                raise ValueError(f"{name}: not symmetric with |G_ij|² <= G_ii G_jj")
    return rows


def check_bounds(pooled: Pool) -> None:
    """Refuse statistics beyond what one shard of a real catalog can produce (the module docstring
    derives each bound); ``ValueError`` naming the table."""
    stats = pooled.model
    series = stats.series
    if series > MAX_SERIES:
        raise ValueError(f"series: {series}, more than the {MAX_SERIES} one shard holds")
    if stats.profile is not None:
        sums, counts = stats.profile
        if (
            len(counts) != len(sums)
            or any(not 0 <= n <= PHASE_DAYS * series for n in counts)
            or any(abs(total) > n * VALUE for total, n in zip(sums, counts))
        ):
            raise ValueError("profile: sums or counts beyond what the series can give")
    limit_rows = series * ROWS_PER_SERIES
    _gram("regression", stats.regression, limit_rows)
    rows = _gram("variance", stats.variance, limit_rows)  # the same training rows (its first input is 1)
    if stats.tails is not None and (any(n < 0 for row in stats.tails for n in row) or sum(n for row in stats.tails for n in row) > rows):
        raise ValueError("tails: counts beyond the training rows")
    if any(abs(x) > series * VALUE for row in pooled.hours.values() for x in row):
        raise ValueError("hours: sums beyond what the series can give")


@functools.lru_cache(maxsize=8)
def _max_bytes(warehouses: tuple[str, ...]) -> int:
    from handlers.forecasting.model import LEVEL_SEASONS, PHASE_SEASONS, PROFILE_SEASONS, SHARE_BANDS, TAIL_BINS

    width = 2 * (len(LEVEL_SEASONS) + len(PHASE_SEASONS) + len(PROFILE_SEASONS)) + 2
    rows = MAX_SERIES * ROWS_PER_SERIES
    cross = -rows * VALUE * VALUE
    model = Stats(
        series=MAX_SERIES,
        profile=[[-PHASE_DAYS * MAX_SERIES * VALUE] * 7, [PHASE_DAYS * MAX_SERIES] * 7],
        regression=[[cross] * width] * width,
        variance=[[cross] * 5] * 5,
        tails=[[rows] * TAIL_BINS] * (len(SHARE_BANDS) + 1),
    )
    return len(Pool(0, model, {w: [-MAX_SERIES * VALUE] * 24 for w in warehouses}).to_bytes()) + 64


def max_bytes(warehouses: Sequence[str]) -> int:
    """The size of the largest statistics object this version writes for a catalog with these
    warehouses (every integer at its bound, the longest day number): more is damage, never read."""
    return _max_bytes(tuple(warehouses))


def own(day: int, model: Stats, hour_profile: np.ndarray, warehouse_ids: list[str], warehouse_index: np.ndarray) -> Pool:
    """One shard's statistics: the model's, and its series' hour profiles summed per warehouse."""
    hours = {w: exact_sum(hour_profile[warehouse_index == i]) for i, w in enumerate(warehouse_ids)}
    return Pool(day, model, hours)


def describe(pooled: Pool | None) -> dict[str, Any]:
    """What a ``job_run`` summary says about the parameters a forecast used."""
    if pooled is None:
        return {"pool": "own"}
    return {"pool": "catalog", "pool_day": pooled.day, "pool_shards": pooled.shards}
