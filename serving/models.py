"""Loading the champion credit and fraud models for scoring: one function, `load_champions`.

Loading itself is `training.registry.load_model`; this module checks that a champion exists
(with an error that says how to make one) and holds `ScoringModel`, the small model record that
scoring needs (tests build it directly around a booster).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# Role in scoring -> registered model name (INTERFACES.md, Models).
MODEL_NAMES = {"credit": "credit-pd", "fraud": "fraud"}
HOW_TO_TRAIN = {
    "credit": "creditline train credit --train-as-of D1,D2,... --oot-as-of D` then `creditline promote credit",
    "fraud": "creditline train fraud --train-as-of D1,D2,... --oot-as-of D` then `creditline promote fraud",
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
    from training.registry import load_model

    models = {}
    for role, name in MODEL_NAMES.items():
        _check_champion(name, role, tracking_uri)
        models[role] = load_model(name, "champion", tracking_uri)
    return models
