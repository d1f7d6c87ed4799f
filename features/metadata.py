"""Feature metadata: the one place models and explanations read what each column means.

Every column the builder emits (except the keys `user_id`, `as_of` and the `label_` columns) has
a `FeatureMeta`; every feature maps to a human reason group (`REASONS`) with text in Chinese and
English and a cause category.

>>> FEATURES["bureau_inquiries_cnt_3m"].reason
'bureau_inquiries'
>>> REASONS["bureau_inquiries"].text_en
'many recent credit inquiries'
>>> monotone_constraints(["inst_dpd_max_3m", "inst_paid_due_ratio_3m", "app_logins_cnt_7d"])
[1, -1, 0]
>>> "ctx_line_cny" in model_features("credit")
False
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

Family = Literal["repayment", "bureau", "behaviour", "freshness", "context"]
Cause = Literal["risk_bureau", "risk_behaviour", "fraud", "system_data"]


@dataclass(frozen=True)
class ReasonGroup:
    code: str
    cause: Cause
    text_zh: str
    text_en: str


@dataclass(frozen=True)
class FeatureMeta:
    name: str
    family: Family
    description: str
    unit: str
    monotone: int  # +1 higher is riskier, -1 higher is safer, 0 no constraint
    actionable: bool  # can the user change it (by paying, borrowing less, or waiting)?
    reason: str
    model_input: bool = True


def _reasons() -> dict[str, ReasonGroup]:
    rows = [
        (
            "bureau_overdue",
            "risk_bureau",
            "其他机构出现新的逾期",
            "new overdue accounts at other lenders",
        ),
        (
            "bureau_delinquency_history",
            "risk_bureau",
            "其他机构有逾期记录",
            "past late payments at other lenders",
        ),
        ("bureau_inquiries", "risk_bureau", "近期征信查询次数多", "many recent credit inquiries"),
        ("bureau_multi_lender", "risk_bureau", "多头借贷", "borrowing from many lenders"),
        ("bureau_debt_up", "risk_bureau", "其他机构负债上升", "debt elsewhere rose"),
        (
            "bureau_debt_level",
            "risk_bureau",
            "其他机构负债占额度比例高",
            "high debt against limits elsewhere",
        ),
        ("repay_late", "risk_behaviour", "本产品还款逾期", "late payments on this line"),
        ("repay_shortfall", "risk_behaviour", "本产品还款不足额", "partial payments on this line"),
        ("repay_pattern", "risk_behaviour", "还款模式变化", "payment pattern changed"),
        ("utilisation_high", "risk_behaviour", "额度使用率高", "high utilisation"),
        ("draw_pattern", "risk_behaviour", "近期借款频繁", "frequent recent draws"),
        (
            "account_profile",
            "risk_behaviour",
            "账户基本情况（账龄、额度）",
            "account profile (time on book, line)",
        ),
        ("app_activity", "risk_behaviour", "App 使用习惯变化", "app usage changed"),
        ("fraud_device_change", "fraud", "设备或手机卡变更", "device or SIM change"),
        (
            "fraud_account_security",
            "fraud",
            "账户安全事件（重置密码、异地登录）",
            "account security events (password reset, location jump)",
        ),
        (
            "fraud_shared_device",
            "fraud",
            "与其他账户共用设备或网络",
            "shared device or network with other accounts",
        ),
        ("fraud_bust_out", "fraud", "还清后立即大额借款", "large draw right after paying off"),
        ("data_not_current", "system_data", "数据未同步", "data not current"),
        (
            "kyc_outdated",
            "system_data",
            "身份证件即将过期或已过期",
            "identity document expiring or expired",
        ),
    ]
    return {code: ReasonGroup(code, cause, zh, en) for code, cause, zh, en in rows}


REASONS: dict[str, ReasonGroup] = _reasons()


def _features() -> dict[str, FeatureMeta]:
    out: dict[str, FeatureMeta] = {}

    def add(name, family, description, unit, monotone, actionable, reason, model_input=True):
        out[name] = FeatureMeta(
            name, family, description, unit, monotone, actionable, reason, model_input
        )

    # repayment (own book)
    for w in (1, 3, 6, 12, 24):
        add(
            f"inst_dpd_max_{w}m",
            "repayment",
            f"worst days past due among installments due in the last {w} months",
            "days",
            1,
            True,
            "repay_late",
        )
        add(
            f"inst_dpd_mean_{w}m",
            "repayment",
            f"mean days past due of installments due in the last {w} months",
            "days",
            1,
            True,
            "repay_late",
        )
        add(
            f"inst_late_cnt_{w}m",
            "repayment",
            f"installments due in the last {w} months paid late or still unpaid",
            "count",
            1,
            True,
            "repay_late",
        )
    add(
        "inst_late30_cnt_12m",
        "repayment",
        "installments due in the last 12 months that reached 30+ days past due",
        "count",
        1,
        True,
        "repay_late",
    )
    for w in (3, 12):
        add(
            f"inst_paid_due_ratio_{w}m",
            "repayment",
            f"amount paid / amount due, installments due in the last {w} months",
            "ratio",
            -1,
            True,
            "repay_shortfall",
        )
        add(
            f"inst_shortfall_cny_{w}m",
            "repayment",
            f"amount due but not paid, installments due in the last {w} months",
            "CNY",
            1,
            True,
            "repay_shortfall",
        )
    add(
        "inst_overdue_cnt_now",
        "repayment",
        "installments past their due date and unpaid at the as-of date",
        "count",
        1,
        True,
        "repay_late",
    )
    add(
        "inst_overdue_cny_now",
        "repayment",
        "amount of installments past due and unpaid at the as-of date",
        "CNY",
        1,
        True,
        "repay_late",
    )
    add(
        "inst_dpd_now",
        "repayment",
        "days past due of the oldest unpaid installment now (0 when none)",
        "days",
        1,
        True,
        "repay_late",
    )
    add(
        "inst_ontime_streak_cnt",
        "repayment",
        "installments due since the most recent late one (all paid on time)",
        "count",
        -1,
        True,
        "repay_pattern",
    )
    add(
        "acct_months_on_book",
        "repayment",
        "months since signup",
        "months",
        -1,
        False,
        "account_profile",
    )
    add(
        "util_ratio_now",
        "repayment",
        "unpaid scheduled amount / current line",
        "ratio",
        1,
        True,
        "utilisation_high",
    )
    add(
        "util_ratio_change_3m",
        "repayment",
        "utilisation now minus utilisation 3 months ago",
        "ratio",
        1,
        True,
        "utilisation_high",
    )
    add(
        "util_ratio_change_6m",
        "repayment",
        "utilisation now minus utilisation 6 months ago",
        "ratio",
        1,
        True,
        "utilisation_high",
    )
    add(
        "balance_cny_now",
        "repayment",
        "unpaid scheduled amount on this line now",
        "CNY",
        0,
        True,
        "utilisation_high",
    )
    for w in (1, 3, 6, 12):
        add(
            f"loan_draws_cnt_{w}m",
            "repayment",
            f"draws on the line in the last {w} months",
            "count",
            0,
            True,
            "draw_pattern",
        )
    add(
        "loan_draw_cny_3m",
        "repayment",
        "amount drawn in the last 3 months",
        "CNY",
        0,
        True,
        "draw_pattern",
    )
    add(
        "loan_draw_cny_12m",
        "repayment",
        "amount drawn in the last 12 months",
        "CNY",
        0,
        True,
        "draw_pattern",
    )
    add(
        "loan_draws_ratio_3m_12m",
        "repayment",
        "draws in 3 months / draws in 12 months (recent acceleration)",
        "ratio",
        0,
        True,
        "draw_pattern",
    )
    add(
        "inst_late_ratio_3m_12m",
        "repayment",
        "late installments in 3 months / in 12 months (recent worsening)",
        "ratio",
        0,
        True,
        "repay_pattern",
    )
    add(
        "loan_payoff_cnt_12m",
        "repayment",
        "loans fully repaid in the last 12 months",
        "count",
        0,
        True,
        "repay_pattern",
    )
    add(
        "loan_payoff_early_cnt_12m",
        "repayment",
        "loans fully repaid before their last due date, last 12 months",
        "count",
        0,
        True,
        "repay_pattern",
    )
    add(
        "loan_days_since_payoff",
        "repayment",
        "days since a loan was last fully repaid",
        "days",
        0,
        True,
        "repay_pattern",
    )

    # bureau
    add(
        "bureau_active_accounts_cnt",
        "bureau",
        "open accounts at other lenders",
        "count",
        1,
        True,
        "bureau_multi_lender",
    )
    add(
        "bureau_active_lenders_cnt",
        "bureau",
        "distinct other lenders with an open account (多头)",
        "count",
        1,
        True,
        "bureau_multi_lender",
    )
    for w in (1, 3, 6, 12):
        add(
            f"bureau_accounts_opened_cnt_{w}m",
            "bureau",
            f"accounts opened elsewhere in the last {w} months",
            "count",
            1,
            True,
            "bureau_multi_lender",
        )
        add(
            f"bureau_lenders_opened_cnt_{w}m",
            "bureau",
            f"distinct lenders with an account opened in the last {w} months",
            "count",
            1,
            True,
            "bureau_multi_lender",
        )
    add(
        "bureau_balance_cny",
        "bureau",
        "balance on open accounts elsewhere",
        "CNY",
        1,
        True,
        "bureau_debt_level",
    )
    add(
        "bureau_limit_cny",
        "bureau",
        "limits of open accounts elsewhere",
        "CNY",
        0,
        True,
        "bureau_debt_level",
    )
    add(
        "bureau_debt_limit_ratio",
        "bureau",
        "balance / limit on open accounts elsewhere",
        "ratio",
        1,
        True,
        "bureau_debt_level",
    )
    add(
        "bureau_overdue_cny",
        "bureau",
        "overdue amount at other lenders (latest reports)",
        "CNY",
        1,
        True,
        "bureau_overdue",
    )
    add(
        "bureau_overdue_accounts_cnt",
        "bureau",
        "accounts elsewhere overdue in their latest report",
        "count",
        1,
        True,
        "bureau_overdue",
    )
    for w in (3, 6, 12, 24):
        add(
            f"bureau_dpd_bucket_max_{w}m",
            "bureau",
            f"worst bureau DPD bucket (0 current .. 6 = 150+) in reports of the last {w} months",
            "bucket",
            1,
            True,
            "bureau_overdue" if w <= 3 else "bureau_delinquency_history",
        )
    for w in (3, 12):
        add(
            f"bureau_delinquent_accounts_cnt_{w}m",
            "bureau",
            f"accounts elsewhere reported past due in the last {w} months",
            "count",
            1,
            True,
            "bureau_overdue" if w <= 3 else "bureau_delinquency_history",
        )
    add(
        "bureau_months_since_delinquency",
        "bureau",
        "months since the latest past-due bureau report",
        "months",
        -1,
        True,
        "bureau_delinquency_history",
    )
    add(
        "bureau_inquiries_cnt_7d",
        "bureau",
        "credit inquiries in the last 7 days",
        "count",
        1,
        True,
        "bureau_inquiries",
    )
    for w in (1, 3, 6, 12):
        add(
            f"bureau_inquiries_cnt_{w}m",
            "bureau",
            f"credit inquiries in the last {w} months",
            "count",
            1,
            True,
            "bureau_inquiries",
        )
    add(
        "bureau_balance_change_cny_3m",
        "bureau",
        "balance elsewhere now minus 3 months ago",
        "CNY",
        1,
        True,
        "bureau_debt_up",
    )

    # behaviour and fraud
    events = {
        "logins": ("logins", 0, "app_activity"),
        "device_changes": ("device changes", 1, "fraud_device_change"),
        "sim_changes": ("SIM changes", 1, "fraud_device_change"),
        "password_resets": ("password resets", 1, "fraud_account_security"),
        "geo_jumps": ("location jumps", 1, "fraud_account_security"),
    }
    for key, (label, mono, reason) in events.items():
        for d in (1, 7, 30):
            add(
                f"app_{key}_cnt_{d}d",
                "behaviour",
                f"{label} in the last {d} days",
                "count",
                mono,
                True,
                reason,
            )
    add(
        "graph_device_shared_users_cnt",
        "behaviour",
        "distinct other users who used any of this user's devices",
        "count",
        1,
        False,
        "fraud_shared_device",
    )
    add(
        "graph_ip_shared_users_max",
        "behaviour",
        "most other users seen on one of this user's IP prefixes, last 30 days",
        "count",
        1,
        False,
        "fraud_shared_device",
    )
    add(
        "behav_draws_after_payoff_cnt_7d",
        "behaviour",
        "draws within 7 days after a payoff (payoffs in the last 90 days)",
        "count",
        1,
        True,
        "fraud_bust_out",
    )
    add(
        "behav_draw_after_payoff_cny_7d",
        "behaviour",
        "amount drawn within 7 days after a payoff (payoffs in the last 90 days)",
        "CNY",
        1,
        True,
        "fraud_bust_out",
    )

    # freshness (not model inputs)
    for src in (
        "installments",
        "loans",
        "bureau_accounts",
        "bureau_inquiries",
        "app_events",
        "line_history",
    ):
        add(
            f"fresh_{src}_age_days",
            "freshness",
            f"age of the latest available {src} row in the whole book (source watermark)",
            "days",
            0,
            False,
            "data_not_current",
            False,
        )
    add(
        "fresh_payments_lag_share_7d",
        "freshness",
        "share of payments arriving in the last 7 days that lagged > 2 days (book)",
        "ratio",
        0,
        False,
        "data_not_current",
        False,
    )
    add(
        "fresh_user_payment_lag_max_days_30d",
        "freshness",
        "longest arrival lag of this user's payments made in the last 30 days",
        "days",
        0,
        False,
        "data_not_current",
        False,
    )
    add(
        "fresh_sync_lag_flag",
        "freshness",
        "1 when this user's repayment data may not have synced yet",
        "flag",
        0,
        False,
        "data_not_current",
        False,
    )
    add(
        "fresh_stale",
        "freshness",
        "1 when some source is older than its normal cadence",
        "flag",
        0,
        False,
        "data_not_current",
        False,
    )

    # context (not model inputs)
    add(
        "ctx_line_cny",
        "context",
        "line in force at the as-of date",
        "CNY",
        0,
        False,
        "account_profile",
        False,
    )
    add(
        "ctx_line_frozen",
        "context",
        "1 when the latest line action is a freeze",
        "flag",
        0,
        False,
        "account_profile",
        False,
    )
    add(
        "ctx_repaid_in_full_30d",
        "context",
        "1 when the balance is 0 and a loan was paid off in the last 30 days",
        "flag",
        0,
        False,
        "repay_pattern",
        False,
    )
    add(
        "ctx_active_lenders_cnt",
        "context",
        "distinct other lenders with an open account (for the lender-count rule)",
        "count",
        0,
        False,
        "bureau_multi_lender",
        False,
    )
    add(
        "ctx_dti_ratio",
        "context",
        "total debt (own + bureau) / yearly income estimated from the income band",
        "ratio",
        0,
        False,
        "bureau_debt_level",
        False,
    )
    add(
        "ctx_kyc_expiry_days",
        "context",
        "days until the identity document expires (negative: expired)",
        "days",
        0,
        False,
        "kyc_outdated",
        False,
    )
    add("ctx_income_band", "context", "income band 1-5", "band", 0, False, "account_profile", False)
    add("ctx_age_band", "context", "age band 1-5", "band", 0, False, "account_profile", False)
    add("ctx_city_tier", "context", "city tier 1-4", "band", 0, False, "account_profile", False)
    return out


FEATURES: dict[str, FeatureMeta] = _features()

# The fraud model reads behaviour plus these velocity / newness signals.
FRAUD_EXTRA = (
    "acct_months_on_book",
    "loan_draws_cnt_1m",
    "loan_draws_cnt_3m",
    "loan_draw_cny_3m",
    "util_ratio_now",
    "inst_dpd_now",
    "bureau_inquiries_cnt_7d",
    "bureau_inquiries_cnt_1m",
    "bureau_accounts_opened_cnt_1m",
    "bureau_accounts_opened_cnt_3m",
    "bureau_lenders_opened_cnt_1m",
    "bureau_lenders_opened_cnt_3m",
)

METADATA_VERSION: str = hashlib.sha256(
    json.dumps(
        {
            "features": [asdict(f) for f in FEATURES.values()],
            "reasons": [asdict(r) for r in REASONS.values()],
        },
        sort_keys=True,
        ensure_ascii=False,
    ).encode()
).hexdigest()[:12]


def model_features(model: Literal["credit", "fraud"]) -> list[str]:
    """Model-input feature names for a model, in table order."""
    if model == "credit":
        return [n for n, f in FEATURES.items() if f.model_input]
    if model == "fraud":
        return [
            n
            for n, f in FEATURES.items()
            if f.model_input and (f.family == "behaviour" or n in FRAUD_EXTRA)
        ]
    raise ValueError(f"unknown model {model!r}: expected 'credit' or 'fraud'")


def monotone_constraints(names: list[str]) -> list[int]:
    """LightGBM `monotone_constraints` for the given feature names (in order)."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise KeyError(
            f"no metadata for feature(s) {', '.join(unknown)}; add them to features/metadata.py"
        )
    return [FEATURES[n].monotone for n in names]
