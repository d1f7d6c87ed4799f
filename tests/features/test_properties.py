"""Invariants of the builder (hypothesis): point in time, row order, one user vs the book."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.raw_world import make_world
from features.builder import FEATURE_COLUMNS, LABEL_COLUMNS, build_features

SETTINGS = settings(
    max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
START = pd.Timestamp("2024-01-01")
WORLD, EXTRACTED = make_world(
    users=25, months=15, seed=3, start=str(START.date()), incident_days=(-140, -100)
)
# Columns that depend on the whole book rather than on one user's rows.
BOOK_COLUMNS = [
    c
    for c in FEATURE_COLUMNS
    if c.startswith("graph_")
    or c in ("fresh_payments_lag_share_7d", "fresh_sync_lag_flag", "fresh_stale")
    or (c.startswith("fresh_") and c.endswith("_age_days"))
]

as_ofs = st.integers(min_value=120, max_value=440).map(
    lambda d: (START + pd.Timedelta(days=d)).normalize()
)


def build(tables, as_of):
    return build_features(tables, as_of, extracted_at=EXTRACTED)


@SETTINGS
@given(as_of=as_ofs, seed=st.integers(0, 2**16), frac=st.floats(0.05, 0.5))
def test_rows_available_after_as_of_never_change_a_feature(as_of, seed, frac):
    rng = np.random.default_rng(seed)
    base, full = {}, {}
    for t, df in WORLD.items():
        visible = df[(df["available_time"] <= as_of) & (df["event_time"] < as_of)]
        if t in ("installments", "bureau_accounts") and len(visible):
            # real late arrivals: rows that were visible now reach the warehouse after T
            late = visible.sample(frac=frac, random_state=seed)
            rest = df.drop(index=late.index)
        else:
            # new rows (new keys) that arrive after T, whatever their event time
            late = df.sample(frac=frac, random_state=seed, replace=True).copy()
            late[late.columns[0]] = [f"{k}_late{i}" for i, k in enumerate(late[late.columns[0]])]
            rest = df
        shift = pd.to_timedelta(rng.integers(1, 200 * 86400, len(late)), unit="s")
        late = late.assign(available_time=as_of + shift)
        late = late.assign(event_time=late[["event_time", "available_time"]].min(axis=1))
        base[t] = rest.reset_index(drop=True)
        full[t] = pd.concat([rest, late], ignore_index=True)
    a, b = build(base, as_of), build(full, as_of)
    cols = ["user_id", *FEATURE_COLUMNS]
    pd.testing.assert_frame_equal(a[cols], b[cols])


@SETTINGS
@given(as_of=as_ofs, seed=st.integers(0, 2**16))
def test_row_order_never_changes_anything(as_of, seed):
    shuffled = {
        t: df.sample(frac=1.0, random_state=seed).reset_index(drop=True) for t, df in WORLD.items()
    }
    pd.testing.assert_frame_equal(build(WORLD, as_of), build(shuffled, as_of))


@SETTINGS
@given(as_of=as_ofs, pick=st.integers(0, 10_000))
def test_a_user_alone_gets_the_same_features_as_in_the_book(as_of, pick):
    book = build(WORLD, as_of)
    user = book["user_id"].iloc[pick % len(book)]
    alone = {t: df[df["user_id"] == user].reset_index(drop=True) for t, df in WORLD.items()}
    one = build(alone, as_of)
    mine = book[book["user_id"] == user].reset_index(drop=True)
    per_user = [c for c in ["user_id", *FEATURE_COLUMNS, *LABEL_COLUMNS] if c not in BOOK_COLUMNS]
    pd.testing.assert_frame_equal(one[per_user], mine[per_user])
    # With the other users' events present (only the users table cut to this user), every
    # column matches, the sharing graph and book-level freshness included.
    cut = {**WORLD, "users": WORLD["users"][WORLD["users"]["user_id"] == user]}
    pd.testing.assert_frame_equal(build(cut, as_of), mine)
