"""Monthly monitoring: drift, performance on matured labels, misjudgements, retraining triggers.

`summarise_monitoring` is the pure core (frames and a model in, a JSON-able summary out);
`should_retrain` turns a summary into a decision with reasons; `run_monitor` does the IO:
it finds the champion's training reference through its MLflow lineage, reads the feature
tables and decisions, writes the reports under `reports/monitoring/as_of=D/` and logs a
monitoring run to MLflow.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.catalog import available_as_ofs, decisions_path, feature_table_path, monitoring_dir
from features.tables import jsonable
from serving.config import MonitorConfig
from serving.monitoring.drift import feature_drift, psi, write_drift_report_html
from serving.monitoring.performance import (
    DEFAULT_PD_BANDS,
    estimated_performance,
    matured_performance,
    misjudgements,
)
from training.fit import CREDIT_MODEL
from training.registry import LoadedModel

log = logging.getLogger(__name__)

MONITORING_EXPERIMENT = "creditline-monitoring"
# Metric names a training run may log for the champion's out-of-time quality, best first.
BASELINE_GINI_KEYS = ("oot_gini", "test_gini", "valid_gini", "val_gini", "gini")
BASELINE_AUC_KEYS = ("oot_auc", "test_auc", "valid_auc", "val_auc", "auc")


# ---------------------------------------------------------------------------------------------
# Trigger rules (pure)


def should_retrain(summary: dict, thresholds: MonitorConfig) -> tuple[bool, list[str]]:
    """Decide from a monitoring summary whether to train a challenger; say why.

    Each rule fires only on evidence that is present: performance rules need at least
    `min_matured_rows` matured labels; the wrongful-downgrade rule needs at least that many
    matured downgrades... scaled down to a tenth, since downgrades are rarer than users.
    The misjudgement rule compares the share of downgraded users who stayed good with the
    share their PDs implied (a PD of 0.3 expects 7 in 10 to stay good).

    >>> s = {"drift": {"drifted_share": 0.5, "drifted": ["a", "b"]}, "score": {"psi": 0.3}}
    >>> should_retrain(s, MonitorConfig())
    (True, ['feature drift: 50% of important features drifted (a, b) >= 50%', 'score drift: PSI 0.300 >= 0.25'])
    >>> should_retrain({"drift": {"drifted_share": 0.0}, "score": {"psi": 0.01}}, MonitorConfig())
    (False, [])
    """
    t = thresholds
    reasons: list[str] = []
    drift = summary.get("drift") or {}
    share = drift.get("drifted_share")
    if _num(share) and share >= t.max_drifted_share:
        names = ", ".join(drift.get("drifted", [])[:5])
        reasons.append(
            f"feature drift: {share:.0%} of important features drifted ({names}) "
            f">= {t.max_drifted_share:.0%}"
        )
    score_psi = (summary.get("score") or {}).get("psi")
    if _num(score_psi) and score_psi >= t.max_score_psi:
        reasons.append(f"score drift: PSI {score_psi:.3f} >= {t.max_score_psi}")
    perf = summary.get("performance") or {}
    matured = perf.get("matured") or {}
    if matured.get("available") and matured.get("n", 0) >= t.min_matured_rows:
        # Both rules also need the gap to exceed twice its sampling error: a few dozen
        # defaults make a Gini wobble by more than 0.05 on their own.
        drop = perf.get("gini_drop")
        gini_se = 2 * matured["auc_se"] if _num(matured.get("auc_se")) else 0.0
        if _num(drop) and drop >= t.max_gini_drop and drop >= 2 * gini_se:
            reasons.append(
                f"performance: Gini {matured.get('gini', float('nan')):.3f} on matured labels is "
                f"{drop:.3f} below the champion's baseline {perf.get('baseline_gini'):.3f} "
                f"(limit {t.max_gini_drop}, 2 s.e. {2 * gini_se:.3f})"
            )
        gap = matured.get("calibration_gap")
        rate_se = matured.get("default_rate_se") if _num(matured.get("default_rate_se")) else 0.0
        if _num(gap) and abs(gap) >= t.max_calibration_gap and abs(gap) >= 2 * rate_se:
            reasons.append(
                f"calibration: observed default rate {matured['default_rate']:.3%} vs predicted "
                f"{matured['predicted_rate']:.3%} (gap {gap:+.3%}, limit {t.max_calibration_gap:.1%})"
            )
    overall = (summary.get("misjudgement") or {}).get("overall") or {}
    excess = overall.get("wrongful_excess")
    if (
        _num(excess)
        and overall.get("downgraded_matured", 0) >= max(1, t.min_matured_rows // 10)
        and excess >= t.max_wrongful_excess
    ):
        reasons.append(
            f"misjudgement: {overall['wrongful_downgrade_rate']:.0%} of matured downgrades stayed "
            f"good, {excess:.0%} more than their PDs implied (limit {t.max_wrongful_excess:.0%})"
        )
    return bool(reasons), reasons


def _num(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


# ---------------------------------------------------------------------------------------------
# The pure core


def important_features(model: LoadedModel, top_k: int) -> list[str]:
    """The model's features ranked by total gain (ties by name), top k; used features only."""
    booster = getattr(model, "booster", None)
    if booster is None:
        return list(model.features)[:top_k]
    gains = pd.Series(booster.feature_importance("gain"), index=booster.feature_name())
    gains = gains[gains > 0]
    ranked = sorted(gains.index, key=lambda f: (-gains[f], f))
    return [f for f in ranked if f in model.features][:top_k]


def pd_band_labels(p: np.ndarray, bands: tuple[float, ...] = DEFAULT_PD_BANDS) -> np.ndarray:
    """Band name per PD, same bands as the calibration table."""
    edges = np.asarray(bands)
    names = np.array(
        [f"<{edges[0]:g}"]
        + [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
        + [f">={edges[-1]:g}"]
    )
    return names[np.searchsorted(edges, np.asarray(p, dtype="float64"), side="right")]


def summarise_monitoring(
    *,
    as_of: pd.Timestamp,
    model: LoadedModel,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    settings: MonitorConfig,
    current_pd: np.ndarray | None = None,
    matured: pd.DataFrame | None = None,
    matured_decisions: pd.DataFrame | None = None,
    baseline_gini: float | None = None,
    recent: pd.DataFrame | None = None,
    seed: int = 0,
) -> tuple[dict, pd.DataFrame]:
    """Compare current with reference; evaluate matured labels; return (summary, drift table).

    `reference` and `current` are feature tables (the model's features present). `current_pd`
    are the PDs decided on this month (scored now when not given). `matured` is a feature
    table whose default labels have matured by `as_of` (its rows with matured labels are
    scored with the champion); `matured_decisions` the decisions taken on that date (action,
    pd, fraud_p), for misjudgements. `baseline_gini` is the champion's out-of-time Gini.
    `recent`: feature tables of the months scored just before `as_of` (`drift_recent`).
    """
    feats = list(model.features)
    for name, frame in (("reference", reference), ("current", current)):
        missing = [f for f in feats if f not in frame.columns]
        if missing:
            raise ValueError(
                f"{name} feature table lacks {len(missing)} of champion v{model.version}'s "
                f"features (first: {missing[:3]}); rebuild it with the current feature definitions"
            )
    important = important_features(model, settings.important_features_top_k)
    drift = feature_drift(
        reference,
        current,
        important,
        method=settings.drift_method,
        threshold=settings.drift_threshold,
        psi_bins=settings.psi_bins,
        sample_rows=settings.drift_sample_rows,
        seed=seed,
    )
    others = [f for f in feats if f not in important]
    psi_rest = {
        f: psi(reference[f].to_numpy(), current[f].to_numpy(), settings.psi_bins) for f in others
    }
    ref_pd = model.predict_proba(reference[feats])
    cur_pd = model.predict_proba(current[feats]) if current_pd is None else np.asarray(current_pd)
    # A feature counts as drifted when evidently's test says so and the shift is large enough
    # to matter (PSI): histories that simply grow longer in a young portfolio move normed
    # Wasserstein a lot while moving few users between bins.
    drift = drift.assign(drifted=drift["drifted"] & (drift["psi"] >= settings.min_feature_psi))
    drifted = drift.loc[drift["drifted"], "feature"].tolist()
    all_psi = {**dict(zip(drift["feature"], drift["psi"], strict=True)), **psi_rest}
    summary: dict[str, Any] = {
        "as_of": as_of.strftime("%Y-%m-%d"),
        "champion": {"name": model.name, "version": int(model.version)},
        "reference": {"rows": int(len(reference))},
        "current": {"rows": int(len(current))},
        "drift": {
            "method": settings.drift_method,
            "threshold": settings.drift_threshold,
            "min_feature_psi": settings.min_feature_psi,
            "features_tested": important,
            "drifted": drifted,
            "drifted_share": len(drifted) / len(important) if important else 0.0,
            "psi_max_feature": max(all_psi, key=lambda k: (all_psi[k], k)) if all_psi else None,
            "psi_max": max(all_psi.values()) if all_psi else 0.0,
            "features_psi_over_0_25": sorted(k for k, v in all_psi.items() if v > 0.25),
        },
        "score": {
            "psi": psi(ref_pd, cur_pd, settings.psi_bins),
            "reference_mean_pd": float(np.mean(ref_pd)),
            "current_mean_pd": float(np.mean(cur_pd)),
        },
        "estimate": estimated_performance(cur_pd),
        "performance": {
            "matured_as_of": None,
            "baseline_gini": baseline_gini,
            "matured": {"available": False},
        },
        "misjudgement": {},
    }
    if matured is not None and len(matured):
        ok = (
            matured["label_default_12m_matured"].fillna(False).astype(bool)
            & matured["label_default_12m"].notna()
        )
        rows = matured.loc[ok]
        perf = summary["performance"]
        perf["matured_as_of"] = pd.Timestamp(matured["as_of"].iloc[0]).strftime("%Y-%m-%d")
        if len(rows):
            p = model.predict_proba(rows[feats])
            perf["matured"] = matured_performance(rows["label_default_12m"].to_numpy(), p)
            if baseline_gini is not None and _num(perf["matured"].get("gini")):
                perf["gini_drop"] = float(baseline_gini - perf["matured"]["gini"])
        if matured_decisions is not None and len(matured_decisions):
            dec = matured_decisions
            if "pd" in dec.columns:
                dec = dec.assign(pd_band=pd_band_labels(dec["pd"].to_numpy()))
            seg = [s for s in settings.segments if s in dec.columns or s in matured.columns]
            summary["misjudgement"] = misjudgements(
                dec, matured.loc[ok], segments=seg, fraud_threshold=settings.fraud_flag_threshold
            )
    if recent is not None and len(recent):
        summary["drift_recent"] = recent_drift(
            recent, current, important, model.predict_proba(recent[feats]), cur_pd, settings
        )
    retrain, reasons = should_retrain(summary, settings)
    summary["trigger"] = {"retrain": retrain, "reasons": reasons}
    summary["alarm"] = alarm_kind(summary, settings)
    return jsonable(summary), drift


def recent_drift(
    recent: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    recent_pd: np.ndarray,
    current_pd: np.ndarray,
    settings: MonitorConfig,
) -> dict:
    """Is the world still moving? PSI of this month against the months just scored.

    The training reference answers another question (has the world left the model's training
    data?); an alarm against a reference a year old never clears after a lasting shift, this one
    does once the world stops moving. PSI only (no evidently test): it is cheap on every month.
    """
    psis = {
        f: psi(recent[f].to_numpy(), current[f].to_numpy(), settings.psi_bins) for f in features
    }
    drifted = sorted(f for f, v in psis.items() if v >= settings.min_feature_psi)
    return {
        "as_ofs": sorted({f"{pd.Timestamp(d):%Y-%m-%d}" for d in recent["as_of"].unique()})
        if "as_of" in recent.columns
        else [],
        "rows": int(len(recent)),
        "score_psi": psi(recent_pd, current_pd, settings.psi_bins),
        "drifted": drifted,
        "drifted_share": len(drifted) / len(features) if features else 0.0,
    }


def alarm_kind(summary: dict, settings: MonitorConfig) -> dict:
    """Which reference the drift alarm fires against: the champion's training data, the recent
    months, or both (the alarm's reasons are in `trigger`)."""
    train = (summary.get("drift") or {}).get(
        "drifted_share", 0.0
    ) >= settings.max_drifted_share or (
        (summary.get("score") or {}).get("psi") or 0.0
    ) >= settings.max_score_psi
    rec = summary.get("drift_recent")
    recent = bool(rec) and (
        rec["drifted_share"] >= settings.max_drifted_share
        or (rec["score_psi"] or 0.0) >= settings.max_score_psi
    )
    return {"vs_training": bool(train), "vs_recent": recent}


# ---------------------------------------------------------------------------------------------
# IO: paths, lineage, reports, MLflow


def latest_matured_as_of(
    features_dir: str | Path, as_of: pd.Timestamp, horizon_months: int, margin_days: int = 14
) -> pd.Timestamp | None:
    """Newest as-of T with a feature table whose labels are final by `as_of`:
    T + horizon + margin (late-syncing payments) <= as_of."""
    as_of = pd.Timestamp(as_of)
    done = [
        t
        for t in available_as_ofs(features_dir)
        if t + pd.DateOffset(months=horizon_months) + pd.Timedelta(days=margin_days) <= as_of
    ]
    return done[-1] if done else None


def read_features(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"feature table {path} not found; build it first (creditline features --as-of ...)"
        )
    return pd.read_parquet(path)


_PATH_TOKEN = re.compile(r"[^,;\s\[\]'\"]+")


def reference_paths_from_lineage(
    run_params: dict[str, str], run_tags: dict[str, str]
) -> list[Path]:
    """Feature tables named in a training run's params/tags that exist on disk (sorted).

    Training logs its training-set lineage as parameters or tags; any value that names an
    existing `features.parquet` (or a folder holding one) counts.
    """
    found: set[Path] = set()
    for value in [*run_params.values(), *run_tags.values()]:
        for token in _PATH_TOKEN.findall(str(value)):
            p = Path(token)
            if p.suffix == ".parquet" and p.name == "features.parquet" and p.exists():
                found.add(p)
            elif p.is_dir() and (p / "features.parquet").exists():
                found.add(p / "features.parquet")
    return sorted(found)


LINEAGE_ARTIFACT = "lineage.json"


def champion_lineage(tracking_uri: str, model_name: str, version: int) -> dict:
    """Params, tags, metrics and the `lineage.json` artifact of the run behind a model version."""
    import json

    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    mv = client.get_model_version(model_name, str(version))
    if not mv.run_id:
        return {"params": {}, "tags": {}, "metrics": {}, "run_id": None, "lineage_json": {}}
    run = client.get_run(mv.run_id)
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=mv.run_id, artifact_path=LINEAGE_ARTIFACT, tracking_uri=tracking_uri
        )
        lineage_json = json.loads(Path(local).read_text())
    except Exception as exc:  # older runs may not have it; params/tags are the fallback
        log.debug("no %s for %s v%s: %s", LINEAGE_ARTIFACT, model_name, version, exc)
        lineage_json = {}
    return {
        "params": dict(run.data.params),
        "tags": dict(run.data.tags),
        "metrics": dict(run.data.metrics),
        "run_id": mv.run_id,
        "lineage_json": lineage_json,
    }


def reference_paths_for(lineage: dict, features_dir: str | Path) -> list[Path]:
    """The champion's training feature tables: from `lineage.json` (its training as-of dates,
    their recorded paths or the same dates under `features_dir`), else any path named in the
    run's params/tags."""
    art = lineage.get("lineage_json") or {}
    train_dates = {str(x) for x in ((art.get("train") or {}).get("as_of") or [])}
    found: list[Path] = []
    for snap in art.get("snapshots") or []:
        if (
            str(snap.get("as_of")) in train_dates
            and snap.get("path")
            and Path(snap["path"]).exists()
        ):
            found.append(Path(snap["path"]))
    if not found:
        found = [
            feature_table_path(features_dir, pd.Timestamp(d))
            for d in sorted(train_dates)
            if feature_table_path(features_dir, pd.Timestamp(d)).exists()
        ]
    if found:
        return sorted(set(found))
    return reference_paths_from_lineage(lineage.get("params", {}), lineage.get("tags", {}))


def baseline_gini_from_metrics(metrics: dict[str, float]) -> float | None:
    """The champion's out-of-time Gini as logged by training (AUC converted), if any."""
    lowered = {k.lower(): v for k, v in metrics.items()}
    for key in BASELINE_GINI_KEYS:
        for k, v in lowered.items():
            if k == key or k.endswith("_" + key) or k.endswith("." + key) or k.endswith("/" + key):
                return float(v)
    for key in BASELINE_AUC_KEYS:
        for k, v in lowered.items():
            if k == key or k.endswith("_" + key) or k.endswith("." + key) or k.endswith("/" + key):
                return float(2 * v - 1)
    return None


def load_reference(
    paths: list[Path], columns: list[str], max_rows: int | None, seed: int
) -> pd.DataFrame:
    """Concatenate reference feature tables (model columns only), sampled to `max_rows`."""
    if not paths:
        raise ValueError(
            "no training reference: the champion's MLflow run names no existing feature table; "
            "pass --reference FILE"
        )
    frames = []
    for p in paths:
        df = pd.read_parquet(p)
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(f"reference table {p} lacks columns {missing[:5]}")
        frames.append(df[columns])
    ref = pd.concat(frames, ignore_index=True)
    if max_rows is not None and len(ref) > max_rows:
        ref = ref.sample(n=max_rows, random_state=seed).sort_index().reset_index(drop=True)
    return ref


@dataclass(frozen=True)
class MonitorOutput:
    summary: dict
    folder: Path
    summary_path: Path
    html_path: Path | None
    mlflow_run_id: str | None


def run_monitor(
    *,
    as_of: pd.Timestamp,
    features_dir: str | Path,
    decisions_dir: str | Path,
    reports_dir: str | Path,
    tracking_uri: str,
    settings: MonitorConfig,
    model: LoadedModel | None = None,
    reference_paths: list[Path] | None = None,
    baseline_gini: float | None = None,
    html: bool = True,
    log_to_mlflow: bool = True,
    seed: int = 0,
) -> MonitorOutput:
    """Monitor the champion at `as_of`: write reports, log a monitoring run, return the summary.

    The reference is the champion's training feature table(s) from its MLflow lineage unless
    `reference_paths` is given. Writes under `reports_dir/monitoring/as_of=D/`:
    summary.json, drift_features.parquet, summary.html and (when `html`) drift_report.html.
    """
    as_of = pd.Timestamp(as_of)
    if model is None:
        from training.registry import load_model
        from training.tracking import using_store

        with using_store(tracking_uri):  # registry downloads go through MLflow's fluent API
            model = load_model(CREDIT_MODEL, "champion", tracking_uri)
    lineage = None
    if reference_paths is None or baseline_gini is None:
        lineage = champion_lineage(tracking_uri, model.name, int(model.version))
    if reference_paths is None:
        reference_paths = reference_paths_for(lineage, features_dir)
    if baseline_gini is None:
        baseline_gini = baseline_gini_from_metrics(lineage["metrics"])
    feats = list(model.features)
    reference = load_reference(reference_paths, feats, max_rows=200_000, seed=seed)
    current = read_features(feature_table_path(features_dir, as_of))
    current_pd = None
    dec_path = decisions_path(decisions_dir, as_of)
    if dec_path.exists():
        dec = pd.read_parquet(dec_path, columns=["user_id", "pd"])
        current_pd = current[["user_id"]].merge(dec, on="user_id", how="left")["pd"].to_numpy()
        if np.isnan(current_pd).any():
            current_pd = None  # decisions from a different table: score afresh
    matured = matured_dec = None
    t = latest_matured_as_of(
        features_dir, as_of, settings.label_horizon_months, settings.label_margin_days
    )
    if t is not None:
        matured = read_features(feature_table_path(features_dir, t))
        if decisions_path(decisions_dir, t).exists():
            matured_dec = pd.read_parquet(decisions_path(decisions_dir, t))
    earlier = [d for d in available_as_ofs(features_dir) if d < as_of][-settings.recent_months :]
    recent = None
    if earlier:
        per = max(1, settings.drift_sample_rows // len(earlier))
        recent = pd.concat(
            [
                read_features(feature_table_path(features_dir, d))
                .pipe(lambda f: f.sample(min(len(f), per), random_state=seed))
                .assign(as_of=d)
                for d in earlier
            ],
            ignore_index=True,
        )
    summary, drift = summarise_monitoring(
        as_of=as_of,
        recent=recent,
        model=model,
        reference=reference,
        current=current,
        settings=settings,
        current_pd=current_pd,
        matured=matured,
        matured_decisions=matured_dec,
        baseline_gini=baseline_gini,
        seed=seed,
    )
    summary["reference"]["paths"] = [str(p) for p in reference_paths]
    summary["current"]["path"] = str(feature_table_path(features_dir, as_of))
    return write_monitoring(
        summary,
        drift,
        reference,
        current,
        Path(reports_dir),
        tracking_uri,
        html=html,
        log_to_mlflow=log_to_mlflow,
        seed=seed,
        sample_rows=settings.drift_sample_rows,
    )


def write_monitoring(
    summary: dict,
    drift: pd.DataFrame,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    reports_dir: Path,
    tracking_uri: str | None,
    *,
    html: bool,
    log_to_mlflow: bool,
    seed: int = 0,
    sample_rows: int | None = 20_000,
) -> MonitorOutput:
    """Write summary.json / drift_features.parquet / summary.html (+ evidently HTML), log MLflow."""
    from features.tables import write_json, write_parquet, write_text

    folder = monitoring_dir(reports_dir, summary["as_of"])
    summary_path = write_json(summary, folder / "summary.json")
    write_parquet(drift, folder / "drift_features.parquet")
    write_text(render_summary_html(summary, drift), folder / "summary.html")
    html_path = None
    if html:
        cols = summary["drift"]["features_tested"]
        html_path = write_drift_report_html(
            reference,
            current,
            cols,
            folder / "drift_report.html",
            sample_rows=sample_rows,
            seed=seed,
        )
    run_id = (
        log_monitoring_run(summary, folder, tracking_uri)
        if log_to_mlflow and tracking_uri
        else None
    )
    return MonitorOutput(summary, folder, summary_path, html_path, run_id)


def flatten_metrics(summary: dict) -> dict[str, float]:
    """The numeric headline figures of a summary, as MLflow metric names."""
    out = {
        "drift.drifted_share": summary["drift"]["drifted_share"],
        "drift.psi_max": summary["drift"]["psi_max"],
        "score.psi": summary["score"]["psi"],
        "score.current_mean_pd": summary["score"]["current_mean_pd"],
        "estimate.expected_auc": summary["estimate"].get("expected_auc"),
        "estimate.expected_default_rate": summary["estimate"].get("expected_default_rate"),
        "trigger.retrain": float(summary["trigger"]["retrain"]),
    }
    m = summary["performance"].get("matured") or {}
    for k in (
        "auc",
        "gini",
        "ks",
        "default_rate",
        "predicted_rate",
        "calibration_gap",
        "calibration_slope",
    ):
        out[f"matured.{k}"] = m.get(k)
    out["matured.gini_drop"] = summary["performance"].get("gini_drop")
    mis = (summary.get("misjudgement") or {}).get("overall") or {}
    for k in (
        "wrongful_downgrade_rate",
        "wrongful_excess",
        "wrongful_per_10k_good",
        "fraud_false_positive_rate",
    ):
        out[f"misjudgement.{k}"] = mis.get(k)
    return {k: float(v) for k, v in out.items() if _num(v)}


def log_monitoring_run(summary: dict, folder: Path, tracking_uri: str) -> str:
    """One MLflow run per as-of in the monitoring experiment, reports attached."""
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(MONITORING_EXPERIMENT)
    exp_id = exp.experiment_id if exp else client.create_experiment(MONITORING_EXPERIMENT)
    run = client.create_run(
        exp_id,
        run_name=f"monitor as_of={summary['as_of']}",
        tags={
            "creditline.kind": "monitoring",
            "creditline.as_of": summary["as_of"],
            "creditline.champion_version": str(summary["champion"]["version"]),
            "creditline.retrain_triggered": str(summary["trigger"]["retrain"]).lower(),
        },
    )
    rid = run.info.run_id
    from mlflow.entities import Metric, Param

    now = int(pd.Timestamp(summary["as_of"]).timestamp() * 1000)  # step time = the as-of
    client.log_batch(
        rid,
        metrics=[Metric(k, v, now, 0) for k, v in sorted(flatten_metrics(summary).items())],
        params=[
            Param("as_of", summary["as_of"]),
            Param("drift_method", summary["drift"]["method"]),
        ],
    )
    if summary["trigger"]["reasons"]:
        client.set_tag(rid, "creditline.reasons", " | ".join(summary["trigger"]["reasons"])[:4900])
    client.log_artifacts(rid, str(folder), artifact_path="monitoring")
    client.set_terminated(rid)
    return rid


_SUMMARY_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Monitoring {{ s.as_of }}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#eee}
.alarm{color:#b00;font-weight:bold}.ok{color:#070}</style></head><body>
<h1>Monitoring as of {{ s.as_of }} &mdash; {{ s.champion.name }} v{{ s.champion.version }}</h1>
{% if s.trigger.retrain %}<p class="alarm">Retraining triggered:</p><ul>
{% for r in s.trigger.reasons %}<li>{{ r }}</li>{% endfor %}</ul>
{% else %}<p class="ok">No trigger fired.</p>{% endif %}
<h2>Drift (reference {{ s.reference.rows }} rows, current {{ s.current.rows }} rows)</h2>
<p>Score PSI {{ fmt(s.score.psi) }} (mean PD {{ fmt(s.score.reference_mean_pd) }} &rarr;
{{ fmt(s.score.current_mean_pd) }}). Drifted important features: {{ s.drift.drifted|length }} of
{{ s.drift.features_tested|length }} ({{ s.drift.method }}, threshold {{ s.drift.threshold }}).
{% if html %}Per-feature distributions: <a href="drift_report.html">drift_report.html</a>.{% endif %}</p>
<table><tr><th>feature</th><th>score</th><th>drifted</th><th>PSI</th><th>missing ref</th>
<th>missing cur</th><th>mean ref</th><th>mean cur</th><th>note</th></tr>
{% for r in drift %}<tr><td style="text-align:left">{{ r.feature }}</td><td>{{ fmt(r.score) }}</td>
<td>{{ 'yes' if r.drifted else '' }}</td><td>{{ fmt(r.psi) }}</td><td>{{ fmt(r.ref_missing_share) }}</td>
<td>{{ fmt(r.cur_missing_share) }}</td><td>{{ fmt(r.ref_mean) }}</td><td>{{ fmt(r.cur_mean) }}</td>
<td>{{ r.note }}</td></tr>{% endfor %}</table>
<h2>Performance on matured labels{% if s.performance.matured_as_of %} (as of {{ s.performance.matured_as_of }}){% endif %}</h2>
{% set m = s.performance.matured %}{% if m.available %}
<p>n={{ m.n }}, AUC {{ fmt(m.auc) }}, Gini {{ fmt(m.gini) }} (baseline {{ fmt(s.performance.baseline_gini) }}),
KS {{ fmt(m.ks) }}, default rate {{ fmt(m.default_rate) }} vs predicted {{ fmt(m.predicted_rate) }},
calibration slope {{ fmt(m.calibration_slope) }}.</p>
<table><tr><th>PD band</th><th>n</th><th>predicted</th><th>observed</th><th>gap</th></tr>
{% for b in m.calibration_by_band %}<tr><td>{{ b.band }}</td><td>{{ b.n }}</td><td>{{ b.predicted_rate }}</td>
<td>{{ b.observed_rate }}</td><td>{{ b.gap }}</td></tr>{% endfor %}</table>
{% else %}<p>No labels have matured yet.</p>{% endif %}
<h2>Estimate for the current cohort (not matured)</h2>
<p>Expected default rate {{ fmt(s.estimate.expected_default_rate) }}, expected AUC
{{ fmt(s.estimate.expected_auc) }} &mdash; {{ s.estimate.caveat }}.</p>
<h2>Misjudgements</h2>
{% set o = s.misjudgement.overall %}{% if o %}
<p>Matured downgrades: {{ o.downgraded_matured }}; stayed good: {{ o.wrongful_downgrades }}
({{ fmt(o.wrongful_downgrade_rate) }}; their PDs implied {{ fmt(o.expected_wrongful_rate) }}); per 10k good users: {{ fmt(o.wrongful_per_10k_good) }}.
{% if o.fraud_flagged_matured is defined %}Fraud flags matured: {{ o.fraud_flagged_matured }}, cleared:
{{ o.fraud_flags_cleared }} ({{ fmt(o.fraud_false_positive_rate) }}).{% endif %}</p>
{% for seg, vals in s.misjudgement.by_segment.items() %}<h3>by {{ seg }}</h3>
<table><tr><th>{{ seg }}</th><th>matured downgrades</th><th>wrongful</th><th>rate</th></tr>
{% for v, r in vals.items() %}<tr><td>{{ v }}</td><td>{{ r.downgraded_matured }}</td>
<td>{{ r.wrongful_downgrades }}</td><td>{{ fmt(r.wrongful_downgrade_rate) }}</td></tr>{% endfor %}</table>
{% endfor %}{% else %}<p>No matured decisions yet.</p>{% endif %}
</body></html>
"""


def render_summary_html(summary: dict, drift: pd.DataFrame) -> str:
    """A small human page over summary.json (the evidently report holds the distributions)."""
    import jinja2

    def fmt(x):
        return (
            "n/a"
            if x is None or (isinstance(x, float) and not math.isfinite(x))
            else (f"{x:.4f}" if isinstance(x, float) else str(x))
        )

    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    return env.from_string(_SUMMARY_TEMPLATE).render(
        s=summary, drift=drift.to_dict("records"), fmt=fmt, html=True
    )
