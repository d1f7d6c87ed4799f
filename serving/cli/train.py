"""`creditline train`: train the credit or fraud model and register it as @challenger."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from serving.cli import app
from serving.cli.common import CONFIG_OPTION, config_or_exit, fail


def _dates(text: str | None) -> list[str]:
    return [d.strip() for d in text.split(",") if d.strip()] if text else []


@app.command()
def train(
    model: Annotated[str, typer.Argument(help="credit | fraud")],
    train_as_of: Annotated[
        str | None,
        typer.Option(
            "--train-as-of", help="Training as-of dates, comma-separated (stacked snapshots)."
        ),
    ] = None,
    oot_as_of: Annotated[
        str | None, typer.Option("--oot-as-of", help="Out-of-time as-of date.")
    ] = None,
    valid_as_of: Annotated[
        str | None,
        typer.Option(
            "--valid-as-of",
            help="Validation as-of dates (default: 20% of training users held out).",
        ),
    ] = None,
    features: Annotated[
        Path | None,
        typer.Option("--features", help="Feature tables folder (default: paths.features)."),
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option("--table", help="Train from this CSV/parquet file instead of feature tables."),
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="Label column of --table (0/1).")
    ] = None,
    id_col: Annotated[
        str | None, typer.Option("--id", help="Id column of --table (not a feature).")
    ] = None,
    time_col: Annotated[
        str | None,
        typer.Option("--time", help="Date column of --table: out-of-time split (else stratified)."),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="Registered model name for --table (default: credit-pd-tabular)."
        ),
    ] = None,
    mlruns: Annotated[
        Path | None, typer.Option("--mlruns", help="MLflow folder (default: paths.mlruns).")
    ] = None,
    config: Path = CONFIG_OPTION,
) -> None:
    """Train a model, log it to MLflow and register it as @challenger.

    Example: creditline train credit --train-as-of 2024-06-30,2024-07-31,2024-08-31 --oot-as-of 2024-11-30

    Example: creditline train credit --table applications.csv --label bad --id app_id --time app_date
    """
    cfg = config_or_exit(config)
    from training.tracking import tracking_uri

    uri = tracking_uri(mlruns or Path(cfg.paths.mlruns))
    common = dict(
        tracking_uri=uri,
        settings=cfg.model.model_dump(),
        gates=cfg.gates.model_dump(),
        seed=cfg.training.seed,
        num_threads=cfg.training.num_threads,
    )
    try:
        if table is not None:
            if label is None:
                fail("--table needs --label COL (the 0/1 outcome column)")
            from training.tabular import train_on_table

            result = train_on_table(
                table,
                label,
                kind=model,
                id_col=id_col,
                time_col=time_col,
                registered_name=name,
                **common,
            )
        else:
            if not train_as_of or not oot_as_of:
                fail(
                    "give --train-as-of D1[,D2,...] and --oot-as-of D (or --table FILE --label COL)"
                )
            from training.train import train_on_feature_tables

            result = train_on_feature_tables(
                model,
                features or Path(cfg.paths.features),
                _dates(train_as_of),
                oot_as_of,
                valid_as_of=_dates(valid_as_of) or None,
                **common,
            )
    except (ValueError, FileNotFoundError, LookupError, RuntimeError) as exc:
        fail(str(exc))
    typer.echo(result.summary())
    typer.echo(f"tracking store: {uri}")
