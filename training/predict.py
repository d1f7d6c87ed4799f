"""Score any table with a registered model, applying the encoding it was trained with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.tables import write_parquet, write_text
from training.tabular import read_any_table


@dataclass(frozen=True)
class PredictResult:
    out: Path
    rows: int
    name: str
    version: int


def predict_table(
    model_ref: str, table: str | Path, out: str | Path, *, tracking_uri: str
) -> PredictResult:
    """Score a table with a registered model (NAME, NAME@ALIAS or NAME/VERSION).

    Output: the table's non-feature columns (ids, labels, dates), then `probability` and
    `log_odds` (calibrated), `model`, `model_version`. Parquet, or CSV by the extension of `out`.
    """
    from training.registry import load_model, parse_model_ref

    name, ref = parse_model_ref(model_ref)
    model = load_model(name, ref, tracking_uri)
    df = read_any_table(table)
    missing = [c for c in model.features if c not in df.columns]
    if missing:
        raise ValueError(
            f"table {table} lacks {len(missing)} column(s) that {name} v{model.version} needs: {', '.join(missing)}"
        )
    margin = model.margin(df)
    keep = [c for c in df.columns if c not in set(model.features)]
    scored = df[keep].assign(
        probability=1.0 / (1.0 + np.exp(-margin)),
        log_odds=margin,
        model=name,
        model_version=model.version,
    )
    out = Path(out)
    if out.suffix.lower() == ".csv":
        write_text(scored.to_csv(index=False), out)
    else:
        write_parquet(scored, out)
    return PredictResult(out=out, rows=len(scored), name=name, version=model.version)
