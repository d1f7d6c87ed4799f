"""Installment schedules: due date = draw date (midnight) + k calendar months, clipped."""

import duckdb
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from features.schedule import due_date, due_dates
from features.sql import MACROS, render, ts_literal

# (draw time, installment, due date) worked out by hand: the draw's date plus k calendar months,
# the day clipped to the last day of a shorter month, the time of day dropped.
HAND_SCHEDULE = [
    ("2024-01-31 18:45", 1, "2024-02-29"),  # the 31st into a leap February
    ("2023-01-31 00:00", 1, "2023-02-28"),  # ... and into a common one
    ("2024-01-29 23:59:59", 1, "2024-02-29"),  # the 29th exists in a leap February
    ("2023-01-29 12:00", 1, "2023-02-28"),  # ... not in a common one
    ("2024-01-30 09:00", 1, "2024-02-29"),
    ("2024-02-29 12:00", 1, "2024-03-29"),  # from Feb 29 the day is kept, not moved to a month end
    ("2024-02-29 00:00", 12, "2025-02-28"),  # a year on there is no Feb 29
    ("2024-03-31 10:00", 1, "2024-04-30"),
    ("2024-03-31 10:00", 2, "2024-05-31"),  # a clipped month does not carry into the next
    ("2024-08-31 00:00", 1, "2024-09-30"),
    ("2023-12-31 23:59", 2, "2024-02-29"),  # across the year end into a leap February
    ("2024-12-30 08:00", 2, "2025-02-28"),
    ("2023-11-30 20:00", 3, "2024-02-29"),
    ("2024-05-15 08:00", 12, "2025-05-15"),  # an ordinary day: same day, a year on
]


def _duckdb_with_macros() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for m in MACROS:
        con.execute(m)
    return con


def test_sql_and_python_give_the_same_due_dates_on_hand_worked_draws():
    draws = pd.DataFrame(
        {
            "row": np.arange(len(HAND_SCHEDULE)),
            "draw": pd.to_datetime([d for d, _, _ in HAND_SCHEDULE], format="ISO8601").astype(
                "datetime64[ns]"
            ),
            "seq": np.array([k for _, k, _ in HAND_SCHEDULE], dtype=np.int64),
        }
    )
    expected = pd.to_datetime([e for _, _, e in HAND_SCHEDULE]).to_numpy("datetime64[ns]")
    con = _duckdb_with_macros()
    con.register("draws", draws)
    in_sql = con.execute("SELECT add_months(draw, seq) AS due FROM draws ORDER BY row").df()
    con.close()
    in_python = due_date(draws["draw"].to_numpy(), draws["seq"].to_numpy())
    np.testing.assert_array_equal(in_python, expected)
    np.testing.assert_array_equal(in_sql["due"].to_numpy("datetime64[ns]"), expected)


def test_window_bounds_folded_by_render_follow_the_same_rule():
    # (as-of, months, bound): windows count back from the as-of by the same month rule
    cases = [
        ("2025-05-31 12:00", -3, "2025-02-28"),
        ("2024-03-31 00:00", -1, "2024-02-29"),
        ("2024-02-29 00:00", -12, "2023-02-28"),
        ("2024-01-30 00:00", 1, "2024-02-29"),
        ("2024-04-30 00:00", -1, "2024-03-30"),  # a month end stays the day, not the month end
    ]
    con = _duckdb_with_macros()
    for as_of, months, bound in cases:
        folded = render(f"add_months({{T}}, {months})", pd.Timestamp(as_of))
        in_sql = con.execute(f"SELECT add_months({ts_literal(as_of)}, {months})").fetchone()[0]
        assert folded == ts_literal(bound), (as_of, months)
        assert pd.Timestamp(in_sql) == pd.Timestamp(bound), (as_of, months)
    con.close()


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
