"""Fitting: LightGBM with early stopping, then Platt calibration on the raw margin.

Calibrated log-odds = a * raw_margin + b. The map is affine, so TreeSHAP attributions on the raw
margin scale by `a` and still add up (the explanations rely on this).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

from training.encoding import apply_encoding
from training.evaluate import auc, fit_logistic_1d

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What differs between the two models; everything else is shared."""

    kind: str  # "credit" | "fraud" (the key for features.metadata.model_features)
    registered_name: str
    label: str
    matured: str
    monotone: bool  # use the metadata's monotone directions as constraints
    rare_class: bool  # up-weight positives (calibration undoes the shift)


MODEL_SPECS: dict[str, ModelSpec] = {
    "credit": ModelSpec(
        "credit", "credit-pd", "label_default_12m", "label_default_12m_matured", True, False
    ),
    "fraud": ModelSpec("fraud", "fraud", "label_fraud_90d", "label_fraud_90d_matured", False, True),
}


def model_spec(kind: str) -> ModelSpec:
    if kind not in MODEL_SPECS:
        raise ValueError(f"unknown model {kind!r}; choose one of {sorted(MODEL_SPECS)}")
    return MODEL_SPECS[kind]


@dataclass(frozen=True, kw_only=True)
class CalibratedModel:
    """A LightGBM booster plus its Platt map, feature list and encoding: all scoring needs."""

    features: list[str]
    booster: lgb.Booster
    calib_a: float
    calib_b: float
    encoding: dict = field(default_factory=dict)
    monotone: list[int] = field(default_factory=list)  # declared directions, aligned with features

    def matrix(self, X: pd.DataFrame) -> np.ndarray:
        """The float64 model matrix: encoding applied, columns in training order."""
        missing = [c for c in self.features if c not in X.columns]
        if missing:
            raise ValueError(
                f"table lacks {len(missing)} column(s) the model needs: {', '.join(missing[:20])}"
                + (" ..." if len(missing) > 20 else "")
            )
        encoded = apply_encoding(X[self.features], self.encoding)
        try:
            return encoded.to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError) as exc:
            bad = [c for c in self.features if not pd.api.types.is_numeric_dtype(encoded[c])]
            raise ValueError(
                f"columns {bad} are not numeric and the model has no encoding for them"
            ) from exc

    def raw_margin(self, X: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(self.matrix(X), raw_score=True)

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated log-odds."""
        return self.calib_a * self.raw_margin(X) + self.calib_b

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.margin(X)))


@dataclass(frozen=True)
class FitResult:
    model: CalibratedModel
    params: dict
    best_iteration: int
    candidates: list[dict]  # every regularisation tried: params and validation AUC


def base_params(
    *,
    learning_rate: float,
    num_leaves: int,
    max_depth: int,
    min_data_in_leaf: int,
    lambda_l2: float,
    feature_fraction: float,
    bagging_fraction: float,
    seed: int,
    num_threads: int,
) -> dict:
    return {
        "objective": "binary",
        "metric": "auc",
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "max_depth": max_depth,
        "min_data_in_leaf": min_data_in_leaf,
        "lambda_l2": lambda_l2,
        "feature_fraction": feature_fraction,
        "bagging_fraction": bagging_fraction,
        "bagging_freq": 1 if bagging_fraction < 1 else 0,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": num_threads,
        "verbosity": -1,
        "feature_pre_filter": False,
    }


def candidate_params(params: dict, n_train: int, small_rows: int) -> list[dict]:
    """The configured params, plus stronger regularisation when the training set is small.

    On a few thousand rows with ~5% bads, default-sized trees overfit and a logistic regression
    wins; shallow trees with large leaves and slower learning hold their own. The best on the
    validation set is kept (never on the out-of-time set).
    """
    out = [dict(params)]
    if n_train < small_rows:
        leaf = max(20, n_train // 100)
        out.append(
            {
                **params,
                "num_leaves": 4,
                "max_depth": 2,
                "min_data_in_leaf": leaf,
                "lambda_l2": 10.0,
                "learning_rate": 0.03,
            }
        )
        # depth-1 trees: an additive model (a GAM), the closest tree model to a logistic regression
        out.append(
            {
                **params,
                "num_leaves": 2,
                "max_depth": 1,
                "min_data_in_leaf": leaf,
                "lambda_l2": 10.0,
                "learning_rate": 0.05,
            }
        )
    return out


def _train_one(
    params: dict,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    features: list[str],
    max_rounds: int,
    early_stopping_rounds: int,
) -> lgb.Booster:
    train_set = lgb.Dataset(X_train, label=y_train, feature_name=features, free_raw_data=True)
    valid_set = lgb.Dataset(X_valid, label=y_valid, reference=train_set)
    return lgb.train(
        params,
        train_set,
        num_boost_round=max_rounds,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[
            lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False)
        ],
    )


def fit_calibrated(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    label: str,
    *,
    params: dict,
    monotone: list[int] | None = None,
    monotone_method: str = "intermediate",
    rare_class: bool = False,
    scale_pos_weight: float | None = None,
    max_rounds: int = 1000,
    early_stopping_rounds: int = 50,
    small_table_rows: int = 0,
    encoding: dict | None = None,
) -> FitResult:
    """Fit LightGBM with early stopping on `valid`, then Platt-calibrate its raw margin on `valid`.

    `train`/`valid` hold the (already encoded, if `encoding` is given) features and the label.
    `monotone` aligns with `features` (+1 higher = riskier, -1 higher = safer, 0 free).
    """
    if not features:
        raise ValueError("no usable features to train on")
    _check_names(features)
    y_train = _binary_label(train, label, "training")
    y_valid = _binary_label(valid, label, "validation")
    X_train = train[features].to_numpy(dtype="float64", na_value=np.nan)
    X_valid = valid[features].to_numpy(dtype="float64", na_value=np.nan)
    params = dict(params)
    if monotone is not None and any(monotone):
        if len(monotone) != len(features):
            raise ValueError(f"{len(monotone)} monotone directions for {len(features)} features")
        params["monotone_constraints"] = [int(m) for m in monotone]
        params["monotone_constraints_method"] = monotone_method
    if rare_class:
        pos = float(y_train.sum())
        spw = (
            scale_pos_weight
            if scale_pos_weight is not None
            else math.sqrt((len(y_train) - pos) / pos)
        )
        params["scale_pos_weight"] = float(spw)

    tried: list[dict] = []
    best: tuple[float, lgb.Booster, dict] | None = None
    for cand in candidate_params(params, len(y_train), small_table_rows):
        booster = _train_one(
            cand, X_train, y_train, X_valid, y_valid, features, max_rounds, early_stopping_rounds
        )
        valid_auc = auc(y_valid, booster.predict(X_valid, raw_score=True))
        tried.append(
            {
                "params": _short(cand),
                "best_iteration": booster.best_iteration,
                "valid_auc": valid_auc,
            }
        )
        log.info(
            "candidate %s: valid AUC %.4f at %d trees",
            _short(cand),
            valid_auc,
            booster.best_iteration,
        )
        if best is None or valid_auc > best[0] + 1e-9:
            best = (valid_auc, booster, cand)
    assert best is not None  # candidate_params always yields the configured params
    _, booster, chosen = best
    # keep only the trees early stopping chose, so the saved model and the scores agree
    booster = lgb.Booster(
        model_str=booster.model_to_string(num_iteration=booster.best_iteration or None)
    )
    a, b = fit_logistic_1d(booster.predict(X_valid, raw_score=True), y_valid)
    model = CalibratedModel(
        features=list(features),
        booster=booster,
        calib_a=a,
        calib_b=b,
        encoding=encoding or {},
        monotone=[int(m) for m in monotone] if monotone is not None else [0] * len(features),
    )
    return FitResult(
        model=model, params=chosen, best_iteration=booster.num_trees(), candidates=tried
    )


def fit_logistic_baseline(train: pd.DataFrame, features: list[str], label: str):
    """A plain logistic regression on the same rows (median-imputed, standardised): the yardstick."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = train[features].to_numpy(dtype="float64", na_value=np.nan)
    # a column that is all NaN in training has no median; the imputer would drop it
    X = np.where(np.isnan(X).all(axis=0), 0.0, X)
    pipe = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=2000),
    )
    pipe.fit(X, _binary_label(train, label, "training"))
    return pipe


def predict_baseline(pipe, frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    X = frame[features].to_numpy(dtype="float64", na_value=np.nan)
    return pipe.predict_proba(X)[:, 1]


def _binary_label(df: pd.DataFrame, label: str, where: str) -> np.ndarray:
    y = pd.to_numeric(df[label], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    if np.isnan(y).any() or not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"{where} set: label {label!r} must be 0/1 with no missing values")
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"{where} set: label {label!r} has only the value {y[0] if len(y) else 'none'} "
            f"({len(y)} rows); both classes are needed (more rows or other dates)"
        )
    return y


_BAD_NAME_CHARS = set("\"',:[]{}")


def _check_names(features: list[str]) -> None:
    bad = [f for f in features if _BAD_NAME_CHARS & set(f)]
    if bad:
        raise ValueError(
            f"LightGBM cannot take feature names with JSON characters {sorted(_BAD_NAME_CHARS)}: {bad}; rename them"
        )


def _short(params: dict) -> dict:
    keys = (
        "num_leaves",
        "max_depth",
        "min_data_in_leaf",
        "lambda_l2",
        "learning_rate",
        "scale_pos_weight",
    )
    return {k: params[k] for k in keys if k in params}
