"""`creditline demo`: the main job end to end: simulate a world with every scenario, run the loop."""

from __future__ import annotations

from pathlib import Path

import typer

from serving.cli import app
from serving.cli.common import CONFIG_OPTION, TRUTH_HORIZON_HELP, config_or_exit, fail


@app.command()
def demo(
    users: int = typer.Option(3000, "--users", help="Number of users."),
    months: int = typer.Option(36, "--months", help="Months to simulate."),
    seed: int = typer.Option(7, "--seed", help="Random seed."),
    truth_horizon_months: int = typer.Option(12, "--truth-horizon-months", help=TRUTH_HORIZON_HELP),
    cycle: bool = typer.Option(
        True, "--cycle/--no-cycle", help="Run the monthly loop on the world."
    ),
    override: str = typer.Option(
        None,
        "--bootstrap-gate-override",
        help="Who approved letting a first model that fails its gates decide, and why (recorded as a "
        "governance exception; default: [monitor] bootstrap_gate_override, normally none).",
    ),
    config: Path = CONFIG_OPTION,
) -> None:
    """Simulate a world with every scenario into the data folder, then run the monthly loop on it.

    The loop (creditline cycle) starts after the months its first models learn from and runs
    to the end of the world; it prints the summary and where the reports are.

    Example: creditline demo --users 2000 --months 24 --seed 7
    """
    cfg = config_or_exit(config)
    from features.world.simulate import format_summary, simulate_world

    try:
        summary = simulate_world(
            users=users,
            months=months,
            seed=seed,
            scenarios=["all"],
            chunk_users=cfg.simulation.chunk_users,
            out_dir=Path(cfg.paths.data),
            truth_horizon_months=truth_horizon_months,
        )
    except ValueError as exc:
        fail(str(exc))
    typer.echo(format_summary(summary))
    if not cycle:
        return
    from serving.loop.cycle import cycle_settings, demo_period, run_cycle
    from training.tracking import tracking_uri

    p = cfg.paths
    raw = Path(summary["raw_dir"])
    calendar = raw.parent / "truth" / "scenario_calendar.json"
    try:
        start, end = demo_period("2024-01-01", months, cfg.monitor.bootstrap_months)
        scoring = cfg.scoring.model_dump()
        if scoring.get("calendar") is None and calendar.exists():
            scoring["calendar"] = str(calendar)
        result = run_cycle(
            start=start,
            end=end,
            raw_dir=raw,
            features_dir=p.features,
            decisions_dir=p.decisions,
            explanations_dir=p.explanations,
            reports_dir=p.reports,
            quarantine_dir=p.quarantine,
            tracking_uri=tracking_uri(p.mlruns),
            settings=cycle_settings(
                monitor={
                    **cfg.monitor.model_dump(),
                    **({"bootstrap_gate_override": override} if override else {}),
                },
                model=cfg.model.model_dump(),
                gates=cfg.gates.model_dump(),
                scoring=scoring,
                seed=cfg.training.seed,
                num_threads=cfg.training.num_threads,
            ),
        )
    except (ValueError, FileNotFoundError, LookupError) as exc:
        fail(str(exc))
        return
    typer.echo("")
    typer.echo(result.text_path.read_text(), nl=False)
    typer.echo("")
    typer.echo(f"cycle summary: {result.summary_path} (text: {result.text_path})")
    typer.echo(
        f"monitoring reports (summary.html, drift_report.html): {Path(p.reports) / 'monitoring'}"
    )
    typer.echo(f"decisions: {p.decisions}; explanations: {p.explanations}; MLflow: {p.mlruns}")
