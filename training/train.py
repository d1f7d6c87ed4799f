"""Training runs end to end: fit, evaluate, log to MLflow, register as @challenger.

`train_on_feature_tables` trains the credit or fraud model on stacked monthly feature
snapshots with an out-of-time as-of date; `training.tabular.train_on_table` brings any table.
Both end in `train_and_register`.
"""

from __future__ import annotations

import importlib
import json
import logging
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from training import metrics as evaluation
from training import plots
from training.encoding import apply_encoding
from training.fit import (
    CalibratedModel,
    FitResult,
    base_params,
    fit_calibrated,
    fit_logistic_baseline,
    model_spec,
    predict_baseline,
)
from training.promote import GATE_DATA, GATE_LABEL, evaluate_gates, gate_tags
from training.splits import labelled_rows, read_snapshots, split_by_user

log = logging.getLogger(__name__)

NOT_INPUT_PREFIXES = ("ctx_", "fresh_", "label_")
GATE_SAMPLE_ROWS = 100_000  # OOT rows kept with the run so `promote` can rescore the champion
LR_BASELINE_ROWS = 50_000  # the LR yardstick learns from a seeded sample of at most this many rows


class StageTimer:
    """Wall and CPU seconds per stage of a training run (`with timer("fit"): ...`)."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}

    @contextmanager
    def __call__(self, name: str):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            got = self.stages.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0})
            got["wall_s"] += time.perf_counter() - t0
            got["cpu_s"] += time.process_time() - c0

    def line(self) -> str:
        return ", ".join(f"{k} {v['wall_s']:.2f}s" for k, v in self.stages.items())


@dataclass(frozen=True)
class TrainResult:
    name: str
    version: int
    run_id: str
    model: CalibratedModel
    metrics: dict[str, float]
    params: dict
    gates: list
    timings: dict = field(default_factory=dict)  # stage -> {"wall_s", "cpu_s"} (StageTimer)

    @property
    def baseline_auc(self) -> float:
        return self.metrics["baseline_lr_oot_auc"]

    def summary(self) -> str:
        m = self.metrics
        lines = [
            f"registered {self.name} v{self.version} as @challenger (run {self.run_id})",
            f"  OOT: AUC {m['oot_auc']:.4f}  Gini {m['oot_gini']:.4f}  KS {m['oot_ks']:.4f}  "
            f"Brier {m['oot_brier']:.5f}  calibration error {m['oot_calibration_error']:.4f}",
            f"  logistic-regression baseline OOT AUC {m['baseline_lr_oot_auc']:.4f} "
            f"(model - baseline = {m['oot_auc_uplift_vs_lr']:+.4f})",
            f"  score PSI train vs OOT {m['score_psi']:.4f}; rows train/valid/oot "
            f"{int(m['train_rows'])}/{int(m['valid_rows'])}/{int(m['oot_rows'])}; trees {self.params['best_iteration']}",
            "  gate pre-check: "
            + ", ".join(f"{g.name}={'pass' if g.passed else 'FAIL'}" for g in self.gates),
        ]
        return "\n".join(lines)


def _metadata_features(kind: str, monotone_wanted: bool) -> tuple[list[str], list[int] | None, str]:
    try:
        from features import metadata
    except ImportError as exc:
        raise RuntimeError(
            "features.metadata is not available (it lists the model features and monotone directions); "
            "merge the features part, or pass the feature list explicitly"
        ) from exc
    names = list(metadata.model_features(kind))
    mono = list(metadata.monotone_constraints(names)) if monotone_wanted else None
    return names, mono, str(metadata.METADATA_VERSION)


def check_feature_columns(df: pd.DataFrame, features: list[str], where: str) -> None:
    missing = [f for f in features if f not in df.columns]
    if missing:
        raise ValueError(
            f"{where}: {len(missing)} model feature(s) missing: {', '.join(missing[:20])}"
        )
    not_inputs = [f for f in features if f.startswith(NOT_INPUT_PREFIXES)]
    if not_inputs:
        raise ValueError(
            f"{where}: {not_inputs} are context/freshness/label columns, never model inputs"
        )


def train_on_feature_tables(
    kind: str,
    features_dir: str | Path,
    train_as_of: list[str],
    oot_as_of: str,
    *,
    tracking_uri: str,
    settings: dict,
    gates: dict,
    seed: int = 42,
    num_threads: int = 2,
    valid_as_of: list[str] | None = None,
    features: list[str] | None = None,
    monotone: list[int] | None = None,
    metadata_version: str | None = None,
) -> TrainResult:
    """Train `credit` or `fraud` on stacked snapshots; OOT = the `oot_as_of` snapshot.

    `features`/`monotone` default to `features.metadata` (model_features, monotone_constraints).
    Without `valid_as_of`, a share of training users is held out for early stopping + calibration.
    """
    spec = model_spec(kind)
    if features is None:
        features, meta_mono, metadata_version = _metadata_features(kind, spec.monotone)
        monotone = monotone if monotone is not None else meta_mono
    if not spec.monotone:
        monotone = None
    oot_ts = pd.Timestamp(oot_as_of)
    late = [d for d in list(train_as_of) + list(valid_as_of or []) if pd.Timestamp(d) >= oot_ts]
    if late:
        raise ValueError(
            f"out-of-time as-of {oot_ts:%Y-%m-%d} must be after every training/validation as-of; got {late}"
        )

    timer = StageTimer()
    with timer("read"):
        train_all, lin_train = read_snapshots(features_dir, train_as_of)
        train_all = labelled_rows(
            train_all, spec.label, spec.matured, f"training snapshots {train_as_of}"
        )
        if valid_as_of:
            valid, lin_valid = read_snapshots(features_dir, valid_as_of)
            valid = labelled_rows(
                valid, spec.label, spec.matured, f"validation snapshots {valid_as_of}"
            )
            train = train_all
            split = f"train as-of {train_as_of}, validation as-of {valid_as_of}, out-of-time as-of {oot_as_of}"
        else:
            lin_valid = []
            train, valid = split_by_user(
                train_all, "user_id", spec.label, settings["valid_fraction"], seed
            )
            split = (
                f"train as-of {train_as_of} ({1 - settings['valid_fraction']:.0%} of users), validation = the other users, "
                f"out-of-time as-of {oot_as_of}"
            )
        oot, lin_oot = read_snapshots(features_dir, [oot_as_of])
        oot = labelled_rows(oot, spec.label, spec.matured, f"out-of-time snapshot {oot_as_of}")
    for frame, where in ((train, "training"), (valid, "validation"), (oot, "out-of-time")):
        check_feature_columns(frame, features, f"{where} feature table")

    versions = {
        s["metadata_version"] for s in lin_train + lin_valid + lin_oot if s.get("metadata_version")
    }
    if metadata_version and versions and versions != {metadata_version}:
        log.warning(
            "feature tables were built with metadata %s, training with %s",
            sorted(versions),
            metadata_version,
        )
    lineage = {
        "split": split,
        "snapshots": lin_train + lin_valid + lin_oot,
        "train": {"as_of": list(train_as_of)},
        "valid": {
            "as_of": list(valid_as_of) if valid_as_of else "held-out users of the training dates"
        },
        "oot": {"as_of": [oot_as_of]},
    }
    return train_and_register(
        train,
        valid,
        oot,
        kind=kind,
        registered_name=spec.registered_name,
        features=features,
        label=spec.label,
        monotone=monotone,
        rare_class=spec.rare_class,
        encoding={},
        lineage=lineage,
        metadata_version=metadata_version,
        tracking_uri=tracking_uri,
        settings=settings,
        gates=gates,
        seed=seed,
        num_threads=num_threads,
        timer=timer,
    )


def gate_sample(oot: pd.DataFrame, label: str, seed: int) -> pd.DataFrame:
    """OOT rows kept with the run for `promote`: every candidate input column (so a champion
    with other features can be rescored on the same rows) and the label as `__label__`."""
    rows = (
        oot if len(oot) <= GATE_SAMPLE_ROWS else oot.sample(n=GATE_SAMPLE_ROWS, random_state=seed)
    )
    keep = [
        c
        for c in rows.columns
        if c != label
        and not c.startswith("label_")
        and c not in ("user_id", "as_of")
        and not pd.api.types.is_datetime64_any_dtype(rows[c])
    ]
    return (
        rows[keep].reset_index(drop=True).assign(**{GATE_LABEL: rows[label].to_numpy(dtype=float)})
    )


def _input_example(frame: pd.DataFrame, features: list[str], encoding: dict) -> pd.DataFrame:
    """First rows of the raw inputs: numbers as float64, encoded text columns as str."""
    text_cols = set(encoding.get("columns", {}))
    ex = frame[features].head(5).reset_index(drop=True)
    return ex.assign(
        **{
            c: (
                ex[c].astype("string").fillna("").astype(object)
                if c in text_cols
                else ex[c].astype("float64")
            )
            for c in features
        }
    )


# Imported by the first training run, not at import: MLflow, sklearn, matplotlib are slow to load.
_RUN_MODULES = (
    "lightgbm",
    "mlflow",
    "mlflow.models",
    "training.model_card",
    "training.registry",
    "training.tracking",
)


@dataclass(frozen=True)
class _Job:
    """`train_and_register`'s arguments, as its steps read them."""

    train: pd.DataFrame
    valid: pd.DataFrame
    oot: pd.DataFrame
    kind: str
    registered_name: str
    features: list[str]
    label: str
    monotone: list[int] | None
    rare_class: bool
    encoding: dict
    lineage: dict
    metadata_version: str | None
    tracking_uri: str
    settings: dict  # ModelConfig values
    gates: dict  # GatesConfig values
    seed: int
    num_threads: int
    group_col: str | None


@dataclass(frozen=True)
class _Evaluation:
    """Scores, metrics and tables of the fitted model on train, valid and oot."""

    metrics: dict[str, float]
    ys: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    calib_oot: pd.DataFrame
    calib_train: pd.DataFrame
    lift_oot: pd.DataFrame


@dataclass(frozen=True)
class _Shap:
    """SHAP values of a seeded sample of oot rows, and the feature importance they give."""

    contrib: np.ndarray
    X: np.ndarray
    importance: pd.DataFrame


@dataclass(frozen=True)
class _GateCheck:
    """The promotion gates, run at training time against the current champion."""

    frame: pd.DataFrame  # the oot rows kept with the run (GATE_DATA)
    results: list
    against: str


@dataclass(frozen=True)
class _Candidate:
    """The fitted model and everything the MLflow run records about it."""

    fit: FitResult
    evaluation: _Evaluation
    shap: _Shap
    gates: _GateCheck


def train_and_register(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    oot: pd.DataFrame,
    *,
    kind: str,
    registered_name: str,
    features: list[str],
    label: str,
    monotone: list[int] | None,
    rare_class: bool,
    encoding: dict,
    lineage: dict,
    metadata_version: str | None,
    tracking_uri: str,
    settings: dict,
    gates: dict,
    seed: int,
    num_threads: int,
    group_col: str | None = "user_id",
    timer: StageTimer | None = None,
) -> TrainResult:
    """Fit on train (early stopping + calibration on valid), evaluate on all three, log, register.

    Frames hold the raw model inputs (text not yet encoded) and the label. `settings` are the
    ModelConfig values, `gates` the GatesConfig values.
    """
    timer = timer if timer is not None else StageTimer()
    with timer("imports"):  # paid once per process
        for module in _RUN_MODULES:
            importlib.import_module(module)
    import mlflow

    from training.tracking import ensure_experiment, open_client, using_store

    job = _Job(
        train=train,
        valid=valid,
        oot=oot,
        kind=kind,
        registered_name=registered_name,
        features=features,
        label=label,
        monotone=monotone,
        rare_class=rare_class,
        encoding=encoding,
        lineage=lineage,
        metadata_version=metadata_version,
        tracking_uri=tracking_uri,
        settings=settings,
        gates=gates,
        seed=seed,
        num_threads=num_threads,
        group_col=group_col,
    )
    with timer("encode+fit"):
        enc, fr = _fit(job)
    with timer("lr_baseline"):
        lr = _fit_lr_baseline(job, enc, fr)
    with timer("evaluate"):
        evaluated = _evaluate(job, enc, fr, lr)
    with timer("shap"):
        shap = _attribute_oot(job, fr.model)
    with timer("gates"):
        client = open_client(tracking_uri)
        exp_id = ensure_experiment(client, registered_name, tracking_uri)
        gate_check = _check_gates(job, client, fr.model, evaluated.metrics)
    cand = _Candidate(fit=fr, evaluation=evaluated, shap=shap, gates=gate_check)

    with using_store(tracking_uri), tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with mlflow.start_run(experiment_id=exp_id, run_name=f"{registered_name}-{kind}") as run:
            run_id = run.info.run_id
            with timer("log_run"):
                _log_run(client, run_id, job, cand)
            with timer("plots"):
                _log_plots(client, run_id, tmp, job, cand)
            with timer("log_model"):
                info = _log_model(client, run_id, tmp, job, cand)
            with timer("register+card"):
                version = _register(client, run_id, job, cand, info.model_uri)
    metrics = evaluated.metrics
    log.info(
        "registered %s v%d (run %s): OOT AUC %.4f, LR baseline %.4f",
        registered_name,
        version,
        run_id,
        metrics["oot_auc"],
        metrics["baseline_lr_oot_auc"],
    )
    return TrainResult(
        name=registered_name,
        version=version,
        run_id=run_id,
        model=fr.model,
        metrics=metrics,
        params={**fr.params, "best_iteration": fr.best_iteration},
        gates=gate_check.results,
        timings=timer.stages,
    )


def _fit(job: _Job) -> tuple[dict[str, pd.DataFrame], FitResult]:
    """The three frames encoded for the booster, and the calibrated fit."""
    settings, encoding = job.settings, job.encoding
    cols = list(job.features) + [job.label]
    frames = (("train", job.train), ("valid", job.valid), ("oot", job.oot))
    # no text columns (the feature-table path): use the frames as they are, no copies
    enc = {part: apply_encoding(f[cols], encoding) if encoding else f for part, f in frames}
    params = base_params(
        learning_rate=settings["learning_rate"],
        num_leaves=settings["num_leaves"],
        max_depth=settings["max_depth"],
        min_data_in_leaf=settings["min_data_in_leaf"],
        lambda_l2=settings["lambda_l2"],
        feature_fraction=settings["feature_fraction"],
        bagging_fraction=settings["bagging_fraction"],
        seed=job.seed,
        num_threads=job.num_threads,
    )
    group_col = job.group_col
    fr = fit_calibrated(
        enc["train"],
        enc["valid"],
        job.features,
        job.label,
        params=params,
        monotone=job.monotone,
        monotone_method=settings["monotone_method"],
        rare_class=job.rare_class,
        scale_pos_weight=settings.get("fraud_scale_pos_weight"),
        max_rounds=settings["max_rounds"],
        early_stopping_rounds=settings["early_stopping_rounds"],
        small_table_rows=settings["small_table_rows"],
        encoding=encoding,
        groups=(
            np.r_[job.train[group_col].to_numpy(), job.valid[group_col].to_numpy()]
            if group_col and group_col in job.train.columns
            else None
        ),
        seed=job.seed,
    )
    return enc, fr


def _fit_lr_baseline(job: _Job, enc: dict[str, pd.DataFrame], fr: FitResult):
    """The logistic-regression yardstick, from the rows the model learnt from."""
    # the baseline learns from the same rows as the model: train, plus valid under cross-validation
    lr_rows = enc["train"] if fr.scheme == "holdout" else pd.concat([enc["train"], enc["valid"]])
    if len(lr_rows) > LR_BASELINE_ROWS:  # ~200 coefficients are settled well before 50k rows
        lr_rows = lr_rows.sample(n=LR_BASELINE_ROWS, random_state=job.seed)
    return fit_logistic_baseline(lr_rows, job.features, job.label)


def _evaluate(job: _Job, enc: dict[str, pd.DataFrame], fr: FitResult, lr) -> _Evaluation:
    """Metrics of the model and the LR baseline on each part, score PSI, calibration and lift."""
    model, label = fr.model, job.label
    metrics: dict[str, float] = {}
    scores: dict[str, np.ndarray] = {}
    ys: dict[str, np.ndarray] = {}
    for part, frame in (("train", job.train), ("valid", job.valid), ("oot", job.oot)):
        ys[part] = frame[label].to_numpy(dtype="float64")
        if part == "valid" and fr.valid_margin is not None:
            # cross-validated fit: the final model has seen these rows; use out-of-fold scores
            scores[part] = 1.0 / (1.0 + np.exp(-fr.valid_margin))
        else:
            scores[part] = model.predict_proba(frame)
        metrics.update(evaluation.summarise(ys[part], scores[part], part))
        metrics[f"baseline_lr_{part}_auc"] = evaluation.auc(
            ys[part], predict_baseline(lr, enc[part], job.features)
        )
    metrics["score_psi"] = evaluation.psi(scores["train"], scores["oot"])
    metrics["oot_auc_uplift_vs_lr"] = metrics["oot_auc"] - metrics["baseline_lr_oot_auc"]
    for i, cand in enumerate(fr.candidates):
        metrics[f"candidate_{i}_valid_auc"] = cand["valid_auc"]
    return _Evaluation(
        metrics=metrics,
        ys=ys,
        scores=scores,
        calib_oot=evaluation.calibration_table(ys["oot"], scores["oot"]),
        calib_train=evaluation.calibration_table(ys["train"], scores["train"]),
        lift_oot=evaluation.lift_table(ys["oot"], scores["oot"]),
    )


def _attribute_oot(job: _Job, model: CalibratedModel) -> _Shap:
    """SHAP values of a seeded sample of oot rows; features ranked by mean |SHAP|."""
    oot = job.oot
    rng = np.random.default_rng(job.seed)
    n_shap = min(job.settings["shap_sample_rows"], len(oot))
    shap_rows = np.sort(rng.choice(len(oot), size=n_shap, replace=False))
    X_shap = model.matrix(oot.iloc[shap_rows])
    contrib = plots.shap_values(model.booster, X_shap)
    importance = pd.DataFrame(
        {
            "feature": job.features,
            "mean_abs_shap": np.abs(contrib).mean(axis=0),
            "monotone": model.monotone,
            "split_gain": model.booster.feature_importance("gain"),
        }
    ).sort_values(["mean_abs_shap", "feature"], ascending=[False, True], kind="mergesort")
    return _Shap(contrib=contrib, X=X_shap, importance=importance)


def _check_gates(
    job: _Job, client, model: CalibratedModel, metrics: dict[str, float]
) -> _GateCheck:
    """The promotion gates on the kept oot rows, against the champion (if any) as it is now."""
    from training.registry import CHAMPION, current_version, load_model

    oot, group_col, gates = job.oot, job.group_col, job.gates
    gate_frame = gate_sample(
        oot.drop(columns=[group_col], errors="ignore") if group_col else oot, job.label, job.seed
    )
    champ_version = current_version(client, job.registered_name, CHAMPION)
    champion = (
        load_model(job.registered_name, champ_version, job.tracking_uri)
        if champ_version is not None
        else None
    )
    results = evaluate_gates(
        model,
        champion,
        gate_frame.drop(columns=[GATE_LABEL]),
        gate_frame[GATE_LABEL].to_numpy(),
        calibration_error=metrics["oot_calibration_error"],
        score_psi=metrics["score_psi"],
        auc_margin=gates["auc_margin"],
        min_auc=gates["min_auc"],
        calibration_tolerance=gates["calibration_tolerance"],
        psi_alert=gates["psi_alert"],
        monotone_sample_rows=gates["monotone_sample_rows"],
        champion_label=f"champion v{champ_version}",
        seed=job.seed,
    )
    against = (
        f"champion v{champ_version} (at training time)"
        if champion is not None
        else "absolute thresholds"
    )
    return _GateCheck(frame=gate_frame, results=results, against=against)


def _run_params(job: _Job, fr: FitResult) -> dict:
    """The run's MLflow params: the job, the fit and its LightGBM parameters."""
    return {
        "kind": job.kind,
        "label": job.label,
        "n_features": len(job.features),
        "metadata_version": job.metadata_version or "n/a",
        "best_iteration": fr.best_iteration,
        "calib_a": f"{fr.model.calib_a:.6f}",
        "calib_b": f"{fr.model.calib_b:.6f}",
        "encoding_columns": len(job.encoding.get("columns", {})),
        "split": job.lineage.get("split", ""),
        "fit_scheme": fr.scheme,
        "max_rounds": job.settings["max_rounds"],
        "early_stopping_rounds": job.settings["early_stopping_rounds"],
        "seed": job.seed,
        **{
            f"lgbm_{k}": v
            for k, v in fr.params.items()
            if k not in ("verbosity", "metric", "objective")
        },
    }


def _log_run(client, run_id: str, job: _Job, cand: _Candidate) -> None:
    """Params, tags, lineage, features, regularisation candidates and tables of the run."""
    import mlflow

    from training import model_card
    from training.tracking import log_frame, log_json, log_params

    fr, ev = cand.fit, cand.evaluation
    log_params(client, run_id, _run_params(job, fr))
    mlflow.set_tags({"model_kind": job.kind, "metadata_version": job.metadata_version or "n/a"})
    log_json(client, run_id, job.lineage, model_card.LINEAGE)
    log_json(
        client,
        run_id,
        {"features": job.features, "monotone": fr.model.monotone},
        "features.json",
    )
    log_json(client, run_id, fr.candidates, "regularisation_candidates.json")
    log_frame(client, run_id, ev.calib_oot, "tables/calibration_oot.csv")
    log_frame(client, run_id, ev.calib_train, "tables/calibration_train.csv")
    log_frame(client, run_id, ev.lift_oot, "tables/lift_oot.csv")
    log_frame(client, run_id, cand.shap.importance, model_card.IMPORTANCE)
    log_frame(client, run_id, cand.gates.frame, GATE_DATA)


def _log_plots(client, run_id: str, tmp: Path, job: _Job, cand: _Candidate) -> None:
    """ROC/KS and calibration on oot, and the SHAP summary, under plots/."""
    ev, shap = cand.evaluation, cand.shap
    client.log_artifact(
        run_id,
        str(plots.plot_roc_ks(ev.ys["oot"], ev.scores["oot"], tmp / "roc_ks_oot.png", "OOT")),
        "plots",
    )
    client.log_artifact(
        run_id,
        str(plots.plot_calibration(ev.calib_oot, tmp / "calibration_oot.png", "OOT")),
        "plots",
    )
    client.log_artifact(
        run_id,
        str(plots.plot_shap_summary(shap.contrib, shap.X, job.features, tmp / "shap_summary.png")),
        "plots",
    )


def _log_model(client, run_id: str, tmp: Path, job: _Job, cand: _Candidate):
    """The booster and its metadata as an MLflow pyfunc model, then the metrics tied to it."""
    import lightgbm as lgb
    import mlflow
    from mlflow.models import infer_signature

    from training.registry import BOOSTER_FILE, META_FILE, model_meta
    from training.tracking import log_metrics

    model = cand.fit.model
    booster_path = tmp / BOOSTER_FILE
    model.booster.save_model(str(booster_path))
    meta_path = tmp / META_FILE
    meta_path.write_text(
        json.dumps(
            model_meta(
                model,
                kind=job.kind,
                label=job.label,
                metadata_version=job.metadata_version,
                run_id=run_id,
            ),
            indent=2,
            sort_keys=True,
        )
    )
    example = _input_example(job.train, job.features, job.encoding)
    signature = infer_signature(example, model.predict_proba(example))
    info = mlflow.pyfunc.log_model(
        name="model",
        # a code file, not a pickled object (MLflow models from code)
        python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
        artifacts={"booster": str(booster_path), "meta": str(meta_path)},
        signature=signature,
        input_example=example,
        pip_requirements=[
            f"mlflow=={mlflow.__version__}",
            f"lightgbm=={lgb.__version__}",
            f"pandas=={pd.__version__}",
            f"numpy=={np.__version__}",
        ],
    )
    # after the model, tied to it: logged before, log_model would link each metric
    # with one history query per metric (about 1 s for ~100 metrics)
    log_metrics(client, run_id, cand.evaluation.metrics, model_id=info.model_id)
    return info


def _register(client, run_id: str, job: _Job, cand: _Candidate, model_uri: str) -> int:
    """The logged model registered as a new version, tagged with its gate pre-check, with a card."""
    import mlflow

    from training import model_card
    from training.registry import register

    name, gates = job.registered_name, cand.gates
    version = register(
        client,
        name,
        model_uri,
        tags={
            "kind": job.kind,
            "run_id": run_id,
            "metadata_version": job.metadata_version or "n/a",
            "oot_auc": f"{cand.evaluation.metrics['oot_auc']:.4f}",
        },
    )
    for k, v in gate_tags(gates.results, gates.against).items():
        client.set_model_version_tag(name, str(version), k, v)
    client.set_model_version_tag(name, str(version), "gates.stage", "training")
    mlflow.set_tag("registered_version", f"{name}/{version}")
    model_card.log_card(
        client, job.tracking_uri, run_id, name, version, gates.results, gates.against
    )
    return version
