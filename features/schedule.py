"""Installment schedules: when each installment of a draw falls due.

The schedule is contractual and derived from the loan alone: installment k (1..term) is due at
the draw date (midnight) plus k calendar months, with the day clipped to the end of a shorter
month, exactly as `pandas.DateOffset(months=k)` does (Jan 31 + 1 month = Feb 28/29).

This module owns that rule, in the two languages that apply it: `add_months` for Python (the
simulator's `due_dates`, and `features.sql.render` folding window bounds) and
`ADD_MONTHS_MACRO` for the feature definitions' SQL (`features.sql.MACROS`), where the
builder's schedule is `add_months(draw_time, seq)`. tests/features/test_schedule.py checks
that the two give the same dates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_NS = "datetime64[ns]"

# The rule in SQL: a DuckDB macro (Spark has add_months built in). DuckDB's month interval
# clips the day to the end of a shorter month, as `add_months` below does by hand.
ADD_MONTHS_MACRO = (
    "CREATE OR REPLACE MACRO add_months(d, n) AS "
    "CAST(CAST(d AS DATE) + to_months(CAST(n AS INTEGER)) AS TIMESTAMP)"
)


def _as_datetime64(values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind != "M":
        try:
            conv = pd.to_datetime(values)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"draw_time must be datetimes: {exc}") from exc
        arr = conv.to_numpy() if hasattr(conv, "to_numpy") else np.asarray(np.datetime64(conv))
    if arr.dtype.kind != "M":
        raise ValueError(f"draw_time must be datetimes, got dtype {arr.dtype}")
    return arr.astype(_NS)


def add_months(time, months) -> np.ndarray:
    """The date (datetime64[ns], midnight) of `time` plus `months` calendar months, the day
    clipped to the end of a shorter month; `months` may be negative.

    Element-wise with numpy broadcasting; NaT gives NaT.

    >>> str(add_months(np.datetime64("2025-05-31T12:00"), -3))
    '2025-02-28T00:00:00.000000000'
    """
    draws = _as_datetime64(time)
    seq = np.asarray(months, dtype=np.int64)
    day = draws.astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    day_of_month = (day - month.astype("datetime64[D]")).astype(np.int64)  # 0-based
    target = month + seq.astype("timedelta64[M]")
    first = target.astype("datetime64[D]")
    days_in_target = ((target + np.timedelta64(1, "M")).astype("datetime64[D]") - first).astype(
        np.int64
    )
    due = first + np.minimum(day_of_month, days_in_target - 1).astype("timedelta64[D]")
    out = due.astype(_NS)
    if np.ndim(out) and np.isnat(draws).any():
        out = np.where(np.broadcast_to(np.isnat(draws), out.shape), np.datetime64("NaT", "ns"), out)
    return out


def due_date(draw_time, seq) -> np.ndarray:
    """Due date (datetime64[ns], midnight) of installment `seq` of draws made at `draw_time`.

    Element-wise with numpy broadcasting; NaT draw times give NaT.

    >>> str(due_date(np.datetime64("2024-01-31T15:20"), 1))
    '2024-02-29T00:00:00.000000000'
    >>> [str(d)[:10] for d in due_date(np.array(["2024-03-31", "2024-05-15"], "datetime64[ns]"), [2, 12])]
    ['2024-05-31', '2025-05-15']
    """
    return add_months(draw_time, seq)


def due_dates(draw_time, term) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand draws into their full schedules: one row per installment.

    Returns `(loan_pos, seq, due)`: the position of the draw in the input, the installment
    number 1..term, and its due date (datetime64[ns]). `term` is one number or one per draw.

    >>> pos, seq, due = due_dates(np.array(["2024-01-31"], "datetime64[ns]"), 3)
    >>> pos.tolist(), seq.tolist(), [str(d)[:10] for d in due]
    ([0, 0, 0], [1, 2, 3], ['2024-02-29', '2024-03-31', '2024-04-30'])
    """
    draws = np.atleast_1d(_as_datetime64(draw_time))
    terms = np.broadcast_to(np.asarray(term, dtype=np.int64), draws.shape)
    if (terms < 0).any():
        raise ValueError("term must be >= 0 months")
    pos = np.repeat(np.arange(len(draws), dtype=np.int64), terms)
    starts = np.cumsum(terms) - terms
    seq = np.arange(len(pos), dtype=np.int64) - np.repeat(starts, terms) + 1
    return pos, seq, due_date(draws[pos], seq)
