"""Numeric encoding of non-numeric columns, stored with the model and applied at scoring.

Text columns become numbers, never LightGBM native categoricals: interventional TreeSHAP does
not add up over native categorical splits (see DESIGN.md). Low-cardinality columns get an
ordinal code ordered by the smoothed bad rate seen in training; high-cardinality ones get their
training frequency. A value unseen in training becomes NaN (LightGBM's missing branch).

>>> import pandas as pd
>>> enc = fit_encoding(pd.DataFrame({"c": ["a", "b", "b", "a", "c"]}), ["c"], pd.Series([1, 0, 0, 1, 0]))
>>> apply_encoding(pd.DataFrame({"c": ["b", "a", "zzz"]}), enc)["c"].tolist()
[0.0, 2.0, nan]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ENCODING_VERSION = 1
MAX_ORDINAL_LEVELS = 50
SMOOTHING_ROWS = 20.0  # prior weight pulling a level's bad rate toward the overall rate


def is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)


def fit_encoding(df: pd.DataFrame, columns: list[str], y: pd.Series | None = None) -> dict:
    """Learn a mapping value -> float for each named non-numeric column (from training rows only)."""
    out: dict[str, dict] = {}
    prior = float(np.nanmean(y)) if y is not None and len(y) else 0.0
    for col in columns:
        values = df[col].astype("string")
        counts = values.value_counts(dropna=True)
        if len(counts) <= MAX_ORDINAL_LEVELS and y is not None:
            frame = pd.DataFrame({"v": values, "y": np.asarray(y, dtype=float)}).dropna(
                subset=["v"]
            )
            stats = frame.groupby("v")["y"].agg(["sum", "count"])
            rate = (stats["sum"] + SMOOTHING_ROWS * prior) / (stats["count"] + SMOOTHING_ROWS)
            # ties in the rate break on the value itself, so the code is deterministic
            ordered = sorted(rate.index, key=lambda v: (round(float(rate[v]), 12), str(v)))
            mapping = {str(v): float(i) for i, v in enumerate(ordered)}
            out[col] = {"kind": "ordinal", "categories": mapping}
        else:
            share = counts / max(counts.sum(), 1)
            out[col] = {
                "kind": "frequency",
                "categories": {str(k): float(v) for k, v in share.items()},
            }
    return {"version": ENCODING_VERSION, "columns": out}


def apply_encoding(df: pd.DataFrame, encoding: dict | None) -> pd.DataFrame:
    """Replace encoded columns by their numeric codes (a new frame; the input is not changed)."""
    columns = (encoding or {}).get("columns", {})
    present = {c: spec for c, spec in columns.items() if c in df.columns}
    if not present:
        return df
    coded = {
        c: df[c].astype("string").map(spec["categories"]).astype("float64")
        for c, spec in present.items()
    }
    return df.assign(**coded)
