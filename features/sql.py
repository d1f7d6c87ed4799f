"""The SQL dialect the feature definitions are written in, and the views they read.

Feature definitions are plain SQL text (window functions, CASE, GROUP BY, joins) so the same
text can run on DuckDB here and on Spark SQL for books that outgrow one machine. The only
non-ANSI pieces are three date helpers, defined here as DuckDB macros; on Spark they map to
built-ins: `add_months(d, n)` is built in; `days_between(a, b)` is `datediff(b, a)`;
`seconds_between(a, b)` is `unix_timestamp(b) - unix_timestamp(a)`.

Point in time: every definition reads the `v_<table>` views, which hold only rows with
`available_time <= T AND event_time < T`. Labels alone read the unfiltered `all_<table>` views.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from features.schedule import ADD_MONTHS_MACRO, add_months

# DuckDB macros for the three dialect helpers (see the module docstring for Spark).
MACROS = (
    # days from a to b, counted in calendar dates (a payment on its due date is 0 days late)
    "CREATE OR REPLACE MACRO days_between(a, b) AS date_diff('day', CAST(a AS DATE), CAST(b AS DATE))",
    "CREATE OR REPLACE MACRO seconds_between(a, b) AS date_diff('second', a, b)",
    # the installment schedule's month rule, which features.schedule owns
    ADD_MONTHS_MACRO,
)

# Which raw table each view reads, and the rows of it a feature at T may see.
VISIBLE = "available_time <= {T} AND event_time < {T}"
VIEWS = {
    "v_users": "users",
    "v_loans": "loans",
    "v_payments": "installments",
    "v_bureau": "bureau_accounts",
    "v_inquiries": "bureau_inquiries",
    "v_events": "app_events",
    "v_lines": "line_history",
}
DAYS_PER_MONTH = 30.4375  # mean Gregorian month, for "months since" figures


def ts_literal(ts: pd.Timestamp) -> str:
    """An ANSI timestamp literal.

    >>> ts_literal(pd.Timestamp("2025-06-30"))
    "TIMESTAMP '2025-06-30 00:00:00'"
    """
    return f"TIMESTAMP '{pd.Timestamp(ts).strftime('%Y-%m-%d %H:%M:%S')}'"


_CONST_MONTHS = re.compile(
    r"add_months\((TIMESTAMP '[^']+')(?:\s*\+\s*INTERVAL '(\d+)' DAY)?, (-?\d+)\)"
)


def render(sql: str, as_of: pd.Timestamp, **extra: str) -> str:
    """Fill `{T}` (the as-of literal) and any extra placeholders into a definition.

    `add_months` of a literal is folded into a literal here, so window bounds are constants
    (engines then compare against a constant instead of calling a function per row).

    >>> render("x >= add_months({T}, -3)", pd.Timestamp("2025-05-31 12:00"))
    "x >= TIMESTAMP '2025-02-28 00:00:00'"
    """
    text = sql.format(T=ts_literal(as_of), **extra)
    return _CONST_MONTHS.sub(_fold_months, text)


def _fold_months(m: re.Match) -> str:
    ts = pd.Timestamp(m.group(1).split("'")[1]) + pd.Timedelta(days=int(m.group(2) or 0))
    return ts_literal(pd.Timestamp(add_months(np.datetime64(ts, "ns"), int(m.group(3)))))


# Money (CNY) is summed as an exact decimal: a parallel engine adds doubles in whatever order its
# threads finish, so the same rows could give sums that differ in the last bit (and so different
# bytes); integer arithmetic on 1/10000 CNY gives the same sum in any order.
MONEY = "DECIMAL(18,4)"


def view_statements(as_of: pd.Timestamp, money: dict[str, list[str]] | None = None) -> list[str]:
    """Views over the registered raw frames: `v_*` point-in-time, `all_*` unfiltered (labels).

    `money`: per raw table, the amount columns the views hand out as `MONEY` decimals.
    """
    out = []
    for view, table in VIEWS.items():
        cols = (money or {}).get(table, [])
        sel = (
            "* REPLACE (" + ", ".join(f"CAST({c} AS {MONEY}) AS {c}" for c in cols) + ")"
            if cols
            else "*"
        )
        out.append(
            f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {sel} FROM raw_{table} WHERE {render(VISIBLE, as_of)}"
        )
        out.append(f"CREATE OR REPLACE TEMP VIEW all_{view[2:]} AS SELECT {sel} FROM raw_{table}")
    return out
