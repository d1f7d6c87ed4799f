"""Time in the simulated world: int64 nanosecond units and the month edges of the world."""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY = 86_400 * 10**9
HOUR = 3_600 * 10**9
MINUTE = 60 * 10**9
NEVER = np.iinfo(np.int64).max // 2  # a time after everything (ns); "did not happen"
NS = "datetime64[ns]"


def times(ns: np.ndarray) -> np.ndarray:
    """int64 ns as datetime64[ns] (a view, no copy)."""
    return np.asarray(ns, dtype=np.int64).view(NS)


class Calendar:
    """Month edges of the simulated world as int64 ns, plus helpers for any month index.

    The world runs `world_months` months. The raw extract is taken at the end of the first
    `months` (`extract`); the ground truth is written to the end of the first `truth_months`
    (`truth_end`); the months after that exist only so that neither depends on the other.

    >>> cal = Calendar(pd.Timestamp("2024-01-01"), months=2, truth_months=3, world_months=4)
    >>> str(times(np.array([cal.extract]))[0])[:10], str(times(np.array([cal.truth_end]))[0])[:10]
    ('2024-03-01', '2024-04-01')
    >>> cal.days.tolist(), cal.month_of(np.array([cal.extract, cal.end])).tolist()
    ([31, 29, 31, 30], [2, 3])
    """

    def __init__(self, start: pd.Timestamp, months: int, truth_months: int, world_months: int):
        self.start_m = np.datetime64(start.strftime("%Y-%m"), "M")
        self.months = months
        self.truth_months = truth_months
        self.world_months = world_months
        self.edges = self.month_start(np.arange(world_months + 1))
        self.extract = int(self.edges[months])
        self.truth_end = int(self.edges[truth_months])
        self.end = int(self.edges[-1])
        self.days = (np.diff(self.edges) // DAY).astype(np.int64)

    def month_start(self, m) -> np.ndarray:
        """ns of the first instant of month index m (any integer, also negative)."""
        m = np.asarray(m, dtype=np.int64)
        return (self.start_m + m.astype("timedelta64[M]")).astype(NS).view(np.int64)

    def days_in(self, m) -> np.ndarray:
        return (self.month_start(np.asarray(m) + 1) - self.month_start(m)) // DAY

    def month_of(self, t: np.ndarray) -> np.ndarray:
        """Month index of times t (ns), clipped to the world."""
        return np.clip(np.searchsorted(self.edges, t, side="right") - 1, 0, self.world_months - 1)
