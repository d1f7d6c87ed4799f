"""The champion loading path through a real MLflow registry (sqlite in tmp_path) and the CLI."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.tables import write_parquet
from serving.scoring.models import ChampionMissingError, load_champions
from tests.serving.scoring_helpers import AS_OF, make_features, trained_boosters

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


def _log_version(mlflow, folder, booster, name: str, calib: tuple[float, float]) -> None:
    """Log a pyfunc whose model folder holds artifacts/booster.txt + artifacts/model_meta.json.

    The layout `training.registry` writes and reads.
    """
    import json

    folder.mkdir(parents=True)
    booster.save_model(str(folder / "booster.txt"))
    meta = {
        "features": booster.feature_name(),
        "calib_a": calib[0],
        "calib_b": calib[1],
        "encoding": {},
    }
    (folder / "model_meta.json").write_text(json.dumps(meta), encoding="utf-8")

    class _Unused(mlflow.pyfunc.PythonModel):  # scoring reads the files, never this object
        def predict(self, context, model_input, params=None):
            raise NotImplementedError

    mlflow.pyfunc.log_model(
        name="model",
        python_model=_Unused(),
        artifacts={"booster": str(folder / "booster.txt"), "meta": str(folder / "model_meta.json")},
        registered_model_name=name,
        pip_requirements=["lightgbm"],
    )


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry with credit-pd as champion and fraud registered but never promoted."""
    import mlflow
    import mlflow.pyfunc
    from mlflow import MlflowClient

    boosters = trained_boosters()
    root = tmp_path_factory.mktemp("mlruns")
    uri = f"sqlite:///{root.as_posix()}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.create_experiment("t", artifact_location=(root / "artifacts").as_uri())
    client = MlflowClient(uri, uri)
    for role, name, calib in (("credit", "credit-pd", (0.9, -0.1)), ("fraud", "fraud", (1.0, 0.0))):
        with mlflow.start_run(experiment_id=exp):
            _log_version(mlflow, root / "src" / role, boosters[role], name, calib)
    client.set_registered_model_alias("credit-pd", "champion", "1")
    yield uri, root, client
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def test_missing_champion_says_how_to_train_and_promote(registry):
    uri, _, _ = registry
    with pytest.raises(
        ChampionMissingError, match=r"'fraud'.*creditline train fraud .*creditline promote fraud"
    ):
        load_champions(uri)


def test_score_command_end_to_end(registry, tmp_path):
    uri, root, client = registry
    client.set_registered_model_alias("fraud", "champion", "1")
    models = load_champions(uri)
    assert models["credit"].version == 1 and models["credit"].calib_a == 0.9
    write_parquet(
        make_features(120, seed=9),
        tmp_path / "features" / f"as_of={AS_OF.date()}" / "features.parquet",
    )
    (tmp_path / "creditline.toml").write_text(
        f'[paths]\nfeatures = "{(tmp_path / "features").as_posix()}"\nmlruns = "{root.as_posix()}"\n'
        f'decisions = "{(tmp_path / "decisions").as_posix()}"\n[scoring]\nchunk_rows = 50\n',
        encoding="utf-8",
    )
    import serving.cli.score  # noqa: F401  (registers the command)
    from serving.cli import app

    result = CliRunner().invoke(
        app, ["score", "--as-of", "2026-10-31", "--config", str(tmp_path / "creditline.toml")]
    )
    assert result.exit_code == 0, result.output
    assert "scored 120 users as of 2026-10-31" in result.output
    assert "credit-pd v1, fraud v1; policy 2026.12-1" in result.output
    out = pd.read_parquet(tmp_path / "decisions" / "as_of=2026-10-31" / "decisions.parquet")
    assert len(out) == 120 and set(out["credit_model_version"]) == {1}
    # a missing feature table is a clean error, not a traceback
    bad = CliRunner().invoke(
        app, ["score", "--as-of", "2026-11-30", "--config", str(tmp_path / "creditline.toml")]
    )
    assert bad.exit_code == 2 and "no parquet files" in bad.output
