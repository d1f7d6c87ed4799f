"""Context columns (`ctx_`): facts the line policy and explanations need, never model inputs.

`ctx_dti_ratio` is total debt (own balance + bureau balance) over a yearly income estimated
from the income band (`INCOME_BAND_MONTHLY_CNY`, the band's midpoint): the raw data holds bands,
never incomes.
"""

from __future__ import annotations

INCOME_BAND_MONTHLY_CNY = {1: 3_000.0, 2: 6_000.0, 3: 10_000.0, 4: 18_000.0, 5: 30_000.0}


def _context_sql() -> str:
    income = " ".join(f"WHEN {b} THEN {v * 12}" for b, v in INCOME_BAND_MONTHLY_CNY.items())
    return f"""
CREATE OR REPLACE TEMP TABLE f_context AS
SELECT u.user_id,
       l0.line_cny AS ctx_line_cny,
       CASE WHEN l0.line_action = 'freeze' THEN 1 ELSE 0 END AS ctx_line_frozen,
       CASE WHEN COALESCE(r.balance_cny_now, 0.0) = 0 AND r.loan_days_since_payoff <= 30 THEN 1 ELSE 0 END
           AS ctx_repaid_in_full_30d,
       COALESCE(b.bureau_active_lenders_cnt, 0) AS ctx_active_lenders_cnt,
       (COALESCE(r.balance_cny_now, 0.0) + COALESCE(b.bureau_balance_cny, 0.0))
           / (CASE u.income_band {income} END) AS ctx_dti_ratio,
       days_between({{T}}, u.kyc_expiry_date) AS ctx_kyc_expiry_days,
       u.income_band AS ctx_income_band,
       u.age_band AS ctx_age_band,
       u.city_tier AS ctx_city_tier
FROM v_users u
LEFT JOIN line_at l0 ON l0.user_id = u.user_id AND l0.lookback = 0
LEFT JOIN f_repayment r ON r.user_id = u.user_id
LEFT JOIN f_bureau b ON b.user_id = u.user_id
"""


CONTEXT_SQL = _context_sql()

COLUMNS: dict[str, float | None] = {
    "ctx_line_cny": None,
    "ctx_line_frozen": 0.0,
    "ctx_repaid_in_full_30d": 0.0,
    "ctx_active_lenders_cnt": 0.0,
    "ctx_dti_ratio": None,
    "ctx_kyc_expiry_days": None,
    "ctx_income_band": None,
    "ctx_age_band": None,
    "ctx_city_tier": None,
}

STEPS = (("f_context", CONTEXT_SQL),)
