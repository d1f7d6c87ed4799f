"""Bureau features: accounts at other lenders (多头借贷), their balances and delinquency, inquiries.

A bureau account's state at T is its latest visible monthly report. An account is active when
that report has no close date, or one on/after T. "Opened in the last w months" uses the
account's open date; "in the last w months" for report rows uses the report's event_time
(month end). Counts are 0 for a user with no bureau rows; ratios and "months since" are NaN.
"""

from __future__ import annotations

OPEN_WINDOWS = (1, 3, 6, 12)
DPD_WINDOWS = (3, 6, 12, 24)
DELINQ_WINDOWS = (3, 12)
INQUIRY_DAY_WINDOWS = (7,)
INQUIRY_MONTH_WINDOWS = (1, 3, 6, 12)

LATEST_SQL = """
CREATE OR REPLACE TEMP TABLE bureau_latest AS
SELECT * FROM (
    SELECT b.*, ROW_NUMBER() OVER (PARTITION BY b.user_id, b.account_id ORDER BY b.event_time DESC) AS rn
    FROM v_bureau b
) t WHERE rn = 1
"""

# Balances 3 months ago, as known at T: each account's latest report before add_months(T, -3).
LATEST_3M_SQL = """
CREATE OR REPLACE TEMP TABLE bureau_latest_3m AS
SELECT user_id, SUM(balance_cny) AS balance_3m_cny FROM (
    SELECT b.user_id, b.balance_cny,
           ROW_NUMBER() OVER (PARTITION BY b.user_id, b.account_id ORDER BY b.event_time DESC) AS rn
    FROM v_bureau b WHERE b.event_time < add_months({T}, -3)
) t WHERE rn = 1 GROUP BY user_id
"""


def _names(alias: str, exprs: list[str]) -> str:
    # the alias after the last " AS " of each expression, qualified (plain SQL, no SELECT * EXCLUDE)
    return ", ".join(f"{alias}.{e.rsplit(' AS ', 1)[1]}" for e in exprs)


_ACTIVE = "(a.close_date IS NULL OR a.close_date >= {T})"


def _bureau_sql() -> str:
    latest = [
        f"SUM(CASE WHEN {_ACTIVE} THEN 1 ELSE 0 END) AS bureau_active_accounts_cnt",
        f"COUNT(DISTINCT CASE WHEN {_ACTIVE} THEN a.lender_token END) AS bureau_active_lenders_cnt",
    ]
    for w in OPEN_WINDOWS:
        cond = f"a.open_date >= add_months({{T}}, -{w})"
        latest += [
            f"SUM(CASE WHEN {cond} THEN 1 ELSE 0 END) AS bureau_accounts_opened_cnt_{w}m",
            f"COUNT(DISTINCT CASE WHEN {cond} THEN a.lender_token END) AS bureau_lenders_opened_cnt_{w}m",
        ]
    latest += [
        f"SUM(CASE WHEN {_ACTIVE} THEN a.balance_cny ELSE 0.0 END) AS bureau_balance_cny",
        f"SUM(CASE WHEN {_ACTIVE} THEN a.limit_cny ELSE 0.0 END) AS bureau_limit_cny",
        f"SUM(CASE WHEN {_ACTIVE} THEN a.balance_cny END) / "
        f"NULLIF(SUM(CASE WHEN {_ACTIVE} THEN a.limit_cny END), 0) AS bureau_debt_limit_ratio",
        "SUM(a.overdue_cny) AS bureau_overdue_cny",
        "SUM(CASE WHEN a.overdue_cny > 0 OR a.dpd_bucket > 0 THEN 1 ELSE 0 END) AS bureau_overdue_accounts_cnt",
    ]
    rows = []
    for w in DPD_WINDOWS:
        rows.append(
            f"MAX(CASE WHEN b.event_time >= add_months({{T}}, -{w}) THEN b.dpd_bucket END) AS bureau_dpd_bucket_max_{w}m"
        )
    for w in DELINQ_WINDOWS:
        rows.append(
            f"COUNT(DISTINCT CASE WHEN b.event_time >= add_months({{T}}, -{w}) AND b.dpd_bucket > 0 "
            f"THEN b.account_id END) AS bureau_delinquent_accounts_cnt_{w}m"
        )
    rows.append(
        "CAST(days_between(MAX(CASE WHEN b.dpd_bucket > 0 THEN b.event_time END), {T}) AS DOUBLE) / 30.4375"
        " AS bureau_months_since_delinquency"
    )
    inq = [
        f"SUM(CASE WHEN q.event_time >= {{T}} - INTERVAL '{d}' DAY THEN 1 ELSE 0 END) AS bureau_inquiries_cnt_{d}d"
        for d in INQUIRY_DAY_WINDOWS
    ]
    inq += [
        f"SUM(CASE WHEN q.event_time >= add_months({{T}}, -{w}) THEN 1 ELSE 0 END) AS bureau_inquiries_cnt_{w}m"
        for w in INQUIRY_MONTH_WINDOWS
    ]
    return f"""
CREATE OR REPLACE TEMP TABLE f_bureau AS
WITH latest AS (
    SELECT a.user_id,
           {("," + chr(10) + "           ").join(latest)}
    FROM bureau_latest a GROUP BY a.user_id
),
hist AS (
    SELECT b.user_id,
           {("," + chr(10) + "           ").join(rows)}
    FROM v_bureau b GROUP BY b.user_id
),
inq AS (
    SELECT q.user_id,
           {("," + chr(10) + "           ").join(inq)}
    FROM v_inquiries q GROUP BY q.user_id
)
SELECT u.user_id,
       {_names("latest", latest)},
       {_names("hist", rows)},
       {_names("inq", inq)},
       latest.bureau_balance_cny - COALESCE(b3.balance_3m_cny, 0.0) AS bureau_balance_change_cny_3m
FROM v_users u
LEFT JOIN latest ON latest.user_id = u.user_id
LEFT JOIN hist ON hist.user_id = u.user_id
LEFT JOIN inq ON inq.user_id = u.user_id
LEFT JOIN bureau_latest_3m b3 ON b3.user_id = u.user_id
"""


BUREAU_SQL = _bureau_sql()

COLUMNS: dict[str, float | None] = {
    "bureau_active_accounts_cnt": 0.0,
    "bureau_active_lenders_cnt": 0.0,
    **{
        k: 0.0
        for w in OPEN_WINDOWS
        for k in (f"bureau_accounts_opened_cnt_{w}m", f"bureau_lenders_opened_cnt_{w}m")
    },
    "bureau_balance_cny": 0.0,
    "bureau_limit_cny": 0.0,
    "bureau_debt_limit_ratio": None,
    "bureau_overdue_cny": 0.0,
    "bureau_overdue_accounts_cnt": 0.0,
    **{f"bureau_dpd_bucket_max_{w}m": None for w in DPD_WINDOWS},
    **{f"bureau_delinquent_accounts_cnt_{w}m": 0.0 for w in DELINQ_WINDOWS},
    "bureau_months_since_delinquency": None,
    **{f"bureau_inquiries_cnt_{d}d": 0.0 for d in INQUIRY_DAY_WINDOWS},
    **{f"bureau_inquiries_cnt_{w}m": 0.0 for w in INQUIRY_MONTH_WINDOWS},
    "bureau_balance_change_cny_3m": None,
}

STEPS = (
    ("bureau_latest", LATEST_SQL),
    ("bureau_latest_3m", LATEST_3M_SQL),
    ("f_bureau", BUREAU_SQL),
)
