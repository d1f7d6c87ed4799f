"""Train from any table (CSV or parquet) a team brings, and score tables with registered models.

With a time column the split is out-of-time (oldest 60% train, next 20% validation, newest 20%
out-of-time); without, stratified 60/20/20. Non-numeric columns are encoded numerically
(`training.encoding`), the encoding travels with the model, and `predict_table` applies it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from features.tables import file_digest
from training.encoding import fit_encoding, is_numeric
from training.fit import model_spec
from training.splits import stratified_split, time_split

log = logging.getLogger(__name__)

SPLIT = (0.6, 0.2, 0.2)
TRUE_VALUES = {"1", "1.0", "true", "yes", "y", "bad", "default"}
FALSE_VALUES = {"0", "0.0", "false", "no", "n", "good"}


def read_any_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq") or path.is_dir():
        return pd.read_parquet(path)
    raise ValueError(f"table {path}: unsupported file type {suffix!r}; use .csv or .parquet")


def binary_label(df: pd.DataFrame, label: str, where: str) -> pd.Series:
    """The label as 0.0/1.0 (rows with no label dropped earlier); clear errors otherwise."""
    if label not in df.columns:
        raise ValueError(
            f"{where}: label column {label!r} not found; columns are: {', '.join(map(str, df.columns))}"
        )
    s = df[label]
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        y = s.astype("float64")
    else:
        low = s.astype("string").str.strip().str.lower()
        y = pd.Series(
            np.where(low.isin(TRUE_VALUES), 1.0, np.where(low.isin(FALSE_VALUES), 0.0, np.nan)),
            index=s.index,
        )
        y[low.isna()] = np.nan
    known = y.dropna()
    odd = sorted(set(known.unique()) - {0.0, 1.0})
    unreadable = int((y.isna() & s.notna()).sum())
    if odd or unreadable:
        examples = s[(y.isna() & s.notna()) | y.isin(odd)].astype(str).unique()[:5]
        raise ValueError(
            f"{where}: label column {label!r} must be binary (0/1, true/false); found values {list(examples)}"
        )
    if known.nunique() < 2:
        value = known.iloc[0] if len(known) else "nothing"
        raise ValueError(
            f"{where}: label column {label!r} is constant ({value} in all {len(known)} labelled rows); "
            "a model needs both outcomes"
        )
    return y


def _looks_like_dates(s: pd.Series) -> bool:
    """Text that is (almost) all ISO dates, as a CSV hands them back: not a feature."""
    if is_numeric(s):
        return False
    values = s.dropna().astype(str)
    return len(values) > 0 and values.str.match(r"^\d{4}-\d{2}-\d{2}").mean() >= 0.95


def usable_features(
    df: pd.DataFrame, exclude: list[str], where: str
) -> tuple[list[str], list[str], dict[str, str]]:
    """(features, text columns among them, dropped column -> reason)."""
    features, text, dropped = [], [], {}
    for col in df.columns:
        if col in exclude:
            continue
        s = df[col]
        if pd.api.types.is_datetime64_any_dtype(s) or _looks_like_dates(s):
            dropped[col] = "date/time column (pass it as --time for an out-of-time split)"
        elif s.isna().all():
            dropped[col] = "empty"
        elif s.nunique(dropna=True) < 2 and not s.isna().any():
            dropped[col] = "constant"
        else:
            features.append(str(col))
            if not is_numeric(s):
                text.append(str(col))
    if not features:
        raise ValueError(
            f"{where}: no usable feature columns (besides label/id/time: "
            + (", ".join(f"{c} ({r})" for c, r in dropped.items()) or "none")
            + ")"
        )
    return features, text, dropped


def train_on_table(
    table: str | Path,
    label: str,
    *,
    kind: str = "credit",
    id_col: str | None = None,
    time_col: str | None = None,
    registered_name: str | None = None,
    tracking_uri: str,
    settings: dict,
    gates: dict,
    seed: int = 42,
    num_threads: int = 2,
):
    """Train a model on a team's own table and register it (default name `<model>-tabular`)."""
    from training.train import train_and_register

    spec = model_spec(kind)
    where = f"table {table}"
    df = read_any_table(table)
    for col, what in ((id_col, "--id"), (time_col, "--time")):
        if col is not None and col not in df.columns:
            raise ValueError(
                f"{where}: {what} column {col!r} not found; columns are: {', '.join(map(str, df.columns))}"
            )
    y_all = binary_label(df, label, where)
    n_unlabelled = int(y_all.isna().sum())
    if n_unlabelled:
        log.warning("%s: %d rows without a label are left out", where, n_unlabelled)
    df = df.loc[y_all.notna()].reset_index(drop=True).assign(**{label: y_all.dropna().to_numpy()})
    if time_col is not None:
        df = df.assign(**{time_col: pd.to_datetime(df[time_col], errors="coerce")})
    exclude = [label] + [c for c in (id_col, time_col) if c]
    features, text_cols, dropped = usable_features(df, exclude, where)
    for col, reason in dropped.items():
        log.info("%s: column %s not used (%s)", where, col, reason)

    if time_col is not None:
        parts = time_split(df[time_col], SPLIT)
        split = f"out-of-time on {time_col!r}: oldest 60% train, next 20% validation, newest 20% out-of-time"
    else:
        parts = stratified_split(df[label].to_numpy(), SPLIT, seed)
        split = "stratified random 60/20/20 (no time column: the test sample is NOT out-of-time)"
    train, valid, oot = (df.iloc[p].reset_index(drop=True) for p in parts)
    for frame, part in ((train, "training"), (valid, "validation"), (oot, "test")):
        if frame[label].nunique() < 2:
            raise ValueError(
                f"{where}: the {part} part has only one outcome ({len(frame)} rows); the table is too small"
            )
    encoding = fit_encoding(train, text_cols, train[label]) if text_cols else {}

    def window(frame: pd.DataFrame) -> dict:
        if time_col is None:
            return {"rows": len(frame)}
        return {
            "rows": len(frame),
            "time_range": f"{frame[time_col].min():%Y-%m-%d} .. {frame[time_col].max():%Y-%m-%d}",
        }

    lineage = {
        "split": split,
        "table": {
            "path": str(table),
            "sha256": file_digest(table),
            "rows": len(df),
            "label": label,
        },
        "dropped_columns": dropped,
        "text_columns": text_cols,
        "train": window(train),
        "valid": window(valid),
        "oot": window(oot),
    }
    return train_and_register(
        train,
        valid,
        oot,
        kind=kind,
        registered_name=registered_name or f"{spec.registered_name}-tabular",
        features=features,
        label=label,
        monotone=None,
        rare_class=spec.rare_class,
        encoding=encoding,
        lineage=lineage,
        metadata_version=None,
        tracking_uri=tracking_uri,
        settings=settings,
        gates=gates,
        seed=seed,
        num_threads=num_threads,
        group_col=id_col,
    )
