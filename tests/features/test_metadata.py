"""Every emitted feature column has metadata, and every metadata entry is emitted."""

from __future__ import annotations

import pandas as pd
import pytest

from features import metadata
from features.builder import FEATURE_COLUMNS, KEY_COLUMNS, LABEL_COLUMNS, build_features
from tests.features.test_hand import T, book


def test_builder_columns_and_metadata_match_both_ways():
    out = build_features(book(), T)
    emitted = [c for c in out.columns if c not in KEY_COLUMNS and c not in LABEL_COLUMNS]
    assert emitted == list(FEATURE_COLUMNS)
    assert set(emitted) == set(metadata.FEATURES)
    assert all(out[c].dtype == "float64" for c in emitted)
    assert out["user_id"].is_monotonic_increasing
    assert out["as_of"].dtype == "datetime64[ns]"
    assert all(c.startswith("label_") for c in LABEL_COLUMNS)


def test_metadata_is_complete_and_consistent():
    for name, f in metadata.FEATURES.items():
        assert f.name == name
        assert f.reason in metadata.REASONS, name
        assert f.monotone in (-1, 0, 1)
        assert f.description and f.unit
        if name.startswith(("ctx_", "fresh_")):
            assert not f.model_input and f.family in ("context", "freshness"), name
    for r in metadata.REASONS.values():
        assert r.cause in ("risk_bureau", "risk_behaviour", "fraud", "system_data")
        assert r.text_zh and r.text_en
    assert len(metadata.METADATA_VERSION) == 12


def test_model_feature_lists_and_constraints():
    credit, fraud = metadata.model_features("credit"), metadata.model_features("fraud")
    assert set(fraud) < set(credit)
    assert not any(c.startswith(("ctx_", "fresh_", "label_")) for c in credit)
    assert "graph_device_shared_users_cnt" in fraud and "inst_dpd_max_12m" not in fraud
    assert metadata.monotone_constraints(["inst_ontime_streak_cnt", "bureau_inquiries_cnt_3m"]) == [
        -1,
        1,
    ]
    with pytest.raises(KeyError, match="no_such_feature"):
        metadata.monotone_constraints(["no_such_feature"])
    with pytest.raises(ValueError, match="unknown model"):
        metadata.model_features("other")  # type: ignore[arg-type]


def test_metadata_as_frame_reads_well():
    df = pd.DataFrame([vars(f) for f in metadata.FEATURES.values()])
    assert df["name"].is_unique
