"""A tiny, valid raw world by hand (pseudonymous ids only), for contract tests."""

from __future__ import annotations

import pandas as pd

T0 = pd.Timestamp("2025-01-01")
EXTRACTED_AT = pd.Timestamp("2025-12-31")


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s)


def valid_tables() -> dict[str, pd.DataFrame]:
    users = pd.DataFrame(
        {
            "user_id": ["u_a", "u_b", "u_c"],
            "age_band": [1, 2, 3],
            "income_band": [2, 3, 4],
            "city_tier": [1, 2, 3],
            "kyc_expiry_date": [ts("2030-01-01")] * 3,
            "initial_line_cny": [5000.0, 8000.0, 3000.0],
            "event_time": [T0] * 3,
            "available_time": [T0 + pd.Timedelta("1h")] * 3,
        }
    )
    loans = pd.DataFrame(
        {
            "loan_id": ["l_1", "l_2"],
            "user_id": ["u_a", "u_b"],
            "amount_cny": [1200.0, 600.0],
            "term_months": [3, 6],
            "installment_cny": [400.0, 100.0],
            "event_time": [ts("2025-02-10 10:00"), ts("2025-03-05 09:00")],
            "available_time": [ts("2025-02-10 10:05"), ts("2025-03-05 09:05")],
        }
    )
    installments = pd.DataFrame(
        {
            "loan_id": ["l_1", "l_1", "l_2"],
            "user_id": ["u_a", "u_a", "u_b"],
            "seq": [1, 2, 1],
            "due_date": [ts("2025-03-10"), ts("2025-04-10"), ts("2025-04-05")],
            "amount_due_cny": [400.0, 400.0, 100.0],
            "amount_paid_cny": [400.0, 400.0, 100.0],
            "event_time": [ts("2025-03-09 20:00"), ts("2025-04-15 08:00"), ts("2025-04-05 12:00")],
            "available_time": [
                ts("2025-03-09 20:01"),
                ts("2025-04-15 08:01"),
                ts("2025-04-05 12:01"),
            ],
        }
    )
    bureau_accounts = pd.DataFrame(
        {
            "account_id": ["b_1", "b_1"],
            "user_id": ["u_a", "u_a"],
            "lender_token": ["k_1", "k_1"],
            "lender_type": ["bank", "bank"],
            "open_date": [ts("2024-06-01")] * 2,
            "close_date": [pd.NaT, pd.NaT],
            "limit_cny": [10000.0, 10000.0],
            "balance_cny": [2000.0, 2500.0],
            "overdue_cny": [0.0, 0.0],
            "dpd_bucket": [0, 0],
            "event_time": [ts("2025-01-31"), ts("2025-02-28")],
            "available_time": [ts("2025-02-05"), ts("2025-03-05")],
        }
    )
    bureau_inquiries = pd.DataFrame(
        {
            "inquiry_id": ["q_1"],
            "user_id": ["u_c"],
            "lender_type": ["microloan"],
            "event_time": [ts("2025-05-01")],
            "available_time": [ts("2025-05-02")],
        }
    )
    app_events = pd.DataFrame(
        {
            "event_id": ["e_1", "e_2"],
            "user_id": ["u_a", "u_b"],
            "event_type": ["login", "sim_change"],
            "device_token": ["d_1", "d_2"],
            "ip_prefix_token": ["p_1", "p_1"],
            "event_time": [ts("2025-02-01"), ts("2025-02-02")],
            "available_time": [ts("2025-02-01 00:00:01"), ts("2025-02-02 00:00:01")],
        }
    )
    line_history = pd.DataFrame(
        {
            "change_id": ["c_1", "c_2", "c_3"],
            "user_id": ["u_a", "u_b", "u_c"],
            "old_line_cny": [0.0, 0.0, 0.0],
            "new_line_cny": [5000.0, 8000.0, 3000.0],
            "action": ["open", "open", "open"],
            "event_time": [T0] * 3,
            "available_time": [T0] * 3,
        }
    )
    return {
        "users": users,
        "loans": loans,
        "installments": installments,
        "bureau_accounts": bureau_accounts,
        "bureau_inquiries": bureau_inquiries,
        "app_events": app_events,
        "line_history": line_history,
    }
