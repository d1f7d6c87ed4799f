"""PSI properties and per-feature drift with real evidently."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from serving.monitoring.drift import feature_drift, write_drift_report_html
from training.metrics import bin_shares, psi, quantile_edges

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
maybe_nan = st.one_of(finite, st.just(float("nan")))


@settings(max_examples=25, deadline=None)
@given(arrays("float64", st.integers(1, 200), elements=maybe_nan), st.integers(2, 20))
def test_psi_is_exactly_zero_for_identical_samples(x, bins):
    assert psi(x, x.copy(), bins) == 0.0


@settings(max_examples=25, deadline=None)
@given(
    arrays("float64", st.integers(1, 100), elements=maybe_nan),
    arrays("float64", st.integers(1, 100), elements=maybe_nan),
)
def test_psi_is_non_negative_and_order_free(a, b):
    value = psi(a, b)
    assert value >= 0.0
    rng = np.random.default_rng(0)
    assert psi(rng.permutation(a), rng.permutation(b)) == pytest.approx(value, abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(arrays("float64", st.integers(1, 200), elements=maybe_nan), st.integers(2, 20))
def test_bin_shares_sum_to_one(x, bins):
    assert bin_shares(x, quantile_edges(x, bins)).sum() == pytest.approx(1.0)


def test_psi_hand_computed():
    # Reference 50/50 on {0, 1}; current 10/90. Bins: {0} and {1} (edge 0.5 and 1 from the
    # quantiles; the middle bin is empty on both sides and contributes 0).
    # PSI = (0.1-0.5) ln(0.1/0.5) + (0.9-0.5) ln(0.9/0.5) = 0.6438 + 0.2351 = 0.8789
    assert psi([0.0] * 50 + [1.0] * 50, [0.0] * 10 + [1.0] * 90) == pytest.approx(0.8789, abs=1e-4)


def test_psi_counts_missing_as_its_own_bin():
    ref = np.r_[np.arange(100.0), np.full(0, np.nan)]
    cur = np.r_[np.arange(50.0) * 2, np.full(50, np.nan)]  # same range, half missing now
    assert psi(ref, cur) > 0.25


def test_psi_rejects_empty_sample():
    with pytest.raises(ValueError, match="non-empty"):
        psi([], [1.0])


def _frames(n=3000, seed=1):
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(
        {
            "shifted": rng.normal(0, 1, n),
            "stable": rng.normal(5, 2, n),
            "rate": rng.random(n),
            "const": np.zeros(n),
            "gone": rng.normal(size=n),
        }
    )
    rng2 = np.random.default_rng(seed + 1)
    cur = pd.DataFrame(
        {
            "shifted": rng2.normal(0.8, 1, n),
            "stable": rng2.normal(5, 2, n),
            "rate": rng2.random(n),
            "const": np.zeros(n),
            "gone": np.full(n, np.nan),
        }
    )
    return ref, cur


def test_feature_drift_flags_the_shifted_column_only():
    ref, cur = _frames()
    out = feature_drift(ref, cur, list(ref.columns)).set_index("feature")
    assert out.loc["shifted", "drifted"]
    assert out.loc["shifted", "score"] > 0.5  # mean moved 0.8 sd: normed Wasserstein ~0.8
    assert out.loc["shifted", "psi"] > 0.25
    for col in ("stable", "rate", "const"):
        assert not out.loc[col, "drifted"], col
        assert out.loc[col, "psi"] < 0.1, col
    assert out.loc["gone", "drifted"] and out.loc["gone", "note"] == "empty in current"
    assert out.loc["gone", "cur_missing_share"] == 1.0


def test_feature_drift_is_deterministic_with_sampling():
    ref, cur = _frames()
    a = feature_drift(ref, cur, ["shifted", "stable"], sample_rows=500, seed=3)
    b = feature_drift(ref, cur, ["shifted", "stable"], sample_rows=500, seed=3)
    pd.testing.assert_frame_equal(a, b)


def test_feature_drift_names_missing_columns():
    ref, cur = _frames()
    with pytest.raises(ValueError, match="current table lacks"):
        feature_drift(ref, cur.drop(columns=["stable"]), ["stable"])


def test_drift_report_html_is_written(tmp_path):
    ref, cur = _frames(n=400)
    path = write_drift_report_html(
        ref, cur, ["shifted", "stable", "gone"], tmp_path / "r" / "d.html"
    )
    text = path.read_text()
    assert path.exists() and "shifted" in text and len(text) > 10_000
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]
