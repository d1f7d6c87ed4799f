"""Scoring test helpers: a small real feature table and small real LightGBM models (trained once)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from serving.scoring.models import scoring_model
from training.registry import LoadedModel

CREDIT_FEATURES = [
    "inst_dpd_max_6m",
    "inst_late_cnt_12m",
    "bureau_overdue_accounts_cnt_3m",
    "bureau_inquiries_cnt_1m",
    "line_utilisation_ratio_3m",
]
FRAUD_FEATURES = ["device_changes_cnt_30d", "sim_changes_cnt_30d", "bureau_inquiries_cnt_1m"]
AS_OF = pd.Timestamp("2026-10-31")


def make_features(
    n: int, seed: int = 0, as_of: pd.Timestamp = AS_OF, nan_share: float = 0.1
) -> pd.DataFrame:
    """A feature table with the contract's layout: keys, features (NaN = no history), ctx_, fresh_, label_."""
    rng = np.random.default_rng(seed)
    feats = {
        "inst_dpd_max_6m": rng.choice([0.0, 0.0, 0.0, 5.0, 30.0, 95.0], n),
        "inst_late_cnt_12m": rng.poisson(0.5, n).astype(float),
        "bureau_overdue_accounts_cnt_3m": rng.poisson(0.3, n).astype(float),
        "bureau_inquiries_cnt_1m": rng.poisson(1.0, n).astype(float),
        "line_utilisation_ratio_3m": rng.uniform(0, 1, n),
        "device_changes_cnt_30d": rng.poisson(0.2, n).astype(float),
        "sim_changes_cnt_30d": rng.poisson(0.1, n).astype(float),
    }
    for name, col in feats.items():
        if name != "line_utilisation_ratio_3m":
            col[rng.uniform(size=n) < nan_share] = np.nan
    df = pd.DataFrame({"user_id": [f"u{i:06d}" for i in range(n)], "as_of": as_of})
    df = df.assign(**feats)
    return df.assign(
        ctx_line_cny=rng.choice([2000.0, 5000.0, 10000.0, 20000.0], n),
        ctx_repaid_in_full_30d=rng.integers(0, 2, n).astype(float),
        ctx_kyc_expiry_days=rng.integers(-30, 700, n).astype(float),
        ctx_active_lenders_cnt=rng.poisson(2.0, n).astype(float),
        ctx_dti_ratio=rng.uniform(0, 0.9, n),
        fresh_bureau_accounts_age_days=rng.uniform(1, 50, n),
        fresh_installments_age_days=rng.uniform(0, 3, n),
        fresh_sync_lag_flag=(rng.uniform(size=n) < 0.05).astype(float),
        fresh_stale=(rng.uniform(size=n) < 0.05).astype(float),
        # the model-update hold's evidence columns (drawn last: the columns above keep their values)
        inst_dpd_max_1m=rng.choice([0.0, 0.0, 0.0, 0.0, 3.0, 20.0], n),
        inst_overdue_cnt_now=rng.poisson(0.1, n).astype(float),
        bureau_delinquent_accounts_cnt_3m=rng.poisson(0.1, n).astype(float),
        bureau_lenders_opened_cnt_1m=rng.poisson(0.2, n).astype(float),
        app_sim_changes_cnt_30d=rng.poisson(0.05, n).astype(float),
        label_default_12m=np.nan,
        label_default_12m_matured=False,
    )


def _train(features: list[str], seed: int, trees: int):
    import lightgbm as lgb

    X = make_features(3000, seed=100 + seed)[features]
    rng = np.random.default_rng(seed)
    risk = np.nan_to_num(X.to_numpy(), nan=0.0).sum(axis=1)
    y = (rng.uniform(size=len(X)) < 1 / (1 + np.exp(-(risk - risk.mean()) * 0.8 + 2.5))).astype(int)
    params = {
        "objective": "binary",
        "num_leaves": 7,
        "learning_rate": 0.1,
        "verbose": -1,
        "seed": seed,
        "num_threads": 1,
        "deterministic": True,
    }
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=trees)


@lru_cache(maxsize=1)
def trained_boosters() -> dict:
    """Credit (25 trees) and fraud (15 trees) boosters, trained once per test session."""
    return {"credit": _train(CREDIT_FEATURES, 1, 25), "fraud": _train(FRAUD_FEATURES, 2, 15)}


def scoring_models(boosters: dict) -> dict[str, LoadedModel]:
    return {
        "credit": scoring_model(
            "credit-pd", 3, CREDIT_FEATURES, boosters["credit"], calib_a=0.9, calib_b=-0.1
        ),
        "fraud": scoring_model("fraud", 1, FRAUD_FEATURES, boosters["fraud"]),
    }
