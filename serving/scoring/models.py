"""Loading the champion credit and fraud models for scoring: one function, `load_champions`.

Loading itself is `training.registry.load_model`; this module checks that a champion exists
(with an error that says how to make one) and builds `training.registry.LoadedModel`, the one model record that
scoring needs (tests build it directly around a booster).
"""

from __future__ import annotations

import os
from typing import Any

from training.fit import MODEL_SPECS
from training.registry import LoadedModel

# Role in scoring -> registered model name (from `training.fit.MODEL_SPECS`).
MODEL_NAMES = {kind: spec.registered_name for kind, spec in MODEL_SPECS.items()}
HOW_TO_TRAIN = {
    "credit": "creditline train credit --train-as-of D1,D2,... --oot-as-of D` then `creditline promote credit",
    "fraud": "creditline train fraud --train-as-of D1,D2,... --oot-as-of D` then `creditline promote fraud",
}


class ChampionMissingError(LookupError):
    """No model version carries the `champion` alias."""


def scoring_model(
    name: str,
    version: int,
    features: list[str],
    booster: Any,
    calib_a: float = 1.0,
    calib_b: float = 0.0,
    encoding: dict | None = None,
) -> LoadedModel:
    """The one model record (`training.registry.LoadedModel`) from its parts (a booster in hand)."""
    return LoadedModel(
        name=name,
        version=int(version),
        features=list(features),
        booster=booster,
        calib_a=float(calib_a),
        calib_b=float(calib_b),
        encoding=encoding or {},
    )


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
