"""Reading and writing tables: the one module that touches parquet files, always atomically."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

try:
    from _json import encode_basestring as _c_encode_str
    from _json import make_encoder as _c_make_encoder
except ImportError:  # pragma: no cover - CPython always has the accelerator
    _c_encode_str = _c_make_encoder = None


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


def write_texts(items: Iterable[tuple[str | Path, str]]) -> int:
    """Write many small text files atomically (each: temp file in its folder, then rename).

    The same bytes as `write_text` per file, without its per-file `mkdir`: each folder is created
    once (thousands of per-user pages in one folder made the `mkdir` calls a large part of the
    writing). Returns the number of files written.
    """
    made: set[Path] = set()
    n = 0
    for path, text in items:
        path = Path(path)
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        n += 1
    return n


def jsonable(obj):
    """NaN/inf -> None and numpy scalars -> Python, so the JSON is strict and stable."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(obj: Any, path: str | Path) -> Path:
    """Write JSON atomically with sorted keys (so equal content gives equal bytes)."""
    return write_text(dumps_indented(obj) + "\n", path)


_CONTAINERS = (list, tuple, dict)


def dumps_indented(obj: Any, indent: int = 2) -> str:
    """Exactly `json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False, default=str)`,
    several times faster on large nested documents.

    With `indent`, the standard library encodes every value in Python; here each container
    that holds no other container is handed whole to the C encoder, with the separators that
    reproduce the indented layout at its depth, so Python only walks the nesting. Circular
    references are not detected (they cannot occur in what this project writes).
    """
    if _c_make_encoder is None:  # pragma: no cover - CPython always has the accelerator
        return json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False, default=str)
    flat: dict[int, Any] = {}
    out: list[str] = []
    append = out.append

    def scalar(o: Any, level: int) -> str:
        return "".join(encoder(level)(o, 0))

    def encoder(level: int):
        # encodes a container at `level` whose values are all scalars, items separated as the
        # indented layout separates them one level deeper
        e = flat.get(level)
        if e is None:
            sep = ",\n" + " " * (indent * (level + 1))
            e = flat[level] = _c_make_encoder(
                None, str, _c_encode_str, None, ": ", sep, True, False, True
            )
        return e

    def key_text(k: Any) -> str:
        if isinstance(k, str):
            return k
        if isinstance(k, float):
            return scalar(k, 0)
        if k is True:
            return "true"
        if k is False:
            return "false"
        if k is None:
            return "null"
        if isinstance(k, int):
            return int.__repr__(k)
        raise TypeError(f"keys must be str, int, float, bool or None, not {k.__class__.__name__}")

    def enc(o: Any, level: int) -> None:
        if isinstance(o, dict):
            if not o:
                append("{}")
                return
            values = o.values()
            opening, closing = "{", "}"
        elif isinstance(o, (list, tuple)):
            if not o:
                append("[]")
                return
            values = o
            opening, closing = "[", "]"
        else:
            append(scalar(o, level))
            return
        inner = "\n" + " " * (indent * (level + 1))
        outer = "\n" + " " * (indent * level)
        for v in values:
            if isinstance(v, _CONTAINERS):
                break
        else:  # no nested container: the C encoder writes the items
            text = "".join(encoder(level)(o, 0))
            append(opening + inner + text[1:-1] + outer + closing)
            return
        append(opening + inner)
        first = True
        if opening == "{":
            for k, v in sorted(o.items()):
                if not first:
                    append("," + inner)
                first = False
                append(_c_encode_str(key_text(k)) + ": ")
                enc(v, level + 1)
        else:
            for v in o:
                if not first:
                    append("," + inner)
                first = False
                enc(v, level + 1)
        append(outer + closing)

    enc(obj, 0)
    return "".join(out)


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
                writer = pq.ParquetWriter(
                    tmp, table.schema, compression="zstd", write_statistics=True
                )
            writer.write_table(table)
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
