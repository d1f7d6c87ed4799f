"""Reading and writing tables: the one module that touches parquet files, always atomically."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")


def write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a frame to parquet atomically (temp file in the same folder, then rename).

    Deterministic bytes: no pandas index, fixed compression, no creation timestamp.
    """
    path = Path(path)
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata(None)
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(text: str, path: str | Path) -> Path:
    """Write text atomically."""
    path = Path(path)
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    """Write JSON atomically with sorted keys (so equal content gives equal bytes)."""
    return write_text(
        json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n", path
    )


def read_table_dir(folder: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read every parquet part in a table folder (sorted by name) into one frame."""
    folder = Path(folder)
    parts = sorted(folder.glob("*.parquet")) if folder.is_dir() else [folder]
    if not parts or not parts[0].exists():
        raise FileNotFoundError(f"{folder}: no parquet files found")
    frames = [pq.read_table(p, columns=columns).to_pandas() for p in parts]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def file_digest(path: str | Path) -> str:
    """sha256 of a file or, for a folder, of its parquet parts in name order."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def concat_parquet(parts: list[str | Path], path: str | Path) -> Path:
    """Concatenate parquet files of one schema into one file atomically, one part in memory at a
    time (so a large ground-truth table is never held whole). Deterministic bytes, like write_parquet."""
    path = Path(path)
    if not parts:
        raise ValueError(f"{path}: no parquet parts to concatenate")
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        writer = None
        for p in parts:
            table = pq.read_table(p).replace_schema_metadata(None)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd", write_statistics=True)
            writer.write_table(table)
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
