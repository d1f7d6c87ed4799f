"""`creditline simulate`: generate the simulated lending world (raw tables + ground truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from serving.cli import app
from serving.cli.common import CONFIG_OPTION, TRUTH_HORIZON_HELP, config_or_exit, fail

SCENARIO_HELP = (
    "Scenario NAME or NAME@YYYY-MM (repeatable): macro_shock, fraud_wave, sync_incident, "
    "regulation, risk_appetite, or the preset `all`."
)


@app.command()
def simulate(
    users: Annotated[int, typer.Option("--users", help="Number of users.")] = 2000,
    months: Annotated[int, typer.Option("--months", help="Months to simulate.")] = 24,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed (same seed and options -> same bytes).")
    ] = 7,
    scenario: Annotated[list[str] | None, typer.Option("--scenario", help=SCENARIO_HELP)] = None,
    start: Annotated[
        str, typer.Option("--start", help="First simulated month, YYYY-MM.")
    ] = "2024-01",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder (default: paths.data from the config, 'data')."),
    ] = None,
    chunk_users: Annotated[
        int | None, typer.Option("--chunk-users", help="Users per chunk (default from config).")
    ] = None,
    truth_horizon_months: Annotated[
        int, typer.Option("--truth-horizon-months", help=TRUTH_HORIZON_HELP)
    ] = 12,
    config: Path = CONFIG_OPTION,
) -> None:
    """Simulate a revolving-credit book: raw tables under OUT/raw, ground truth under OUT/truth.

    Example: creditline simulate --users 10000 --months 24 --seed 7 --scenario all --out data
    """
    cfg = config_or_exit(config)
    from features.world.simulate import format_summary, simulate_world

    try:
        summary = simulate_world(
            users=users,
            months=months,
            seed=seed,
            scenarios=scenario or [],
            start=_month_start(start),
            chunk_users=chunk_users or cfg.simulation.chunk_users,
            out_dir=out or Path(cfg.paths.data),
            truth_horizon_months=truth_horizon_months,
        )
    except ValueError as exc:
        fail(str(exc))
    typer.echo(format_summary(summary))


def _month_start(value: str) -> str:
    return value if len(value) == 10 else f"{value}-01"
