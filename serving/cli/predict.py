"""`creditline predict`: score any table with a registered model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from serving.cli import app
from serving.cli.common import CONFIG_OPTION, config_or_exit, fail


@app.command()
def predict(
    model: Annotated[
        str,
        typer.Option("--model", help="NAME, NAME@ALIAS or NAME/VERSION (default alias: champion)."),
    ],
    table: Annotated[Path, typer.Option("--table", help="CSV or parquet file to score.")],
    out: Annotated[Path, typer.Option("--out", help="Output file (.parquet or .csv).")],
    mlruns: Annotated[
        Path | None, typer.Option("--mlruns", help="MLflow folder (default: paths.mlruns).")
    ] = None,
    config: Path = CONFIG_OPTION,
) -> None:
    """Score a table with a registered model, applying the encoding it was trained with.

    Example: creditline predict --model credit-pd-tabular@challenger --table holdout.csv --out scored.csv
    """
    cfg = config_or_exit(config)
    from training.predict import predict_table
    from training.tracking import tracking_uri

    try:
        result = predict_table(
            model, table, out, tracking_uri=tracking_uri(mlruns or Path(cfg.paths.mlruns))
        )
    except (ValueError, FileNotFoundError, LookupError) as exc:
        fail(str(exc))
    typer.echo(f"scored {result.rows} rows with {result.name} v{result.version} -> {result.out}")
