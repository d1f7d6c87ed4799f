"""Repayment features from the own book: the installment schedule, payments and draws.

The schedule is contractual: installment k of a loan is due at the draw date (midnight) plus k
calendar months (`add_months`, the same rule as `features.schedule.due_dates`), for
`installment_cny`. It is known from the loan's `available_time`; a payment counts once it is
visible (`event_time < T` and `available_time <= T`).

DPD of an installment as of T: paid -> max(0, days(paid - due)); unpaid and due before T ->
days(T - due); not yet due -> not counted. Windows "last w months" hold installments due in
[add_months(T, -w), T).

Counts are 0 when nothing happened; max/mean/ratios are NaN when there is nothing to measure
(no installment due in the window, no line).
"""

from __future__ import annotations

DPD_WINDOWS = (1, 3, 6, 12, 24)
PAY_WINDOWS = (3, 12)
DRAW_WINDOWS = (1, 3, 6, 12)
UTIL_LOOKBACK = (3, 6)
MAX_TERM = 12

# One row per scheduled installment of each visible loan with its visible payment and DPD at T.
SCHEDULE_SQL = """
CREATE OR REPLACE TEMP TABLE sched AS
SELECT s.*,
       CASE WHEN s.paid_time IS NOT NULL THEN GREATEST(0, days_between(s.due_time, s.paid_time))
            WHEN s.due_time < {T} THEN days_between(s.due_time, {T})
       END AS dpd
FROM (
    SELECT l.user_id, l.loan_id, k.seq, l.term_months, l.event_time AS draw_time,
           CAST(l.installment_cny AS DOUBLE) AS amount_due,
           add_months(l.event_time, k.seq) AS due_time,
           p.event_time AS paid_time,
           COALESCE(p.amount_paid_cny, 0.0) AS amount_paid
    FROM v_loans l
    JOIN term_seqs k ON k.term_months = l.term_months
    LEFT JOIN v_payments p ON p.loan_id = l.loan_id AND p.seq = k.seq
) s
"""

# One row per visible loan: whether (and when) it is fully repaid as of T.
LOAN_STATUS_SQL = """
CREATE OR REPLACE TEMP TABLE loan_status AS
SELECT user_id, loan_id, MIN(draw_time) AS draw_time, MAX(due_time) AS last_due_time,
       CASE WHEN COUNT(paid_time) = MIN(term_months) THEN MAX(paid_time) END AS payoff_time
FROM sched
GROUP BY user_id, loan_id
"""

# The line (limit) in force at T and 3/6 months before, as known at T.
LINE_AT_SQL = """
CREATE OR REPLACE TEMP TABLE line_at AS
SELECT u.user_id, c.lookback, h.action AS line_action,
       COALESCE(h.new_line_cny,
                CASE WHEN u.event_time < add_months({T}, -c.lookback) THEN u.initial_line_cny END) AS line_cny
FROM v_users u
CROSS JOIN lookbacks c
LEFT JOIN (
    SELECT user_id, lookback, new_line_cny, action
    FROM (SELECT h.user_id, c.lookback, h.new_line_cny, h.action,
                 ROW_NUMBER() OVER (PARTITION BY h.user_id, c.lookback
                                    ORDER BY h.event_time DESC, h.change_id DESC) AS rn
          FROM v_lines h JOIN lookbacks c ON h.event_time < add_months({T}, -c.lookback)) t
    WHERE rn = 1
) h ON h.user_id = u.user_id AND h.lookback = c.lookback
"""


def _win(w: int) -> str:
    return f"s.due_time >= add_months({{T}}, -{w}) AND s.due_time < {{T}}"


def _repayment_select() -> tuple[str, dict[str, float | None]]:
    cols: dict[str, float | None] = {}
    exprs = []
    for w in DPD_WINDOWS:
        exprs += [
            f"MAX(CASE WHEN {_win(w)} THEN s.dpd END) AS inst_dpd_max_{w}m",
            f"AVG(CASE WHEN {_win(w)} THEN CAST(s.dpd AS DOUBLE) END) AS inst_dpd_mean_{w}m",
            f"SUM(CASE WHEN {_win(w)} AND s.dpd > 0 THEN 1 ELSE 0 END) AS inst_late_cnt_{w}m",
        ]
        cols |= {
            f"inst_dpd_max_{w}m": None,
            f"inst_dpd_mean_{w}m": None,
            f"inst_late_cnt_{w}m": 0.0,
        }
    exprs.append(
        f"SUM(CASE WHEN {_win(12)} AND s.dpd >= 30 THEN 1 ELSE 0 END) AS inst_late30_cnt_12m"
    )
    cols["inst_late30_cnt_12m"] = 0.0
    for w in PAY_WINDOWS:
        exprs += [
            f"SUM(CASE WHEN {_win(w)} THEN s.amount_paid END) / "
            f"NULLIF(SUM(CASE WHEN {_win(w)} THEN s.amount_due END), 0) AS inst_paid_due_ratio_{w}m",
            f"SUM(CASE WHEN {_win(w)} THEN GREATEST(0.0, s.amount_due - s.amount_paid) ELSE 0.0 END)"
            f" AS inst_shortfall_cny_{w}m",
        ]
        cols |= {f"inst_paid_due_ratio_{w}m": None, f"inst_shortfall_cny_{w}m": 0.0}
    exprs += [
        "SUM(CASE WHEN s.paid_time IS NULL AND s.due_time < {T} THEN 1 ELSE 0 END) AS inst_overdue_cnt_now",
        "SUM(CASE WHEN s.paid_time IS NULL AND s.due_time < {T} THEN s.amount_due ELSE 0.0 END) AS inst_overdue_cny_now",
        "COALESCE(MAX(CASE WHEN s.paid_time IS NULL AND s.due_time < {T} THEN s.dpd END), 0) AS inst_dpd_now",
        # owed = scheduled amounts not yet paid, on loans drawn before the cut-off
        "SUM(GREATEST(0.0, s.amount_due - CASE WHEN s.paid_time IS NOT NULL THEN s.amount_paid ELSE 0.0 END))"
        " AS balance_now_cny",
    ]
    cols |= {"inst_overdue_cnt_now": 0.0, "inst_overdue_cny_now": 0.0, "inst_dpd_now": 0.0}
    for c in UTIL_LOOKBACK:
        cut = f"add_months({{T}}, -{c})"
        exprs.append(
            f"SUM(CASE WHEN s.draw_time < {cut} THEN GREATEST(0.0, s.amount_due - "
            f"CASE WHEN s.paid_time < {cut} THEN s.amount_paid ELSE 0.0 END) END) AS balance_{c}m_cny"
        )
    return "SELECT s.user_id,\n       " + ",\n       ".join(
        exprs
    ) + "\nFROM sched s GROUP BY s.user_id", cols


_INST_SELECT, _INST_COLS = _repayment_select()

REPAYMENT_SQL = (
    """
CREATE OR REPLACE TEMP TABLE f_repayment AS
WITH inst AS ("""
    + _INST_SELECT
    + """),
last_late AS (
    SELECT user_id, MAX(CASE WHEN dpd > 0 THEN due_time END) AS due_time
    FROM sched WHERE due_time < {T} GROUP BY user_id
),
-- installments due after the most recent late one (a group-by and a join: no per-user sort)
streak AS (
    SELECT s.user_id,
           SUM(CASE WHEN ll.due_time IS NULL OR s.due_time > ll.due_time THEN 1 ELSE 0 END) AS inst_ontime_streak_cnt
    FROM sched s JOIN last_late ll ON ll.user_id = s.user_id
    WHERE s.due_time < {T}
    GROUP BY s.user_id
),
loans_agg AS (
    SELECT user_id,
"""
    + ",\n".join(
        f"           SUM(CASE WHEN l.event_time >= add_months({{T}}, -{w}) THEN 1 ELSE 0 END) AS loan_draws_cnt_{w}m"
        for w in DRAW_WINDOWS
    )
    + """,
           SUM(CASE WHEN l.event_time >= add_months({T}, -3) THEN l.amount_cny ELSE 0.0 END) AS loan_draw_cny_3m,
           SUM(CASE WHEN l.event_time >= add_months({T}, -12) THEN l.amount_cny ELSE 0.0 END) AS loan_draw_cny_12m
    FROM v_loans l GROUP BY user_id
),
payoffs AS (
    SELECT user_id,
           SUM(CASE WHEN payoff_time >= add_months({T}, -12) THEN 1 ELSE 0 END) AS loan_payoff_cnt_12m,
           SUM(CASE WHEN payoff_time >= add_months({T}, -12)
                     AND CAST(payoff_time AS DATE) < CAST(last_due_time AS DATE) THEN 1 ELSE 0 END)
               AS loan_payoff_early_cnt_12m,
           days_between(MAX(payoff_time), {T}) AS loan_days_since_payoff
    FROM loan_status WHERE payoff_time IS NOT NULL GROUP BY user_id
)
SELECT u.user_id,
       """
    + ",\n       ".join(f"i.{c}" for c in _INST_COLS)
    + """,
       st.inst_ontime_streak_cnt,
       CAST(days_between(u.event_time, {T}) AS DOUBLE) / """
    + "30.4375"
    + """ AS acct_months_on_book,
       COALESCE(i.balance_now_cny, 0.0) / NULLIF(l0.line_cny, 0) AS util_ratio_now,
       COALESCE(i.balance_now_cny, 0.0) / NULLIF(l0.line_cny, 0)
           - COALESCE(i.balance_3m_cny, 0.0) / NULLIF(l3.line_cny, 0) AS util_ratio_change_3m,
       COALESCE(i.balance_now_cny, 0.0) / NULLIF(l0.line_cny, 0)
           - COALESCE(i.balance_6m_cny, 0.0) / NULLIF(l6.line_cny, 0) AS util_ratio_change_6m,
       i.balance_now_cny AS balance_cny_now,
"""
    + ",\n".join(f"       la.loan_draws_cnt_{w}m" for w in DRAW_WINDOWS)
    + """,
       la.loan_draw_cny_3m, la.loan_draw_cny_12m,
       CAST(la.loan_draws_cnt_3m AS DOUBLE) / NULLIF(la.loan_draws_cnt_12m, 0) AS loan_draws_ratio_3m_12m,
       CAST(i.inst_late_cnt_3m AS DOUBLE) / NULLIF(i.inst_late_cnt_12m, 0) AS inst_late_ratio_3m_12m,
       po.loan_payoff_cnt_12m, po.loan_payoff_early_cnt_12m, po.loan_days_since_payoff
FROM v_users u
LEFT JOIN inst i ON i.user_id = u.user_id
LEFT JOIN streak st ON st.user_id = u.user_id
LEFT JOIN loans_agg la ON la.user_id = u.user_id
LEFT JOIN payoffs po ON po.user_id = u.user_id
LEFT JOIN line_at l0 ON l0.user_id = u.user_id AND l0.lookback = 0
LEFT JOIN line_at l3 ON l3.user_id = u.user_id AND l3.lookback = 3
LEFT JOIN line_at l6 ON l6.user_id = u.user_id AND l6.lookback = 6
"""
)

# Output columns of `f_repayment` and the value a user with no rows gets (None -> NaN).
COLUMNS: dict[str, float | None] = {
    **_INST_COLS,
    "inst_ontime_streak_cnt": None,
    "acct_months_on_book": None,
    "util_ratio_now": None,
    "util_ratio_change_3m": None,
    "util_ratio_change_6m": None,
    "balance_cny_now": 0.0,
    **{f"loan_draws_cnt_{w}m": 0.0 for w in DRAW_WINDOWS},
    "loan_draw_cny_3m": 0.0,
    "loan_draw_cny_12m": 0.0,
    "loan_draws_ratio_3m_12m": None,
    "inst_late_ratio_3m_12m": None,
    "loan_payoff_cnt_12m": 0.0,
    "loan_payoff_early_cnt_12m": 0.0,
    "loan_days_since_payoff": None,
}

STEPS = (
    ("sched", SCHEDULE_SQL),
    ("loan_status", LOAN_STATUS_SQL),
    ("line_at", LINE_AT_SQL),
    ("f_repayment", REPAYMENT_SQL),
)
