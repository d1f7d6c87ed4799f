"""Loading the champion credit and fraud models for scoring: one function, `load_champions`.

The registry itself belongs to `training.registry.load_model`; until that lands this module holds
a minimal fallback that reads the same files a registered version carries
(`artifacts/booster.txt`, `artifacts/model_meta.json`). Switching to the real registry is the
one line in `_registry_loader`, which already prefers `training.registry` when it is there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Role in scoring -> registered model name (INTERFACES.md, Models).
MODEL_NAMES = {"credit": "credit-pd", "fraud": "fraud"}
HOW_TO_TRAIN = {
    "credit": "creditline train credit --as-of YYYY-MM-DD` then `creditline promote credit",
    "fraud": "creditline train fraud --as-of YYYY-MM-DD` then `creditline promote fraud",
}


class ChampionMissingError(LookupError):
    """No model version carries the `champion` alias."""


@dataclass(frozen=True)
class ScoringModel:
    """The parts of a registered model that batch scoring needs (same names as training's LoadedModel)."""

    name: str
    version: int
    features: list[str]
    booster: Any  # lightgbm.Booster
    calib_a: float = 1.0
    calib_b: float = 0.0
    encoding: dict = field(default_factory=dict)  # non-empty only for raw tabular inputs

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated log-odds: calib_a * raw LightGBM margin + calib_b."""
        raw = self.booster.predict(X[self.features].to_numpy(np.float64), raw_score=True)
        return self.calib_a * raw + self.calib_b

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.margin(X)))


def _fallback_load_model(name: str, ref: str, tracking_uri: str) -> ScoringModel:
    """Read `artifacts/booster.txt` + `artifacts/model_meta.json` of the version's model folder.

    The layout `training.registry` writes; resolved through a client bound to `tracking_uri`
    (MLflow's `models:/` resolution would use the global tracking URI).
    """
    import json

    import lightgbm as lgb
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    mv = client.get_model_version_by_alias(name, ref)
    model_id = getattr(mv, "model_id", None) or mv.source[len("models:/") :].split("/")[0]
    location = client.get_logged_model(model_id).artifact_location
    folder = Path(
        mlflow.artifacts.download_artifacts(artifact_uri=location, tracking_uri=tracking_uri)
    )
    meta = json.loads((folder / "artifacts" / "model_meta.json").read_text(encoding="utf-8"))
    return ScoringModel(
        name=name,
        version=int(mv.version),
        features=list(meta["features"]),
        booster=lgb.Booster(model_file=str(folder / "artifacts" / "booster.txt")),
        calib_a=float(meta["calib_a"]),
        calib_b=float(meta["calib_b"]),
        encoding=dict(meta.get("encoding") or {}),
    )


def _registry_loader():
    try:
        from training.registry import load_model  # the real registry, once it is on main
    except ModuleNotFoundError:
        load_model = _fallback_load_model
    return load_model


def _check_champion(name: str, role: str, tracking_uri: str) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        client.get_model_version_by_alias(name, "champion")
    except MlflowException as exc:
        raise ChampionMissingError(
            f"no champion version of registered model '{name}' in {tracking_uri} ({exc.error_code}). "
            f"Train and promote one: `{HOW_TO_TRAIN[role]}`."
        ) from exc


def load_champions(tracking_uri: str) -> dict[str, Any]:
    """The `champion` credit and fraud models, keyed "credit" and "fraud"."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    load_model = _registry_loader()
    models = {}
    for role, name in MODEL_NAMES.items():
        _check_champion(name, role, tracking_uri)
        models[role] = load_model(name, "champion", tracking_uri)
    return models
