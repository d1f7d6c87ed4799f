"""MLflow tracking: the sqlite store under `<mlruns>/`, and logging one training run.

Store: `sqlite:///<mlruns>/mlflow.db` (created or upgraded on first use), artifacts under
`<mlruns>/artifacts/<experiment>`. Nothing here runs at import; the tracking URI is set only
inside `using_store` and restored afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)


def _quiet_env() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def tracking_uri(mlruns_dir: str | Path) -> str:
    """The sqlite URI for an mlruns folder (absolute, so it works from any working folder)."""
    return f"sqlite:///{Path(mlruns_dir).resolve() / 'mlflow.db'}"


def mlruns_from_uri(uri: str) -> Path:
    if not uri.startswith("sqlite:///"):
        raise ValueError(f"tracking URI {uri!r}: expected sqlite:///<mlruns>/mlflow.db")
    return Path(uri[len("sqlite:///") :]).parent


def open_client(uri: str):
    """An MlflowClient on the store, creating the database (or upgrading an old one) once."""
    _quiet_env()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if uri.startswith("sqlite:///"):
        mlruns_from_uri(uri).mkdir(parents=True, exist_ok=True)
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)
    except MlflowException as exc:
        if "out-of-date database schema" not in str(exc):
            raise
        from mlflow.store.db.utils import _upgrade_db, create_sqlalchemy_engine

        log.warning("upgrading the MLflow database schema at %s", uri)
        _upgrade_db(create_sqlalchemy_engine(uri))
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return client


def ensure_experiment(client, name: str, uri: str) -> str:
    """The experiment's id; a new one keeps its artifacts under `<mlruns>/artifacts/<name>`."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    root = mlruns_from_uri(uri) / "artifacts" / name
    return client.create_experiment(name, artifact_location=root.resolve().as_uri())


@contextmanager
def using_store(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at `uri` for the duration, then restore what was there."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    old_tracking = tracking_utils._tracking_uri  # None = unset (MLflow then reads the env/default)
    old_registry = registry_utils._registry_uri
    old_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old_tracking)
        mlflow.set_registry_uri(old_registry)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def log_json(client, run_id: str, obj, artifact_path: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / Path(artifact_path).name
        p.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
        client.log_artifact(
            run_id, str(p), str(Path(artifact_path).parent) if "/" in artifact_path else None
        )


def log_text(client, run_id: str, text: str, artifact_path: str) -> None:
    client.log_text(run_id, text, artifact_path)


def log_frame(client, run_id: str, df: pd.DataFrame, artifact_path: str) -> None:
    """A table as CSV (small tables) or parquet, by the artifact's extension."""
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / Path(artifact_path).name
        if p.suffix == ".parquet":
            from features.tables import write_parquet

            write_parquet(df, p)
        else:
            df.to_csv(p, index=False, float_format="%.6g")
        parent = str(Path(artifact_path).parent)
        client.log_artifact(run_id, str(p), None if parent == "." else parent)


def log_metrics(
    client, run_id: str, metrics: dict[str, float], model_id: str | None = None
) -> None:
    """Finite metrics in batches; with `model_id` they show on the logged model's page too."""
    import math
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [
        Metric(k, float(v), now, 0, model_id=model_id)
        for k, v in sorted(metrics.items())
        if v is not None and math.isfinite(v)
    ]
    for i in range(0, len(batch), 900):
        client.log_batch(run_id, metrics=batch[i : i + 900])


def log_params(client, run_id: str, params: dict) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
    for i in range(0, len(items), 90):
        client.log_batch(run_id, params=items[i : i + 90])
