"""The `creditline` command: one Typer app, one module per subcommand.

Command modules only parse options, read the config once, call one function and print where
the output went. Heavy libraries are imported inside the commands, so `--help` is fast.
"""

from __future__ import annotations

import logging
import os

import typer

app = typer.Typer(
    name="creditline",
    help="Model-ops for a revolving credit line: simulate, build features, train, score, explain, monitor.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # MLflow's per-download progress bars would bury the job's own progress in batch logs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _register() -> None:
    # Each command module adds its commands to `app` when imported.
    import serving.cli.cycle  # noqa: F401
    import serving.cli.demo  # noqa: F401
    import serving.cli.explain  # noqa: F401
    import serving.cli.features  # noqa: F401
    import serving.cli.monitor  # noqa: F401
    import serving.cli.predict  # noqa: F401
    import serving.cli.promote  # noqa: F401
    import serving.cli.score  # noqa: F401
    import serving.cli.simulate  # noqa: F401
    import serving.cli.train  # noqa: F401


def main() -> None:
    """Console-script entry point."""
    _register()
    app()
