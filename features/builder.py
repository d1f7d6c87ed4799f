"""Build the point-in-time feature table: one row per user active at the as-of date T.

`build_features` is pure (frames in, frame out); `build_feature_table` adds the IO: the raw
tables through the contract (bad rows quarantined), the parquet table and its manifest.

Active at T: the user's signup row is visible at T (`event_time < T`, `available_time <= T`)
and the latest visible line change is not `close`.

The definitions are SQL text per family (`features/repayment.py`, `bureau.py`, `behaviour.py`,
`freshness.py`, `context.py`, `labels.py`) run by DuckDB over the pandas frames; every family
reads the point-in-time `v_*` views (see `features/sql.py`), labels alone read all rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features import behaviour, bureau, context, freshness, labels, repayment
from features.catalog import as_of_dir
from features.contracts import COLUMNS as RAW_COLUMNS
from features.contracts import TABLES, load_raw, manifest_extracted_at
from features.metadata import METADATA_VERSION
from features.sql import MACROS, render, ts_literal, view_statements
from features.tables import file_digest, write_json, write_parquet

log = logging.getLogger(__name__)

# Families in the order their columns appear; context needs repayment and bureau first.
FAMILIES = (repayment, bureau, behaviour, freshness, context, labels)
FEATURE_COLUMNS: dict[str, float | None] = {
    c: fill for fam in FAMILIES[:-1] for c, fill in fam.COLUMNS.items()
}
LABEL_COLUMNS = tuple(labels.COLUMNS)
KEY_COLUMNS = ("user_id", "as_of")

ACTIVE_SQL = """
CREATE OR REPLACE TEMP TABLE active AS
SELECT u.user_id FROM v_users u
LEFT JOIN line_at l ON l.user_id = u.user_id AND l.lookback = 0
WHERE l.line_action IS NULL OR l.line_action <> 'close'
"""


def output_columns() -> list[str]:
    """Every column of the feature table, in order."""
    return [*KEY_COLUMNS, *FEATURE_COLUMNS, *LABEL_COLUMNS]


def connect_raw(
    tables: Mapping[str, pd.DataFrame], threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the raw tables registered (as Arrow) and the dialect macros.

    Hand it to `build_features(..., con=...)` for several as-of dates in a row: the tables are
    converted once instead of once per date (the conversion is a large part of a month's build
    at 50k users). The caller closes it.
    """
    return _connect(tables, threads)


def _connect(tables: Mapping[str, pd.DataFrame], threads: int | None) -> duckdb.DuckDBPyConnection:
    missing = [t for t in TABLES if t not in tables]
    if missing:
        raise ValueError(
            f"build_features: missing raw table(s) {', '.join(missing)}; need all of {', '.join(TABLES)}"
        )
    con = duckdb.connect(config={"threads": threads} if threads else {})
    for t in TABLES:
        df = tables[t]
        lacking = [c for c in RAW_COLUMNS[t] if c not in df.columns]
        if lacking:
            raise ValueError(
                f"{t}: missing column(s) {', '.join(lacking)}; load it with features.contracts.load_raw"
            )
        # Handed over as Arrow: DuckDB scans Arrow strings without touching Python objects
        # (scanning pandas object columns converts every string, in every query).
        con.register(f"raw_{t}", pa.Table.from_pandas(df[RAW_COLUMNS[t]], preserve_index=False))
    for m in MACROS:
        con.execute(m)
    # (term, seq) pairs: the schedule is an equi-join on term_months (no range join)
    terms = [(t, k) for t in range(1, repayment.MAX_TERM + 1) for k in range(1, t + 1)]
    con.register("term_seqs", pd.DataFrame(terms, columns=["term_months", "seq"], dtype=np.int64))
    con.register(
        "lookbacks",
        pd.DataFrame({"lookback": np.array([0, *repayment.UTIL_LOOKBACK], dtype=np.int64)}),
    )
    return con


def _data_start(tables: Mapping[str, pd.DataFrame]) -> pd.Timestamp | None:
    starts = [tables[t]["event_time"].min() for t in TABLES if len(tables[t])]
    return min(starts) if starts else None


def _extracted_at(tables: Mapping[str, pd.DataFrame]) -> pd.Timestamp:
    ends = [tables[t]["available_time"].max() for t in TABLES if len(tables[t])]
    return max(ends)


def build_features(
    tables: Mapping[str, pd.DataFrame],
    as_of: pd.Timestamp | str,
    extracted_at: pd.Timestamp | str | None = None,
    threads: int | None = None,
    timings: dict[str, float] | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pd.DataFrame:
    """Features of every user active at `as_of`, sorted by user_id.

    `extracted_at` (when the data was extracted; decides which labels have matured) defaults to
    the latest `available_time` in the tables. `timings`, when given, receives seconds per step.
    `con`, when given, is a connection from `connect_raw(tables)` (reused, not closed here);
    the result is the same as without it.
    Raises ValueError when `as_of` is before the data starts or no user is active at it.
    """
    as_of = pd.Timestamp(as_of)
    start = _data_start(tables) if all(t in tables for t in TABLES) else None
    if start is not None and as_of <= start:
        raise ValueError(
            f"as-of {as_of.date()} is not after the data starts ({start}); "
            "choose an as-of date after the first event in the raw tables"
        )
    t0 = time.perf_counter()
    own = con is None
    if own:
        con = _connect(tables, threads)
    if timings is not None:
        timings["load"] = time.perf_counter() - t0
    try:
        x = pd.Timestamp(extracted_at) if extracted_at is not None else _extracted_at(tables)
        for stmt in view_statements(as_of, _money_columns(tables)):
            con.execute(stmt)
        steps = [(name, sql) for fam in FAMILIES for name, sql in fam.STEPS]
        steps.insert(3, ("active", ACTIVE_SQL))  # after line_at
        if not any(labels.matured(as_of, x)):
            steps[-1] = ("f_labels", labels.UNMATURED_SQL)
        for name, sql in steps:
            t0 = time.perf_counter()
            con.execute(render(sql, as_of, X=ts_literal(x)))
            if timings is not None:
                timings[name] = time.perf_counter() - t0
            if name == "active" and con.execute("SELECT COUNT(*) FROM active").fetchone()[0] == 0:
                raise ValueError(
                    f"no user is active at as-of {as_of.date()} (none signed up and visible before it "
                    "with an open line); choose a later as-of date or check the users table"
                )
        t0 = time.perf_counter()
        df = con.execute(_final_sql(as_of)).df()
        if timings is not None:
            timings["final"] = time.perf_counter() - t0
    finally:
        if own:
            con.close()
    return _finish(df, as_of)


def _final_sql(as_of: pd.Timestamp) -> str:
    cols = []
    for fam in FAMILIES[:-1]:
        alias = fam.STEPS[-1][0]
        for c, fill in fam.COLUMNS.items():
            expr = f"{alias}.{c}" if fill is None else f"COALESCE({alias}.{c}, {fill})"
            cols.append(f"CAST({expr} AS DOUBLE) AS {c}")
    cols += [f"f_labels.{c}" for c in LABEL_COLUMNS]
    joins = "\n".join(
        f"LEFT JOIN {fam.STEPS[-1][0]} ON {fam.STEPS[-1][0]}.user_id = a.user_id"
        for fam in FAMILIES
    )
    return (
        f"SELECT a.user_id, {ts_literal(as_of)} AS as_of,\n  "
        + ",\n  ".join(cols)
        + f"\nFROM active a\n{joins}\nORDER BY a.user_id"
    )


def _money_columns(tables: Mapping[str, pd.DataFrame]) -> dict[str, list[str]]:
    """Per raw table, its amount columns (`*_cny`, numeric): the views sum them as decimals."""
    return {
        t: [
            c for c in RAW_COLUMNS[t] if c.endswith("_cny") and pd.api.types.is_numeric_dtype(df[c])
        ]
        for t, df in tables.items()
        if t in RAW_COLUMNS
    }


def _finish(df: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    out = {
        "user_id": df["user_id"].astype(object).to_numpy(),
        "as_of": np.full(len(df), as_of.to_datetime64()).astype("datetime64[ns]"),
    }
    for c in FEATURE_COLUMNS:
        # Rounded to 9 decimals: sums of doubles in a parallel engine may differ in the last bit
        # with row order; rounding keeps equal inputs at equal bytes.
        out[c] = np.round(df[c].to_numpy(dtype="float64", na_value=np.nan), 9)
    for c in LABEL_COLUMNS:
        if c in labels.BOOL_COLUMNS:
            out[c] = df[c].astype(bool).to_numpy()
        else:
            out[c] = df[c].to_numpy(dtype="float64", na_value=np.nan)
    return pd.DataFrame(out)


def build_feature_table(
    raw_dir: str | Path,
    out_dir: str | Path,
    as_of: pd.Timestamp | str,
    quarantine_dir: str | Path,
    threads: int | None = None,
) -> Path:
    """Load the raw tables (quarantining bad rows), build the features, write parquet + manifest.

    Returns the path of `features.parquet` under `out_dir/as_of=YYYY-MM-DD/`.
    """
    as_of = pd.Timestamp(as_of)
    raw_dir = Path(raw_dir)
    loaded = load_raw(raw_dir, quarantine_dir)
    log.debug("raw tables loaded:\n%s", loaded.summary())
    extracted_at = manifest_extracted_at(raw_dir)
    df = build_features(loaded.tables, as_of, extracted_at=extracted_at, threads=threads)
    target = as_of_dir(out_dir, as_of)
    path = write_parquet(df, target / "features.parquet")
    manifest = {
        "as_of": as_of.strftime("%Y-%m-%d"),
        "rows": len(df),
        "features": [c for c in FEATURE_COLUMNS],
        "labels": list(LABEL_COLUMNS),
        "metadata_version": METADATA_VERSION,
        "extracted_at": str(extracted_at) if extracted_at is not None else None,
        "input_digests": {t: file_digest(raw_dir / t) for t in TABLES},
        "quarantined_rows": {t: r.rows_quarantined for t, r in loaded.reports.items()},
        "quarantine_summary": loaded.summary(),
        "output_digest": file_digest(path),
    }
    write_json(manifest, target / "manifest.json")
    return path
