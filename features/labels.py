"""Labels (`label_`): outcomes after T, read from ALL data (they look forward), never features.

- `label_default_12m`: 1 when some installment of the user (any loan, drawn before or after T)
  reaches 90 DPD at a moment in (T, add_months(T, 12)]: due date + 90 days falls in that window
  and the installment was not paid before it. Matured when add_months(T, 12) + `MARGIN_DAYS`
  <= extracted_at: by then every 90-DPD moment in the window has happened, and the margin lets
  late-syncing payments arrive.
- `label_fraud_90d`: first-payment default, the bust-out proxy: 1 when a draw in (T, T + 90 days]
  has its first installment still unpaid 60 days after its due date. Matured when the last
  possible such due date + 60 days + `MARGIN_DAYS` <= extracted_at.
- `label_dpd30_3m`, `label_dpd30_6m`: early reads. 1 when some installment reaches 30 DPD at a
  moment in (T, add_months(T, k)] for k = 3, 6 (due date + 30 days in the window, not paid
  before). Matured when add_months(T, k) + `MARGIN_DAYS` <= extracted_at: months before the
  12-month default label, so a loop can act on them (lenders watch vintages at 3 and 6 months
  on book long before the final label closes).
Unmatured rows are NaN with `*_matured` False: never labelled good.
"""

from __future__ import annotations

import pandas as pd

DEFAULT_DPD = 90
DEFAULT_MONTHS = 12
FRAUD_DAYS = 90
FRAUD_DPD = 60
MARGIN_DAYS = 14
MAX_TERM = 12
EARLY_DPD = 30
EARLY_MONTHS = (3, 6)


def matured(as_of: pd.Timestamp, extracted_at: pd.Timestamp) -> tuple[bool, ...]:
    """(default, fraud, 30+ DPD in 3 months, in 6 months) windows matured for labels at `as_of`.

    >>> matured(pd.Timestamp("2024-06-30"), pd.Timestamp("2025-07-14"))
    (True, True, True, True)
    >>> matured(pd.Timestamp("2024-06-30"), pd.Timestamp("2025-07-13"))
    (False, True, True, True)
    >>> matured(pd.Timestamp("2024-06-30"), pd.Timestamp("2024-10-14"))  # only the 3-month read
    (False, False, True, False)
    """
    t = pd.Timestamp(as_of)
    default = (
        t.normalize() + pd.DateOffset(months=DEFAULT_MONTHS) + pd.Timedelta(days=MARGIN_DAYS)
        <= extracted_at
    )
    last_due = (t + pd.Timedelta(days=FRAUD_DAYS)).normalize() + pd.DateOffset(months=1)
    fraud = last_due + pd.Timedelta(days=FRAUD_DPD + MARGIN_DAYS) <= extracted_at
    early = [
        t.normalize() + pd.DateOffset(months=k) + pd.Timedelta(days=MARGIN_DAYS) <= extracted_at
        for k in EARLY_MONTHS
    ]
    return (bool(default), bool(fraud), *map(bool, early))


# When neither window has matured, every label is NaN: no need to read the future at all.
UNMATURED_SQL = """
CREATE OR REPLACE TEMP TABLE f_labels AS
SELECT u.user_id, CAST(NULL AS DOUBLE) AS label_default_12m, FALSE AS label_default_12m_matured,
       CAST(NULL AS DOUBLE) AS label_fraud_90d, FALSE AS label_fraud_90d_matured,
       CAST(NULL AS DOUBLE) AS label_dpd30_3m, FALSE AS label_dpd30_3m_matured,
       CAST(NULL AS DOUBLE) AS label_dpd30_6m, FALSE AS label_dpd30_6m_matured
FROM v_users u
"""

# The early reads, one SQL fragment per window (3 and 6 months), spliced into LABELS_SQL.
_EARLY_HITS = ",\n           ".join(
    f"MAX(CASE WHEN due_time + INTERVAL '{EARLY_DPD}' DAY > {{T}}"
    f" AND due_time + INTERVAL '{EARLY_DPD}' DAY <= add_months({{T}}, {k})"
    f" AND (paid_time IS NULL OR days_between(due_time, paid_time) >= {EARLY_DPD})"
    f" THEN 1 ELSE 0 END) AS dpd30_{k}m_hit"
    for k in EARLY_MONTHS
)
_EARLY_MATURED = ",\n           ".join(
    f"add_months({{T}}, {k}) + INTERVAL '{MARGIN_DAYS}' DAY <= {{X}} AS dpd30_{k}m_matured"
    for k in EARLY_MONTHS
)
_EARLY_LABELS = ",\n       ".join(
    f"CASE WHEN m.dpd30_{k}m_matured THEN COALESCE(h.dpd30_{k}m_hit, 0) END AS label_dpd30_{k}m, "
    f"m.dpd30_{k}m_matured AS label_dpd30_{k}m_matured"
    for k in EARLY_MONTHS
)

LABELS_SQL = f"""
CREATE OR REPLACE TEMP TABLE f_labels AS
WITH all_sched AS (
    SELECT l.user_id, l.loan_id, k.seq, l.event_time AS draw_time,
           add_months(l.event_time, k.seq) AS due_time, p.event_time AS paid_time
    FROM all_loans l
    JOIN term_seqs k ON k.term_months = l.term_months
    LEFT JOIN all_payments p ON p.loan_id = l.loan_id AND p.seq = k.seq
    -- only loans that can matter: an installment reaching 90 DPD after T is due after T - 90
    -- days, and no installment is due more than 12 months after its draw
    WHERE l.event_time >= add_months({{T}} - INTERVAL '{DEFAULT_DPD}' DAY, -{MAX_TERM})
),
hits AS (
    SELECT user_id,
           MAX(CASE WHEN due_time + INTERVAL '{DEFAULT_DPD}' DAY > {{T}}
                     AND due_time + INTERVAL '{DEFAULT_DPD}' DAY <= add_months({{T}}, {DEFAULT_MONTHS})
                     AND (paid_time IS NULL OR days_between(due_time, paid_time) >= {DEFAULT_DPD})
                    THEN 1 ELSE 0 END) AS default_hit,
           MAX(CASE WHEN seq = 1 AND draw_time > {{T}} AND draw_time <= {{T}} + INTERVAL '{FRAUD_DAYS}' DAY
                     AND (paid_time IS NULL OR days_between(due_time, paid_time) >= {FRAUD_DPD})
                    THEN 1 ELSE 0 END) AS fraud_hit,
           {_EARLY_HITS}
    FROM all_sched GROUP BY user_id
),
maturity AS (
    SELECT add_months({{T}}, {DEFAULT_MONTHS}) + INTERVAL '{MARGIN_DAYS}' DAY <= {{X}} AS default_matured,
           add_months({{T}} + INTERVAL '{FRAUD_DAYS}' DAY, 1) + INTERVAL '{FRAUD_DPD + MARGIN_DAYS}' DAY <= {{X}}
               AS fraud_matured,
           {_EARLY_MATURED}
)
SELECT u.user_id,
       CASE WHEN m.default_matured THEN COALESCE(h.default_hit, 0) END AS label_default_12m,
       m.default_matured AS label_default_12m_matured,
       CASE WHEN m.fraud_matured THEN COALESCE(h.fraud_hit, 0) END AS label_fraud_90d,
       m.fraud_matured AS label_fraud_90d_matured,
       {_EARLY_LABELS}
FROM v_users u
CROSS JOIN maturity m
LEFT JOIN hits h ON h.user_id = u.user_id
"""

COLUMNS: dict[str, float | None] = {
    "label_default_12m": None,
    "label_default_12m_matured": None,
    "label_fraud_90d": None,
    "label_fraud_90d_matured": None,
    **{f"label_dpd30_{k}m{m}": None for k in EARLY_MONTHS for m in ("", "_matured")},
}
BOOL_COLUMNS = ("label_default_12m_matured", "label_fraud_90d_matured")

STEPS = (("f_labels", LABELS_SQL),)
