"""Metrics on hand-sized samples (expected numbers worked out in comments) and invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training import metrics as evaluation


def test_auc_counts_ordered_pairs():
    # bads score 0.35 and 0.8, goods 0.1 and 0.4: pairs (0.35>0.1 yes, 0.35>0.4 no, 0.8>both yes) = 3/4
    assert evaluation.auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert evaluation.gini([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.5)
    # a tie between a bad and a good counts one half: (1 + 0.5) / 2
    assert evaluation.auc([0, 1, 0, 1], [0.2, 0.2, 0.1, 0.9]) == pytest.approx(0.875)


def test_ks_is_largest_cdf_gap():
    # sorted by score: g(0.1) g(0.2) b(0.3) g(0.4) b(0.5) b(0.6); after 0.2: goods 2/3, bads 0 -> gap 2/3
    y = [0, 0, 1, 0, 1, 1]
    p = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert evaluation.ks(y, p) == pytest.approx(2 / 3)


def test_brier_and_average_precision():
    assert evaluation.brier([1, 0], [0.8, 0.4]) == pytest.approx((0.04 + 0.16) / 2)
    # ranked: b(0.9) g(0.8) b(0.7): precision at the bads 1 and 2/3 -> AP = (1 + 2/3) / 2
    assert evaluation.average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(5 / 6)


def test_calibration_table_and_error():
    # two bins of two rows: low bin mean PD 0.15, observed 0; high bin mean PD 0.75, observed 1
    t = evaluation.calibration_table([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.8], bins=2)
    assert t["rows"].tolist() == [2, 2]
    assert t["mean_pred"].tolist() == pytest.approx([0.15, 0.75])
    assert t["observed_rate"].tolist() == [0.0, 1.0]
    assert evaluation.calibration_error(
        [0, 0, 1, 1], [0.1, 0.2, 0.7, 0.8], bins=2
    ) == pytest.approx((0.15 + 0.25) / 2)


def test_lift_table_top_decile_first():
    y = np.r_[np.ones(10), np.zeros(90)]
    p = np.r_[np.linspace(0.9, 0.99, 10), np.linspace(0.01, 0.5, 90)]
    t = evaluation.lift_table(y, p)
    assert t.loc[0, "decile"] == 1 and t.loc[0, "bad_rate"] == 1.0
    assert t.loc[0, "lift"] == pytest.approx(10.0)
    assert t["cum_bad_capture"].iloc[-1] == pytest.approx(1.0)


def test_platt_fit_recovers_slope_and_intercept():
    rng = np.random.default_rng(0)
    x = rng.normal(size=20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-(0.7 * x - 2.0)))).astype(float)
    a, b = evaluation.fit_logistic_1d(x, y)
    assert a == pytest.approx(0.7, abs=0.07) and b == pytest.approx(-2.0, abs=0.1)


def test_psi_detects_shift():
    rng = np.random.default_rng(1)
    base = rng.normal(size=5000)
    assert evaluation.psi(base, rng.normal(size=5000)) < 0.02
    assert evaluation.psi(base, rng.normal(loc=1.0, size=5000)) > 0.25


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=200))
def test_psi_zero_for_identical_samples(xs):
    assert evaluation.psi(xs, xs) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.floats(0, 1, allow_nan=False)), min_size=4, max_size=100),
    st.randoms(),
)
def test_auc_ignores_row_order(rows, rnd):
    y = [float(a) for a, _ in rows]
    p = [b for _, b in rows]
    if len(set(y)) < 2:
        return
    shuffled = list(zip(y, p, strict=True))
    rnd.shuffle(shuffled)
    ys, ps = zip(*shuffled, strict=True)
    assert evaluation.auc(ys, ps) == pytest.approx(evaluation.auc(y, p), abs=1e-12)
    # AUC plus AUC of the reversed score is 1 (ties count one half both ways)
    assert evaluation.auc(y, p) + evaluation.auc(y, [-v for v in p]) == pytest.approx(1.0)
