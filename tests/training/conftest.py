"""Shared fixtures: hand-made feature tables (the columns `features.metadata` declares) with a planted signal,
and one real MLflow sqlite store for the whole session (creating the schema takes ~6 s)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from features.tables import write_json, write_parquet
from serving.config import GatesConfig, ModelConfig

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

# name -> monotone direction (+1 higher = riskier, -1 higher = safer, 0 free)
CREDIT_FEATURES = {
    "inst_dpd_max_6m": 1,
    "util_ratio": 1,
    "bureau_inquiries_cnt_3m": 1,
    "income_band": -1,
    "tenure_months": 0,
    "noise_a": 0,
    "noise_b": 0,
}
FRAUD_FEATURES = ["device_changes_cnt_30d", "sim_changes_cnt_30d", "util_ratio", "noise_a"]
TRAIN_AS_OF = ["2024-01-31", "2024-02-29", "2024-03-31"]
OOT_AS_OF = "2024-06-30"


def true_logit(df: pd.DataFrame) -> np.ndarray:
    """The planted risk: thresholds, an interaction and a U-shape, so trees beat a logistic regression.

    Monotone in the declared directions: every term is non-decreasing in inst_dpd, util and
    inquiries and non-increasing in income_band. tenure_months enters as a U (free direction).
    """
    dpd, util, inq = df["inst_dpd_max_6m"], df["util_ratio"], df["bureau_inquiries_cnt_3m"]
    return (
        -3.4
        + 1.6 * (dpd > 15)
        + 2.0 * ((util > 0.75) & (inq >= 3))
        - 0.5 * (df["income_band"] >= 4)
        + 1.3 * ((df["tenure_months"] < 6) | (df["tenure_months"] > 54))
    ).to_numpy(dtype=float)


def make_snapshot(as_of: str, users: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"u{i:05d}" for i in range(users)]
    df = pd.DataFrame(
        {
            "user_id": ids,
            "as_of": pd.Timestamp(as_of),
            "inst_dpd_max_6m": np.round(rng.exponential(8, users)),
            "util_ratio": rng.beta(2, 2, users),
            "bureau_inquiries_cnt_3m": rng.poisson(2.0, users).astype(float),
            "income_band": rng.integers(1, 6, users).astype(float),
            "tenure_months": rng.uniform(0, 60, users),
            "noise_a": rng.normal(size=users),
            "noise_b": rng.normal(size=users),
            "device_changes_cnt_30d": rng.poisson(0.3, users).astype(float),
            "sim_changes_cnt_30d": rng.poisson(0.1, users).astype(float),
        }
    )
    # some missing history, as in real tables
    df.loc[rng.random(users) < 0.05, "inst_dpd_max_6m"] = np.nan
    p = 1 / (1 + np.exp(-true_logit(df.fillna({"inst_dpd_max_6m": 0}))))
    fraud_logit = -5.0 + 1.2 * df["device_changes_cnt_30d"] + 1.5 * df["sim_changes_cnt_30d"]
    pf = 1 / (1 + np.exp(-fraud_logit.to_numpy()))
    return df.assign(
        ctx_line_cny=rng.uniform(1000, 20000, users),
        fresh_stale=0.0,
        label_default_12m=(rng.random(users) < p).astype(float),
        label_default_12m_matured=True,
        label_fraud_90d=(rng.random(users) < pf).astype(float),
        label_fraud_90d_matured=True,
    )


def write_snapshot(features_dir, df: pd.DataFrame, as_of: str) -> None:
    folder = features_dir / f"as_of={as_of}"
    write_parquet(df, folder / "features.parquet")
    write_json(
        {"as_of": as_of, "rows": len(df), "metadata_version": "test-meta"}, folder / "manifest.json"
    )


@pytest.fixture(scope="session")
def feature_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("features")
    for i, as_of in enumerate([*TRAIN_AS_OF, OOT_AS_OF]):
        write_snapshot(d, make_snapshot(as_of, 2500, seed=100 + i), as_of)
    return d


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory):
    from training.tracking import open_client, tracking_uri

    uri = tracking_uri(tmp_path_factory.mktemp("mlruns"))
    open_client(uri)  # create the schema once for the session
    return uri


@pytest.fixture(scope="session")
def settings():
    # small_table_rows=5000: the feature-table runs (7500 rows) take the hold-out path, the
    # tabular tests (3200 rows, config defaults) the cross-validated one
    return ModelConfig(
        max_rounds=300, early_stopping_rounds=30, shap_sample_rows=300, small_table_rows=5000
    ).model_dump()


@pytest.fixture(scope="session")
def gates():
    return GatesConfig().model_dump()


@pytest.fixture(scope="session")
def credit_run(feature_dir, tracking_uri, settings, gates):
    from training.train import train_on_feature_tables

    return train_on_feature_tables(
        "credit",
        feature_dir,
        TRAIN_AS_OF,
        OOT_AS_OF,
        tracking_uri=tracking_uri,
        settings=settings,
        gates=gates,
        features=list(CREDIT_FEATURES),
        monotone=list(CREDIT_FEATURES.values()),
        metadata_version="test-meta",
        num_threads=1,  # the CI box is shared; one thread avoids OpenMP spinning under contention
    )
