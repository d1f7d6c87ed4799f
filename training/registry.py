"""The MLflow model registry: register versions, move aliases, load models fast.

Each version is a pyfunc (`training.pyfunc_model.CalibratedPyfunc`) whose model folder also
holds `artifacts/booster.txt` and `artifacts/model_meta.json`. `load_model` reads those two
files directly, without unpickling the pyfunc, and gives exactly the pyfunc's probabilities.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb

from training.fit import CalibratedModel
from training.tracking import open_client

CHAMPION = "champion"
CHALLENGER = "challenger"
BOOSTER_FILE = "booster.txt"
META_FILE = "model_meta.json"


@dataclass(frozen=True, kw_only=True)
class LoadedModel(CalibratedModel):
    """A registered version, ready to score: `margin(X)` (calibrated log-odds), `predict_proba(X)`."""

    name: str
    version: int
    meta: dict = field(default_factory=dict)  # the stored model_meta.json


def model_meta(model: CalibratedModel, **extra) -> dict:
    """What the booster file does not carry: features, calibration, encoding, directions."""
    return {
        "features": model.features,
        "calib_a": model.calib_a,
        "calib_b": model.calib_b,
        "encoding": model.encoding,
        "monotone": model.monotone,
        **extra,
    }


def model_from_files(
    booster_path: str | Path, meta_path: str | Path
) -> tuple[CalibratedModel, dict]:
    meta = json.loads(Path(meta_path).read_text())
    booster = lgb.Booster(model_file=str(booster_path))
    model = CalibratedModel(
        features=list(meta["features"]),
        booster=booster,
        calib_a=float(meta["calib_a"]),
        calib_b=float(meta["calib_b"]),
        encoding=meta.get("encoding") or {},
        monotone=list(meta.get("monotone") or []),
    )
    return model, meta


_REF = re.compile(
    r"^(?P<name>[A-Za-z0-9_.\-]+?)(?:@(?P<alias>[A-Za-z0-9_\-]+)|/(?P<version>\d+))?$"
)


def parse_model_ref(text: str) -> tuple[str, str | int]:
    """'credit-pd@champion' -> ('credit-pd', 'champion'); 'fraud/3' -> ('fraud', 3); 'x' -> champion.

    >>> parse_model_ref("credit-pd/3")
    ('credit-pd', 3)
    """
    m = _REF.match(text.strip())
    if not m:
        raise ValueError(
            f"model reference {text!r}: expected NAME, NAME@ALIAS or NAME/VERSION (e.g. credit-pd@champion)"
        )
    if m["version"]:
        return m["name"], int(m["version"])
    return m["name"], m["alias"] or CHAMPION


def resolve_version(client, name: str, ref: str | int):
    """The ModelVersion that an alias or version number points at, or a clear error."""
    from mlflow.exceptions import MlflowException

    ref = int(ref) if isinstance(ref, str) and ref.isdigit() else ref
    try:
        if isinstance(ref, int):
            return client.get_model_version(name, str(ref))
        return client.get_model_version_by_alias(name, ref)
    except MlflowException as exc:
        what = f"version {ref}" if isinstance(ref, int) else f"alias @{ref}"
        hint = (
            "promote a version first (creditline promote ...)"
            if ref == CHAMPION
            else "train one first (creditline train ...)"
        )
        raise LookupError(
            f"registered model {name!r} has no {what} in {client._registry_uri}; {hint}"
        ) from exc


def _model_dir(client, mv, uri: str) -> Path:
    """The version's model folder (a local path for the file artifact store: nothing is copied).

    Resolved through `client`: MLflow's own `models:/` and `runs:/` resolution would use the
    global tracking URI rather than `uri`.
    """
    import mlflow

    source = mv.source
    model_id = getattr(mv, "model_id", None)
    if not model_id and source.startswith("models:/m-"):
        model_id = source[len("models:/") :].split("/")[0]
    if model_id:
        location = client.get_logged_model(model_id).artifact_location
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=location, tracking_uri=uri))
    if source.startswith("runs:/"):
        run_id, _, path = source[len("runs:/") :].partition("/")
        return Path(client.download_artifacts(run_id, path))
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=uri))


def load_model(
    name: str, ref: str | int = CHAMPION, tracking_uri: str | None = None
) -> LoadedModel:
    """Load a registered version's booster, calibration, features and encoding (no pyfunc)."""
    if tracking_uri is None:
        raise ValueError("tracking_uri is required (sqlite:///<mlruns>/mlflow.db)")
    client = open_client(tracking_uri)
    mv = resolve_version(client, name, ref)
    folder = _model_dir(client, mv, tracking_uri) / "artifacts"
    model, meta = model_from_files(folder / BOOSTER_FILE, folder / META_FILE)
    return LoadedModel(
        name=name,
        version=int(mv.version),
        meta=meta,
        features=model.features,
        booster=model.booster,
        calib_a=model.calib_a,
        calib_b=model.calib_b,
        encoding=model.encoding,
        monotone=model.monotone,
    )


def register(client, name: str, model_uri: str, tags: dict[str, str]) -> int:
    """Register a logged model as a new version of `name` and point `challenger` at it.

    Call inside `tracking.using_store(uri)`: registration goes through MLflow's fluent API,
    which links the version to its logged model.
    """
    import mlflow

    mv = mlflow.register_model(model_uri, name, tags=tags)
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    return int(mv.version)


def current_version(client, name: str, alias: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None
