"""Installment schedules: due date = draw date (midnight) + k calendar months, clipped."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from features.schedule import due_date, due_dates


def test_month_end_clipping_matches_dateoffset():
    # Jan 31 + 1 month -> Feb 29 (2024 is a leap year); + 3 months -> Apr 30; time of day dropped.
    draws = np.array(
        ["2024-01-31T18:45", "2024-01-31T00:00", "2023-01-29T12:00"], dtype="datetime64[ns]"
    )
    got = due_date(draws, [1, 3, 1])
    assert [str(d)[:10] for d in got] == ["2024-02-29", "2024-04-30", "2023-02-28"]
    assert got.dtype == np.dtype("datetime64[ns]")


def test_due_dates_expands_each_loan_into_its_schedule():
    draws = pd.Series(pd.to_datetime(["2024-03-15 10:00", "2024-11-30 23:59"]))
    pos, seq, due = due_dates(draws, np.array([3, 6]))
    assert pos.tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert seq.tolist() == [1, 2, 3, 1, 2, 3, 4, 5, 6]
    # 2024-11-30 + 3 months = 2025-02-28 (clipped), + 6 months = 2025-05-30
    assert [str(d)[:10] for d in due[3:]] == [
        "2024-12-30",
        "2025-01-30",
        "2025-02-28",
        "2025-03-30",
        "2025-04-30",
        "2025-05-30",
    ]


def test_nat_draw_gives_nat():
    got = due_date(np.array(["2024-01-31", "NaT"], dtype="datetime64[ns]"), 2)
    assert str(got[0])[:10] == "2024-03-31" and np.isnat(got[1])


@settings(max_examples=100, deadline=None)
@given(
    st.datetimes(
        min_value=pd.Timestamp("2000-01-01").to_pydatetime(),
        max_value=pd.Timestamp("2040-12-31").to_pydatetime(),
    ),
    st.integers(min_value=1, max_value=12),
)
def test_agrees_with_pandas_dateoffset(when, k):
    expected = pd.Timestamp(when).normalize() + pd.DateOffset(months=k)
    assert pd.Timestamp(due_date(np.datetime64(when, "ns"), k)) == expected
