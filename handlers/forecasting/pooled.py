"""A shard's forecast statistics of one history day, which add up over shards (pure).

``Pool`` holds the exact integer sums of handlers/forecasting/model.py (``Stats``) and each
warehouse's hour-of-day profile summed, so the statistics of any split of the catalog add up to
those of the whole bit for bit. How the forecast handler gathers and publishes them, and why the
fit lags a day, is handlers/runtime/pool.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from handlers.forecasting.model import Stats, exact_sum

__all__ = ["Pool", "own", "describe"]

_VERSION = 1


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
        return json.dumps({"version": _VERSION, "day": self.day, "model": self.model.to_json(),
                           "hours": self.hours}, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str, day: int | None = None) -> Pool:
        """Validated (of ``day``, when given); a damaged object is a ``ValueError`` naming ``where``."""
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("version") != _VERSION or not isinstance(doc.get("day"), int):
                raise ValueError("not version 1 with a day")
            if day is not None and doc["day"] != day:
                raise ValueError(f"of day {doc['day']}, not {day}")
            hours = doc.get("hours")
            if not isinstance(hours, dict) or not all(
                    isinstance(row, list) and len(row) == 24 and all(isinstance(x, int) for x in row)
                    for row in hours.values()):
                raise ValueError("hours: not 24 integers per warehouse")
            return cls(doc["day"], Stats.from_json(doc.get("model")), hours)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: damaged forecast statistics ({exc})") from exc


def own(day: int, model: Stats, hour_profile: np.ndarray, warehouse_ids: list[str],
        warehouse_index: np.ndarray) -> Pool:
    """One shard's statistics: the model's, and its series' hour profiles summed per warehouse."""
    hours = {w: exact_sum(hour_profile[warehouse_index == i]) for i, w in enumerate(warehouse_ids)}
    return Pool(day, model, hours)


def describe(pooled: Pool | None) -> dict[str, Any]:
    """What a ``job_run`` summary says about the parameters a forecast used."""
    if pooled is None:
        return {"pool": "own"}
    return {"pool": "catalog", "pool_day": pooled.day, "pool_shards": pooled.shards}
