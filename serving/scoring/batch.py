"""Nightly batch scoring: feature table -> champion credit PD + fraud p -> line policy -> decisions.

Outputs for as-of D under `out_dir` (default data/decisions):

- `as_of=D/decisions.parquet`: one row per user (DECISION_COLUMNS), replaced atomically.
- `as_of=D/manifest.json`: run id, counts by action, model and policy versions, input digests.
- `log/as_of=D.parquet`: the append-only decision log, one record per (run, user). A re-run
  of the same inputs finds its run id already logged and leaves the file alone; a run with
  other inputs (a new champion, a new policy) appends its records. Replaced atomically.

Resumable: each chunk's decisions go to `as_of=D/.work/chunk-NNNNN.parquet` (atomically) under
a run id that hashes every input; a restarted run with the same inputs reuses the finished
chunks, so a run killed part-way and started again writes the same bytes as one that never
stopped.

Memory is bounded by the chunk size, not by the number of users: the key checks stream the
table chunk by chunk (a table sorted by user_id, as `creditline features` writes it, is checked
for duplicate ids by comparing neighbours; any other order goes to DuckDB under a memory limit,
spilling to disk), and the previous decisions are joined to the table's row order by DuckDB
(same limit) into a work file that is read one chunk at a time beside the features.

NaN: model features may be NaN anywhere (no history); LightGBM routes NaN down each split's
learned missing-value branch. ctx_line_cny may not be NaN (no previous line to decide on); a NaN
in another ctx_ column means that rule cannot fire; NaN fresh_ flags count as 0 and a NaN
source age as "no data from that source" (not stale). +-inf is an error (not a missing value).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from features.catalog import DECISIONS_FILE, as_of_dir, decision_log_path, latest_before
from features.tables import file_digest, write_json, write_text
from serving.scoring.policy import (
    ACTIONS,
    Policy,
    decide_lines,
    previous_bands,
    previous_model_versions,
    previous_rules,
    required_columns,
)

log = logging.getLogger(__name__)

# Test hook: seconds to sleep after each chunk, so a test can kill a run part-way.
SLOW_CHUNK_ENV = "CREDITLINE_TEST_SLOW_CHUNK_S"
# Bump when the decision layout or logic changes, so old work folders are not resumed.
# 2: prev_band (no repeated band cuts); 3: prev_rules (no repeated DTI cuts); 4: the previous
# decision's credit model version (the model-update hold)
SCORING_FORMAT = "4"
# DuckDB's buffer limit for the whole-table queries (duplicate ids of an unsorted table, the
# previous-decision join); beyond it DuckDB spills to the run's work folder.
DUCKDB_MEMORY_LIMIT = "256MB"
# Columns of a previous decisions file that the next decision reads (serving.scoring.policy.previous_*).
PREVIOUS_COLUMNS = ("action", "pd_band", "rules_fired", "credit_model_version")

DECISION_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("as_of", pa.timestamp("ns")),
        ("prev_line_cny", pa.float64()),
        ("new_line_cny", pa.float64()),
        ("action", pa.string()),
        ("pd", pa.float64()),
        ("fraud_p", pa.float64()),
        ("credit_margin", pa.float64()),
        ("rules_fired", pa.string()),
        ("defer_reason", pa.string()),
        ("credit_model_version", pa.int64()),
        ("fraud_model_version", pa.int64()),
        ("policy_version", pa.string()),
        ("feature_snapshot", pa.string()),
        ("feature_digest", pa.string()),
        # Beyond what the policy needs: for the explanation engine and reviewers.
        ("defer_reason_zh", pa.string()),
        ("pd_band", pa.string()),
        ("decision_margin", pa.float64()),  # credit_margin - adverse PD cut-off (log-odds)
        ("fraud_margin", pa.float64()),  # fraud log-odds - freeze threshold (log-odds)
    ]
)
DECISION_COLUMNS = DECISION_SCHEMA.names
LOG_SCHEMA = pa.schema(
    [("run_id", pa.string()), *zip(DECISION_SCHEMA.names, DECISION_SCHEMA.types, strict=True)]
)


class FeatureTableError(ValueError):
    """The feature table cannot be scored (missing columns, wrong types, bad rows)."""


@dataclass(frozen=True)
class ScoreResult:
    as_of: pd.Timestamp
    decisions_path: Path
    log_path: Path
    manifest_path: Path
    run_id: str
    rows: int
    counts: dict[str, int]
    credit_model_version: int
    fraud_model_version: int
    policy_version: str
    chunks: int
    resumed_chunks: int
    log_records_added: int
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Run:
    """One scoring run as planned before its first chunk: the checked inputs and the run id."""

    models: Mapping[str, Any]
    policy: Policy
    max_age_days: dict[str, float] | None
    chunk_rows: int
    num_threads: int
    files: list[Path]
    snapshot: str  # the feature table as given (each decision's feature_snapshot)
    digest: str  # of the feature table
    as_of: pd.Timestamp
    rows: int
    context_columns: list[str]  # the ctx_/fresh_ columns the policy reads
    columns: list[str]  # the columns read from the feature table
    out_dir: Path
    prev_path: Path | None  # the previous decisions, if any
    run_id: str  # hashes every input

    @property
    def day_dir(self) -> Path:
        return as_of_dir(self.out_dir, self.as_of)


def feature_files(features_path: str | Path) -> list[Path]:
    """Parquet files of a feature table: a file, or a folder's *.parquet in name order."""
    path = Path(features_path)
    if path.is_file():
        return [path]
    files = sorted(path.glob("*.parquet")) if path.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"feature table {path}: no parquet files. Build it with `creditline features build --as-of YYYY-MM-DD`."
        )
    return files


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t)


def validate_feature_schema(
    schema: pa.Schema,
    model_features: Mapping[str, list[str]],
    context_columns: list[str],
    where: str,
    encoded_columns: set[str] | None = None,
) -> None:
    """Check names and types before any model runs; the error lists every problem at once.

    Model features must be floating point (NaN = missing), except `encoded_columns` (raw
    categoricals a model encodes itself); ctx_/fresh_ columns numeric or bool; user_id text;
    as_of a timestamp.
    """
    types = {f.name: f.type for f in schema}
    missing: list[str] = []
    wrong: list[str] = []

    def need(col: str, ok, expected: str, who: str) -> None:
        if col not in types:
            missing.append(f"{col} ({who})")
        elif not ok(types[col]):
            wrong.append(f"{col}: {types[col]}, expected {expected} ({who})")

    need("user_id", _is_text, "string", "key")
    need("as_of", pa.types.is_timestamp, "timestamp", "key")
    need("ctx_line_cny", _is_number, "number", "policy")
    for col in context_columns:
        need(col, _is_number, "number", "policy")
    encoded = set(encoded_columns or ())
    for role, cols in model_features.items():
        for col in cols:
            ok = (lambda t: True) if col in encoded else pa.types.is_floating
            need(col, ok, "float64", f"{role} model")
    problems = []
    if missing:
        problems.append(f"missing column(s): {', '.join(dict.fromkeys(missing))}")
    if wrong:
        problems.append(f"wrong type(s): {'; '.join(dict.fromkeys(wrong))}")
    if problems:
        raise FeatureTableError(
            f"feature table {where}: "
            + " | ".join(problems)
            + ". Rebuild it with `creditline features` "
            "for the models' feature list, or train models on this table's features."
        )


def _check_infinite_stats(files: list[Path], columns: list[str]) -> None:
    """+-inf in a model feature, found from parquet row-group statistics (no data read)."""
    for f in files:
        meta = pq.ParquetFile(f).metadata
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        idx = {n: i for i, n in enumerate(names) if n in set(columns)}
        for rg in range(meta.num_row_groups):
            for name, i in idx.items():
                st = meta.row_group(rg).column(i).statistics
                if st is not None and st.has_min_max and (np.isinf(st.min) or np.isinf(st.max)):
                    raise FeatureTableError(
                        f"feature table {f}: column {name} holds +-inf (row group {rg}); "
                        "only NaN means missing. Fix the feature builder."
                    )


def _sql_text(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _duckdb(threads: int, spill_dir: str | Path) -> duckdb.DuckDBPyConnection:
    config = {
        "memory_limit": DUCKDB_MEMORY_LIMIT,
        "temp_directory": str(spill_dir),
        "preserve_insertion_order": True,
    }
    if threads > 0:
        config["threads"] = threads
    return duckdb.connect(config=config)


def _row_ids_sql(files: list[Path]) -> str:
    """Every row's (file index, row number in file, user_id): the table's row order in SQL."""
    return " UNION ALL ".join(
        f"SELECT {i} AS fi, file_row_number AS rn, user_id "
        f"FROM read_parquet({_sql_text(f)}, file_row_number = true)"
        for i, f in enumerate(files)
    )


def _duplicate_ids(files: list[Path], threads: int) -> tuple[int, str | None]:
    """Duplicate user_id rows of an unsorted table and the duplicated id seen first (DuckDB)."""
    with tempfile.TemporaryDirectory(prefix="creditline-duckdb-") as spill:
        con = _duckdb(threads, spill)
        try:
            row = con.execute(
                f"WITH ids AS ({_row_ids_sql(files)}), "
                "d AS (SELECT user_id, count(*) AS c, min([fi, rn]) AS pos "
                "FROM ids GROUP BY user_id HAVING count(*) > 1) "
                "SELECT (SELECT sum(c - 1) FROM d), (SELECT user_id FROM d ORDER BY pos LIMIT 1)"
            ).fetchone()
        finally:
            con.close()
    return int(row[0] or 0), row[1]


def _check_keys(
    files: list[Path], as_of: pd.Timestamp | None, chunk_rows: int, threads: int
) -> tuple[pd.Timestamp, int]:
    """user_id present and unique, one as_of, ctx_line_cny a real non-negative amount.

    One streaming pass, one chunk of three columns in memory. Ids in ascending order (the
    feature builder's order) are unique exactly when no id equals its predecessor; a table in
    any other order has its duplicates counted by DuckDB under DUCKDB_MEMORY_LIMIT.
    """
    where = str(files[0].parent if len(files) > 1 else files[0])
    n = null_ids = null_dates = bad_lines = dup_rows = 0
    first_dup = first_bad_line = last_id = None
    ordered = True
    dates: set[pd.Timestamp] = set()
    for batch in _iter_batches(files, ["user_id", "as_of", "ctx_line_cny"], chunk_rows):
        n += batch.num_rows
        ids = batch.column("user_id")
        null_ids += ids.null_count
        if null_ids:  # reported below; the other checks need ids
            continue
        if ordered and len(ids):
            seq = ids if last_id is None else pa.concat_arrays([pa.array([last_id], ids.type), ids])
            before, after = seq.slice(0, len(seq) - 1), seq.slice(1)
            if pc.any(pc.less(after, before)).as_py():
                ordered = False
            else:
                same = pc.equal(after, before)
                k = pc.sum(same).as_py() or 0
                if k and first_dup is None:
                    first_dup = after[pc.index(same, True).as_py()].as_py()
                dup_rows += k
            last_id = ids[len(ids) - 1].as_py()
        day = batch.column("as_of")
        null_dates += day.null_count
        if len(dates) < 10:  # more than one is an error already; keep a few for the message
            dates |= {
                pd.Timestamp(d).normalize() for d in pc.unique(day).to_pylist() if d is not None
            }
        line = batch.column("ctx_line_cny").to_numpy(zero_copy_only=False).astype(np.float64)
        bad = ~np.isfinite(line) | (line < 0)
        if bad.any():
            if first_bad_line is None:
                first_bad_line = ids[int(np.flatnonzero(bad)[0])].as_py()
            bad_lines += int(bad.sum())
    if null_ids:
        raise FeatureTableError(f"feature table {where}: {null_ids} rows have no user_id")
    if not ordered:
        dup_rows, first_dup = _duplicate_ids(files, threads)
    if dup_rows:
        raise FeatureTableError(
            f"feature table {where}: {dup_rows} duplicate user_id rows (first: {first_dup}); one row per user expected"
        )
    days = sorted(dates)
    if len(days) != 1 or null_dates:
        raise FeatureTableError(
            f"feature table {where}: expected one as_of value, found {[str(d.date()) for d in days]}"
        )
    if as_of is not None and days[0] != pd.Timestamp(as_of).normalize():
        raise FeatureTableError(
            f"feature table {where} is for as_of {days[0].date()}, not the requested {pd.Timestamp(as_of).date()}"
        )
    if bad_lines:
        raise FeatureTableError(
            f"feature table {where}: {bad_lines} rows have ctx_line_cny NaN, inf or negative (first user {first_bad_line}); "
            "the current line is needed to decide a new one"
        )
    return days[0], n


def _previous_decisions(out_dir: Path, as_of: pd.Timestamp) -> Path | None:
    """decisions.parquet of the latest as-of before `as_of` under `out_dir`, if any."""
    return latest_before(out_dir, DECISIONS_FILE, as_of)


def _align_previous(
    files: list[Path], prev_path: Path, rows: int, target: Path, chunk_rows: int, threads: int
) -> None:
    """The previous decision of each feature-table row, in the table's row order, to `target`.

    Columns: `matched` (the user had a previous decision), new_line_cny and PREVIOUS_COLUMNS
    (null where absent from that file). DuckDB joins and sorts under DUCKDB_MEMORY_LIMIT,
    spilling beside `target`, so no per-user lookup is held in Python; row groups of one chunk,
    so reading it back holds one chunk. Written atomically.
    """
    have = set(pq.read_schema(prev_path).names)
    if "new_line_cny" not in have or "user_id" not in have:
        raise ValueError(
            f"previous decisions {prev_path}: no user_id/new_line_cny column; move the file aside and re-run"
        )
    extra = ", ".join(
        f"p.{c}::VARCHAR AS {c}" if c in have else f"NULL::VARCHAR AS {c}" for c in PREVIOUS_COLUMNS
    )
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    spill = target.parent / "duckdb-spill"
    con = _duckdb(threads, spill)
    try:
        con.execute(
            "COPY (SELECT p.user_id IS NOT NULL AS matched, "
            f"p.new_line_cny::DOUBLE AS new_line_cny, {extra} "
            f"FROM ({_row_ids_sql(files)}) f LEFT JOIN read_parquet({_sql_text(prev_path)}) p "
            "ON f.user_id = p.user_id ORDER BY f.fi, f.rn) "
            f"TO {_sql_text(tmp)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {chunk_rows})"
        )
        con.close()
        joined = pq.read_metadata(tmp).num_rows
        if joined != rows:
            raise ValueError(
                f"previous decisions {prev_path}: {joined - rows} extra rows joined to the "
                f"{rows} users; a user_id appears more than once there (one decision per user expected)"
            )
        os.replace(tmp, target)
    finally:
        con.close()
        Path(tmp).unlink(missing_ok=True)
        shutil.rmtree(spill, ignore_errors=True)


class _RowStream:
    """Hands out the rows of record batches in runs of any requested length, in order."""

    def __init__(self, batches: Iterator[pa.RecordBatch]):
        self.batches = batches
        self.pending: list[pa.RecordBatch] = []
        self.ready = 0

    def take(self, rows: int) -> pa.Table:
        while self.ready < rows:
            b = next(self.batches, None)
            if b is None:
                raise ValueError(
                    f"previous-decision work file ended {rows - self.ready} rows early"
                )
            self.pending.append(b)
            self.ready += b.num_rows
        t = pa.Table.from_batches(self.pending)
        head, rest = t.slice(0, rows), t.slice(rows)
        self.pending, self.ready = rest.to_batches(), rest.num_rows
        return head


def _previous_for_chunk(
    prev: pa.Table, user_ids: np.ndarray, line: np.ndarray, policy: Policy
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """prev_line_cny, prev_band, prev_rules, prev_credit_model_version of one chunk from its
    rows of the aligned file.

    A user without a previous decision keeps the table's current line and an unknown band
    and rules; the others take the previous decision's line, and its band and rules through
    `serving.scoring.policy.previous_bands` / `previous_rules` (unknown where it was deferred).
    """
    n = len(line)
    band = np.full(n, None, dtype=object)  # no previous decision: band unknown
    rules = np.full(n, None, dtype=object)
    version = np.full(n, np.nan)
    matched = prev.column("matched").to_numpy(zero_copy_only=False).astype(bool)
    if not matched.any():
        return line, band, rules, version
    earlier = prev.filter(pa.array(matched))
    # few distinct actions, bands and rule lists: categoricals convert once per distinct value
    earlier = pa.table(
        {
            "new_line_cny": earlier.column("new_line_cny"),
            **{c: pc.dictionary_encode(earlier.column(c)) for c in PREVIOUS_COLUMNS},
        }
    ).to_pandas()
    earlier.insert(0, "user_id", user_ids[matched])
    line = line.copy()
    line[matched] = earlier["new_line_cny"].to_numpy(np.float64)
    band[matched] = previous_bands(earlier, policy).to_numpy()
    rules[matched] = previous_rules(earlier).to_numpy()
    version[matched] = previous_model_versions(earlier).to_numpy()
    return line, band, rules, version


def _model_fingerprint(model: Any) -> dict[str, Any]:
    return {
        "name": getattr(model, "name", ""),
        "version": int(model.version),
        "features": list(model.features),
        "calib": [float(model.calib_a), float(model.calib_b)],
        "trees": int(model.booster.num_trees()),
    }


def _iter_batches(
    files: list[Path], columns: list[str] | None, chunk_rows: int
) -> Iterator[pa.RecordBatch]:
    for f in files:
        # No pre-buffering and a single decode thread: with them, resident memory grew by about
        # one row group per row group read (measured), so peak memory tracked the table size.
        reader = pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 16)
        yield from reader.iter_batches(batch_size=chunk_rows, columns=columns, use_threads=False)


def _matrix(batch: pa.RecordBatch, cols: list[str], where: str) -> np.ndarray:
    X = np.empty((batch.num_rows, len(cols)), dtype=np.float64)
    for j, c in enumerate(cols):
        X[:, j] = batch.column(c).to_numpy(zero_copy_only=False)
    inf = np.isinf(X)
    if inf.any():
        r, j = np.argwhere(inf)[0]
        raise FeatureTableError(
            f"feature table {where}: column {cols[j]} is +-inf for user {batch.column('user_id')[int(r)].as_py()}; "
            "only NaN means missing"
        )
    return X


def _score_chunk(
    run: _Run, batch: pa.RecordBatch, prev: pa.Table | None, timings: dict[str, float]
) -> pd.DataFrame:
    """The decisions of one chunk; `prev`: its rows of the aligned previous decisions."""
    models, policy, as_of, snapshot = run.models, run.policy, run.as_of, run.snapshot
    t0 = time.perf_counter()
    matrices: dict[tuple[str, ...], np.ndarray] = {}
    margins = {}
    for role in ("credit", "fraud"):
        m = models[role]
        key = tuple(m.features)
        if getattr(m, "encoding", None):  # raw categorical inputs: the model encodes them itself
            matrices[key] = m.matrix(pa.Table.from_batches([batch]).select(list(key)).to_pandas())
        elif key not in matrices:
            matrices[key] = _matrix(batch, list(key), snapshot)
            timings["matrix_s"] += time.perf_counter() - t0
        t1 = time.perf_counter()
        raw = m.booster.predict(matrices[key], raw_score=True, num_threads=run.num_threads)
        timings["predict_s"] += time.perf_counter() - t1
        t0 = time.perf_counter()
        margins[role] = float(m.calib_a) * raw + float(m.calib_b)
    t2 = time.perf_counter()
    ctx = (
        pa.Table.from_batches([batch])
        .select(["user_id", "ctx_line_cny", *run.context_columns])
        .to_pandas()
    )
    line = ctx["ctx_line_cny"].to_numpy(np.float64)
    band = np.full(len(ctx), None, dtype=object)  # no previous decision: band unknown
    rules = np.full(len(ctx), None, dtype=object)
    version = np.full(len(ctx), np.nan)
    if prev is not None:
        ids = ctx["user_id"].astype(str).to_numpy(dtype=object)
        line, band, rules, version = _previous_for_chunk(prev, ids, line, policy)
    scored = ctx.assign(
        prev_line_cny=line,
        prev_band=band,
        prev_rules=rules,
        prev_credit_model_version=version,
        credit_model_version=float(models["credit"].version),
        credit_margin=margins["credit"],
        pd=1.0 / (1.0 + np.exp(-margins["credit"])),
        fraud_p=1.0 / (1.0 + np.exp(-margins["fraud"])),
    )
    out = decide_lines(scored, policy, as_of, run.max_age_days).assign(
        as_of=as_of,
        credit_model_version=int(models["credit"].version),
        fraud_model_version=int(models["fraud"].version),
        feature_snapshot=snapshot,
        feature_digest=run.digest,
    )
    timings["policy_s"] += time.perf_counter() - t2
    return out[DECISION_COLUMNS]


class _AtomicParquetStream:
    """Write record batches into one parquet file, renamed into place only when closed cleanly.

    (features.tables.write_parquet needs the whole frame in memory; this keeps one chunk.)
    """

    def __init__(self, path: Path, schema: pa.Schema, compression: str = "zstd"):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        self.writer = pq.ParquetWriter(
            self.tmp, schema, compression=compression, write_statistics=True
        )

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)

    def __enter__(self) -> _AtomicParquetStream:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.writer.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            Path(self.tmp).unlink(missing_ok=True)


def _write_chunk(decisions: pd.DataFrame, path: Path) -> None:
    """A work file: typed to DECISION_SCHEMA once, uncompressed (read back once), atomic."""
    table = pa.Table.from_pandas(decisions, schema=DECISION_SCHEMA, preserve_index=False)
    with _AtomicParquetStream(path, DECISION_SCHEMA, compression="none") as out:
        out.write(table.replace_schema_metadata(None))


def _chunk_table(path: Path) -> pa.Table:
    return pq.read_table(path).replace_schema_metadata(None)


def _write_outputs(
    chunk_paths: list[Path], decisions_path: Path, log_path: Path, run_id: str
) -> tuple[dict[str, int], int]:
    """Stream the chunks into decisions.parquet and, unless this run is logged already, the log.

    One pass over the chunks; both files are renamed into place only when complete. Returns
    the counts by action and the number of log records added.
    """
    log_it = True
    if log_path.exists():  # one chunk of run ids at a time: the log grows with every run
        log_it = not any(
            pc.any(pc.equal(b.column("run_id"), run_id)).as_py()
            for b in _iter_batches([log_path], ["run_id"], 1 << 16)
        )
        if log_it and not pq.read_schema(log_path).equals(LOG_SCHEMA):
            raise ValueError(
                f"decision log {log_path} has another layout than this version writes; "
                "move it aside (it is an audit record: never delete it) and re-run"
            )
    counts = dict.fromkeys(ACTIONS, 0)
    added = 0
    with ExitStack() as stack:
        out = stack.enter_context(_AtomicParquetStream(decisions_path, DECISION_SCHEMA))
        log_out = None
        if log_it:
            log_out = stack.enter_context(_AtomicParquetStream(log_path, LOG_SCHEMA))
            if log_path.exists():  # earlier runs' records first: the log only grows
                old = pq.ParquetFile(log_path)
                for rg in range(old.num_row_groups):
                    log_out.write(old.read_row_group(rg))
        for p in chunk_paths:
            t = _chunk_table(p)
            for d in pc.value_counts(t.column("action")).to_pylist():
                counts[d["values"]] += int(d["counts"])
            out.write(t)
            if log_out is not None:
                ids = pa.array(np.full(t.num_rows, run_id, dtype=object), pa.string())
                log_out.write(t.add_column(0, "run_id", ids).cast(LOG_SCHEMA))
                added += t.num_rows
    return counts, added


def score_batch(
    features_path: str | Path,
    models: Mapping[str, Any],
    policy: Policy,
    out_dir: str | Path,
    as_of: pd.Timestamp | str | None = None,
    chunk_rows: int = 50_000,
    max_age_days: dict[str, float] | None = None,
    num_threads: int = 0,
    progress: bool = True,
) -> ScoreResult:
    """Score a feature table with `models` ("credit" and "fraud"), decide lines, write decisions + log.

    Models need `version`, `features`, `booster` (lightgbm.Booster), `calib_a`, `calib_b`.
    `max_age_days` overrides the policy's per-source staleness limits. `num_threads` 0 lets
    LightGBM use every core.
    """
    timings = {
        "validate_s": 0.0,
        "read_s": 0.0,
        "matrix_s": 0.0,
        "predict_s": 0.0,
        "policy_s": 0.0,
        "write_s": 0.0,
        "previous_s": 0.0,
    }
    t_start = time.perf_counter()
    run = _plan(
        features_path, models, policy, out_dir, as_of, chunk_rows, max_age_days, num_threads
    )
    timings["validate_s"] = time.perf_counter() - t_start
    work = _work_folder(run)
    chunk_paths, resumed = _score_chunks(run, work, progress, timings)
    t0 = time.perf_counter()
    decisions_path = run.day_dir / DECISIONS_FILE
    log_path = decision_log_path(run.out_dir, run.as_of)
    counts, added = _write_outputs(chunk_paths, decisions_path, log_path, run.run_id)
    manifest_path = _write_manifest(run, counts, log_path)
    shutil.rmtree(work)
    timings["write_s"] += time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    return ScoreResult(
        as_of=run.as_of,
        decisions_path=decisions_path,
        log_path=log_path,
        manifest_path=manifest_path,
        run_id=run.run_id,
        rows=run.rows,
        counts=counts,
        credit_model_version=int(models["credit"].version),
        fraud_model_version=int(models["fraud"].version),
        policy_version=policy.version,
        chunks=len(chunk_paths),
        resumed_chunks=resumed,
        log_records_added=added,
        timings=timings,
    )


def _plan(
    features_path: str | Path,
    models: Mapping[str, Any],
    policy: Policy,
    out_dir: str | Path,
    as_of: pd.Timestamp | str | None,
    chunk_rows: int,
    max_age_days: dict[str, float] | None,
    num_threads: int,
) -> _Run:
    """`score_batch`'s arguments checked: the table's schema, keys and as-of, the previous
    decisions found, and the run id of these inputs."""
    if chunk_rows <= 0:
        raise ValueError(f"chunk_rows must be > 0, got {chunk_rows}")
    for role in ("credit", "fraud"):
        if role not in models:
            raise ValueError(f"score_batch: models lacks '{role}' (got {sorted(models)})")
    out_dir = Path(out_dir)
    files = feature_files(features_path)
    where = str(features_path)
    schema = pq.read_schema(files[0])
    for f in files[1:]:
        if not pq.read_schema(f).equals(schema):
            raise FeatureTableError(
                f"feature table {where}: {f.name} has another schema than {files[0].name}"
            )
    requested = pd.Timestamp(as_of).normalize() if as_of is not None else None
    # The context columns depend on which regulations are active, hence on the as-of date.
    probe_date, keys = requested, None
    if probe_date is None:
        if not {"user_id", "as_of", "ctx_line_cny"} <= set(schema.names):
            validate_feature_schema(schema, {}, [], where)
        keys = _check_keys(files, None, chunk_rows, num_threads)
        probe_date = keys[0]
    context_columns = list(dict.fromkeys(required_columns(policy, probe_date, max_age_days)))
    model_features = {role: list(models[role].features) for role in ("credit", "fraud")}
    encoded = {c for r in ("credit", "fraud") for c in (getattr(models[r], "encoding", None) or {})}
    validate_feature_schema(schema, model_features, context_columns, where, encoded)
    all_features = list(dict.fromkeys(model_features["credit"] + model_features["fraud"]))
    _check_infinite_stats(files, [c for c in all_features if c not in encoded])
    as_of_ts, rows = keys or _check_keys(files, requested, chunk_rows, num_threads)
    prev_path = _previous_decisions(out_dir, as_of_ts)
    digest = file_digest(features_path)
    run_id = hashlib.sha256(
        json.dumps(
            {
                "format": SCORING_FORMAT,
                "as_of": str(as_of_ts.date()),
                "features": digest,
                "snapshot": where,
                "models": {r: _model_fingerprint(models[r]) for r in ("credit", "fraud")},
                "policy": [policy.version, policy.digest],
                "max_age_days": max_age_days,
                "previous": file_digest(prev_path) if prev_path else None,
                "chunk_rows": chunk_rows,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    return _Run(
        models=models,
        policy=policy,
        max_age_days=max_age_days,
        chunk_rows=chunk_rows,
        num_threads=num_threads,
        files=files,
        snapshot=where,
        digest=digest,
        as_of=as_of_ts,
        rows=rows,
        context_columns=context_columns,
        columns=list(dict.fromkeys(["user_id", "ctx_line_cny", *context_columns, *all_features])),
        out_dir=out_dir,
        prev_path=prev_path,
        run_id=run_id,
    )


def _work_folder(run: _Run) -> Path:
    """The run's work folder, `as_of=D/.work`: kept when an unfinished run of the same inputs
    left it (its finished chunks are reused), emptied when another run did."""
    work = run.day_dir / ".work"
    if work.exists():
        marker = work / "run_id"
        if not marker.exists() or marker.read_text(encoding="utf-8").strip() != run.run_id:
            log.info("discarding unfinished work of another run in %s", work)
            shutil.rmtree(work)
    if not work.exists():
        write_text(run.run_id + "\n", work / "run_id")
    return work


def _score_chunks(
    run: _Run, work: Path, progress: bool, timings: dict[str, float]
) -> tuple[list[Path], int]:
    """Score the table chunk by chunk into `work`/chunk-NNNNN.parquet, skipping finished chunks.

    Returns the chunk files in table order and how many of them were resumed.
    """
    prev_stream = None
    if run.prev_path is not None:
        aligned = work / "previous.parquet"
        if not aligned.exists():
            t0 = time.perf_counter()
            _align_previous(
                run.files, run.prev_path, run.rows, aligned, run.chunk_rows, run.num_threads
            )
            timings["previous_s"] = time.perf_counter() - t0
        prev_stream = _RowStream(_iter_batches([aligned], None, run.chunk_rows))

    slow = float(os.environ.get(SLOW_CHUNK_ENV, "0") or 0)
    chunk_paths: list[Path] = []
    resumed = 0
    with tqdm(
        total=run.rows, unit="users", desc=f"score {run.as_of.date()}", disable=not progress
    ) as bar:
        batches = _iter_batches(run.files, run.columns, run.chunk_rows)
        i = 0
        while True:
            t0 = time.perf_counter()
            batch = next(batches, None)
            timings["read_s"] += time.perf_counter() - t0
            if batch is None:
                break
            path = work / f"chunk-{i:05d}.parquet"
            prev = prev_stream.take(batch.num_rows) if prev_stream is not None else None
            if path.exists():
                resumed += 1
            else:
                decisions = _score_chunk(run, batch, prev, timings)
                t0 = time.perf_counter()
                _write_chunk(decisions, path)
                timings["write_s"] += time.perf_counter() - t0
                if slow:
                    time.sleep(slow)
            chunk_paths.append(path)
            bar.update(batch.num_rows)
            i += 1
    return chunk_paths, resumed


def _write_manifest(run: _Run, counts: dict[str, int], log_path: Path) -> Path:
    """as_of=D/manifest.json: what the run read and wrote."""
    prev_path = run.prev_path
    return write_json(
        {
            "as_of": str(run.as_of.date()),
            "run_id": run.run_id,
            "rows": run.rows,
            "counts": counts,
            "credit_model_version": int(run.models["credit"].version),
            "fraud_model_version": int(run.models["fraud"].version),
            "policy_version": run.policy.version,
            "policy_digest": run.policy.digest,
            "feature_snapshot": run.snapshot,
            "feature_digest": run.digest,
            # paths relative to out_dir, so moving the folder keeps the manifest's bytes
            "previous_decisions": (
                prev_path.relative_to(run.out_dir).as_posix() if prev_path else None
            ),
            "chunk_rows": run.chunk_rows,
            "decision_log": log_path.relative_to(run.out_dir).as_posix(),
        },
        run.day_dir / "manifest.json",
    )


def run_scoring(
    as_of: str | pd.Timestamp,
    features_dir: str | Path,
    out_dir: str | Path,
    tracking_uri: str,
    policy_file: str | Path | None = None,
    calendar: str | Path | None = None,
    chunk_rows: int = 50_000,
    max_age_days: dict[str, float] | None = None,
    num_threads: int = 0,
) -> ScoreResult:
    """The `creditline score` job: load the champions and the policy, then `score_batch`."""
    from serving.scoring.models import load_champions
    from serving.scoring.policy import load_policy

    policy = load_policy(policy_file, calendar)
    models = load_champions(tracking_uri)
    return score_batch(
        features_dir,
        models,
        policy,
        out_dir,
        as_of=as_of,
        chunk_rows=chunk_rows,
        max_age_days=max_age_days,
        num_threads=num_threads,
    )
