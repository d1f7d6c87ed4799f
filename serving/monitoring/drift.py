"""Distribution drift: PSI on quantile bins, per-feature drift tests, and the human HTML report.

Two speeds on purpose. Programmatic checks (the monthly trigger) run evidently's per-column
`ValueDrift` metrics, optionally on a row sample; the `DataDriftPreset` HTML report builds
plotly figures for every column (11-18 s and ~6 MB at 50k x 40) and is only made when a person
will read it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from training.metrics import psi

log = logging.getLogger(__name__)


def psi_table(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], bins: int = 10
) -> pd.Series:
    """PSI per column (index = column name)."""
    _require_columns(reference, columns, "reference")
    _require_columns(current, columns, "current")
    return pd.Series(
        {c: psi(reference[c].to_numpy(), current[c].to_numpy(), bins) for c in columns},
        name="psi",
        dtype="float64",
    )


def _require_columns(df: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} table lacks {len(missing)} drift column(s) {missing[:5]}; "
            "both tables must come from the same feature definitions (rebuild the older one)"
        )


def _sample(df: pd.DataFrame, rows: int | None, seed: int) -> pd.DataFrame:
    if rows is None or len(df) <= rows:
        return df
    return df.sample(n=rows, random_state=seed).sort_index()


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    method: str = "wasserstein",
    threshold: float = 0.1,
    psi_bins: int = 10,
    sample_rows: int | None = 20_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-column drift: evidently `ValueDrift` score and verdict, plus PSI and missing shares.

    Returns one row per column: feature, method, threshold, score, drifted, psi,
    ref_missing_share, cur_missing_share, ref_mean, cur_mean, note. A column empty on one side
    cannot be tested by evidently: it is drifted when only one side is empty (note says which).
    `sample_rows` caps rows per side for the evidently tests (deterministic sample); PSI uses
    all rows.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    _require_columns(reference, columns, "reference")
    _require_columns(current, columns, "current")
    if len(reference) == 0 or len(current) == 0:
        raise ValueError(
            f"drift needs rows on both sides (reference {len(reference)}, current {len(current)})"
        )
    rows = []
    testable = []
    for col in columns:
        ref = reference[col].astype("float64")
        cur = current[col].astype("float64")
        row = {
            "feature": col,
            "method": method,
            "threshold": float(threshold),
            "score": np.nan,
            "drifted": False,
            "psi": psi(ref.to_numpy(), cur.to_numpy(), psi_bins),
            "ref_missing_share": float(ref.isna().mean()),
            "cur_missing_share": float(cur.isna().mean()),
            "ref_mean": float(ref.mean()) if ref.notna().any() else np.nan,
            "cur_mean": float(cur.mean()) if cur.notna().any() else np.nan,
            "note": "",
        }
        ref_empty, cur_empty = ref.notna().sum() == 0, cur.notna().sum() == 0
        ref_vals, cur_vals = ref.dropna().unique(), cur.dropna().unique()
        if ref_empty or cur_empty:
            row["drifted"] = bool(ref_empty != cur_empty)
            row["note"] = (
                "empty in both"
                if ref_empty and cur_empty
                else "empty in reference"
                if ref_empty
                else "empty in current"
            )
        elif len(ref_vals) == 1 and len(cur_vals) == 1:
            # Wasserstein "normed" divides by the reference spread, which is 0 here.
            same = ref_vals[0] == cur_vals[0]
            row.update(score=0.0 if same else np.inf, drifted=not same, note="constant")
        else:
            testable.append(col)
        rows.append(row)
    out = pd.DataFrame(rows)
    if testable:
        ref_s = _sample(reference[testable].astype("float64"), sample_rows, seed)
        cur_s = _sample(current[testable].astype("float64"), sample_rows, seed)
        definition = DataDefinition(numerical_columns=testable)
        metrics = [ValueDrift(column=c, method=method, threshold=threshold) for c in testable]
        snapshot = Report(metrics, include_tests=True).run(
            current_data=Dataset.from_pandas(cur_s, data_definition=definition),
            reference_data=Dataset.from_pandas(ref_s, data_definition=definition),
        )
        scores, verdicts = _value_drift_results(snapshot.dict())
        idx = out.set_index("feature").index
        for col in testable:
            i = idx.get_loc(col)
            out.loc[i, "score"] = scores[col]
            out.loc[i, "drifted"] = verdicts[col]
    out["drifted"] = out["drifted"].astype(bool)
    return out


def _value_drift_results(result: dict) -> tuple[dict[str, float], dict[str, bool]]:
    """Scores and pass/fail per column from `snapshot.dict()` of a ValueDrift report."""
    by_id = {}
    scores = {}
    for m in result["metrics"]:
        col = m["config"]["column"]
        by_id[m["id"]] = col
        scores[col] = float(m["value"])
    verdicts = {}
    for t in result.get("tests", []):
        col = by_id.get(t["metric_config"]["metric_id"])
        if col is not None:
            status = t["status"]
            verdicts[col] = str(getattr(status, "value", status)).upper().endswith("FAIL")
    missing = set(scores) - set(verdicts)
    if missing:
        raise RuntimeError(f"evidently returned no drift test for columns {sorted(missing)}")
    return scores, verdicts


def write_drift_report_html(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    path: str | Path,
    sample_rows: int | None = 20_000,
    seed: int = 0,
) -> Path:
    """Evidently `DataDriftPreset` report for people (slow: builds a plotly figure per column).

    Columns that are empty on either side are left out (evidently cannot test them; the JSON
    summary reports them).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from features.tables import write_text

    _require_columns(reference, columns, "reference")
    _require_columns(current, columns, "current")
    usable = [c for c in columns if reference[c].notna().any() and current[c].notna().any()]
    if not usable:
        raise ValueError("no column has values on both sides; nothing to put in a drift report")
    ref_s = _sample(reference[usable].astype("float64"), sample_rows, seed)
    cur_s = _sample(current[usable].astype("float64"), sample_rows, seed)
    definition = DataDefinition(numerical_columns=usable)
    snapshot = Report([DataDriftPreset(columns=usable)], include_tests=False).run(
        current_data=Dataset.from_pandas(cur_s, data_definition=definition),
        reference_data=Dataset.from_pandas(ref_s, data_definition=definition),
    )
    path = Path(path)
    # evidently writes directly; render to a temp name beside it, then publish atomically.
    tmp = path.with_name(f".{path.name}.tmp.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(tmp))
    html = tmp.read_text(encoding="utf-8")
    tmp.unlink(missing_ok=True)
    return write_text(html, path)
