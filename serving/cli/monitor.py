"""`creditline monitor`: drift, matured performance and misjudgements of the champion at one date."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from serving.cli import app
from serving.cli.common import CONFIG_OPTION, config_or_exit, fail


@app.command("monitor")
def monitor(
    as_of: Annotated[
        datetime, typer.Option("--as-of", formats=["%Y-%m-%d"], help="As-of date YYYY-MM-DD.")
    ],
    reference: Annotated[
        list[Path] | None,
        typer.Option(
            "--reference",
            help="Reference feature table(s) (default: the champion's training tables, from its MLflow lineage).",
        ),
    ] = None,
    html: Annotated[
        bool, typer.Option("--html/--no-html", help="Also write the evidently drift report (slow).")
    ] = True,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Compare the champion's training reference with the current feature table and scores.

    Writes summary.json, summary.html, drift_features.parquet and drift_report.html under
    <paths.reports>/monitoring/as_of=D/ and logs a run to the `creditline-monitoring` experiment.
    Exit code 0 either way; the summary says whether retraining is triggered.

    Example: creditline monitor --as-of 2025-06-30
    """
    from serving.monitoring.monitor import run_monitor
    from training.tracking import tracking_uri

    cfg = config_or_exit(config)
    uri = tracking_uri(cfg.paths.mlruns)
    try:
        out = run_monitor(
            as_of=as_of,
            features_dir=cfg.paths.features,
            decisions_dir=cfg.paths.decisions,
            reports_dir=cfg.paths.reports,
            tracking_uri=uri,
            settings=cfg.monitor,
            reference_paths=list(reference) if reference else None,
            html=html,
            seed=cfg.training.seed,
        )
    except (ValueError, FileNotFoundError, LookupError) as exc:
        fail(str(exc))
        return
    s = out.summary
    typer.echo(
        f"monitored {s['champion']['name']} v{s['champion']['version']} as of {s['as_of']}: "
        f"score PSI {s['score']['psi']:.3f}, {len(s['drift']['drifted'])} of "
        f"{len(s['drift']['features_tested'])} important features drifted"
    )
    if s["trigger"]["retrain"]:
        typer.echo("RETRAIN TRIGGERED:")
        for r in s["trigger"]["reasons"]:
            typer.echo(f"  - {r}")
    else:
        typer.echo("no retraining trigger fired")
    typer.echo(f"summary: {out.summary_path}")
    typer.echo(f"report: {out.folder / 'summary.html'}")
    if out.html_path:
        typer.echo(f"drift report: {out.html_path}")
    if out.mlflow_run_id:
        typer.echo(f"mlflow run: {out.mlflow_run_id} (experiment creditline-monitoring)")
