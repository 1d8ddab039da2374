"""What a report shows: one run's span, its events and the on-hand rebuilt minute by minute.

``jobs/report.py`` reads it from a store (``load_run``); ``jobs/report_page.py`` draws it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from handlers.model.catalog import Catalog
from handlers.model.state import State

if TYPE_CHECKING:  # pandas only when a report is made: the command line does not pay for it
    import pandas as pd

__all__ = ["RunData"]


@dataclass(frozen=True)
class RunData:
    catalog: Catalog
    state: State
    store_url: str
    start: float  # the span is (start, end], business epoch seconds
    end: float
    series: np.ndarray  # catalog series indices shown (the --product filter)
    events: dict[str, pd.DataFrame]  # per type: time (epoch s), series, COLUMNS[type]; inside the span
    minutes: np.ndarray  # minute ends in (start, end]
    on_hand: np.ndarray  # [len(series), len(minutes)] on hand at the end of each minute
    objects: Mapping[str, int]  # log objects read: "span" (keyed in it), "before" (for the on hand at its start), "after"
    damaged: tuple[tuple[str, str], ...] = ()  # (key, reason) of each log object that could not be read, left out

    @property
    def objects_read(self) -> int:
        return sum(self.objects.values())

    def objects_note(self) -> str:
        """How many log objects were read and why: ``1,640 log objects read: 1,212 in the span, 420
        before it (the on hand at its start), 8 after it (events an order tick caught up late)``."""
        parts = [f"{self.objects.get('span', 0):,} in the span"]
        if self.objects.get("before"):
            parts.append(f"{self.objects['before']:,} before it (the on hand at its start)")
        if self.objects.get("after"):
            parts.append(f"{self.objects['after']:,} after it (events caught up late)")
        return f"{self.objects_read:,} log objects read: {', '.join(parts)}"

    def damaged_note(self, shown: int = 10) -> str:
        """``2 damaged log objects skipped, their events in no figure: logs/...`` ('' when none)."""
        if not self.damaged:
            return ""
        keys = [key for key, _ in self.damaged[:shown]]
        more = f" and {len(self.damaged) - shown:,} more" if len(self.damaged) > shown else ""
        return (
            f"{len(self.damaged):,} damaged log object{'s' if len(self.damaged) != 1 else ''} skipped, "
            f"{'their' if len(self.damaged) != 1 else 'its'} events in no figure: {', '.join(keys)}{more}"
        )

    @property
    def product_ids(self) -> list[str]:
        seen = dict.fromkeys(self.catalog.series_product_ids[i] for i in self.series.tolist())
        return list(seen)
