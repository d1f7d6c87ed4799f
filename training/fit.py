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
from training.metrics import auc, fit_logistic_1d

log = logging.getLogger(__name__)

CV_REPEATS = 1  # fold assignments averaged when choosing among small-sample candidates


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


# The registered names, the one place they are spelled.
CREDIT_MODEL = MODEL_SPECS["credit"].registered_name
FRAUD_MODEL = MODEL_SPECS["fraud"].registered_name


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
    scheme: str = "holdout"  # "holdout": early stopping + Platt on valid; "cv5": see fit_calibrated
    valid_margin: np.ndarray | None = (
        None  # out-of-fold calibrated log-odds of the valid rows (cv5)
    )


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


def candidate_params(params: dict, n_rows: int, small_rows: int) -> list[dict]:
    """The configured params, plus stronger regularisation when the development sample is small.

    On a few thousand rows with ~5% bads, default-sized trees overfit and a logistic regression
    wins. Below `small_rows` rows cross-validation chooses among: the configured params; the same
    depth with large leaves, an L2 penalty, path smoothing, column subsampling and slower learning;
    depth-2 trees (pairwise interactions only); and depth-1 stumps (an additive model, the tree
    model closest to a logistic regression) with randomised thresholds (`extra_trees`), whose
    average over many stumps is a smooth curve rather than a staircase. Never chosen on the
    out-of-time sample.
    """
    out = [dict(params)]
    if n_rows < small_rows:
        leaf = max(20, n_rows // 80)
        smooth = {
            "lambda_l2": 10.0,
            "path_smooth": 20.0,
            "feature_fraction": min(0.7, params.get("feature_fraction", 1.0)),
            "bagging_fraction": 1.0,
            "bagging_freq": 0,
        }
        out.append(
            {**params, **smooth, "min_data_in_leaf": 2 * leaf, "learning_rate": 0.03, "max_bin": 63}
        )
        out.append(
            {**params, "min_data_in_leaf": leaf, "learning_rate": 0.04, "max_bin": 32,
             "num_leaves": 3, "max_depth": 2, "lambda_l2": 5.0}
        )  # fmt: skip
        out.append(
            {**params, **smooth, "min_data_in_leaf": leaf, "learning_rate": 0.05, "max_bin": 255,
             "num_leaves": 2, "max_depth": 1, "extra_trees": True}
        )  # fmt: skip
    return out


def infer_directions(X: np.ndarray, y: np.ndarray, z_min: float = 3.0) -> list[int]:
    """+1/-1 where a feature's rank correlation with the label is clearly non-zero (|z| > z_min)."""
    ranks_y = pd.Series(y).rank().to_numpy()
    out = []
    for j in range(X.shape[1]):
        col = pd.Series(X[:, j])
        ok = col.notna().to_numpy()
        if ok.sum() < 30 or col[ok].nunique() < 2:
            out.append(0)
            continue
        r = np.corrcoef(col[ok].rank().to_numpy(), pd.Series(ranks_y[ok]).rank().to_numpy())[0, 1]
        out.append(int(np.sign(r)) if abs(r) * np.sqrt(ok.sum()) > z_min else 0)
    return out


def make_folds(
    y: np.ndarray, groups: np.ndarray, k: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k folds by group (a user never on both sides), stratified by the group's worst label."""
    frame = pd.DataFrame({"g": groups, "y": y})
    per_group = frame.groupby("g", sort=True)["y"].max()
    rng = np.random.default_rng(seed)
    fold_of: dict = {}
    for _, members in per_group.groupby(per_group.values, sort=True):
        for i, g in enumerate(rng.permutation(members.index.to_numpy())):
            fold_of[g] = i % k
    fold = frame["g"].map(fold_of).to_numpy()
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


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
    groups: np.ndarray | None = None,
    seed: int = 0,
) -> FitResult:
    """Fit LightGBM with early stopping on `valid`, then Platt-calibrate its raw margin on `valid`.

    Below `small_table_rows` rows (train + valid) it switches to cross-validation (`_fit_small`);
    `groups` (e.g. user ids of train then valid rows) keeps a user inside one fold.

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

    if len(y_train) + len(y_valid) < small_table_rows:
        return _fit_small(
            train,
            valid,
            features,
            label,
            params,
            max_rounds,
            early_stopping_rounds,
            small_table_rows,
            encoding,
            monotone,
            groups,
            seed,
        )

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
    _, booster, chosen = best
    # keep only the trees early stopping chose, so the saved model and the scores agree
    booster = lgb.Booster(
        model_str=booster.model_to_string(num_iteration=booster.best_iteration or None)
    )
    a, b = fit_logistic_1d(booster.predict(X_valid, raw_score=True), y_valid)
    model = _model(features, booster, a, b, encoding, monotone)
    return FitResult(
        model=model, params=chosen, best_iteration=booster.num_trees(), candidates=tried
    )


def _model(features, booster, a, b, encoding, monotone) -> CalibratedModel:
    return CalibratedModel(
        features=list(features),
        booster=booster,
        calib_a=a,
        calib_b=b,
        encoding=encoding or {},
        monotone=[int(m) for m in monotone] if monotone is not None else [0] * len(features),
    )


def _fit_small(
    train,
    valid,
    features,
    label,
    params,
    max_rounds,
    early_stopping_rounds,
    small_table_rows,
    encoding,
    monotone,
    groups,
    seed,
) -> FitResult:
    """Small samples: 5-fold CV on train+valid picks the regularisation and the number of trees,
    the final model is refit on all of train+valid, and Platt is fitted on out-of-fold margins.

    A single small hold-out (a few dozen bads) makes early stopping and the choice of
    regularisation noise; CV uses every row for both, so trees keep up with a logistic regression.
    """
    dev = pd.concat([train[features + [label]], valid[features + [label]]], ignore_index=True)
    X = dev[features].to_numpy(dtype="float64", na_value=np.nan)
    y = dev[label].to_numpy(dtype="float64")
    g = np.asarray(groups) if groups is not None else np.arange(len(y))
    # more than one fold assignment (CV_REPEATS) averages out how the few bads fall into folds;
    # measured, a second assignment changed no choice on the README's tables and doubled the cost
    fold_sets = [make_folds(y, g, 5, seed + r) for r in range(CV_REPEATS)]
    # one thread: on a few thousand rows each of thousands of tiny boosting rounds is shorter than
    # the OpenMP hand-off between two threads (measured on 3.9k rows, 2 threads on a busy 2-core
    # box: 208 CPU s where one thread needs 8)
    params = {**params, "num_threads": 1}
    candidates = candidate_params(params, len(y), small_table_rows)
    if not any(params.get("monotone_constraints", [])):
        # no declared directions (the tabular path): also try the stump model constrained to the
        # directions the data shows clearly; fewer shapes to fit means less variance on few rows
        inferred = infer_directions(X, y)
        if any(inferred):
            candidates.append({**candidates[-1], "monotone_constraints": inferred})
    tried: list[dict] = []
    best = None
    for cand in candidates:
        scores, trees, oofs = [], [], []
        for folds in fold_sets:
            oof, n = _cv_oof(cand, X, y, features, folds, max_rounds, early_stopping_rounds)
            scores.append(auc(y, oof))
            trees.append(n)
            oofs.append(oof)
        score = float(np.mean(scores))
        n_trees = max(1, int(round(float(np.mean(trees)))))
        tried.append(
            {"params": _short(cand), "best_iteration": n_trees, "valid_auc": score,
             "fold_set_aucs": scores, "scheme": "cv5"}
        )  # fmt: skip
        log.info("candidate %s: out-of-fold AUC %.4f at %d trees", _short(cand), score, n_trees)
        if best is None or score > best[0] + 1e-9:
            best = (score, cand, n_trees, oofs[0])
    _, chosen, n_trees, oof = best
    booster = lgb.train(
        chosen, lgb.Dataset(X, label=y, feature_name=features), num_boost_round=n_trees
    )
    booster = lgb.Booster(model_str=booster.model_to_string())
    a, b = fit_logistic_1d(oof, y)
    model = _model(features, booster, a, b, encoding, chosen.get("monotone_constraints", monotone))
    return FitResult(
        model=model,
        params=chosen,
        best_iteration=booster.num_trees(),
        candidates=tried,
        scheme="cv5",
        valid_margin=a * oof[len(train) :] + b,
    )


def _cv_oof(cand, X, y, features, folds, max_rounds, early_stopping_rounds):
    """Out-of-fold raw margins of one candidate and its number of trees.

    Early stopping watches log-loss (smooth; AUC on a few dozen bads per fold plateaus and
    stops at a handful of trees), except with up-weighted positives (fraud): there the log-loss
    scores deliberately shifted probabilities and bottoms out early (measured on the 2,000-user
    simulator: out-of-fold AUC 0.78-0.93 against 0.93-0.94 stopping on AUC, OOT AUC 0.80 against
    0.89). Candidates are compared by AUC.
    """
    weighted = cand.get("scale_pos_weight", 1.0) != 1.0
    metrics = ["auc", "binary_logloss"] if weighted else ["binary_logloss", "auc"]
    cv = lgb.cv(
        {**cand, "metric": metrics},
        lgb.Dataset(X, label=y, feature_name=features, free_raw_data=False),
        num_boost_round=max_rounds,
        folds=folds,
        callbacks=[
            lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False)
        ],
        return_cvbooster=True,
    )
    n_trees = len(cv[f"valid {metrics[0]}-mean"])
    oof = np.empty(len(y))
    for (_, held), booster in zip(folds, cv["cvbooster"].boosters, strict=True):
        oof[held] = booster.predict(X[held], raw_score=True, num_iteration=n_trees)
    return oof, n_trees


class LogisticBaseline:
    """The yardstick: median imputation + missing indicators, standardisation, L2 logistic
    regression (sklearn's `LogisticRegression(C=1)`, lbfgs).

    The same model as sklearn's `SimpleImputer(median, add_indicator) -> StandardScaler ->
    LogisticRegression` pipeline, with the preprocessing in numpy: the imputer's masked median
    took 60% of the baseline's time on 70k x 100.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 2000) -> None:
        self.C = C
        self.max_iter = max_iter

    def _design(self, X: np.ndarray) -> np.ndarray:
        miss = np.isnan(X)
        filled = np.where(miss, self.medians_, X)
        Z = np.hstack([filled, miss[:, self.indicator_cols_].astype(np.float64)])
        Z -= self.mean_
        Z /= self.scale_
        return Z

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogisticBaseline:
        from sklearn.linear_model import LogisticRegression

        miss = np.isnan(X)
        # a column that is all NaN in training has no median: impute 0 (it carries no signal)
        with np.errstate(all="ignore"):
            med = np.nanmedian(np.where(miss.all(axis=0), 0.0, X), axis=0)
        self.medians_ = np.where(np.isnan(med), 0.0, med)
        self.indicator_cols_ = np.flatnonzero(miss.any(axis=0))
        filled = np.where(miss, self.medians_, X)
        Z = np.hstack([filled, miss[:, self.indicator_cols_].astype(np.float64)])
        self.mean_ = Z.mean(axis=0)
        sd = Z.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)  # StandardScaler leaves constant columns unscaled
        Z -= self.mean_
        Z /= self.scale_
        self.lr_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(Z, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.lr_.predict_proba(self._design(X))


def fit_logistic_baseline(train: pd.DataFrame, features: list[str], label: str) -> LogisticBaseline:
    """A plain logistic regression on the same rows (median-imputed, standardised): the yardstick."""
    X = train[features].to_numpy(dtype="float64", na_value=np.nan)
    return LogisticBaseline().fit(X, _binary_label(train, label, "training"))


def predict_baseline(
    pipe: LogisticBaseline, frame: pd.DataFrame, features: list[str]
) -> np.ndarray:
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
        "max_bin",
        "path_smooth",
        "extra_trees",
        "feature_fraction",
        "monotone_constraints",
    )
    return {k: params[k] for k in keys if k in params}
