"""The one config: `creditline.toml`, read once into frozen objects that reject unknown keys.

Functions elsewhere receive plain values taken from these objects, never the config itself.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PathsConfig(_Frozen):
    data: str = "data"
    raw: str = "data/raw"
    features: str = "data/features"
    decisions: str = "data/decisions"
    explanations: str = "data/explanations"
    reports: str = "data/reports"
    quarantine: str = "data/quarantine"
    mlruns: str = "mlruns"


class SimulationConfig(_Frozen):
    chunk_users: int = Field(50_000, gt=0, description="users generated per chunk (bounds memory)")


class FeaturesConfig(_Frozen):
    threads: int = Field(2, ge=1, description="DuckDB threads for the feature build")


class TrainingConfig(_Frozen):
    seed: int = 42
    num_threads: int = Field(2, ge=1)


class ExplainConfig(_Frozen):
    num_threads: int = Field(2, ge=1, description="threads for attribution and hybrid scoring")
    old_policy_file: str | None = Field(
        None, description="policy TOML of the previous decision when it differs from the current file"
    )


class Config(_Frozen):
    paths: PathsConfig = PathsConfig()
    simulation: SimulationConfig = SimulationConfig()
    features: FeaturesConfig = FeaturesConfig()
    training: TrainingConfig = TrainingConfig()
    explain: ExplainConfig = ExplainConfig()


DEFAULT_CONFIG_FILE = "creditline.toml"


def load_config(path: str | Path | None = None) -> Config:
    """Read the config file (default `creditline.toml` in the working folder, if present).

    A missing default file gives the built-in defaults; a named file that is missing is an error.
    Unknown keys are rejected with the key's location.
    """
    if path is None:
        path = Path(DEFAULT_CONFIG_FILE)
        if not path.exists():
            return Config()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} not found")
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    try:
        return Config.model_validate(raw)
    except Exception as exc:  # pydantic's message names the key; add the file
        raise ValueError(f"{path}: invalid config:\n{exc}") from exc
