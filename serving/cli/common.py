"""Small helpers shared by the command modules: config loading and error reporting."""

from __future__ import annotations

from pathlib import Path

import typer

from serving.config import Config, load_config

CONFIG_OPTION = typer.Option(
    None, "--config", help="Config file (default: ./creditline.toml if present)."
)
TRUTH_HORIZON_HELP = (
    "Months past the extract for which the ground truth (defaults, bust-outs, true PD) is "
    "written, 0..24; the raw tables are the same bytes whatever it is."
)


def config_or_exit(path: Path | None) -> Config:
    try:
        return load_config(path)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
        raise  # unreachable


def fail(message: str, code: int = 2) -> None:
    """Print a clear error (no traceback) and exit non-zero."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)
