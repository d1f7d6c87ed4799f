"""The fast writers give the same bytes as the plain ones: indented JSON, many small files,
feature builds over one shared DuckDB connection."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.raw_world import make_world
from features.builder import build_features, connect_raw
from features.tables import dumps_indented, write_json, write_text, write_texts


def _stdlib(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
keys = st.one_of(st.text(max_size=6), st.integers(-5, 5))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=6), inner, max_size=5),
        st.dictionaries(keys.filter(lambda k: not isinstance(k, str)), inner, max_size=3),
    ),
    max_leaves=40,
)


@settings(max_examples=200, deadline=None)
@given(documents)
def test_dumps_indented_matches_the_standard_library(doc):
    assert dumps_indented(doc) == _stdlib(doc)


def test_dumps_indented_edge_cases():
    cases = [
        {},
        [],
        [[]],
        {"a": {}, "b": [{}], "c": ()},
        {2: "x", 2.5: "y", True: [1]},  # keys as json.dumps converts them
        {None: {"z": [None]}},
        {
            "t": pd.Timestamp("2024-01-31"),
            "f": np.float64(0.1),
            "i": np.int64(3),
            "b": np.bool_(True),
        },
        {"s": 'é\n\u2028"\\', "n": [math.nan, -math.inf, math.inf, -0.0, 1e-05, 1e16]},
        [pd.Timestamp("2024-01-31"), [np.str_("s"), {"deep": [[1, [2, {"x": 3}]]]}]],
    ]
    for c in cases:
        assert dumps_indented(c) == _stdlib(c), c
    for bad in ({None: [1], "a": [2]}, {(1, 2): [3]}):  # unsortable / unsupported keys: both refuse
        with pytest.raises(TypeError):
            _stdlib(bad)
        with pytest.raises(TypeError):
            dumps_indented(bad)


def test_write_json_and_write_texts_bytes(tmp_path):
    doc = {"b": [1, {"c": "中文"}], "a": 1.5}
    p = write_json(doc, tmp_path / "x" / "doc.json")
    assert p.read_text(encoding="utf-8") == _stdlib(doc) + "\n"
    pages = [(tmp_path / "one" / f"u{i}.html", f"<p>用户 {i}</p>") for i in range(5)]
    pages.append((tmp_path / "two" / "deep" / "z.html", "z"))
    assert write_texts(iter(pages)) == 6
    for path, text in pages:
        ref = write_text(text, tmp_path / "ref" / path.name)
        assert path.read_bytes() == ref.read_bytes()
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no temp file left behind


def test_build_features_over_a_shared_connection_is_the_same():
    tables, end = make_world(users=40, months=10, seed=3, start="2024-01-01")
    con = connect_raw(tables, threads=1)
    try:
        for as_of in ("2024-06-30", "2024-08-31", "2024-07-31"):
            own = build_features(tables, as_of, extracted_at=end, threads=1)
            shared = build_features(tables, as_of, extracted_at=end, threads=1, con=con)
            pd.testing.assert_frame_equal(own, shared)
    finally:
        con.close()
