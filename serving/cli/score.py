"""`creditline score`: the nightly batch job (champion models + line policy -> decisions)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from serving.cli import app
from serving.cli.common import CONFIG_OPTION, config_or_exit, fail


@app.command("score")
def score(
    as_of: Annotated[
        datetime, typer.Option("--as-of", formats=["%Y-%m-%d"], help="As-of date YYYY-MM-DD.")
    ],
    features: Annotated[
        Path | None,
        typer.Option(
            "--features", help="Feature table folder (default: <paths.features>/as_of=D)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Decisions folder (default: paths.decisions).")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Line policy TOML (default: scoring.policy_file, else the packaged one).",
        ),
    ] = None,
    calendar: Annotated[
        Path | None,
        typer.Option(
            "--calendar",
            help="Scenario calendar JSON (its regulation / risk_appetite entries apply).",
        ),
    ] = None,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Score every user with the champion models and decide their credit lines.

    Example: creditline score --as-of 2026-10-31 --calendar data/truth/scenario_calendar.json
    """
    from features.catalog import as_of_dir
    from serving.scoring.batch import run_scoring
    from serving.scoring.models import ChampionMissingError

    cfg = config_or_exit(config)
    day = f"{as_of:%Y-%m-%d}"
    sc = cfg.scoring
    features_dir = features or as_of_dir(cfg.paths.features, day)
    tracking_uri = f"sqlite:///{Path(cfg.paths.mlruns).as_posix()}/mlflow.db"
    try:
        result = run_scoring(
            as_of=day,
            features_dir=features_dir,
            out_dir=out or Path(cfg.paths.decisions),
            tracking_uri=tracking_uri,
            policy_file=policy or sc.policy_file,
            calendar=calendar or sc.calendar,
            chunk_rows=sc.chunk_rows,
            max_age_days=sc.max_source_age_days,
            num_threads=sc.num_threads,
        )
    except (ValueError, FileNotFoundError, ChampionMissingError) as exc:
        fail(str(exc))
        return
    counts = ", ".join(f"{a} {n}" for a, n in result.counts.items() if n)
    typer.echo(f"scored {result.rows} users as of {day}: {counts}")
    typer.echo(
        f"models: credit-pd v{result.credit_model_version}, fraud v{result.fraud_model_version}; "
        f"policy {result.policy_version}"
    )
    if result.resumed_chunks:
        typer.echo(
            f"resumed {result.resumed_chunks} of {result.chunks} chunks from an interrupted run"
        )
    typer.echo(f"decisions: {result.decisions_path}")
    typer.echo(f"decision log: {result.log_path} (+{result.log_records_added} records)")
    typer.echo(f"manifest: {result.manifest_path}")
