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


class MonitorConfig(_Frozen):
    """Drift and misjudgement monitoring, its retraining triggers, and the monthly cycle."""

    drift_method: str = Field("wasserstein", description="evidently ValueDrift method per feature")
    drift_threshold: float = Field(
        0.1, gt=0, description="drift score at/above which a feature drifted"
    )
    min_feature_psi: float = Field(
        0.1, ge=0, description="a drifted feature also needs at least this PSI"
    )
    drift_sample_rows: int = Field(
        20_000, gt=0, description="rows per side for the evidently tests"
    )
    psi_bins: int = Field(10, ge=2)
    recent_months: int = Field(
        3,
        ge=1,
        description="months scored just before the as-of: the 'is the world still moving' reference",
    )
    important_features_top_k: int = Field(15, ge=1, description="features by gain tested for drift")
    label_horizon_months: int = Field(12, ge=1, description="months until a default label matures")
    label_margin_days: int = Field(14, ge=0, description="extra days for late-syncing payments")
    min_matured_rows: int = Field(
        500, ge=1, description="fewer matured rows: no performance trigger"
    )
    segments: tuple[str, ...] = Field(
        ("pd_band", "ctx_repaid_in_full_30d", "ctx_income_band"),
        description="columns to break misjudgements down by (pd_band is derived)",
    )
    fraud_flag_threshold: float = Field(0.5, gt=0, lt=1)
    html_report: str = Field(
        "alarm", pattern="^(always|alarm|never)$", description="evidently HTML in the cycle"
    )
    # Triggers (ANCHORS, Monitoring): PSI > 0.25 act; a Gini drop >= 5 points on matured vintages.
    max_drifted_share: float = Field(
        0.5, ge=0, le=1, description="share of important features drifted"
    )
    max_score_psi: float = Field(0.25, gt=0)
    max_gini_drop: float = Field(
        0.05, gt=0, description="champion baseline Gini minus matured Gini"
    )
    max_calibration_gap: float = Field(
        0.01, gt=0, description="|observed - predicted| default rate (and > 2 sampling s.e.)"
    )
    max_wrongful_excess: float = Field(
        0.1,
        gt=0,
        le=1,
        description="share of matured downgrades that stayed good, above what their PDs implied",
    )
    # Retraining.
    retrain_window_months: int = Field(
        6, ge=1, description="matured as-of months a challenger trains on"
    )
    min_train_months: int = Field(
        3, ge=1, description="a challenger never trains on fewer matured months than this"
    )
    retrain_cooldown_months: int = Field(
        3, ge=0, description="months after a retrain with no new one"
    )
    auto_promote: bool = Field(True, description="promote a challenger that passes the gates")
    fraud_retrain: bool = Field(
        True,
        description="retrain the fraud model too, on its 90-day label, when its score drifts "
        "from its training reference or its Gini on the newest matured month drops",
    )
    min_fraud_positives: int = Field(
        20,
        ge=1,
        description="fewer matured bust-outs in a month: no fraud performance trigger (too noisy)",
    )
    bootstrap_months: int = Field(
        6, ge=2, description="months before the cycle the first models learn from"
    )
    headline_bootstrap: int = Field(
        500, ge=50, description="bootstrap resamples (over users) for the headline's intervals"
    )
    baseline_arm: bool = Field(
        True, description="also score with the models frozen (the no-loop comparison)"
    )
    bootstrap_gate_override: str | None = Field(
        None,
        min_length=1,
        description=(
            "only when no champion exists at all: let a first model that FAILS its promotion gates "
            "become champion, recorded as a governance exception. The text says who approved it and "
            "why (a role, not a person's name). None = never: the loop stops instead"
        ),
    )


class ScoringConfig(_Frozen):
    chunk_rows: int = Field(50_000, gt=0, description="users scored per chunk (bounds memory)")
    policy_file: str | None = Field(
        None, description="line policy TOML (default: serving/scoring/line_policy.toml)"
    )
    calendar: str | None = Field(
        None, description="scenario calendar JSON whose regulation/risk_appetite entries apply"
    )
    max_source_age_days: dict[str, float] | None = Field(
        None,
        description="per-source staleness limits, e.g. {bureau = 45}; overrides the policy file's",
    )
    num_threads: int = Field(0, ge=0, description="LightGBM predict threads (0 = all cores)")


class ModelConfig(_Frozen):
    """LightGBM settings shared by the credit and fraud models (training/fit.py)."""

    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2)
    max_depth: int = Field(8, description="-1 = unlimited; 8 keeps TreeSHAP fast at equal AUC")
    min_data_in_leaf: int = Field(100, ge=1)
    lambda_l2: float = Field(5.0, ge=0)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    max_rounds: int = Field(1000, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    valid_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="share of training users held out for early stopping + calibration when no --valid-as-of",
    )
    small_table_rows: int = Field(
        20_000,
        ge=0,
        description="below this many rows (train + valid), 5-fold cross-validation chooses among stronger regularisations (training/fit.py)",
    )
    fraud_scale_pos_weight: float | None = Field(
        None, gt=0, description="None = sqrt(negatives/positives); calibration undoes the shift"
    )
    monotone_method: str = "intermediate"
    shap_sample_rows: int = Field(2000, ge=10)


class GatesConfig(_Frozen):
    """Promotion gates (training/promote.py)."""

    auc_margin: float = Field(
        0.01, ge=0, description="challenger OOT AUC may trail the champion's by at most this"
    )
    min_auc: float = Field(
        0.6, ge=0, le=1, description="absolute floor when there is no champion yet"
    )
    calibration_tolerance: float = Field(
        0.03,
        ge=0,
        description="max expected calibration error (decile-weighted |mean PD - bad rate|) on OOT",
    )
    psi_alert: float = Field(0.25, ge=0, description="score PSI train vs OOT must stay below this")
    # The loop's own gates, before the ones above (ANCHORS: a challenger is judged on the same
    # recent months as the champion, and the book must not lurch).
    loop_min_auc_uplift: float = Field(
        0.0, ge=0, description="loop: challenger OOT AUC minus champion's, same rows, at least"
    )
    loop_max_mean_pd_shift: float = Field(
        0.02, gt=0, description="loop: |mean PD change| of tonight's book under the challenger"
    )
    loop_max_band_worse_share: float = Field(
        0.2, gt=0, le=1, description="loop: share of tonight's book moved to a worse PD band"
    )
    monotone_sample_rows: int = Field(500, ge=1)


class ExplainConfig(_Frozen):
    num_threads: int = Field(2, ge=1, description="threads for attribution and hybrid scoring")
    old_policy_file: str | None = Field(
        None,
        description="policy TOML of the previous decision when it differs from the current file",
    )


class Config(_Frozen):
    paths: PathsConfig = PathsConfig()
    simulation: SimulationConfig = SimulationConfig()
    features: FeaturesConfig = FeaturesConfig()
    training: TrainingConfig = TrainingConfig()
    monitor: MonitorConfig = MonitorConfig()
    scoring: ScoringConfig = ScoringConfig()
    model: ModelConfig = ModelConfig()
    gates: GatesConfig = GatesConfig()
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
