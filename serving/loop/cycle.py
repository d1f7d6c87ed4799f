"""The monthly operating loop: features -> score -> explain -> monitor -> retrain, month by month.

`run_cycle` walks the month-ends from D1 to D2. Each month it builds the feature table (raw
tables are loaded once), scores every user with the current champions and the line policy,
explains downgrades, monitors the champion, and retrains when a trigger fires (at most once per
cooldown). A second arm scores the same months with the models frozen at the start, so the
summary can say what the loop changed: the headline figure is wrongful post-repayment
downgrades per 10k good repayers, with the loop and without it.

Labels and the simulator's truth are read only for that evaluation, and for monitoring only
once matured by the month being decided (as-of + horizon + margin <= month).

Bootstrap: with no champion registered, the first models are trained on the months before D1
(their outcomes are taken as known: a stand-in for a model developed on history before the
product ran this loop).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.catalog import (
    available_as_ofs,
    decision_log_dir,
    decisions_path,
    feature_table_path,
    model_ops_path,
)
from serving.config import MonitorConfig
from serving.loop.evaluation import (
    HEADLINE_DEFINITIONS,
    good_repayers,
    headline_figures,
    outcome_rates,
    read_explanations,
    read_truth,
    stored_month_stats,
    truth_end,
)
from serving.monitoring.monitor import (
    champion_lineage,
    reference_paths_for,
    run_monitor,
)
from training.fit import CREDIT_MODEL, FRAUD_MODEL
from training.retrain import fraud_matured_as_ofs, matured_as_ofs, retrain

log = logging.getLogger(__name__)


def month_ends(start: pd.Timestamp | str, end: pd.Timestamp | str) -> list[pd.Timestamp]:
    """Month-end dates from the month of `start` to the month of `end`, inclusive.

    >>> [d.strftime("%Y-%m-%d") for d in month_ends("2024-01-15", "2024-03-01")]
    ['2024-01-31', '2024-02-29', '2024-03-31']
    """
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    if e < s:
        raise ValueError(f"cycle end {e:%Y-%m-%d} is before its start {s:%Y-%m-%d}")
    return list(pd.date_range(s + pd.offsets.MonthEnd(0), e + pd.offsets.MonthEnd(0), freq="ME"))


@dataclass(frozen=True)
class CycleSettings:
    """What the loop needs besides paths: the monitor section as it is, model and gate settings
    (plain values for training), the scoring inputs, seed and threads."""

    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    model: dict = field(default_factory=dict)
    gates: dict = field(default_factory=dict)
    policy_file: str | None = None
    calendar: str | None = None
    max_source_age_days: dict | None = None
    seed: int = 42
    num_threads: int = 2


@dataclass
class CycleResult:
    summary: dict
    summary_path: Path
    text_path: Path
    timings: dict[str, float] = field(default_factory=dict)


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, t0: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# Stages


def build_month_tables(
    raw_dir: Path, features_dir: Path, quarantine_dir: Path, dates: list[pd.Timestamp], threads: int
) -> list[Path]:
    """Build the feature tables for `dates` with the raw tables loaded once.

    A table whose manifest records the same raw-input digests is reused.
    """
    from features.builder import build_features, connect_raw
    from features.contracts import TABLES, load_raw, manifest_extracted_at
    from features.tables import file_digest, write_json, write_parquet

    digests = {t: file_digest(raw_dir / t) for t in TABLES}
    todo = []
    for d in dates:
        m = feature_table_path(features_dir, d).parent / "manifest.json"
        if m.exists() and json.loads(m.read_text()).get("input_digests") == digests:
            continue
        todo.append(d)
    if todo:
        loaded = load_raw(raw_dir, quarantine_dir)
        extracted_at = manifest_extracted_at(raw_dir)
        from tqdm import tqdm

        con = connect_raw(loaded.tables, threads)  # the raw tables go to DuckDB once, not per month
        try:
            for d in tqdm(todo, desc="features", unit="month", leave=False):
                df = build_features(
                    loaded.tables, d, extracted_at=extracted_at, threads=threads, con=con
                )
                path = write_parquet(df, feature_table_path(features_dir, d))
                write_json(
                    _feature_manifest(df, d, extracted_at, digests, loaded, path),
                    path.parent / "manifest.json",
                )
        finally:
            con.close()
    return [feature_table_path(features_dir, d) for d in dates]


def _feature_manifest(df, as_of, extracted_at, digests, loaded, path) -> dict:
    from features.tables import file_digest

    try:
        from features.metadata import METADATA_VERSION
    except ImportError:  # pragma: no cover - features land together
        METADATA_VERSION = None
    return {
        "as_of": f"{as_of:%Y-%m-%d}",
        "rows": len(df),
        "features": [
            c
            for c in df.columns
            if c not in ("user_id", "as_of") and not c.startswith(("ctx_", "fresh_", "label_"))
        ],
        "metadata_version": METADATA_VERSION,
        "extracted_at": str(extracted_at) if extracted_at is not None else None,
        "input_digests": digests,
        "quarantined_rows": {t: r.rows_quarantined for t, r in loaded.reports.items()},
        "output_digest": file_digest(path),
        "built_by": "serving.loop.cycle",
    }


def bootstrap_models(
    features_dir: Path,
    tracking_uri: str,
    dates: list[pd.Timestamp],
    s: CycleSettings,
    decision_log_dir: Path | None = None,
) -> tuple[dict[str, int], list[dict]]:
    """Train and promote the first credit and fraud champions when none is registered.

    Returns the champion version per model and what happened (one event per model trained).
    A model that fails its gates never decides silently (`training.promote.promote_first`):
    an existing champion is kept; with none, only `s.monitor.bootstrap_gate_override` lets it decide,
    as a recorded governance exception; otherwise `GatesRefused` stops the loop.
    """
    from training.promote import promote_first
    from training.registry import CHAMPION, current_version
    from training.tracking import open_client
    from training.train import train_on_feature_tables

    client = open_client(tracking_uri)
    out, events = {}, []
    train_s = [f"{d:%Y-%m-%d}" for d in dates[:-1]]
    oot_s = f"{dates[-1]:%Y-%m-%d}"
    for kind, name in (("credit", CREDIT_MODEL), ("fraud", FRAUD_MODEL)):
        champ = current_version(client, name, CHAMPION) if _has_registered(client, name) else None
        if champ is not None and _trained_on_these_tables(tracking_uri, name, champ):
            out[name] = champ
            continue
        if champ is not None:
            log.warning(
                "%s v%d was trained on other feature tables (another world?): "
                "training a new bootstrap model",
                name,
                champ,
            )
        log.info("bootstrap: training %s on %s (out-of-time %s)", name, train_s, oot_s)
        res = train_on_feature_tables(
            kind,
            features_dir,
            train_s,
            oot_s,
            tracking_uri=tracking_uri,
            settings=s.model,
            gates=s.gates,
            seed=s.seed,
            num_threads=s.num_threads,
        )
        pr, exc = promote_first(
            name,
            res.version,
            tracking_uri=tracking_uri,
            gates=s.gates,
            override=s.monitor.bootstrap_gate_override,
            as_of=oot_s,
        )
        out[name] = int(pr.champion_after)
        status = "promoted" if pr.passed else ("governance_exception" if exc else "refused")
        events.append(
            {
                "model": name,
                "version": int(res.version),
                "status": status,
                "champion_before": pr.champion_before,
                "champion_after": int(pr.champion_after),
                "gates": [g.line() for g in pr.gates],
                "governance_exception": exc.to_dict() if exc else None,
            }
        )
    if decision_log_dir is not None and events:
        _log_bootstrap(events, oot_s, decision_log_dir)
    return out, events


def _log_bootstrap(events: list[dict], as_of: str, decision_log_dir: Path) -> None:
    """One model-ops decision-log row per bootstrap model (as retraining writes for its own)."""
    from features.tables import write_parquet

    rows = pd.DataFrame(
        [
            {
                "as_of": pd.Timestamp(as_of),
                "event": "bootstrap",
                "model": e["model"],
                "status": e["status"],
                "challenger_version": e["version"],
                "champion_before": e["champion_before"] or -1,
                "champion_after": e["champion_after"],
                "reasons": (
                    (
                        e["governance_exception"]
                        and "GOVERNANCE EXCEPTION: failed gates "
                        + ",".join(e["governance_exception"]["failed_gates"])
                        + "; approved: "
                        + e["governance_exception"]["approved"]
                    )
                    or " | ".join(g for g in e["gates"] if "FAIL" in g)
                ),
            }
            for e in events
        ]
    )
    write_parquet(rows, model_ops_path(decision_log_dir, as_of, "bootstrap"))


def _trained_on_these_tables(tracking_uri: str, name: str, version: int) -> bool:
    """True when every snapshot in the version's lineage still has the recorded digest."""
    from features.tables import file_digest

    snaps = (champion_lineage(tracking_uri, name, version).get("lineage_json") or {}).get(
        "snapshots"
    ) or []
    if not snaps:
        return True  # no lineage recorded: trust the registry
    for snap in snaps:
        p = Path(snap.get("path", ""))
        if not p.exists() or (snap.get("sha256") and file_digest(p) != snap["sha256"]):
            return False
    return True


def _has_registered(client, name: str) -> bool:
    try:
        client.get_registered_model(name)
        return True
    except Exception:
        return False


def _load_models(tracking_uri: str, credit_ref, fraud_ref) -> dict[str, Any]:
    from training.registry import load_model

    return {
        "credit": load_model(CREDIT_MODEL, credit_ref, tracking_uri),
        "fraud": load_model(FRAUD_MODEL, fraud_ref, tracking_uri),
    }


def _score(features_path: Path, models, policy, out_dir: Path, as_of, s: CycleSettings):
    from serving.scoring.batch import score_batch

    return score_batch(
        features_path,
        models,
        policy,
        out_dir,
        as_of=as_of,
        max_age_days=s.max_source_age_days,
        num_threads=s.num_threads,
        progress=False,
    )


def _explain(
    as_of,
    features_dir,
    decisions_dir,
    explanations_dir,
    reports_dir,
    tracking_uri,
    s: CycleSettings,
    calendar,
    model_cache: dict | None = None,
    report_writer=None,
) -> Path | None:
    """Explain this month's downgrades against last month's decisions (issue 6's job)."""
    try:
        from serving.explain.run import run_explain
    except ImportError:
        log.warning("serving.explain.run is not available: downgrades are not explained")
        return None
    res = run_explain(
        as_of,
        decisions_dir,
        features_dir,
        explanations_dir,
        reports_dir,
        tracking_uri,
        policy_file=s.policy_file,
        calendar=calendar,
        max_age_days=s.max_source_age_days,
        n_threads=s.num_threads,
        model_cache=model_cache,
        report_writer=report_writer,
    )
    return res.records_path


def _report_writer():
    try:
        from serving.explain.run import ReportWriter
    except ImportError:
        return None
    return ReportWriter()


# ---------------------------------------------------------------------------------------------
# The loop


def run_cycle(**kwargs) -> CycleResult:
    """Run the loop from `start` to `end` (month-ends); write and return the summary.

    Keyword arguments as `_run_cycle`. MLflow's fluent API (used when models are downloaded
    from the registry) points at `tracking_uri` for the duration.
    """
    from training.tracking import using_store

    with using_store(kwargs["tracking_uri"]):
        return _run_cycle(**kwargs)


def _run_cycle(
    *,
    start: pd.Timestamp | str,
    end: pd.Timestamp | str,
    raw_dir: str | Path,
    features_dir: str | Path,
    decisions_dir: str | Path,
    explanations_dir: str | Path,
    reports_dir: str | Path,
    quarantine_dir: str | Path,
    tracking_uri: str,
    settings: CycleSettings,
) -> CycleResult:
    """Run the loop from `start` to `end` (month-ends); write and return the summary."""
    from serving.scoring.policy import load_policy
    from training.registry import CHAMPION, current_version
    from training.tracking import open_client

    raw_dir, features_dir, decisions_dir = Path(raw_dir), Path(features_dir), Path(decisions_dir)
    explanations_dir, reports_dir, quarantine_dir = (
        Path(explanations_dir),
        Path(reports_dir),
        Path(quarantine_dir),
    )
    s = settings
    timer = _Timer()
    months = month_ends(start, end)
    boot = [
        months[0] - pd.offsets.MonthEnd(k) for k in range(s.monitor.bootstrap_months + 1, 0, -1)
    ]
    t0 = time.perf_counter()
    build_month_tables(raw_dir, features_dir, quarantine_dir, boot + months, s.num_threads)
    timer.add("features", t0)

    t0 = time.perf_counter()
    client = open_client(tracking_uri)
    first, boot_events = bootstrap_models(
        features_dir, tracking_uri, boot, s, decision_log_dir(decisions_dir)
    )
    timer.add("bootstrap_training", t0)
    calendar = s.calendar
    if calendar is None and (raw_dir.parent / "truth" / "scenario_calendar.json").exists():
        calendar = str(raw_dir.parent / "truth" / "scenario_calendar.json")
    policy = load_policy(s.policy_file, calendar)
    frozen = (
        _load_models(tracking_uri, first[CREDIT_MODEL], first[FRAUD_MODEL])
        if s.monitor.baseline_arm
        else None
    )
    baseline_dir = reports_dir / "cycle" / "no_loop_decisions"  # removed by `make clean`
    truth = read_truth(raw_dir)
    world_end = truth_end(raw_dir)  # the truth may run past the extract
    outcomes: dict[str, list[pd.DataFrame]] = {"with_loop": [], "without_loop": []}
    horizon = s.monitor.label_horizon_months

    per_month: list[dict] = []
    retrains: list[dict] = []
    last_retrain: pd.Timestamp | None = None
    last_fraud_retrain: pd.Timestamp | None = None
    explain_failures: list[dict] = []
    explain_models: dict = {}  # registry versions loaded + compiled once for the whole loop
    report_writer = _report_writer()  # explanation JSON/HTML written beside the loop
    from tqdm import tqdm

    fraud_ref_pd: dict[int, Any] = {}  # fraud version -> PDs on its training reference
    for d in tqdm(months, desc="cycle", unit="month"):
        champ_v = current_version(client, CREDIT_MODEL, CHAMPION)
        fraud_v = current_version(client, FRAUD_MODEL, CHAMPION)
        models = _load_models(tracking_uri, champ_v, fraud_v)
        if fraud_v not in fraud_ref_pd:
            fraud_ref_pd[fraud_v] = _reference_scores(
                tracking_uri, features_dir, models["fraud"], s
            )
        fpath = feature_table_path(features_dir, d)
        t0 = time.perf_counter()
        _score(fpath, models, policy, decisions_dir, d, s)
        if frozen is not None:
            _score(fpath, frozen, policy, baseline_dir, d, s)
        timer.add("scoring", t0)

        t0 = time.perf_counter()
        if d != months[0]:  # the first month has no earlier decision to explain against
            try:
                _explain(
                    d,
                    features_dir,
                    decisions_dir,
                    explanations_dir,
                    reports_dir,
                    tracking_uri,
                    s,
                    calendar,
                    model_cache=explain_models,
                    report_writer=report_writer,
                )
            except (
                Exception
            ) as exc:  # an explanation failure must not stop the loop; it is reported
                log.error("explaining downgrades as of %s failed: %s", f"{d:%Y-%m-%d}", exc)
                explain_failures.append({"as_of": f"{d:%Y-%m-%d}", "error": str(exc)[:500]})
        timer.add("explain", t0)

        t0 = time.perf_counter()
        lineage = champion_lineage(tracking_uri, CREDIT_MODEL, champ_v)
        ref_paths = reference_paths_for(lineage, features_dir)
        from serving.monitoring.monitor import baseline_gini_from_metrics

        mon = run_monitor(
            as_of=d,
            features_dir=features_dir,
            decisions_dir=decisions_dir,
            reports_dir=reports_dir,
            tracking_uri=tracking_uri,
            settings=s.monitor,
            model=models["credit"],
            reference_paths=ref_paths,
            baseline_gini=baseline_gini_from_metrics(lineage["metrics"]),
            html=s.monitor.html_report == "always"
            or (s.monitor.html_report != "never" and d == months[-1]),
            log_to_mlflow=True,
            seed=s.seed,
        )
        summary = mon.summary
        exceptions = _governance_exceptions(client, {CREDIT_MODEL: champ_v, FRAUD_MODEL: fraud_v})
        if exceptions and mon.mlflow_run_id:
            client.set_tag(
                mon.mlflow_run_id,
                "creditline.governance_exceptions",
                " | ".join(e.line() for e in exceptions)[:4900],
            )
        onset = summary["trigger"]["retrain"] and not (per_month and per_month[-1]["drift_alarm"])
        if onset and s.monitor.html_report == "alarm" and mon.html_path is None:
            # A person will look at a new alarm: give them the distributions too (once per
            # alarm episode; the preset report costs 10-20 s).
            from serving.monitoring.drift import write_drift_report_html
            from serving.monitoring.monitor import load_reference, read_features

            write_drift_report_html(
                load_reference(
                    ref_paths, list(models["credit"].features), s.monitor.drift_sample_rows, s.seed
                ),
                read_features(fpath),
                summary["drift"]["features_tested"],
                mon.folder / "drift_report.html",
                sample_rows=s.monitor.drift_sample_rows,
                seed=s.seed,
            )
        timer.add("monitor", t0)

        month_retrain = None
        if summary["trigger"]["retrain"]:
            cooling = last_retrain is not None and d < last_retrain + pd.DateOffset(
                months=s.monitor.retrain_cooldown_months
            )
            newest = _newest_matured(features_dir, d, s)
            seen = _champion_newest_month(lineage)
            if cooling:
                month_retrain = {
                    "as_of": f"{d:%Y-%m-%d}",
                    "model": CREDIT_MODEL,
                    "status": "cooldown",
                    "reasons": summary["trigger"]["reasons"],
                }
            elif newest is not None and seen is not None and newest <= seen:
                # Retraining on the same matured months the champion learnt from would give the
                # same model again: wait for a new month to mature (no cooldown consumed).
                month_retrain = {
                    "as_of": f"{d:%Y-%m-%d}",
                    "model": CREDIT_MODEL,
                    "status": "no_new_data",
                    "reasons": summary["trigger"]["reasons"]
                    + [f"no matured month after {seen:%Y-%m-%d}, the champion's newest"],
                }
            else:
                t0 = time.perf_counter()
                outcome = retrain(
                    as_of=d,
                    features_dir=features_dir,
                    decisions_dir=decisions_dir,
                    tracking_uri=tracking_uri,
                    reasons=summary["trigger"]["reasons"],
                    model_settings=s.model,
                    gate_settings=s.gates,
                    horizon_months=horizon,
                    margin_days=s.monitor.label_margin_days,
                    window_months=s.monitor.retrain_window_months,
                    min_train_months=s.monitor.min_train_months,
                    band_edges=tuple(b.pd_max for b in policy.bands),
                    auto_promote=s.monitor.auto_promote,
                    seed=s.seed,
                    num_threads=s.num_threads,
                    decision_log_dir=decision_log_dir(decisions_dir),
                )
                timer.add("retraining", t0)
                month_retrain = outcome.to_dict()
                if outcome.status != "skipped":
                    last_retrain = d
            retrains.append(month_retrain)

        t0 = time.perf_counter()
        fraud_watch = _fraud_watch(
            fraud_ref_pd[fraud_v], models["fraud"], decisions_path(decisions_dir, d), summary, s
        )
        fraud_watch["performance"] = _fraud_performance(
            features_dir, d, models["fraud"], tracking_uri, s
        )
        timer.add("monitor", t0)
        t0 = time.perf_counter()
        fraud_watch["retrain"] = _fraud_retrain(
            d, fraud_watch, last_fraud_retrain, features_dir, decisions_dir, tracking_uri, s
        )
        if fraud_watch["retrain"] is not None:
            retrains.append(fraud_watch["retrain"])
            if fraud_watch["retrain"]["status"] not in ("skipped", "cooldown", "no_new_data"):
                last_fraud_retrain = d
        timer.add("retraining", t0)

        t0 = time.perf_counter()
        feats = pd.read_parquet(fpath)
        good = good_repayers(feats, truth, d, horizon, world_end)
        has_prev = months.index(d) > 0  # (the first month has no downgrades to explain)
        explained = None
        if has_prev and not (explain_failures and explain_failures[-1]["as_of"] == f"{d:%Y-%m-%d}"):
            explained = read_explanations(explanations_dir, d)
        if has_prev and explained is None:  # explain failed: every downgrade is not_explained
            explained = pd.DataFrame(
                {"user_id": pd.Series(dtype=str), "cause": pd.Series(dtype=str)}
            )
        loop_stats, rows = stored_month_stats(
            decisions_dir, months, d, good, explained, truth, horizon, world_end
        )
        outcomes["with_loop"].append(rows)
        row = {
            "as_of": f"{d:%Y-%m-%d}",
            "credit_model_version": int(champ_v),
            "fraud_model_version": int(fraud_v),
            **outcome_rates(feats, truth, d, horizon, world_end),
            "loop": loop_stats,
            "drift_alarm": bool(summary["trigger"]["retrain"]),
            "alarm_reasons": summary["trigger"]["reasons"],
            "score_psi": summary["score"]["psi"],
            "alarm_against": summary["alarm"],
            "recent_score_psi": (summary.get("drift_recent") or {}).get("score_psi"),
            "recent_drifted_share": (summary.get("drift_recent") or {}).get("drifted_share"),
            "drifted_share": summary["drift"]["drifted_share"],
            "matured_auc": (summary["performance"].get("matured") or {}).get("auc"),
            "retrain": month_retrain["status"] if month_retrain else None,
            "governance_exceptions": [e.line() for e in exceptions],
            "fraud": fraud_watch,
            "monitoring_report": str(mon.folder),
        }
        if frozen is not None:
            row["no_loop"], rows = stored_month_stats(
                baseline_dir, months, d, good, None, truth, horizon, world_end
            )
            outcomes["without_loop"].append(rows)
        per_month.append(row)
        timer.add("evaluation", t0)

    if report_writer is not None:
        t0 = time.perf_counter()
        explain_failures.extend(report_writer.finish())
        timer.add("explain_reports_wait", t0)
    return _write_summary(
        months,
        per_month,
        retrains,
        first,
        reports_dir,
        timer,
        s,
        truth is not None,
        baseline_dir,
        explain_failures,
        boot_events,
        outcomes,
    )


def _newest_matured(features_dir: Path, d: pd.Timestamp, s: CycleSettings) -> pd.Timestamp | None:
    """The newest as-of whose default labels have matured by `d` (what a retrain would use)."""
    m = matured_as_ofs(
        available_as_ofs(features_dir),
        d,
        s.monitor.label_horizon_months,
        s.monitor.label_margin_days,
    )
    return m[-1] if m else None


def _champion_newest_month(lineage: dict) -> pd.Timestamp | None:
    """The newest as-of the champion was trained or tested on (its lineage), None if unknown."""
    lj = lineage.get("lineage_json") or {}
    days = [
        d
        for part in ("train", "valid", "oot")
        if isinstance(got := (lj.get(part) or {}).get("as_of"), list)  # valid may be a sentence
        for d in got
    ]
    return max(pd.Timestamp(x) for x in days) if days else None


def _reference_scores(tracking_uri: str, features_dir: Path, model, s: CycleSettings):
    """The model's scores on its own training tables (from its MLflow lineage); None if absent."""
    from serving.monitoring.monitor import load_reference

    lineage = champion_lineage(tracking_uri, model.name, int(model.version))
    paths = reference_paths_for(lineage, features_dir)
    if not paths:
        return None
    ref = load_reference(paths, list(model.features), s.monitor.drift_sample_rows, s.seed)
    return model.predict_proba(ref)


def _fraud_watch(
    ref_scores, fraud_model, decisions_file: Path, monitor_summary: dict, s: CycleSettings
) -> dict:
    """Fraud signals for people: score PSI against the fraud model's training reference, and
    fraud flags later cleared (false positives) on the matured decisions the monitor read.

    An alarm here (or in `_fraud_performance`) retrains the fraud model (`_fraud_retrain`).
    """
    from serving.monitoring.drift import psi

    fraud_p = pd.read_parquet(decisions_file, columns=["fraud_p"])["fraud_p"].to_numpy()
    score_psi = psi(ref_scores, fraud_p, s.monitor.psi_bins) if ref_scores is not None else None
    mis = (monitor_summary.get("misjudgement") or {}).get("overall") or {}
    out = {
        "model_version": int(fraud_model.version),
        "score_psi": score_psi,
        "flagged_share": float((fraud_p >= s.monitor.fraud_flag_threshold).mean())
        if len(fraud_p)
        else None,
        "flags_matured": mis.get("fraud_flagged_matured"),
        "flags_cleared": mis.get("fraud_flags_cleared"),
        "false_positive_rate": mis.get("fraud_false_positive_rate"),
    }
    out["alarm"] = bool(score_psi is not None and score_psi >= s.monitor.max_score_psi)
    return out


def _fraud_performance(
    features_dir: Path, d: pd.Timestamp, fraud_model, tracking_uri: str, s: CycleSettings
) -> dict | None:
    """The fraud champion on the newest as-of whose 90-day bust-out label has closed by `d`:
    its Gini there against its own out-of-time Gini from training. None before any has closed."""
    from serving.monitoring.monitor import baseline_gini_from_metrics
    from training.metrics import auc

    matured = fraud_matured_as_ofs(available_as_ofs(features_dir), d)
    if not matured:
        return None
    t = matured[-1]
    spec_label, spec_matured = "label_fraud_90d", "label_fraud_90d_matured"
    df = pd.read_parquet(feature_table_path(features_dir, t))
    rows = df.loc[df[spec_matured].fillna(False).astype(bool) & df[spec_label].notna()]
    y = rows[spec_label].to_numpy("float64")
    positives = int(y.sum())
    baseline = baseline_gini_from_metrics(
        champion_lineage(tracking_uri, FRAUD_MODEL, int(fraud_model.version))["metrics"]
    )
    out = {
        "as_of": f"{t:%Y-%m-%d}",
        "rows": int(len(rows)),
        "bust_outs": positives,
        "gini": None,
        "baseline_gini": baseline,
        "gini_drop": None,
        "alarm": False,
    }
    if positives < s.monitor.min_fraud_positives or positives == len(rows):
        out["note"] = (
            f"{positives} matured bust-outs < min_fraud_positives={s.monitor.min_fraud_positives}: "
            "no performance trigger"
        )
        return out
    gini = 2 * auc(y, fraud_model.predict_proba(rows[list(fraud_model.features)])) - 1
    out["gini"] = float(gini)
    if baseline is not None:
        out["gini_drop"] = float(baseline - gini)
        out["alarm"] = bool(baseline - gini >= s.monitor.max_gini_drop)
    return out


def _fraud_retrain(
    d: pd.Timestamp,
    watch: dict,
    last: pd.Timestamp | None,
    features_dir: Path,
    decisions_dir: Path,
    tracking_uri: str,
    s: CycleSettings,
) -> dict | None:
    """Retrain the fraud model on its 90-day label when its watch alarms (score drift against
    its training reference, or a Gini drop on the newest matured month); None when nothing fired.

    Same rules as the credit model's retrain: a cooldown, no retrain on months the champion has
    already learnt from, the loop's gates (same out-of-time rows, book stability where the bands
    are "not flagged" / "flagged"), then `promote`'s gates.
    """
    perf = watch.get("performance") or {}
    reasons = []
    if watch.get("alarm"):
        reasons.append(
            f"fraud score PSI {watch['score_psi']:.3f} >= {s.monitor.max_score_psi} "
            "against the fraud model's training reference"
        )
    if perf.get("alarm"):
        reasons.append(
            f"fraud Gini {perf['gini']:.3f} on {perf['as_of']} is {perf['gini_drop']:.3f} below "
            f"its out-of-time {perf['baseline_gini']:.3f} (limit {s.monitor.max_gini_drop})"
        )
    if not reasons or not s.monitor.fraud_retrain:
        return None
    base = {"as_of": f"{d:%Y-%m-%d}", "model": FRAUD_MODEL, "reasons": reasons}
    if last is not None and d < last + pd.DateOffset(months=s.monitor.retrain_cooldown_months):
        return {**base, "status": "cooldown"}
    matured = fraud_matured_as_ofs(available_as_ofs(features_dir), d)
    seen = _champion_newest_month(
        champion_lineage(tracking_uri, FRAUD_MODEL, int(watch["model_version"]))
    )
    if matured and seen is not None and matured[-1] <= seen:
        return {
            **base,
            "status": "no_new_data",
            "reasons": reasons + [f"no matured month after {seen:%Y-%m-%d}, the champion's newest"],
        }
    outcome = retrain(
        as_of=d,
        features_dir=features_dir,
        decisions_dir=decisions_dir,
        tracking_uri=tracking_uri,
        reasons=reasons,
        model_settings=s.model,
        gate_settings=s.gates,
        window_months=s.monitor.retrain_window_months,
        min_train_months=s.monitor.min_train_months,
        auto_promote=s.monitor.auto_promote,
        seed=s.seed,
        num_threads=s.num_threads,
        decision_log_dir=decision_log_dir(decisions_dir),
        kind="fraud",
        fraud_flag_threshold=s.monitor.fraud_flag_threshold,
    )
    return outcome.to_dict()


def _retrain_text(month: dict) -> str:
    """The month's retrain column: the credit model's status, then the fraud model's if any."""
    fraud = ((month.get("fraud") or {}).get("retrain") or {}).get("status")
    parts = [month["retrain"] or ("-" if fraud is None else "")] + (
        [f"fraud:{fraud}"] if fraud else []
    )
    return " ".join(p for p in parts if p)


def _governance_exceptions(client, versions: dict[str, int]) -> list:
    """Recorded exceptions of the model versions deciding this month (training.promote)."""
    from training.promote import governance_exception

    return [
        e
        for name, v in versions.items()
        if (e := governance_exception(client, name, v)) is not None
    ]


def _rate(num: int, den: int) -> float | None:
    return 1e4 * num / den if den else None


def _write_summary(
    months,
    per_month,
    retrains,
    first,
    reports_dir: Path,
    timer: _Timer,
    s: CycleSettings,
    has_truth: bool,
    baseline_dir: Path,
    explain_failures: list[dict],
    boot_events: list[dict],
    outcomes: dict[str, list[pd.DataFrame]],
) -> CycleResult:
    from features.tables import jsonable, write_json, write_parquet, write_text

    def counts(arm: str) -> dict:
        rows = [m[arm] for m in per_month if arm in m]
        wrong = sum(r["wrongful_post_repayment_downgrades"] for r in rows)
        good = sum(r["good_repayers"] for r in rows)
        wrong_unknown = sum(r["downgraded_repayers_outcome_unknown"] for r in rows)
        unknown = sum(r["repayers_outcome_unknown"] for r in rows)
        return {
            "wrongful_post_repayment_downgrades": wrong,
            "good_repayer_months": good,
            "per_10k_good_repayers": _rate(wrong, good),
            "repayer_months_outcome_unknown": unknown,
            # The old, unsound reading (every repayer not yet bad counted as good), kept
            # only to show how much of a figure rests on outcomes nobody has seen yet.
            "provisional_per_10k_counting_unknown_as_good": _rate(
                wrong + wrong_unknown, good + unknown
            ),
        }

    # The arms decide identically until the loop's models first differ from the frozen ones;
    # only the months after that can show what the loop changed.
    differ = [
        m
        for m in per_month
        if (m["credit_model_version"], m["fraud_model_version"])
        != (first[CREDIT_MODEL], first[FRAUD_MODEL])
    ]
    summary = {
        "from": f"{months[0]:%Y-%m-%d}",
        "to": f"{months[-1]:%Y-%m-%d}",
        "months": len(months),
        "bootstrap_models": first,
        "bootstrap_events": boot_events,
        "governance_exceptions": _exception_months(per_month),
        "good_repayer_definition": (
            "repaid in full in the 30 days before the as-of and no default/bust-out within "
            f"{s.monitor.label_horizon_months} months after it ("
            + ("simulator truth" if has_truth else "matured labels")
            + "); repayers whose window has not closed by the end of the data are left out"
        ),
        "downgrade_definition": (
            "usable line lower than at the previous month's decision, or an adverse decision "
            "deferred (serving.explain.downgrades.select_downgrades, as creditline explain); none in the first month"
        ),
        "headline": {
            "counts": {"with_loop": counts("loop")},
            "months_models_differ": [m["as_of"] for m in differ],
            "good_repayer_months_while_models_differ": sum(
                m["loop"]["good_repayers"] for m in differ
            ),
        },
        "per_month": per_month,
        "retrains": retrains,
        "promotions": [r for r in retrains if r and r.get("status") == "promoted"],
        "drift_alarms": sum(1 for m in per_month if m["drift_alarm"]),
        "fraud_alarms": sum(1 for m in per_month if (m.get("fraud") or {}).get("alarm")),
        "explain_failures": explain_failures,
        "timings_seconds": {k: round(v, 2) for k, v in timer.seconds.items()},
    }
    arms = {"with_loop": pd.concat(outcomes["with_loop"], ignore_index=True)}
    if s.monitor.baseline_arm:
        summary["headline"]["counts"]["without_loop"] = counts("no_loop")
        summary["baseline_decisions"] = str(baseline_dir)
        arms["without_loop"] = pd.concat(outcomes["without_loop"], ignore_index=True)
    h = summary["headline"]
    h.update(headline_figures(arms, n_boot=s.monitor.headline_bootstrap, seed=s.seed))
    loop_rows = arms["with_loop"]
    h["good_repayer_months_known"] = int(loop_rows["good_repayer"].sum())
    h["repayer_months_unknown"] = int(loop_rows["repayer_unknown"].sum())
    h["defaulter_months"] = int(loop_rows["bad"].sum())
    h["user_months_known"] = int(loop_rows["known"].sum())
    h["definitions"] = HEADLINE_DEFINITIONS
    summary = jsonable(summary)
    folder = reports_dir / "cycle" / f"from={summary['from']}_to={summary['to']}"
    path = write_json(summary, folder / "summary.json")
    write_parquet(
        pd.concat([a.assign(arm=name) for name, a in arms.items()], ignore_index=True),
        folder / "outcomes.parquet",
    )
    text_path = write_text(format_summary(summary), folder / "summary.txt")
    return CycleResult(summary, path, text_path, timer.seconds)


def _exception_months(per_month: list[dict]) -> list[dict]:
    """Each governance exception once, with the months it decided in."""
    seen: dict[str, list[str]] = {}
    for m in per_month:
        for line in m.get("governance_exceptions", []):
            seen.setdefault(line, []).append(m["as_of"])
    return [{"exception": k, "months": v} for k, v in seen.items()]


def _alarm_text(month: dict) -> str:
    """T: the retrain trigger fired (against the training data); R: the recent months moved too."""
    against = month.get("alarm_against") or {}
    return ("T" if month["drift_alarm"] else "") + ("R" if against.get("vs_recent") else "") or "-"


def format_summary(summary: dict) -> str:
    """The cycle summary as a plain-text report."""

    def f(x, spec=".4f"):
        return "n/a" if x is None else format(x, spec)

    lines = [
        f"creditline cycle {summary['from']} .. {summary['to']} ({summary['months']} months)",
        "",
    ]
    for e in summary.get("governance_exceptions", []):
        lines.append(
            f"GOVERNANCE EXCEPTION in {len(e['months'])} month(s) ({e['months'][0]} .. "
            f"{e['months'][-1]}): {e['exception']}"
        )
    for e in summary.get("bootstrap_events", []):
        if e["status"] == "refused":
            lines.append(
                f"bootstrap {e['model']} v{e['version']} failed its gates: champion "
                f"v{e['champion_after']} kept, v{e['version']} left as @challenger"
            )
    if lines[-1]:
        lines.append("")
    lines.append(
        "month       credit  users  mean_pd  default  fraud   adverse  downgrades  "
        "wrongful/good  unknown  alarm  retrain"
    )
    for m in summary["per_month"]:
        r = m["loop"]
        lines.append(
            f"{m['as_of']}  v{m['credit_model_version']:<5} {r['users']:>6}  {f(r['mean_pd'])}  "
            f"{f(m.get('default_rate'))}{'*' if m.get('default_window_months_observed') is not None else ' '} "
            f"{f(m.get('fraud_rate'))}  {r['adverse_actions']:>7}  {r['downgrades']:>10}  "
            f"{r['wrongful_post_repayment_downgrades']:>6}/{r['good_repayers']:<6}  "
            f"{r['repayers_outcome_unknown']:>7}  "
            f"{_alarm_text(m):>5}  {_retrain_text(m)}"
        )
    if any(m.get("default_window_months_observed") is not None for m in summary["per_month"]):
        lines.append("* default window cut by the end of the data: a lower bound")
    lines.append(
        "adverse = every lower/freeze/close/defer; downgrades = " + summary["downgrade_definition"]
    )
    lines.append(
        "unknown = repayers whose outcome window has not closed by the end of the data "
        "(neither good nor bad)"
    )
    lines.append(
        "alarm: T = retrain trigger fired (drift or performance against the champion's training "
        "data); R = this month also drifted against the last months scored (the world still moving)"
    )
    lines.append("")
    causes: dict[str, int] = {}
    for m in summary["per_month"]:
        for k, v in m["loop"]["downgrades_by_cause"].items():
            causes[k] = causes.get(k, 0) + v
    total = sum(m["loop"]["downgrades"] for m in summary["per_month"])
    lines.append(
        f"downgrades by cause (with the loop; {total} downgrades, {sum(causes.values())} by cause):"
    )
    for k, v in sorted(causes.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {k:<30} {v}")
    lines.append("")
    fraud_alarms = [m for m in summary["per_month"] if (m.get("fraud") or {}).get("alarm")]
    if fraud_alarms:
        lines.append(
            f"fraud score drift (PSI >= the score-PSI limit) in {len(fraud_alarms)} month(s): "
            + ", ".join(f"{m['as_of']} ({m['fraud']['score_psi']:.2f})" for m in fraud_alarms)
            + "; each alarm retrains the fraud model (below) unless it is cooling down"
        )
    lines.append(f"drift alarms: {summary['drift_alarms']}")
    for r in summary["retrains"]:
        if not r:
            continue
        bt = r.get("backtest") or {}
        ch, cl = bt.get("champion") or {}, bt.get("challenger") or {}
        lines.append(
            f"  {r['as_of']} {r.get('model', CREDIT_MODEL)}: {r['status']}"
            + (
                f" challenger v{r.get('challenger_version')} (trained on {len(r.get('train_as_of') or [])} months, "
                f"OOT {r.get('oot_as_of')}): AUC champion {f(ch.get('auc'))} -> challenger {f(cl.get('auc'))}"
                if r.get("challenger_version")
                else ""
            )
            + f"; champion v{r.get('champion_before')} -> v{r.get('champion_after')}"
            if r.get("status") not in ("cooldown",)
            else f"  {r['as_of']} {r.get('model', CREDIT_MODEL)}: alarm during cooldown"
        )
        for reason in r.get("reasons", [])[:4]:
            lines.append(f"      - {reason}")
    lines.append("")
    h = summary["headline"]
    lines.append("HEADLINE (95% intervals: bootstrap over users)")
    arms = [("with the loop", "with_loop")]
    if "without_loop" in h:
        arms += [("models frozen", "without_loop"), ("difference", "difference")]
    labels = {
        "wrongful_per_10k": "wrongful post-repayment downgrades per 10k good repayers",
        "wrongful_no_regulation_per_10k": "  of which no regulation rule fired, per 10k",
        "missed_defaulter_share": "defaulters whose line was left open (share)",
        "open_line_at_default_cny_per_10k": "line left open to defaulters, CNY per 10k users",
        "fraud_false_flags_per_10k": "fraud flags on good users per 10k",
    }
    for fig, label in labels.items():
        lines.append(f"  {label}:")
        for name, key in arms:
            v = h[key][fig]
            spec = ".3f" if fig == "missed_defaulter_share" else ".1f"
            lines.append(
                f"    {name:<14} {f(v['value'], spec):>10}  [{f(v['ci95_low'], spec)}, "
                f"{f(v['ci95_high'], spec)}]"
            )
        if "relative_change" in h and fig.startswith("wrongful"):
            r = h["relative_change"][fig]
            lines.append(
                f"    relative       {f(r['value'], '+.1%'):>10}  [{f(r['ci95_low'], '+.1%')}, "
                f"{f(r['ci95_high'], '+.1%')}]"
            )
    c = h["counts"]["with_loop"]
    lines.append(
        f"  {h['good_repayer_months_known']} good-repayer months of known outcome, "
        f"{h['repayer_months_unknown']} repayer months unknown (left out), "
        f"{h['defaulter_months']} defaulter months; with the loop "
        f"{c['wrongful_post_repayment_downgrades']} wrongful downgrades"
    )
    differ = h["months_models_differ"]
    lines.append(
        f"  the arms use different models in {len(differ)} month(s)"
        + (
            f" ({differ[0]} .. {differ[-1]}), with {h['good_repayer_months_while_models_differ']} "
            "good-repayer months of known outcome"
            if differ
            else ""
        )
        + "; before that they decide identically"
    )
    lines.append(f"  good repayer: {summary['good_repayer_definition']}")
    lines.append("")
    lines.append(
        "stage seconds: " + ", ".join(f"{k} {v}" for k, v in summary["timings_seconds"].items())
    )
    return "\n".join(lines) + "\n"


def cycle_settings(
    *,
    monitor: dict,
    model: dict,
    gates: dict,
    scoring: dict,
    seed: int,
    num_threads: int,
    baseline_arm: bool | None = None,
) -> CycleSettings:
    """CycleSettings from plain config sections (dicts from `model_dump()`, overlaid by a CLI).

    The monitor section is validated again as a `MonitorConfig`, so an overlay cannot bring in
    an unknown key or a value out of range; its defaults are the config's, declared once.
    """
    mon = MonitorConfig(
        **{**monitor, **({} if baseline_arm is None else {"baseline_arm": baseline_arm})}
    )
    return CycleSettings(
        monitor=mon,
        model=model,
        gates=gates,
        policy_file=scoring.get("policy_file"),
        calendar=scoring.get("calendar"),
        max_source_age_days=scoring.get("max_source_age_days"),
        seed=seed,
        num_threads=num_threads,
    )


def demo_period(
    world_start: str, months: int, bootstrap_months: int
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The cycle period for a simulated world: after the bootstrap months (plus the world's
    first month, when few users exist yet), to the last full month.

    >>> [f"{d:%Y-%m-%d}" for d in demo_period("2024-01-01", 24, 6)]
    ['2024-09-30', '2025-12-31']
    """
    s = pd.Timestamp(world_start)
    first = s + pd.offsets.MonthEnd(bootstrap_months + 3)
    last = s + pd.offsets.MonthEnd(months)
    if first > last:
        raise ValueError(
            f"a {months}-month world is too short for {bootstrap_months} bootstrap months and a cycle; "
            f"simulate at least {bootstrap_months + 4} months"
        )
    return first, last


def run_cycle_on_world(
    folder: str | Path,
    months: int,
    *,
    override: str,
    monitor: dict | None = None,
    cycle_months: int | None = None,
    seed: int | None = None,
) -> CycleResult:
    """The loop over a simulated world laid out under one folder (`raw/`, `truth/`, and the loop's
    outputs beside them), with the default config, its scenario calendar and the recorded
    `override` that lets a small world's failing first model decide (as `make demo` does).

    `monitor` overlays the monitor section; `cycle_months` stops the loop early.
    """
    from serving.config import Config
    from training.tracking import tracking_uri

    folder = Path(folder)
    cfg = Config()
    start, end = demo_period("2024-01-01", months, cfg.monitor.bootstrap_months)
    if cycle_months:
        end = min(end, start + pd.offsets.MonthEnd(cycle_months - 1))
    settings = cycle_settings(
        monitor={
            **cfg.monitor.model_dump(),
            "bootstrap_gate_override": override,
            **(monitor or {}),
        },
        model=cfg.model.model_dump(),
        gates=cfg.gates.model_dump(),
        scoring={
            **cfg.scoring.model_dump(),
            "calendar": str(folder / "truth" / "scenario_calendar.json"),
        },
        seed=cfg.training.seed if seed is None else seed,
        num_threads=cfg.training.num_threads,
    )
    return run_cycle(
        start=start,
        end=end,
        raw_dir=folder / "raw",
        features_dir=folder / "features",
        decisions_dir=folder / "decisions",
        explanations_dir=folder / "explanations",
        reports_dir=folder / "reports",
        quarantine_dir=folder / "quarantine",
        tracking_uri=tracking_uri(folder / "mlruns"),
        settings=settings,
    )
