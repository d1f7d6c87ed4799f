"""The data catalog: every path under `data/` is built here and nowhere else.

Tables of one as-of date live in a folder `as_of=YYYY-MM-DD` (a Hive-style partition), so an
as-of is always a calendar date: a time of day would name a different folder.

>>> as_of_dirname("2025-06-30")
'as_of=2025-06-30'
>>> feature_table_path("data/features", "2025-06-30").as_posix()
'data/features/as_of=2025-06-30/features.parquet'
>>> decision_log_path("data/decisions", "2025-06-30").as_posix()
'data/decisions/log/as_of=2025-06-30.parquet'
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

_AS_OF_DIR = re.compile(r"as_of=(\d{4}-\d{2}-\d{2})")

FEATURES_FILE = "features.parquet"
DECISIONS_FILE = "decisions.parquet"
EXPLANATIONS_FILE = "explanations.parquet"


def as_of_str(as_of: str | pd.Timestamp) -> str:
    return pd.Timestamp(as_of).strftime("%Y-%m-%d")


def as_of_dirname(as_of: str | pd.Timestamp) -> str:
    return f"as_of={as_of_str(as_of)}"


def as_of_dir(folder: str | Path, as_of: str | pd.Timestamp) -> Path:
    """The partition folder of one as-of under `folder` (features, decisions, explanations, reports)."""
    return Path(folder) / as_of_dirname(as_of)


def as_of_dirs(folder: str | Path, name: str) -> dict[pd.Timestamp, Path]:
    """`{as_of: folder/as_of=D/name}` for every partition under `folder` that holds `name`.

    Folders whose name is not exactly `as_of=YYYY-MM-DD` (a temp folder, a typo) are ignored.
    """
    out = {}
    for d in Path(folder).glob("as_of=*"):
        m = _AS_OF_DIR.fullmatch(d.name)
        if m and (d / name).exists():
            out[pd.Timestamp(m.group(1))] = d / name
    return out


def feature_table_path(features_dir: str | Path, as_of: str | pd.Timestamp) -> Path:
    return as_of_dir(features_dir, as_of) / FEATURES_FILE


def decisions_path(decisions_dir: str | Path, as_of: str | pd.Timestamp) -> Path:
    return as_of_dir(decisions_dir, as_of) / DECISIONS_FILE


def decision_log_dir(decisions_dir: str | Path) -> Path:
    """The append-only decision log (one file per as-of) and model-ops events beside it."""
    return Path(decisions_dir) / "log"


def decision_log_path(decisions_dir: str | Path, as_of: str | pd.Timestamp) -> Path:
    return decision_log_dir(decisions_dir) / f"{as_of_dirname(as_of)}.parquet"


def model_ops_path(log_dir: str | Path, as_of: str | pd.Timestamp, kind: str | None = None) -> Path:
    """A model-ops event file (retrain outcome; `kind="bootstrap"` for the first models)."""
    base = Path(log_dir) / "model_ops"
    return (base / kind if kind else base) / f"{as_of_dirname(as_of)}.parquet"


def explanations_path(explanations_dir: str | Path, as_of: str | pd.Timestamp) -> Path:
    return as_of_dir(explanations_dir, as_of) / EXPLANATIONS_FILE


def monitoring_dir(reports_dir: str | Path, as_of: str | pd.Timestamp) -> Path:
    return as_of_dir(Path(reports_dir) / "monitoring", as_of)


def explanation_reports_dir(reports_dir: str | Path, as_of: str | pd.Timestamp) -> Path:
    return as_of_dir(Path(reports_dir) / "explanations", as_of)


def available_as_ofs(features_dir: str | Path) -> list[pd.Timestamp]:
    """As-of dates that have a feature table, oldest first."""
    return sorted(as_of_dirs(features_dir, FEATURES_FILE))


def latest_before(folder: str | Path, name: str, as_of: str | pd.Timestamp) -> Path | None:
    """`folder/as_of=D/name` of the latest D strictly before `as_of`, if any."""
    earlier = {d: p for d, p in as_of_dirs(folder, name).items() if d < pd.Timestamp(as_of)}
    return earlier[max(earlier)] if earlier else None
