"""The builder on the simulator's output, and its schedule against features.schedule."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from features.builder import FEATURE_COLUMNS, build_feature_table
from features.schedule import due_date
from features.sql import MACROS


def test_sql_schedule_matches_features_schedule():
    # month ends, leap days, late-evening draws: add_months in SQL == features.schedule.due_date
    rng = np.random.default_rng(0)
    draws = pd.Timestamp("2023-12-01") + pd.to_timedelta(
        rng.integers(0, 900 * 86400, 400), unit="s"
    )
    draws = draws.append(
        pd.DatetimeIndex(["2024-01-31 23:59", "2024-02-29 12:00", "2023-08-31 00:00"])
    )
    seqs = rng.integers(1, 13, len(draws))
    con = duckdb.connect()
    for m in MACROS:
        con.execute(m)
    frame = pd.DataFrame({"draw": draws.astype("datetime64[ns]"), "seq": seqs})
    got = (
        con.execute("SELECT add_months(draw, seq) AS due FROM frame")
        .df()["due"]
        .to_numpy("datetime64[ns]")
    )
    np.testing.assert_array_equal(got, due_date(frame["draw"].to_numpy(), frame["seq"].to_numpy()))


def test_builds_on_a_simulated_world(tmp_path):
    from features.world.simulate import simulate_world

    simulate_world(users=150, months=13, seed=2, out_dir=tmp_path, progress=False)
    path = build_feature_table(
        tmp_path / "raw", tmp_path / "features", "2024-12-01", tmp_path / "q"
    )
    df = pd.read_parquet(path)
    assert len(df) > 100 and df["user_id"].is_unique
    # columns with a fill value (counts, amounts) are never NaN
    assert df[[c for c, fill in FEATURE_COLUMNS.items() if fill is not None]].notna().all().all()
    assert (df["inst_dpd_max_12m"].dropna() >= 0).all()
    assert df["bureau_active_lenders_cnt"].sum() > 0 and df["app_logins_cnt_30d"].sum() > 0
    # 12 months after 2024-12-01 are not in a 13-month world: unmatured, NaN, never 0
    assert not df["label_default_12m_matured"].any() and df["label_default_12m"].isna().all()
