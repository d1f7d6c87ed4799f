"""Hand-sized books with the expected numbers worked out in comments. As of T = 2025-07-01."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from features.builder import build_features
from tests.features.helpers import tables

T = pd.Timestamp("2025-07-01")


def _pay(loan, user, seq, paid, amount, **kw):
    return {
        "loan_id": loan,
        "user_id": user,
        "seq": seq,
        "amount_paid_cny": amount,
        "event_time": paid,
        **kw,
    }


def book(extra_payments: list[dict] | None = None) -> dict[str, pd.DataFrame]:
    users = [
        {"user_id": "u_a", "event_time": "2024-01-10"},
        {"user_id": "u_b", "event_time": "2024-12-20", "income_band": 1},
        {"user_id": "u_c", "event_time": "2024-02-01"},  # closed on 2025-06-20: not active
        {
            "user_id": "u_d",
            "event_time": "2025-07-01",
        },  # signs up at T: not active (event_time < T)
        {
            "user_id": "u_e",
            "event_time": "2025-06-30",
            "available_time": "2025-07-02",
        },  # not yet visible
        {"user_id": "u_f", "event_time": "2024-05-01"},
        {"user_id": "u_g", "event_time": "2025-01-01"},
    ]
    loans = [
        # A. L1: dues 2025-02-15, 03-15, 04-15 (draw date + k months)
        {
            "loan_id": "L1",
            "user_id": "u_a",
            "amount_cny": 2900.0,
            "installment_cny": 1000.0,
            "event_time": "2025-01-15 10:00",
        },
        # A. L2: 6 x 500, dues 2025-06-10, 07-10, ...
        {
            "loan_id": "L2",
            "user_id": "u_a",
            "amount_cny": 2950.0,
            "term_months": 6,
            "installment_cny": 500.0,
            "event_time": "2025-05-10 09:00",
        },
        # A. L3: dues 2024-11-05, 12-05, 2025-01-05; all paid on 2024-11-01: an early payoff
        {
            "loan_id": "L3",
            "user_id": "u_a",
            "amount_cny": 880.0,
            "installment_cny": 300.0,
            "event_time": "2024-10-05 12:00",
        },
        # B. LB1 paid off 2025-06-01; LB2 drawn 2 days later (within 7 days); LB3 not
        {
            "loan_id": "LB1",
            "user_id": "u_b",
            "amount_cny": 290.0,
            "installment_cny": 100.0,
            "event_time": "2025-05-10 08:00",
        },
        {
            "loan_id": "LB2",
            "user_id": "u_b",
            "amount_cny": 5000.0,
            "installment_cny": 1700.0,
            "event_time": "2025-06-03 08:00",
        },
        {
            "loan_id": "LB3",
            "user_id": "u_b",
            "amount_cny": 1000.0,
            "installment_cny": 340.0,
            "event_time": "2025-06-20 08:00",
        },
        # G. drawn after T; first installment (due 2025-09-01) never paid: first-payment default
        {
            "loan_id": "LG1",
            "user_id": "u_g",
            "amount_cny": 3000.0,
            "installment_cny": 1010.0,
            "event_time": "2025-08-01 10:00",
        },
    ]
    payments = [
        _pay("L1", "u_a", 1, "2025-02-15 09:00", 1000.0),  # dpd 0
        _pay("L1", "u_a", 2, "2025-03-20 09:00", 1000.0),  # dpd 5
        # L1 seq 3 was paid on 2025-06-25 but reached the warehouse after T: invisible -> outstanding, dpd 77
        _pay("L1", "u_a", 3, "2025-06-25 09:00", 1000.0, available_time="2025-07-02"),
        _pay("L2", "u_a", 1, "2025-06-12 10:00", 400.0),  # dpd 2, shortfall 100
        *[_pay("L3", "u_a", k, "2024-11-01 10:00", 300.0) for k in (1, 2, 3)],
        *[_pay("LB1", "u_b", k, "2025-06-01 10:00", 100.0) for k in (1, 2, 3)],
        *(extra_payments or []),
    ]
    lines = [
        {
            "change_id": "c1",
            "user_id": "u_b",
            "new_line_cny": 8000.0,
            "action": "open",
            "event_time": "2024-12-20 01:00",
        },
        {
            "change_id": "c2",
            "user_id": "u_b",
            "new_line_cny": 12000.0,
            "action": "raise",
            "event_time": "2025-06-15",
        },
        {
            "change_id": "c3",
            "user_id": "u_b",
            "new_line_cny": 6000.0,
            "action": "lower",
            "event_time": "2025-06-30 23:00",
            "available_time": "2025-07-01 01:00",
        },
        {
            "change_id": "c4",
            "user_id": "u_c",
            "new_line_cny": 0.0,
            "action": "close",
            "event_time": "2025-06-20",
        },
    ]
    bureau = [
        {
            "account_id": "X1",
            "user_id": "u_a",
            "lender_token": "LA",
            "open_date": "2024-03-01",
            "limit_cny": 5000.0,
            "balance_cny": 1000.0,
            "event_time": "2025-04-30",
            "available_time": "2025-05-03",
        },
        {
            "account_id": "X1",
            "user_id": "u_a",
            "lender_token": "LA",
            "open_date": "2024-03-01",
            "limit_cny": 5000.0,
            "balance_cny": 1500.0,
            "overdue_cny": 200.0,
            "dpd_bucket": 1,
            "event_time": "2025-05-31",
            "available_time": "2025-06-03",
        },
        {
            "account_id": "X1",
            "user_id": "u_a",
            "lender_token": "LA",
            "open_date": "2024-03-01",
            "limit_cny": 5000.0,
            "balance_cny": 9999.0,
            "dpd_bucket": 3,
            "event_time": "2025-06-30",
            "available_time": "2025-07-03",
        },
        {
            "account_id": "X2",
            "user_id": "u_a",
            "lender_token": "LB",
            "open_date": "2025-05-10",
            "limit_cny": 4000.0,
            "balance_cny": 2000.0,
            "event_time": "2025-05-31",
            "available_time": "2025-06-03",
        },
        {
            "account_id": "X3",
            "user_id": "u_a",
            "lender_token": "LA",
            "open_date": "2023-01-01",
            "close_date": "2025-02-01",
            "limit_cny": 3000.0,
            "balance_cny": 500.0,
            "dpd_bucket": 2,
            "event_time": "2024-12-31",
            "available_time": "2025-01-03",
        },
        {
            "account_id": "X3",
            "user_id": "u_a",
            "lender_token": "LA",
            "open_date": "2023-01-01",
            "close_date": "2025-02-01",
            "limit_cny": 3000.0,
            "balance_cny": 0.0,
            "event_time": "2025-01-31",
            "available_time": "2025-02-03",
        },
    ]
    inquiries = [
        {"inquiry_id": f"q{i}", "user_id": "u_a", "event_time": t, **kw}
        for i, (t, kw) in enumerate(
            [
                ("2025-06-28", {}),
                ("2025-06-10", {}),
                ("2025-03-15", {}),
                ("2024-08-01", {}),
                ("2025-06-30 20:00", {"available_time": "2025-07-01 02:00"}),
            ]
        )
    ]
    events = [
        {
            "event_id": "e1",
            "user_id": "u_a",
            "device_token": "D1",
            "ip_prefix_token": "P1",
            "event_time": "2025-06-30 12:00",
        },
        {
            "event_id": "e2",
            "user_id": "u_a",
            "device_token": "D2",
            "ip_prefix_token": "P1",
            "event_time": "2025-06-25",
        },
        {
            "event_id": "e3",
            "user_id": "u_a",
            "device_token": "D1",
            "ip_prefix_token": "P2",
            "event_time": "2025-06-05",
        },
        {
            "event_id": "e4",
            "user_id": "u_a",
            "event_type": "device_change",
            "device_token": "D2",
            "ip_prefix_token": "P1",
            "event_time": "2025-06-29",
        },
        {
            "event_id": "e5",
            "user_id": "u_a",
            "event_type": "sim_change",
            "device_token": "D1",
            "ip_prefix_token": "P1",
            "event_time": "2025-05-01",
        },
        {
            "event_id": "e6",
            "user_id": "u_b",
            "device_token": "D2",
            "ip_prefix_token": "P1",
            "event_time": "2025-06-20",
        },
        {
            "event_id": "e7",
            "user_id": "u_c",
            "device_token": "D1",
            "ip_prefix_token": "P9",
            "event_time": "2025-03-01",
        },
        {
            "event_id": "e8",
            "user_id": "u_f",
            "device_token": "D7",
            "ip_prefix_token": "P1",
            "event_time": "2025-05-15",
        },
        # used D1 only after T: must not count
        {
            "event_id": "e9",
            "user_id": "u_f",
            "device_token": "D1",
            "ip_prefix_token": "P1",
            "event_time": "2025-07-02",
        },
    ]
    return tables(
        users=users,
        loans=loans,
        installments=payments,
        line_history=lines,
        bureau_accounts=bureau,
        bureau_inquiries=inquiries,
        app_events=events,
    )


@pytest.fixture(scope="module")
def feats() -> pd.DataFrame:
    return build_features(book(), T, extracted_at=pd.Timestamp("2025-08-01")).set_index("user_id")


def check(row: pd.Series, expected: dict[str, float]) -> None:
    for k, v in expected.items():
        got = row[k]
        if isinstance(v, float) and math.isnan(v):
            assert math.isnan(got), f"{k}: expected NaN, got {got}"
        else:
            assert got == pytest.approx(v, abs=1e-6), f"{k}: expected {v}, got {got}"


def test_active_users_are_visible_signups_with_an_open_line(feats):
    # u_c closed, u_d signs up at T (not before), u_e not yet available at T
    assert list(feats.index) == ["u_a", "u_b", "u_f", "u_g"]
    assert (feats["as_of"] == T).all()


def test_dpd_windows_and_repayment(feats):
    # Installments of A due before T with DPD at T:
    #   L3 s1 2024-11-05: 0, s2 2024-12-05: 0, s3 2025-01-05: 0 (paid 2024-11-01)
    #   L1 s1 2025-02-15: 0; s2 2025-03-15: 5 (paid 03-20); s3 2025-04-15: unpaid as seen at T -> 77
    #   L2 s1 2025-06-10: 2 (paid 06-12, 400 of 500)
    check(
        feats.loc["u_a"],
        {
            # 1m = due in [06-01, 07-01): L2s1
            "inst_dpd_max_1m": 2,
            "inst_dpd_mean_1m": 2,
            "inst_late_cnt_1m": 1,
            # 3m = [04-01, 07-01): L1s3 77, L2s1 2
            "inst_dpd_max_3m": 77,
            "inst_dpd_mean_3m": 39.5,
            "inst_late_cnt_3m": 2,
            # 6m = [01-01, 07-01): L3s3 0, L1s1 0, L1s2 5, L1s3 77, L2s1 2 -> mean 84/5
            "inst_dpd_max_6m": 77,
            "inst_dpd_mean_6m": 16.8,
            "inst_late_cnt_6m": 3,
            # 12m adds L3 s1, s2 -> 7 installments, sum 84
            "inst_dpd_mean_12m": 12.0,
            "inst_late_cnt_12m": 3,
            "inst_late30_cnt_12m": 1,
            # 3m paid/due: (0 + 400) / (1000 + 500); shortfall 1000 + 100
            "inst_paid_due_ratio_3m": 400 / 1500,
            "inst_shortfall_cny_3m": 1100,
            "inst_overdue_cnt_now": 1,
            "inst_overdue_cny_now": 1000,
            "inst_dpd_now": 77,
            # latest due installment (L2s1) was late
            "inst_ontime_streak_cnt": 0,
            # 2024-01-10 -> 2025-07-01 = 538 days
            "acct_months_on_book": 538 / 30.4375,
            # owed now: L1s3 1000 + L2 (100 + 5 x 500) = 3600 on the initial line 10000
            "balance_cny_now": 3600,
            "util_ratio_now": 0.36,
            # 3 months ago (before 04-01): only L1 s3 owed (1000) -> 0.10; 6 months ago nothing owed
            "util_ratio_change_3m": 0.26,
            "util_ratio_change_6m": 0.36,
            "loan_draws_cnt_1m": 0,
            "loan_draws_cnt_3m": 1,
            "loan_draws_cnt_6m": 2,
            "loan_draws_cnt_12m": 3,
            "loan_draw_cny_3m": 2950,
            "loan_draws_ratio_3m_12m": 1 / 3,
            "inst_late_ratio_3m_12m": 2 / 3,
            # L3 paid off 2024-11-01, before its last due date; 242 days to T
            "loan_payoff_cnt_12m": 1,
            "loan_payoff_early_cnt_12m": 1,
            "loan_days_since_payoff": 242,
            "behav_draws_after_payoff_cnt_7d": 0,
        },
    )


def test_line_velocity_and_context(feats):
    # B: LB1 paid off 2025-06-01 10:00; LB2 drawn 06-03 (within 7 days), LB3 06-20 (not)
    # line: open 8000, raise to 12000 (06-15); the lower of 06-30 23:00 arrives after T: unseen
    check(
        feats.loc["u_b"],
        {
            "behav_draws_after_payoff_cnt_7d": 1,
            "behav_draw_after_payoff_cny_7d": 5000,
            "ctx_line_cny": 12000,
            "ctx_repaid_in_full_30d": 0,
            # owed: LB2 3 x 1700 + LB3 3 x 340 = 6120 -> / 12000
            "util_ratio_now": 6120 / 12000,
            # income band 1 -> 36000 a year; no bureau debt
            "ctx_dti_ratio": 6120 / 36000,
            "ctx_kyc_expiry_days": 549,  # 2025-07-01 -> 2027-01-01
            # only LB1 s1 (due 06-10, paid early on 06-01) is due: on time
            "inst_dpd_max_3m": 0,
            "inst_late_cnt_3m": 0,
            "inst_ontime_streak_cnt": 1,
        },
    )
    # F never borrowed: DPD stats and the streak are NaN, counts 0, utilisation 0
    check(
        feats.loc["u_f"],
        {
            "inst_dpd_max_3m": math.nan,
            "inst_late_cnt_3m": 0,
            "inst_ontime_streak_cnt": math.nan,
            "util_ratio_now": 0.0,
        },
    )


def test_bureau(feats):
    # Latest visible reports: X1 2025-05-31 (bal 1500, limit 5000, overdue 200, bucket 1),
    # X2 2025-05-31 (2000 / 4000), X3 2025-01-31 (closed 2025-02-01: inactive). X1's 06-30 report
    # arrives 07-03: unseen.
    check(
        feats.loc["u_a"],
        {
            "bureau_active_accounts_cnt": 2,
            "bureau_active_lenders_cnt": 2,
            "bureau_accounts_opened_cnt_1m": 0,
            "bureau_accounts_opened_cnt_3m": 1,
            "bureau_lenders_opened_cnt_3m": 1,
            "bureau_accounts_opened_cnt_12m": 1,
            "bureau_balance_cny": 3500,
            "bureau_limit_cny": 9000,
            "bureau_debt_limit_ratio": 3500 / 9000,
            "bureau_overdue_cny": 200,
            "bureau_overdue_accounts_cnt": 1,
            # reports since 04-01: buckets 0, 1, 0; since 2024-07-01 also X3's 2 (2024-12-31)
            "bureau_dpd_bucket_max_3m": 1,
            "bureau_dpd_bucket_max_6m": 1,
            "bureau_dpd_bucket_max_12m": 2,
            "bureau_delinquent_accounts_cnt_3m": 1,
            "bureau_delinquent_accounts_cnt_12m": 2,
            "bureau_months_since_delinquency": 31 / 30.4375,  # 2025-05-31 -> T
            # 3 months ago (reports before 04-01): only X3's 01-31 report, balance 0
            "bureau_balance_change_cny_3m": 3500,
            # inquiries 06-28, 06-10, 03-15, 2024-08-01 (+ one arriving after T)
            "bureau_inquiries_cnt_7d": 1,
            "bureau_inquiries_cnt_1m": 2,
            "bureau_inquiries_cnt_3m": 2,
            "bureau_inquiries_cnt_6m": 3,
            "bureau_inquiries_cnt_12m": 4,
            "ctx_active_lenders_cnt": 2,
        },
    )
    check(
        feats.loc["u_b"],
        {
            "bureau_active_accounts_cnt": 0,
            "bureau_debt_limit_ratio": math.nan,
            "bureau_months_since_delinquency": math.nan,
        },
    )


def test_events_and_sharing_graph(feats):
    # A used D1 (shared with C, closed but visible) and D2 (shared with B); F used D1 only after T.
    # IP P1 in the last 30 days: A, B (F's P1 use on 05-15 is older than 30 days).
    check(
        feats.loc["u_a"],
        {
            "app_logins_cnt_1d": 1,
            "app_logins_cnt_7d": 2,
            "app_logins_cnt_30d": 3,
            "app_device_changes_cnt_7d": 1,
            "app_sim_changes_cnt_30d": 0,
            "graph_device_shared_users_cnt": 2,
            "graph_ip_shared_users_max": 1,
        },
    )
    check(feats.loc["u_b"], {"graph_device_shared_users_cnt": 1, "graph_ip_shared_users_max": 1})
    check(feats.loc["u_f"], {"graph_device_shared_users_cnt": 0, "app_logins_cnt_30d": 0})


def test_labels_matured_and_not():
    # Labels read all rows by event_time. A: L1 s3 (due 04-15) was paid 06-25 (71 days: no
    # default), but L2 s2 (due 07-10) is never paid: 90 DPD on 2025-10-08, inside (T, T + 12m].
    # G: LG1's first installment (due 2025-09-01) is never paid: fraud (and default).
    tabs = book()
    late = build_features(tabs, T, extracted_at=pd.Timestamp("2026-08-01")).set_index("user_id")
    # default window matured: 2026-07-01 + 14 days <= 2026-08-01
    assert late["label_default_12m_matured"].all()
    assert late.loc["u_a", "label_default_12m"] == 1.0
    assert (
        late.loc["u_b", "label_default_12m"] == 1.0
    )  # LB2/LB3 never paid: 90 DPD inside the window
    assert late.loc["u_f", "label_default_12m"] == 0.0
    # fraud window: draws in (T, 2025-09-29]; last first-due 2025-10-29 + 60 + 14 days = 2026-01-11
    assert late["label_fraud_90d_matured"].all()
    assert late.loc["u_g", "label_fraud_90d"] == 1.0 and late.loc["u_a", "label_fraud_90d"] == 0.0
    # only the fraud window has matured by 2026-02-01
    mid = build_features(tabs, T, extracted_at=pd.Timestamp("2026-02-01")).set_index("user_id")
    assert mid["label_fraud_90d_matured"].all() and mid.loc["u_g", "label_fraud_90d"] == 1.0
    assert not mid["label_default_12m_matured"].any() and mid["label_default_12m"].isna().all()
    early = build_features(tabs, T, extracted_at=pd.Timestamp("2026-01-05")).set_index("user_id")
    assert not early["label_default_12m_matured"].any() and early["label_default_12m"].isna().all()
    assert not early["label_fraud_90d_matured"].any() and early["label_fraud_90d"].isna().all()
    # Early reads (30+ DPD within 3 and 6 months): A's L2 s2 (due 07-10, never paid) is 30 DPD on
    # 2025-08-09, inside (T, T + 3m]. By 2026-01-05 the 3-month window (2025-10-01 + 14 days) has
    # matured, the 6-month one (2026-01-01 + 14 days) has not.
    assert early["label_dpd30_3m_matured"].all() and early.loc["u_a", "label_dpd30_3m"] == 1.0
    assert early.loc["u_f", "label_dpd30_3m"] == 0.0
    assert not early["label_dpd30_6m_matured"].any() and early["label_dpd30_6m"].isna().all()
    assert late.loc["u_a", "label_dpd30_6m"] == 1.0 and late.loc["u_f", "label_dpd30_6m"] == 0.0


def test_label_ignores_payment_made_before_90_dpd():
    # F borrows on 2025-03-01 (dues 04-01, 05-01, 06-01) and pays each 85 days late: no default.
    tabs = book()
    users = tabs["users"]
    extra = tables(
        loans=[
            {
                "loan_id": "LF",
                "user_id": "u_f",
                "amount_cny": 900.0,
                "installment_cny": 310.0,
                "event_time": "2025-03-01",
            }
        ],
        installments=[
            _pay("LF", "u_f", k, d, 310.0)
            for k, d in ((1, "2025-06-25"), (2, "2025-07-25"), (3, "2025-08-25"))
        ],
    )
    tabs = {
        **tabs,
        "loans": pd.concat([tabs["loans"], extra["loans"]], ignore_index=True),
        "installments": pd.concat([tabs["installments"], extra["installments"]], ignore_index=True),
        "users": users,
    }
    out = build_features(tabs, T, extracted_at=pd.Timestamp("2026-08-01")).set_index("user_id")
    assert out.loc["u_f", "label_default_12m"] == 0.0
    # as seen at T: s1 paid 85 days late; s2 (due 05-01) unpaid, 61 DPD; s3 (06-01) unpaid, 30
    check(out.loc["u_f"], {"inst_dpd_max_6m": 85, "inst_dpd_now": 61, "inst_overdue_cnt_now": 2})


def test_freshness_sync_lag():
    # Payments feed: H's payment of 06-25 arrived 06-29 (4 days late); A's of 06-28 is not here
    # yet. A has an installment due 06-20 that shows unpaid while the feed lags -> flagged.
    tabs = tables(
        users=[
            {"user_id": "u_a", "event_time": "2025-01-01"},
            {"user_id": "u_h", "event_time": "2025-01-01"},
            {"user_id": "u_k", "event_time": "2025-01-01"},
        ],
        loans=[
            {
                "loan_id": "LA",
                "user_id": "u_a",
                "amount_cny": 900.0,
                "installment_cny": 310.0,
                "event_time": "2025-05-20",
            },
            {
                "loan_id": "LH",
                "user_id": "u_h",
                "amount_cny": 900.0,
                "installment_cny": 310.0,
                "event_time": "2025-05-25",
            },
            {
                "loan_id": "LK",
                "user_id": "u_k",
                "amount_cny": 900.0,
                "installment_cny": 310.0,
                "event_time": "2025-05-26",
            },
        ],
        installments=[
            _pay("LH", "u_h", 1, "2025-06-25 10:00", 310.0, available_time="2025-06-29 10:00"),
            _pay("LK", "u_k", 1, "2025-06-26 10:00", 310.0, available_time="2025-06-26 11:00"),
            _pay("LA", "u_a", 1, "2025-06-28 10:00", 310.0, available_time="2025-07-03 10:00"),
        ],
    )
    out = build_features(tabs, T).set_index("user_id")
    # book: of the 2 payments arriving in the last 7 days, 1 lagged > 2 days
    check(
        out.loc["u_a"],
        {
            "fresh_payments_lag_share_7d": 0.5,
            "fresh_sync_lag_flag": 1,
            "fresh_user_payment_lag_max_days_30d": math.nan,
        },
    )
    # installments watermark: 06-29 10:00 -> T = 1.5833 days
    assert out.loc["u_a", "fresh_installments_age_days"] == pytest.approx(38 / 24)
    check(out.loc["u_h"], {"fresh_user_payment_lag_max_days_30d": 4.0, "fresh_sync_lag_flag": 1})
    check(out.loc["u_k"], {"fresh_user_payment_lag_max_days_30d": 1 / 24, "fresh_sync_lag_flag": 0})
    # no bureau rows at all: source age NaN, which is not "stale" by itself; app events none either
    assert math.isnan(out.loc["u_a", "fresh_bureau_accounts_age_days"])


def test_due_dates_follow_calendar_months():
    # Drawn 2025-01-31 15:00: dues 2025-02-28, 03-31, 04-30 (DateOffset(months=k), month-end clamp);
    # paid 2025-03-01 -> 1 day late; T = 2025-05-01 -> s2 31 days, s3 1 day outstanding.
    tabs = tables(
        users=[{"user_id": "u_a", "event_time": "2025-01-01"}],
        loans=[
            {
                "loan_id": "L",
                "user_id": "u_a",
                "amount_cny": 900.0,
                "installment_cny": 310.0,
                "event_time": "2025-01-31 15:00",
            }
        ],
        installments=[_pay("L", "u_a", 1, "2025-03-01 08:00", 310.0)],
    )
    dues = [pd.Timestamp("2025-01-31") + pd.DateOffset(months=k) for k in (1, 2, 3)]
    assert dues == [
        pd.Timestamp("2025-02-28"),
        pd.Timestamp("2025-03-31"),
        pd.Timestamp("2025-04-30"),
    ]
    out = build_features(tabs, pd.Timestamp("2025-05-01")).iloc[0]
    check(out, {"inst_dpd_max_3m": 31, "inst_late_cnt_3m": 3, "inst_dpd_mean_3m": (1 + 31 + 1) / 3})


def test_freshness_flags_a_small_incident():
    # 60 users paid on time this week; the payment of 1 more arrived 8 days late (share 1/61, about
    # 1.6 %: an incident that hits a few users). u_z has an installment due 06-20 that shows
    # unpaid: it may be one of the stuck payments, so the user is flagged.
    n = 60
    users = [{"user_id": f"u_{i:02d}", "event_time": "2025-01-01"} for i in range(n)]
    users += [
        {"user_id": "u_l", "event_time": "2025-01-01"},
        {"user_id": "u_z", "event_time": "2025-01-01"},
    ]
    loans = [
        {
            "loan_id": f"L{i:02d}",
            "user_id": f"u_{i:02d}",
            "amount_cny": 900.0,
            "installment_cny": 310.0,
            "event_time": "2025-05-27",
        }
        for i in range(n)
    ]
    loans += [
        {
            "loan_id": "LL",
            "user_id": "u_l",
            "amount_cny": 900.0,
            "installment_cny": 310.0,
            "event_time": "2025-05-20",
        },
        {
            "loan_id": "LZ",
            "user_id": "u_z",
            "amount_cny": 900.0,
            "installment_cny": 310.0,
            "event_time": "2025-05-20",
        },
    ]
    pays = [
        _pay(
            f"L{i:02d}",
            f"u_{i:02d}",
            1,
            "2025-06-30 10:00",
            310.0,
            available_time="2025-06-30 10:30",
        )
        for i in range(n)
    ]
    pays.append(_pay("LL", "u_l", 1, "2025-06-20 09:00", 310.0, available_time="2025-06-28 09:00"))
    out = build_features(tables(users=users, loans=loans, installments=pays), T).set_index(
        "user_id"
    )
    assert out.loc["u_z", "fresh_payments_lag_share_7d"] == pytest.approx(1 / 61)
    assert out.loc["u_z", "fresh_sync_lag_flag"] == 1
    # on-time payers with nothing unpaid are not held back by the incident
    assert out.loc["u_00", "fresh_sync_lag_flag"] == 0


def test_freshness_flags_a_user_whose_payment_arrived_late_this_month():
    # u_m paid on 05-28 (34 days before T); it arrived 06-07, 10 days late. Nothing of u_m's is
    # due or visible unpaid now, but a payment of u_m's made on 06-29 may be stuck the same way:
    # the lag counts because the payment arrived within the 30 days. u_n's late payment arrived
    # 40 days ago: too long ago to say anything about now. u_o's on-time payment keeps the feed
    # current (no book-level lag), so u_n's unpaid June installment is not held back either.
    users = [{"user_id": u, "event_time": "2025-01-01"} for u in ("u_m", "u_n", "u_o")]
    loans = [
        {
            "loan_id": f"L{u}",
            "user_id": u,
            "amount_cny": 900.0,
            "installment_cny": 310.0,
            "event_time": "2025-04-20",
        }
        for u in ("u_m", "u_n", "u_o")
    ]
    pays = [
        _pay("Lu_m", "u_m", 1, "2025-05-28 10:00", 310.0, available_time="2025-06-07 10:00"),
        _pay("Lu_n", "u_n", 1, "2025-05-12 10:00", 310.0, available_time="2025-05-22 10:00"),
        _pay("Lu_o", "u_o", 1, "2025-06-30 10:00", 310.0, available_time="2025-06-30 10:30"),
    ]
    out = build_features(tables(users=users, loans=loans, installments=pays), T).set_index(
        "user_id"
    )
    check(out.loc["u_m"], {"fresh_user_payment_lag_max_days_30d": 10.0, "fresh_sync_lag_flag": 1})
    check(
        out.loc["u_n"], {"fresh_user_payment_lag_max_days_30d": math.nan, "fresh_sync_lag_flag": 0}
    )
