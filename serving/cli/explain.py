"""`creditline explain`: explain every downgrade at an as-of date; `explain fidelity` checks them against truth."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from serving.cli import app
from serving.cli.common import CONFIG_OPTION, config_or_exit, fail

explain_app = typer.Typer(no_args_is_help=False)
app.add_typer(explain_app, name="explain")

AS_OF = Annotated[
    datetime | None, typer.Option("--as-of", formats=["%Y-%m-%d"], help="As-of date YYYY-MM-DD.")
]


@explain_app.callback(invoke_without_command=True)
def explain(
    ctx: typer.Context,
    as_of: AS_OF = None,
    user: Annotated[
        list[str] | None, typer.Option("--user", help="Explain only this user id (repeatable).")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Line policy TOML of the new decision.")
    ] = None,
    old_policy: Annotated[
        Path | None,
        typer.Option(
            "--old-policy", help="Policy TOML of the previous decision (default: same file)."
        ),
    ] = None,
    calendar: Annotated[
        Path | None,
        typer.Option(
            "--calendar", help="Scenario calendar JSON (regulation / risk_appetite entries)."
        ),
    ] = None,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Explain every lowered, frozen, closed or deferred line at D against the previous decision.

    Writes explanations (parquet + JSON) under data/explanations/as_of=D/ and HTML reports under
    data/reports/explanations/as_of=D/ (index.html + users/<id>.html).

    Example: creditline explain --as-of 2026-10-31 --calendar data/truth/scenario_calendar.json
    """
    if ctx.invoked_subcommand is not None:
        return
    if as_of is None:
        fail("--as-of is required (YYYY-MM-DD)")
        return
    from serving.explain.run import run_explain

    cfg = config_or_exit(config)
    sc = getattr(cfg, "scoring", None)
    ex = cfg.explain
    try:
        res = run_explain(
            as_of=f"{as_of:%Y-%m-%d}",
            decisions_dir=cfg.paths.decisions,
            features_dir=cfg.paths.features,
            explanations_dir=cfg.paths.explanations,
            reports_dir=cfg.paths.reports,
            tracking_uri=f"sqlite:///{Path(cfg.paths.mlruns).as_posix()}/mlflow.db",
            policy_file=policy or (sc.policy_file if sc else None),
            calendar=calendar or (sc.calendar if sc else None),
            old_policy_file=old_policy or ex.old_policy_file,
            users=user or None,
            max_age_days=sc.max_source_age_days if sc else None,
            n_threads=ex.num_threads,
        )
    except (ValueError, FileNotFoundError, LookupError) as exc:
        fail(str(exc))
        return
    by_cause = ", ".join(f"{c} {n}" for c, n in res.summary.get("by_cause", {}).items())
    typer.echo(
        f"explained {res.explained} adverse decisions at {res.as_of.date()} vs {res.prev_as_of.date()}: {by_cause}"
    )
    typer.echo(f"records: {res.records_path} (+ {res.json_path.name}, {res.summary_path.name})")
    typer.echo(f"reports: {res.report_path} (+ {res.user_reports} user pages)")


@explain_app.command("fidelity")
def fidelity(
    as_of: AS_OF = None,
    truth: Annotated[
        Path | None,
        typer.Option("--truth", help="Simulator truth folder (default: <paths.raw>/../truth)."),
    ] = None,
    all_months: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every explained as-of: the per-month table and the pooled figures "
            "(fidelity_all.json / fidelity_all.md under the explanations folder).",
        ),
    ] = False,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Score the explanations at D against the simulator's ground truth; writes fidelity.json beside them.

    Example: creditline explain fidelity --as-of 2026-10-31   (or --all for every explained month)
    """
    import json

    from serving.explain.fidelity import fidelity_table, run_fidelity, run_fidelity_all

    if as_of is None and not all_months:
        fail("--as-of is required (YYYY-MM-DD), or --all for every explained month")
        return
    cfg = config_or_exit(config)
    truth_dir = truth or Path(cfg.paths.raw).parent / "truth"
    if all_months:
        try:
            per_month, pooled, path = run_fidelity_all(cfg.paths.explanations, truth_dir)
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc))
            return
        typer.echo(fidelity_table(per_month, pooled), nl=False)
        for key in (
            "top_cause_match_share",
            "top_cause_match_share_events_only",
            "top_cause_match_share_single_cause",
            "top_cause_match_share_strict_priority",
            "sync_delay_caught",
            "sync_delay_cases",
        ):
            typer.echo(f"{key}: {pooled.get(key)}")
        typer.echo(f"fidelity: {path} (+ {path.with_suffix('.md').name}, fidelity.json per month)")
        return
    try:
        figures, path = run_fidelity(f"{as_of:%Y-%m-%d}", cfg.paths.explanations, truth_dir)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
        return
    for key in (
        "downgrades",
        "top_cause_match_share",
        "top_cause_match_share_single_cause",
        "no_planted_cause_downgrades",
        "top_cause_match_share_events_only",
        "no_planted_event_downgrades",
        "best_constant_answer",
        "best_constant_answer_share",
        "top_cause_match_share_strict_priority",
        "sync_delay_cases",
        "sync_delay_caught_share",
        "max_additivity_error",
        "max_unchanged_attribution",
        "reproduced_share",
    ):
        typer.echo(f"{key}: {figures.get(key)}")
    typer.echo(json.dumps(figures, sort_keys=True))
    typer.echo(f"fidelity: {path}")
