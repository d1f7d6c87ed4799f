"""Money sums do not depend on row order (so the same rows give the same feature bytes)."""

from __future__ import annotations

import duckdb
import pandas as pd

from features.sql import view_statements


def _sum(rows: pd.DataFrame, money: dict[str, list[str]] | None) -> float:
    con = duckdb.connect()
    for view_table in ("users", "loans", "installments", "bureau_accounts", "bureau_inquiries",
                       "app_events", "line_history"):  # fmt: skip
        con.register(f"raw_{view_table}", rows)
    for stmt in view_statements(pd.Timestamp("2025-07-01"), money):
        con.execute(stmt)
    return con.execute("SELECT SUM(balance_cny) FROM v_bureau").fetchone()[0]


def test_money_sums_are_exact_in_any_row_order():
    t = pd.Timestamp("2025-06-01")
    rows = pd.DataFrame({"balance_cny": [0.1, 0.2, 0.3], "event_time": t, "available_time": t})
    backwards = rows.iloc[::-1].reset_index(drop=True)
    # as doubles the order shows: (0.1 + 0.2) + 0.3 != 0.3 + (0.2 + 0.1)
    assert _sum(rows, None) != _sum(backwards, None)
    money = {"bureau_accounts": ["balance_cny"]}
    assert float(_sum(rows, money)) == float(_sum(backwards, money)) == 0.6
