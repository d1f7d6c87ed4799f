"""`creditline features build`: the point-in-time feature table for one as-of date."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from serving.cli import app
from serving.cli.common import CONFIG_OPTION, config_or_exit, fail

AS_OF_OPTION = typer.Option(
    ..., "--as-of", help="As-of date T (YYYY-MM-DD): features use rows available by T."
)
RAW_OPTION = typer.Option(
    None, "--raw", help="Raw tables folder (default: paths.raw in the config)."
)
OUT_OPTION = typer.Option(None, "--out", help="Feature tables folder (default: paths.features).")

features_app = typer.Typer(help="Point-in-time feature tables.", no_args_is_help=True)
app.add_typer(features_app, name="features")


@features_app.command("build")
def build(
    as_of: str = AS_OF_OPTION,
    raw: Path | None = RAW_OPTION,
    out: Path | None = OUT_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Build data/features/as_of=YYYY-MM-DD/features.parquet (+ manifest.json).

    Example: creditline features build --as-of 2025-06-30 --raw data/raw --out data/features
    """
    import pandas as pd

    from features.builder import build_feature_table

    cfg = config_or_exit(config)
    try:
        day = pd.Timestamp(as_of)
    except ValueError:
        fail(f"--as-of {as_of!r} is not a date; use YYYY-MM-DD, e.g. --as-of 2025-06-30")
    raw_dir = raw or Path(cfg.paths.raw)
    out_dir = out or Path(cfg.paths.features)
    t0 = time.perf_counter()
    try:
        path = build_feature_table(
            raw_dir, out_dir, day, Path(cfg.paths.quarantine), threads=cfg.features.threads
        )
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    manifest = json.loads((path.parent / "manifest.json").read_text())
    typer.echo(manifest["quarantine_summary"])
    typer.echo(
        f"{manifest['rows']} users x {len(manifest['features'])} features as of {manifest['as_of']} "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    typer.echo(f"wrote {path}")
