"""Freshness: how current each source is at T, and the sync-delay signature per user.

What can be seen at T is only what has arrived by T, so a payment stuck in a sync incident is
invisible, and the user simply looks unpaid. The signal must come from what IS visible:

- `fresh_<source>_age_days` (book level, the same for every row): T minus the latest
  `available_time` of that source: the source's watermark. A feed that stopped arriving ages.
- `fresh_payments_lag_share_7d` (book level): of the payments that arrived in the last 7 days,
  the share that arrived more than 2 days after they happened. In an incident, the payments
  that do get through arrive late, so this rises while the incident lasts.
- `fresh_user_payment_lag_max_days_30d` (user): the longest arrival lag among this user's
  visible payments made or arrived in the last 30 days (a payment made 32 days ago that arrived
  last week tells that this user's payments are stuck now).
- `fresh_sync_lag_flag` (user, 0/1): 1 when this user's own recent payments arrived late
  (> 2 days), or when the user has an installment due in the last 30 days that shows unpaid
  while the payments feed is lagging (lag share > 1 % or its watermark older than 2 days): that
  "unpaid" may be a payment that has not synced yet, and decisions should wait.
- `fresh_stale` (0/1): some source's watermark is older than its normal cadence
  (`STALE_AFTER_DAYS`).
"""

from __future__ import annotations

SOURCES = {
    "installments": "v_payments",
    "loans": "v_loans",
    "bureau_accounts": "v_bureau",
    "bureau_inquiries": "v_inquiries",
    "app_events": "v_events",
    "line_history": "v_lines",
}
# A source whose latest row is older than this at T is stale (bureau reports are monthly).
STALE_AFTER_DAYS = {
    "installments": 3.0,
    "loans": 7.0,
    "bureau_accounts": 40.0,
    "bureau_inquiries": 14.0,
    "app_events": 3.0,
    "line_history": 40.0,
}
LAG_DAYS = 2
# Payments normally reach the warehouse within minutes, so any systematic lag is an incident: an
# incident that hits 3.5 % of users lifts the share only to about 3.5 %, which a 5 % alert missed
# (the users whose payments were stuck were then cut as "unpaid"). Calibrate on the book's own
# normal lag share where it is not ~0.
LAG_SHARE_ALERT = 0.01
RECENT_DAYS = 30


def _freshness_sql() -> str:
    ages = ",\n       ".join(
        f"(SELECT CAST(seconds_between(MAX(available_time), {{T}}) AS DOUBLE) / 86400.0 FROM {view})"
        f" AS fresh_{src}_age_days"
        for src, view in SOURCES.items()
    )
    stale = " OR ".join(f"b.fresh_{s}_age_days > {d}" for s, d in STALE_AFTER_DAYS.items())
    return f"""
CREATE OR REPLACE TEMP TABLE f_freshness AS
WITH book AS (
SELECT {ages},
       (SELECT AVG(CASE WHEN seconds_between(event_time, available_time) > {LAG_DAYS} * 86400 THEN 1.0 ELSE 0.0 END)
        FROM v_payments WHERE available_time > {{T}} - INTERVAL '7' DAY) AS fresh_payments_lag_share_7d
),
user_lag AS (
    SELECT user_id, CAST(MAX(seconds_between(event_time, available_time)) AS DOUBLE) / 86400.0
               AS fresh_user_payment_lag_max_days_30d
    FROM v_payments
    WHERE event_time >= {{T}} - INTERVAL '{RECENT_DAYS}' DAY
       OR available_time >= {{T}} - INTERVAL '{RECENT_DAYS}' DAY
    GROUP BY user_id
),
recent_unpaid AS (
    SELECT user_id, COUNT(*) AS n FROM sched
    WHERE paid_time IS NULL AND due_time < {{T}} AND due_time >= {{T}} - INTERVAL '{RECENT_DAYS}' DAY
    GROUP BY user_id
)
SELECT u.user_id, {", ".join(f"b.fresh_{s}_age_days" for s in SOURCES)},
       b.fresh_payments_lag_share_7d,
       ul.fresh_user_payment_lag_max_days_30d,
       CASE WHEN ul.fresh_user_payment_lag_max_days_30d > {LAG_DAYS}
              OR (ru.n > 0 AND (b.fresh_payments_lag_share_7d > {LAG_SHARE_ALERT}
                                OR b.fresh_installments_age_days > {LAG_DAYS}))
            THEN 1 ELSE 0 END AS fresh_sync_lag_flag,
       CASE WHEN {stale} THEN 1 ELSE 0 END AS fresh_stale
FROM v_users u
CROSS JOIN book b
LEFT JOIN user_lag ul ON ul.user_id = u.user_id
LEFT JOIN recent_unpaid ru ON ru.user_id = u.user_id
"""


FRESHNESS_SQL = _freshness_sql()

COLUMNS: dict[str, float | None] = {
    **{f"fresh_{s}_age_days": None for s in SOURCES},
    "fresh_payments_lag_share_7d": None,
    "fresh_user_payment_lag_max_days_30d": None,
    "fresh_sync_lag_flag": 0.0,
    "fresh_stale": 0.0,
}

STEPS = (("f_freshness", FRESHNESS_SQL),)
