"""A small, real world for explanation tests: feature snapshots, two trained LightGBM models, decisions.

Values are synthetic but every column is a real feature name from features.metadata, the models
are real LightGBM boosters, and decisions come from the real `serving.scoring.policy.decide_lines`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.metadata import FEATURES, model_features
from serving.scoring.policy import decide_lines, previous_bands, previous_model_versions

AS_OF_OLD = pd.Timestamp("2026-05-31")
AS_OF_NEW = pd.Timestamp("2026-06-30")


@dataclass(frozen=True)
class Model:
    """What scoring and explaining read from training.registry's LoadedModel."""

    name: str
    version: int
    features: list[str]
    booster: lgb.Booster
    calib_a: float = 1.0
    calib_b: float = 0.0


def _column(rng: np.random.Generator, name: str, n: int) -> np.ndarray:
    unit = FEATURES[name].unit if name in FEATURES else ""
    if unit == "CNY":
        return np.round(rng.lognormal(7.5, 1.0, n), 2)
    if unit == "ratio":
        return np.round(rng.uniform(0, 1, n), 3)
    if unit in ("count", "bucket"):
        return rng.poisson(0.15, n).astype(float)
    if unit == "days":
        return np.where(rng.random(n) < 0.85, 0.0, rng.integers(1, 40, n).astype(float))
    if unit == "months":
        return rng.integers(0, 40, n).astype(float)
    return rng.integers(0, 2, n).astype(float)


RISK = {  # latent log-odds weights (bureau and own behaviour)
    "bureau_overdue_accounts_cnt": 1.2,
    "bureau_dpd_bucket_max_3m": 0.6,
    "bureau_inquiries_cnt_3m": 0.35,
    "inst_dpd_max_3m": 0.05,
    "inst_late_cnt_3m": 0.6,
    "util_ratio_now": 1.0,
}
FRAUD = {
    "app_device_changes_cnt_30d": 1.6,
    "app_sim_changes_cnt_30d": 1.6,
    "graph_device_shared_users_cnt": 0.8,
}


def base_snapshot(n: int, seed: int, as_of: pd.Timestamp = AS_OF_OLD) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols = {c: _column(rng, c, n) for c in FEATURES if FEATURES[c].model_input}
    # sparse NaN: no history from a source
    for c in ("bureau_months_since_delinquency", "loan_days_since_payoff"):
        cols[c][rng.random(n) < 0.3] = np.nan
    df = pd.DataFrame({"user_id": [f"u_{i:06d}" for i in range(n)], "as_of": as_of, **cols})
    return df.assign(
        ctx_line_cny=10_000.0,
        ctx_repaid_in_full_30d=rng.integers(0, 2, n).astype(float),
        ctx_active_lenders_cnt=rng.integers(0, 4, n).astype(float),
        ctx_dti_ratio=np.round(rng.uniform(0.05, 0.4, n), 3),
        ctx_kyc_expiry_days=rng.integers(200, 2000, n).astype(float),
        fresh_stale=0.0,
        fresh_sync_lag_flag=0.0,
        fresh_bureau_accounts_age_days=5.0,
        fresh_installments_age_days=0.1,
    )


@lru_cache(maxsize=2)  # one training per test session
def train_models(n: int = 2000, seed: int = 0) -> dict[str, Model]:
    x = base_snapshot(n, seed + 100)
    rng = np.random.default_rng(seed)
    for c in [*RISK, *FRAUD]:  # enough high values for the trees to learn the signal's range
        hot = rng.random(n) < 0.1
        if c == "util_ratio_now":
            continue
        x.loc[hot, c] = rng.integers(0, 6, int(hot.sum())) * (
            10.0 if c == "inst_dpd_max_3m" else 1.0
        )
    z = -4.0 + sum(w * x[c].to_numpy() for c, w in RISK.items())
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    zf = -5.0 + sum(w * x[c].to_numpy() for c, w in FRAUD.items())
    yf = (rng.random(n) < 1 / (1 + np.exp(-zf))).astype(int)
    params = dict(
        objective="binary",
        num_leaves=15,
        learning_rate=0.1,
        min_data_in_leaf=20,
        verbose=-1,
        num_threads=2,
        seed=seed,
        deterministic=True,
    )
    cf, ff = model_features("credit"), model_features("fraud")
    credit = lgb.train(params, lgb.Dataset(x[cf].to_numpy(), y, feature_name=cf), 40)
    fraud = lgb.train(params, lgb.Dataset(x[ff].to_numpy(), yf, feature_name=ff), 30)
    return {"credit": Model("credit-pd", 1, cf, credit), "fraud": Model("fraud", 1, ff, fraud)}


def margin(model: Model, x: pd.DataFrame) -> np.ndarray:
    return (
        model.calib_a * model.booster.predict(x[model.features].to_numpy(), raw_score=True)
        + model.calib_b
    )


def decide(
    x: pd.DataFrame, credit: Model, fraud: Model, policy, as_of, prev_line, prev_decisions=None
) -> pd.DataFrame:
    """What batch scoring writes, for these models and this policy.

    `prev_decisions`: the previous decisions, whose bands and credit model versions are passed
    as `prev_band` and `prev_credit_model_version` (as scoring does).
    """
    cm, fm = margin(credit, x), margin(fraud, x)
    prev_band = None
    versions = {}
    if prev_decisions is not None:
        ids = x["user_id"].astype(str)
        prev_band = previous_bands(prev_decisions, policy).reindex(ids).to_numpy()
        versions = {
            "prev_credit_model_version": previous_model_versions(prev_decisions)
            .reindex(ids)
            .to_numpy(),
            "credit_model_version": float(credit.version),
        }
    scored = x.assign(
        **versions,
        prev_band=prev_band,
        prev_line_cny=prev_line,
        credit_margin=cm,
        pd=1 / (1 + np.exp(-cm)),
        fraud_p=1 / (1 + np.exp(-fm)),
    )
    out = decide_lines(scored, policy, as_of)
    return out.assign(
        as_of=as_of, credit_model_version=credit.version, fraud_model_version=fraud.version
    )


def new_version(model: Model, calib_b_shift: float) -> Model:
    """A new model version: same trees, recalibrated (an update that moves every score)."""
    return replace(model, version=model.version + 1, calib_b=model.calib_b + calib_b_shift)
