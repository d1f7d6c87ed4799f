"""Small real frames and a small real LightGBM model for the monitoring tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FEATURES = [
    "inst_dpd_max_6m",
    "bureau_inquiries_cnt_1m",
    "util_ratio_now",
    "device_changes_cnt_30d",
]


def make_table(
    n: int, as_of: str, seed: int, shift: float = 0.0, concept: float = 0.0
) -> pd.DataFrame:
    """A feature table with the contract's layout. `shift` moves the inquiry distribution
    (covariate drift); `concept` makes utilisation riskier than the features say (concept drift).
    Labels: default ~ logistic(risk); all matured."""
    rng = np.random.default_rng(seed)
    dpd = rng.choice([0.0, 0.0, 0.0, 5.0, 30.0], n)
    inq = rng.poisson(1.0 + shift * 3, n).astype(float)
    util = rng.uniform(0, 1, n)
    dev = rng.poisson(0.2, n).astype(float)
    logit = -3.0 + 0.05 * dpd + 0.4 * inq + (1.5 + concept) * util
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(float)
    return pd.DataFrame(
        {
            "user_id": [f"u{i:06d}" for i in range(n)],
            "as_of": pd.Timestamp(as_of),
            "inst_dpd_max_6m": dpd,
            "bureau_inquiries_cnt_1m": inq,
            "util_ratio_now": util,
            "device_changes_cnt_30d": dev,
            "ctx_repaid_in_full_30d": (rng.uniform(size=n) < 0.3).astype(float),
            "ctx_income_band": rng.integers(1, 6, n).astype(float),
            "label_default_12m": y,
            "label_default_12m_matured": True,
            "label_fraud_90d": (rng.uniform(size=n) < 0.01).astype(float),
            "label_fraud_90d_matured": True,
        }
    )


@dataclass(frozen=True)
class TinyModel:
    """Same surface as training.registry.LoadedModel: name, version, features, booster,
    calib_a, calib_b, margin(X), predict_proba(X)."""

    name: str
    version: int
    features: list
    booster: object
    calib_a: float = 1.0
    calib_b: float = 0.0

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        return (
            self.calib_a
            * self.booster.predict(X[self.features].to_numpy(np.float64), raw_score=True)
            + self.calib_b
        )

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return 1 / (1 + np.exp(-self.margin(X)))


def train_tiny(table: pd.DataFrame, version: int = 1, seed: int = 0) -> TinyModel:
    import lightgbm as lgb

    params = {
        "objective": "binary",
        "num_leaves": 7,
        "learning_rate": 0.1,
        "verbose": -1,
        "seed": seed,
        "num_threads": 1,
        "deterministic": True,
        "min_data_in_leaf": 20,
    }
    booster = lgb.train(
        params, lgb.Dataset(table[FEATURES], table["label_default_12m"]), num_boost_round=40
    )
    return TinyModel("credit-pd", version, list(FEATURES), booster)


def decisions_for(table: pd.DataFrame, model: TinyModel, cutoff: float = 0.15) -> pd.DataFrame:
    p = model.predict_proba(table)
    return pd.DataFrame(
        {
            "user_id": table["user_id"],
            "as_of": table["as_of"],
            "pd": p,
            "fraud_p": np.zeros(len(p)),
            "action": np.where(p >= cutoff, "lower", "keep"),
            "rules_fired": "",
        }
    )
