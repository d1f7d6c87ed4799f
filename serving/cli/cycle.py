"""`creditline cycle`: the monthly loop (features, score, explain, monitor, retrain) over a period."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from serving.cli import app
from serving.cli.common import CONFIG_OPTION, config_or_exit, fail


@app.command("cycle")
def cycle(
    start: Annotated[
        datetime,
        typer.Option(
            "--from", formats=["%Y-%m-%d"], help="First month (its month-end is the first as-of)."
        ),
    ],
    end: Annotated[
        datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last month, inclusive.")
    ],
    raw: Annotated[
        Path | None, typer.Option("--raw", help="Raw tables folder (default: paths.raw).")
    ] = None,
    baseline: Annotated[
        bool | None,
        typer.Option(
            "--baseline/--no-baseline",
            help="Also score with frozen models (the no-loop comparison).",
        ),
    ] = None,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Run the operating loop month by month and write a summary with the headline figure.

    Each month-end: build features, score with the champions and the line policy, explain
    downgrades, monitor drift/performance/misjudgements, retrain when a trigger fires.

    Example: creditline cycle --from 2024-10-01 --to 2025-12-31
    """
    from serving.loop.cycle import cycle_settings, run_cycle
    from training.tracking import tracking_uri

    cfg = config_or_exit(config)
    p = cfg.paths
    settings = cycle_settings(
        monitor=cfg.monitor.model_dump(),
        model=cfg.model.model_dump() if hasattr(cfg, "model") else {},
        gates=cfg.gates.model_dump() if hasattr(cfg, "gates") else {},
        scoring=cfg.scoring.model_dump() if hasattr(cfg, "scoring") else {},
        seed=cfg.training.seed,
        num_threads=cfg.training.num_threads,
        baseline_arm=baseline,
    )
    try:
        result = run_cycle(
            start=start,
            end=end,
            raw_dir=raw or p.raw,
            features_dir=p.features,
            decisions_dir=p.decisions,
            explanations_dir=p.explanations,
            reports_dir=p.reports,
            quarantine_dir=p.quarantine,
            tracking_uri=tracking_uri(p.mlruns),
            settings=settings,
        )
    except (ValueError, FileNotFoundError, LookupError) as exc:
        fail(str(exc))
        return
    typer.echo(result.text_path.read_text(), nl=False)
    typer.echo(f"summary: {result.summary_path}")
    typer.echo(f"monitoring reports: {Path(p.reports) / 'monitoring'}")
