"""What a report shows: one run's span, its events and the on-hand rebuilt minute by minute.

``jobs/report.py`` reads it from a store (``load_run``); ``jobs/report_page.py`` draws it.
"""

from __future__ import annotations

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
    objects_read: int

    @property
    def product_ids(self) -> list[str]:
        seen = dict.fromkeys(self.catalog.series_product_ids[i] for i in self.series.tolist())
        return list(seen)
