"""Exact baseline Shapley: additivity, exact zero for unchanged features, agreement with SHAP."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.explain.attribution import attribute, compile_booster, raw_margin


def _model(
    seed: int,
    n_features: int,
    num_leaves: int,
    n_trees: int,
    nan_share: float,
    zero_share: float,
    zero_as_missing: bool,
    objective: str = "binary",
) -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 300
    x = rng.normal(size=(n, n_features)).round(
        1
    )  # rounding: ties and repeated values, as in counts
    x[rng.random(x.shape) < zero_share] = 0.0
    x[rng.random(x.shape) < nan_share] = np.nan
    signal = np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, -1]) + np.isnan(x[:, 0])
    y = (signal + rng.normal(size=n) > 0).astype(int) if objective == "binary" else signal
    params = dict(
        objective=objective,
        num_leaves=num_leaves,
        min_data_in_leaf=5,
        verbose=-1,
        num_threads=1,
        seed=seed,
        zero_as_missing=zero_as_missing,
        deterministic=True,
    )
    return lgb.train(params, lgb.Dataset(x, y), n_trees), x


def _pairs(
    x: np.ndarray, seed: int, n_pairs: int, change_share: float
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    old = x[rng.integers(0, len(x), n_pairs)].copy()
    new = old.copy()
    change = rng.random(old.shape) < change_share
    donor = x[rng.integers(0, len(x), n_pairs)]
    new[change] = donor[change]
    return new, old


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_features=st.integers(1, 6),
    num_leaves=st.integers(2, 24),
    n_trees=st.integers(1, 25),
    nan_share=st.sampled_from([0.0, 0.1, 0.4]),
    zero_share=st.sampled_from([0.0, 0.2]),
    zero_as_missing=st.booleans(),
    change_share=st.sampled_from([0.0, 0.2, 0.6, 1.0]),
    objective=st.sampled_from(["binary", "regression"]),
)
def test_additive_and_exact_zero_for_unchanged(
    seed,
    n_features,
    num_leaves,
    n_trees,
    nan_share,
    zero_share,
    zero_as_missing,
    change_share,
    objective,
):
    booster, x = _model(
        seed, n_features, num_leaves, n_trees, nan_share, zero_share, zero_as_missing, objective
    )
    new, old = _pairs(x, seed, 40, change_share)
    ct = compile_booster(booster)
    phi = attribute(ct, new, old)
    delta = booster.predict(new, raw_score=True) - booster.predict(old, raw_score=True)
    assert np.abs(phi.sum(axis=1) - delta).max() < 1e-6
    same = (new == old) | (np.isnan(new) & np.isnan(old))
    assert (phi[same] == 0.0).all()  # exactly zero, not merely small
    np.testing.assert_allclose(
        raw_margin(ct, new), booster.predict(new, raw_score=True), rtol=0, atol=1e-9
    )


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    nan_share=st.sampled_from([0.0, 0.2]),
    num_leaves=st.integers(3, 16),
)
def test_agrees_with_shap_interventional(seed, nan_share, num_leaves):
    shap = pytest.importorskip("shap")
    booster, x = _model(seed, 5, num_leaves, 15, nan_share, 0.1, False)
    new, old = _pairs(x, seed, 3, 0.5)
    phi = attribute(compile_booster(booster), new, old)
    for i in range(len(new)):
        explainer = shap.TreeExplainer(
            booster, data=old[i : i + 1], feature_perturbation="interventional"
        )
        sv = np.asarray(explainer.shap_values(new[i : i + 1], check_additivity=False))
        sv = sv.reshape(-1, new.shape[1])[-1]
        np.testing.assert_allclose(phi[i], sv, atol=1e-6)


def test_threads_and_frames_give_identical_results():
    booster, x = _model(3, 6, 12, 20, 0.1, 0.1, False)
    new, old = _pairs(x, 3, 101, 0.4)
    ct = compile_booster(booster)
    one = attribute(ct, new, old)
    two = attribute(ct, new, old, n_threads=2)
    assert np.array_equal(one, two)
    names = list(ct.feature_names)
    # columns in another order (plus an extra column) are picked by name
    fn = pd.DataFrame(new, columns=names).assign(extra=1.0)[["extra", *reversed(names)]]
    fo = pd.DataFrame(old, columns=names)[list(reversed(names))]
    assert np.array_equal(attribute(ct, fn, fo), one)


def test_hand_worked_two_feature_and():
    # y = 1 only where x0 > 0.5 and x1 > 0.5; one regression tree, learning rate 1, fits it exactly:
    # leaves 0 (x0 <= .5), 0 (x0 > .5, x1 <= .5), 1 (both > .5).
    x = np.array([[a, b] for a in (0.0, 1.0) for b in (0.0, 1.0)] * 10)
    y = ((x[:, 0] > 0.5) & (x[:, 1] > 0.5)).astype(float)
    params = dict(
        objective="regression",
        num_leaves=3,
        learning_rate=1.0,
        min_data_in_leaf=1,
        min_data_in_bin=1,
        boost_from_average=False,
        verbose=-1,
        lambda_l2=0.0,
    )
    booster = lgb.train(params, lgb.Dataset(x, y), 1)
    ct = compile_booster(booster)
    phi = attribute(ct, np.array([[1.0, 1.0], [1.0, 0.0]]), np.array([[0.0, 0.0], [0.0, 0.0]]))
    # (1,1) vs (0,0): f goes 0 -> 1; symmetric AND game: each feature gets 1/2.
    np.testing.assert_allclose(phi[0], [0.5, 0.5], atol=1e-12)
    # (1,0) vs (0,0): f stays 0 and x1 did not change: both get exactly 0.
    assert phi[1].tolist() == [0.0, 0.0]


def test_categorical_split_is_refused():
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"c": pd.Categorical(rng.integers(0, 5, 200)), "v": rng.normal(size=200)})
    y = (x["c"].cat.codes % 2 == 0).astype(int)
    booster = lgb.train(
        dict(
            objective="binary", verbose=-1, min_data_in_leaf=5, min_data_per_group=5, cat_smooth=1
        ),
        lgb.Dataset(x, y),
        5,
    )
    with pytest.raises(ValueError, match="categorical split"):
        compile_booster(booster)


def test_shape_errors_are_clear():
    booster, x = _model(1, 3, 4, 3, 0.0, 0.0, False)
    ct = compile_booster(booster)
    with pytest.raises(ValueError, match="feature columns"):
        attribute(ct, x[:2, :2], x[:2, :2])
    with pytest.raises(ValueError, match="lacks feature columns"):
        attribute(ct, pd.DataFrame({"a": [1.0]}), pd.DataFrame({"a": [1.0]}))
