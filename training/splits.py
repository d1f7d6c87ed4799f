"""Training sets: stacked monthly feature snapshots, out-of-time and stratified splits.

A user appears in many monthly snapshots; the validation hold-out is drawn by user so the
same person never sits on both sides of early stopping and calibration.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from features.catalog import feature_table_path
from features.tables import file_digest, read_table_dir

snapshot_path = feature_table_path  # (the name training code uses)


def read_snapshots(
    features_dir: str | Path, as_of_dates: list[str]
) -> tuple[pd.DataFrame, list[dict]]:
    """Stack the feature tables of several as-of dates; return them with their lineage.

    Lineage per snapshot: as_of, path, sha256 digest, rows, metadata_version (from its manifest).
    """
    frames, lineage = [], []
    for d in as_of_dates:
        path = snapshot_path(features_dir, d)
        if not path.exists():
            raise FileNotFoundError(
                f"feature table for as-of {pd.Timestamp(d):%Y-%m-%d} not found at {path}; "
                f"build it first (creditline features --as-of {pd.Timestamp(d):%Y-%m-%d})"
            )
        df = read_table_dir(path)
        manifest_path = path.parent / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        lineage.append(
            {
                "as_of": f"{pd.Timestamp(d):%Y-%m-%d}",
                "path": str(path),
                "sha256": file_digest(path),
                "rows": len(df),
                "metadata_version": manifest.get("metadata_version"),
            }
        )
        frames.append(df)
    return pd.concat(frames, ignore_index=True), lineage


def labelled_rows(df: pd.DataFrame, label: str, matured: str | None, where: str) -> pd.DataFrame:
    """Rows whose label has matured and is known; an error if none are left."""
    for col in [label] + ([matured] if matured else []):
        if col not in df.columns:
            raise ValueError(
                f"{where}: column {col!r} missing; columns are {list(df.columns)[:15]} ..."
            )
    keep = df[label].notna()
    if matured:
        keep &= df[matured].fillna(False).astype(bool)
    out = df.loc[keep].reset_index(drop=True)
    if out.empty:
        raise ValueError(
            f"{where}: no rows with a matured {label!r} ({len(df)} rows, none matured); "
            "pick as-of dates at least one label window before the last data"
        )
    return out


def split_by_user(
    df: pd.DataFrame, id_col: str, label: str, valid_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a share of users (stratified by whether the user ever had a positive label)."""
    per_user = df.groupby(id_col, sort=True)[label].max()
    rng = np.random.default_rng(seed)
    valid_users: list = []
    for _, users in per_user.groupby(per_user.values, sort=True):
        ids = users.index.to_numpy()
        n = int(round(len(ids) * valid_fraction))
        valid_users.extend(rng.permutation(ids)[:n])
    in_valid = df[id_col].isin(set(valid_users))
    return df.loc[~in_valid].reset_index(drop=True), df.loc[in_valid].reset_index(drop=True)


def stratified_split(
    y: pd.Series | np.ndarray, fractions: tuple[float, ...], seed: int
) -> list[np.ndarray]:
    """Row positions split by `fractions` (summing to 1), keeping the label share in each part."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    bounds = np.cumsum((0.0,) + tuple(fractions))
    for value in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == value))
        cuts = np.round(bounds * len(idx)).astype(int)
        for i in range(len(fractions)):
            parts[i].append(idx[cuts[i] : cuts[i + 1]])
    return [np.sort(np.concatenate(p)) for p in parts]


def time_split(times: pd.Series, fractions: tuple[float, ...]) -> list[np.ndarray]:
    """Row positions split in time order; rows sharing a timestamp stay on one side.

    The last part is the out-of-time sample: strictly later than every training row.
    """
    t = pd.to_datetime(times, errors="coerce")
    if t.isna().any():
        raise ValueError(f"time column {times.name!r}: {int(t.isna().sum())} rows are not dates")
    order = np.argsort(t.to_numpy(), kind="mergesort")
    sorted_t = t.to_numpy()[order]
    # a cut may only fall where the timestamp changes, so equal times stay on one side
    boundaries = np.flatnonzero(sorted_t[1:] != sorted_t[:-1]) + 1
    n_cuts = len(fractions) - 1
    if len(boundaries) < n_cuts:
        raise ValueError(
            f"time column {times.name!r} has too few distinct times ({t.nunique()}) for an out-of-time split"
        )
    cuts = [0]
    for k, share in enumerate(np.cumsum(fractions)[:-1]):
        # leave enough boundaries for the cuts still to come
        allowed = boundaries[: len(boundaries) - (n_cuts - 1 - k)]
        allowed = allowed[allowed > cuts[-1]]
        cuts.append(int(allowed[np.argmin(np.abs(allowed - share * len(t)))]))
    cuts.append(len(t))
    parts = [np.sort(order[cuts[i] : cuts[i + 1]]) for i in range(len(fractions))]
    return parts
