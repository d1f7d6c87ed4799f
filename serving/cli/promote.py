"""`creditline promote`: move @champion to a version if it passes the gates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from serving.cli import app
from serving.cli.common import CONFIG_OPTION, config_or_exit, fail


@app.command()
def promote(
    model: Annotated[str, typer.Argument(help="credit | fraud, or a registered model name")],
    version: Annotated[
        int | None, typer.Option("--version", help="Version to promote (default: @challenger).")
    ] = None,
    mlruns: Annotated[
        Path | None, typer.Option("--mlruns", help="MLflow folder (default: paths.mlruns).")
    ] = None,
    config: Path = CONFIG_OPTION,
) -> None:
    """Check the promotion gates (AUC vs champion, calibration, score PSI, monotone directions); promote if all pass.

    Exits 1 when a gate refuses, naming the gate and the shortfall.

    Example: creditline promote credit --version 3
    """
    cfg = config_or_exit(config)
    from training.fit import MODEL_SPECS
    from training.promote import gates_report
    from training.promote import promote as run_promote
    from training.tracking import tracking_uri

    name = MODEL_SPECS[model].registered_name if model in MODEL_SPECS else model
    try:
        result = run_promote(
            name,
            version,
            tracking_uri=tracking_uri(mlruns or Path(cfg.paths.mlruns)),
            **cfg.gates.model_dump(),
        )
    except (ValueError, LookupError) as exc:
        fail(str(exc))
    typer.echo(gates_report(result))
    if not result.passed:
        raise typer.Exit(1)
