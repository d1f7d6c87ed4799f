"""Matured-label performance, CBPE estimates and misjudgement counts."""

import numpy as np
import pandas as pd
import pytest

from serving.monitoring.performance import (
    auc,
    calibration_slope,
    estimated_performance,
    expected_auc,
    ks,
    matured_performance,
    misjudgements,
)


def test_auc_and_ks_hand_sized():
    y = [0, 0, 1, 1]
    p = [0.1, 0.4, 0.35, 0.8]
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3/4
    assert auc(y, p) == pytest.approx(0.75)
    assert ks(y, p) == pytest.approx(0.5)
    assert np.isnan(auc([1, 1], [0.2, 0.3]))


def test_calibrated_scores_have_slope_one_and_no_gap():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.5, 40_000)
    y = (rng.random(p.size) < p).astype(float)
    perf = matured_performance(y, p)
    assert perf["calibration_slope"] == pytest.approx(1.0, abs=0.08)
    assert abs(perf["calibration_gap"]) < 0.01
    # CBPE on well-calibrated scores matches the realised AUC.
    assert expected_auc(p) == pytest.approx(perf["auc"], abs=0.015)


def test_concept_drift_is_invisible_to_the_estimate():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.5, 20_000)
    y = (rng.random(p.size) < 0.25).astype(float)  # outcomes no longer follow the scores
    est = estimated_performance(p)
    assert est["expected_auc"] > 0.65
    assert auc(y, p) == pytest.approx(0.5, abs=0.03)
    assert "concept drift" in est["caveat"]


def test_overconfident_scores_have_slope_below_one():
    rng = np.random.default_rng(2)
    true = rng.uniform(0.05, 0.5, 30_000)
    y = (rng.random(true.size) < true).astype(float)
    logit = np.log(true / (1 - true))
    too_sharp = 1 / (1 + np.exp(-2 * logit))
    assert calibration_slope(y, too_sharp) == pytest.approx(0.5, abs=0.05)


def test_matured_performance_refuses_nan_labels():
    with pytest.raises(ValueError, match="NaN"):
        matured_performance(np.array([0.0, np.nan]), np.array([0.1, 0.2]))


def test_misjudgements_count_wrongful_downgrades_and_cleared_fraud_flags():
    decisions = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d", "e", "f"],
            "action": ["lower", "close", "keep", "freeze", "lower", "raise"],
            "fraud_p": [0.1, 0.9, 0.8, 0.2, 0.1, 0.95],
            "seg": ["x", "x", "x", "y", "y", "y"],
        }
    )
    labels = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d", "e", "f"],
            "label_default_12m": [0.0, 1.0, 0.0, 0.0, np.nan, 0.0],
            "label_default_12m_matured": [True, True, True, True, False, True],
            "label_fraud_90d": [0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            "label_fraud_90d_matured": [True, True, True, True, True, True],
        }
    )
    out = misjudgements(decisions, labels, segments=["seg"])
    o = out["overall"]
    # matured downgrades: a (good), b (defaulted), d (good); e is not matured.
    assert o["downgraded_matured"] == 3 and o["wrongful_downgrades"] == 2
    assert o["wrongful_downgrade_rate"] == pytest.approx(2 / 3)
    # good matured users: a, c, d, f -> 2 wrongful per 4 good = 5000 per 10k
    assert o["wrongful_per_10k_good"] == pytest.approx(5000.0)
    # fraud flags (p >= 0.5): b (real fraud), c and f (cleared)
    assert o["fraud_flagged_matured"] == 3 and o["fraud_flags_cleared"] == 2
    seg = out["by_segment"]["seg"]
    assert seg["x"]["wrongful_downgrades"] == 1 and seg["y"]["wrongful_downgrades"] == 1
