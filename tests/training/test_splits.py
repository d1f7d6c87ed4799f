"""Splits: stratified shares, out-of-time ordering, users never on both sides."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.encoding import apply_encoding, fit_encoding
from training.splits import split_by_user, stratified_split, time_split


def test_stratified_split_keeps_bad_share():
    y = np.r_[np.ones(50), np.zeros(950)]
    parts = stratified_split(y, (0.6, 0.2, 0.2), seed=3)
    assert [len(p) for p in parts] == [600, 200, 200]
    assert [int(y[p].sum()) for p in parts] == [30, 10, 10]
    assert len(np.unique(np.concatenate(parts))) == 1000


def test_time_split_is_out_of_time_and_keeps_ties_together():
    t = pd.Series(
        pd.to_datetime(["2024-01-01"] * 4 + ["2024-02-01"] * 3 + ["2024-03-01"] * 3), name="t"
    )
    train, valid, oot = time_split(
        t.sample(frac=1, random_state=0).reset_index(drop=True), (0.5, 0.2, 0.3)
    )
    shuffled = t.sample(frac=1, random_state=0).reset_index(drop=True)
    assert (
        shuffled[train].max() < shuffled[valid].min() <= shuffled[valid].max() < shuffled[oot].min()
    )


def test_time_split_needs_distinct_times():
    with pytest.raises(ValueError, match="too few distinct times"):
        time_split(pd.Series(pd.to_datetime(["2024-01-01"] * 10), name="t"), (0.6, 0.2, 0.2))


def test_split_by_user_never_shares_a_user():
    df = pd.DataFrame(
        {
            "user_id": [f"u{i % 50}" for i in range(300)],
            "y": [float(i % 7 == 0) for i in range(300)],
        }
    )
    train, valid = split_by_user(df, "user_id", "y", 0.2, seed=1)
    assert set(train.user_id).isdisjoint(valid.user_id)
    assert len(train) + len(valid) == 300
    assert valid.user_id.nunique() == 10


def test_encoding_unseen_and_missing_values_become_nan():
    df = pd.DataFrame({"c": ["a", "b", None, "a"]})
    enc = fit_encoding(df, ["c"], pd.Series([1.0, 0.0, 0.0, 1.0]))
    out = apply_encoding(pd.DataFrame({"c": ["a", "new", None]}), enc)
    assert out["c"].dtype == "float64"
    assert out["c"].iloc[0] == 1.0 and np.isnan(out["c"].iloc[1]) and np.isnan(out["c"].iloc[2])
