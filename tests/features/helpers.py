"""Hand-made raw frames that follow the contract (features/contracts.py)."""

from __future__ import annotations

import pandas as pd

from features.contracts import COLUMNS

HOUR = pd.Timedelta(hours=1)
DEFAULTS = {
    "users": {
        "age_band": 3,
        "income_band": 3,
        "city_tier": 2,
        "kyc_expiry_date": "2027-01-01",
        "initial_line_cny": 10_000.0,
    },
    "loans": {"term_months": 3},
    "installments": {"due_date": "2000-01-01", "amount_due_cny": 0.0},
    "bureau_accounts": {
        "lender_type": "bank",
        "close_date": None,
        "overdue_cny": 0.0,
        "dpd_bucket": 0,
    },
    "bureau_inquiries": {"lender_type": "bank"},
    "app_events": {"event_type": "login", "ip_prefix_token": "ip_x"},
    "line_history": {"old_line_cny": 0.0},
}
TIME_COLS = (
    "event_time",
    "available_time",
    "kyc_expiry_date",
    "due_date",
    "open_date",
    "close_date",
)


def frame(table: str, rows: list[dict]) -> pd.DataFrame:
    """A contract-typed frame; `available_time` defaults to event_time + 1 hour; ids default."""
    filled = []
    for i, r in enumerate(rows):
        r = {**DEFAULTS.get(table, {}), **r}
        r.setdefault("available_time", pd.Timestamp(r["event_time"]) + HOUR)
        key = COLUMNS[table][0]
        r.setdefault(key, f"{table[:2]}_{i}")
        filled.append(r)
    df = pd.DataFrame(filled, columns=COLUMNS[table])
    for c in TIME_COLS:
        if c in df:
            df[c] = pd.to_datetime(df[c], format="mixed").astype("datetime64[ns]")
    for c in df.columns:
        if c.endswith("_cny"):
            df[c] = df[c].astype("float64")
        elif c in ("age_band", "income_band", "city_tier", "term_months", "seq", "dpd_bucket"):
            df[c] = df[c].astype("int64")
        elif df[c].dtype != "datetime64[ns]":
            df[c] = df[c].astype(object)
    return df


def tables(**rows: list[dict]) -> dict[str, pd.DataFrame]:
    return {t: frame(t, rows.get(t, [])) for t in COLUMNS}
