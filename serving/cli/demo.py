"""`creditline demo`: the main job end to end (for now: simulate a small world, print its summary)."""

from __future__ import annotations

from pathlib import Path

import typer

from serving.cli import app
from serving.cli.common import CONFIG_OPTION, config_or_exit, fail


@app.command()
def demo(
    users: int = typer.Option(2000, "--users", help="Number of users."),
    months: int = typer.Option(24, "--months", help="Months to simulate."),
    seed: int = typer.Option(7, "--seed", help="Random seed."),
    config: Path = CONFIG_OPTION,
) -> None:
    """Run the demo: simulate a world with every scenario into the data folder and summarise it.

    Example: creditline demo --users 2000 --months 24 --seed 7
    """
    cfg = config_or_exit(config)
    from features.simulator import format_summary, simulate_world

    try:
        summary = simulate_world(
            users=users,
            months=months,
            seed=seed,
            scenarios=["all"],
            chunk_users=cfg.simulation.chunk_users,
            out_dir=Path(cfg.paths.data),
        )
    except ValueError as exc:
        fail(str(exc))
    typer.echo(format_summary(summary))
