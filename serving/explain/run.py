"""The `creditline explain` jobs: read decisions, snapshots, models and policies; write records and reports.

`run_explain` explains every adverse decision at an as-of date against the latest earlier decision
and writes

- data/explanations/as_of=D/explanations.parquet (one flat row per user) + explanations.json
  (nested: reasons with before/after values, waterfalls, changed features, trace) + summary.json
- data/reports/explanations/as_of=D/index.html (batch summary) + users/<user_id>.html.

How well explanations match the simulator's truth is measured in `serving.explain.fidelity`.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.catalog import as_of_dir, as_of_dirs, explanation_reports_dir
from features.tables import read_table_dir, write_json, write_parquet, write_text, write_texts
from serving.scoring.models import MODEL_NAMES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExplainRunResult:
    as_of: pd.Timestamp
    prev_as_of: pd.Timestamp
    explained: int
    records_path: Path
    json_path: Path
    summary_path: Path
    report_path: Path
    user_reports: int
    summary: dict[str, Any]


def last_took_effect(decisions_dir: str | Path, previous: pd.DataFrame, prev_as_of) -> pd.DataFrame:
    """Per user deferred at `prev_as_of`: the latest earlier stored decision that was not a
    defer (its row, with `took_effect_as_of`). Decision sets are read newest first, only while
    deferred users remain; users deferred since before the first stored decision are left out."""
    found = as_of_dirs(Path(decisions_dir), "decisions.parquet")
    pending = pd.Index(
        previous.loc[previous["action"].astype(str).eq("defer"), "user_id"].astype(str).unique()
    )
    rows = []
    for day in sorted((d for d in found if d < pd.Timestamp(prev_as_of)), reverse=True):
        if pending.empty:
            break
        dec = read_table_dir(found[day])
        dec = dec.assign(user_id=dec["user_id"].astype(str)).drop_duplicates("user_id")
        took = dec[dec["user_id"].isin(pending) & dec["action"].astype(str).ne("defer")]
        rows.append(took.assign(took_effect_as_of=day))
        pending = pending.difference(pd.Index(took["user_id"]))
    if not rows:
        return pd.DataFrame(
            {"user_id": pd.Series(dtype=str), "action": pd.Series(dtype=str),
             "new_line_cny": pd.Series(dtype=float),
             "took_effect_as_of": pd.Series(dtype="datetime64[ns]")}
        )  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def usable_before(decisions_dir: str | Path, previous: pd.DataFrame, prev_as_of) -> pd.Series:
    """`serving.explain.downgrades.usable_lines` of `previous` (the decisions at `prev_as_of`), a deferred
    user's line taken from the last decision that took effect (`last_took_effect`)."""
    from serving.explain.downgrades import usable_lines

    return usable_lines(previous, last_took_effect(decisions_dir, previous, prev_as_of))


def _one_version(df: pd.DataFrame, col: str, where: Path) -> int:
    if col not in df.columns:
        raise ValueError(f"{where}: decisions lack column {col!r}")
    versions = sorted(set(df[col].dropna().astype(int)))
    if len(versions) != 1:
        raise ValueError(f"{where}: expected one {col} per decision file, found {versions}")
    return versions[0]


def _load_model(name: str, version: int, tracking_uri: str):
    """A registered model version via training.registry (the fallback reads MLflow directly)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    try:
        from training.registry import load_model
    except ModuleNotFoundError:
        load_model = None
    if load_model is not None:
        return load_model(name, version, tracking_uri)
    import mlflow.lightgbm
    from mlflow import MlflowClient

    from serving.scoring.models import scoring_model

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    mv = client.get_model_version(name, str(version))
    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    booster = mlflow.lightgbm.load_model(f"models:/{name}/{version}")
    tags = mv.tags or {}
    return scoring_model(
        name,
        int(version),
        list(booster.feature_name()),
        booster,
        float(tags.get("calib_a", 1.0)),
        float(tags.get("calib_b", 0.0)),
    )


def _warn_policy_mismatch(decisions: pd.DataFrame, where: Path, policy, hint: str = "") -> None:
    """Warn when `decisions` record a policy version other than the loaded `policy`'s."""
    recorded = (
        sorted(set(decisions["policy_version"].astype(str)))
        if "policy_version" in decisions
        else []
    )
    if recorded and recorded != [policy.version]:
        log.warning(
            "%s was decided under policy %s but %s is loaded%s",
            where,
            recorded,
            policy.version,
            hint,
        )


def _merge_explanations(results: list):
    """One `Explanations` from the batches of one as-of (records and details by user id)."""
    from serving.explain.downgrades import Explanations, summarise

    results = [r for r in results if len(r.records)]
    if not results:
        return Explanations(
            records=pd.DataFrame({"user_id": pd.Series(dtype=str)}),
            details=[],
            summary={"explained": 0},
        )
    if len(results) == 1:
        return results[0]
    records = pd.concat([r.records for r in results], ignore_index=True)
    details = [d for r in results for d in r.details]
    order = np.argsort(records["user_id"].astype(str).to_numpy(), kind="stable")
    records = records.iloc[order].reset_index(drop=True)
    details = [details[i] for i in order]
    return Explanations(records=records, details=details, summary=summarise(records))


def run_explain(
    as_of: str | pd.Timestamp,
    decisions_dir: str | Path,
    features_dir: str | Path,
    explanations_dir: str | Path,
    reports_dir: str | Path,
    tracking_uri: str,
    policy_file: str | Path | None = None,
    calendar: str | Path | None = None,
    old_policy_file: str | Path | None = None,
    users: list[str] | None = None,
    max_age_days: dict[str, float] | None = None,
    n_threads: int = 2,
    models: dict[str, Any] | None = None,
    model_cache: dict[str, Any] | None = None,
    report_writer: ReportWriter | None = None,
) -> ExplainRunResult:
    """Explain the adverse decisions at `as_of` against the latest earlier decisions; write everything.

    `models` (optional) maps "credit-pd/<v>" / "fraud/<v>" to loaded models, bypassing the registry.
    `model_cache` (optional, e.g. one dict for a whole cycle) keeps registry models loaded and
    compiled for attribution between calls; a registered version never changes, so a month that
    uses the same versions as an earlier one skips the download and the compilation.
    `report_writer` (optional) writes explanations.json and the HTML reports in its own process
    while the caller goes on (the same bytes); explanations.parquet and summary.json are written
    before this returns either way.
    """
    from serving.explain.downgrades import explain_downgrades, prepare_model, usable_lines
    from serving.scoring.policy import load_policy

    as_of = pd.Timestamp(as_of)
    decisions_dir, features_dir = Path(decisions_dir), Path(features_dir)
    found = as_of_dirs(decisions_dir, "decisions.parquet")
    if as_of not in found:
        raise FileNotFoundError(
            f"{decisions_dir}/as_of={as_of.date()}/decisions.parquet not found; run `creditline score --as-of {as_of.date()}` first"
        )
    earlier = [d for d in found if d < as_of]
    if not earlier:
        raise ValueError(f"{decisions_dir}: no decisions before {as_of.date()} to compare against")
    prev_as_of = max(earlier)
    new_dec = read_table_dir(found[as_of])
    old_dec = read_table_dir(found[prev_as_of])
    # A cut deferred at the previous decision goes ahead now: it is explained against the last
    # decision that took effect (the deferred record changed nothing), in its own batch.
    took = last_took_effect(decisions_dir, old_dec, prev_as_of)
    held_since = pd.Series(
        pd.to_datetime(took["took_effect_as_of"]).to_numpy(), index=took["user_id"].astype(str)
    )
    snapshots: dict[pd.Timestamp, pd.DataFrame] = {}

    def snapshot(day: pd.Timestamp) -> pd.DataFrame:
        if day not in snapshots:
            folder = as_of_dir(features_dir, day)
            if not folder.exists():
                raise FileNotFoundError(
                    f"{folder}: feature snapshot missing (needed to explain {as_of.date()})"
                )
            snapshots[day] = read_table_dir(folder)
        return snapshots[day]

    loaded = dict(models or {})

    def model(name: str, version: int):
        key = f"{name}/{version}"
        if key not in loaded and model_cache is not None:
            ck = f"{tracking_uri}|{key}"
            if ck not in model_cache:
                model_cache[ck] = prepare_model(_load_model(name, version, tracking_uri))
            loaded[key] = model_cache[ck]
        if key not in loaded:
            loaded[key] = _load_model(name, version, tracking_uri)
        return loaded[key]

    credit_new = model(
        MODEL_NAMES["credit"], _one_version(new_dec, "credit_model_version", found[as_of])
    )
    fraud_new = model(
        MODEL_NAMES["fraud"], _one_version(new_dec, "fraud_model_version", found[as_of])
    )
    policy_new = load_policy(policy_file, calendar)
    policy_old = load_policy(old_policy_file or policy_file, calendar)
    usable = usable_lines(old_dec, took)
    held_ids = set(held_since.index)
    batches = [(prev_as_of, old_dec, new_dec[~new_dec["user_id"].astype(str).isin(held_ids)])]
    for since in sorted(set(held_since)):
        ids = set(held_since.index[held_since == since])
        batches.append(
            (
                since,
                took[took["took_effect_as_of"] == since].drop(columns="took_effect_as_of"),
                new_dec[new_dec["user_id"].astype(str).isin(ids)],
            )
        )
    _warn_policy_mismatch(new_dec, found[as_of], policy_new)
    results = []
    for since, dec_then, dec_now in batches:
        where = found[since]
        _warn_policy_mismatch(dec_then, where, policy_old, "; pass the old file with --old-policy")
        if dec_now.empty:
            continue
        results.append(
            explain_downgrades(
                dec_now,
                dec_then,
                snapshot(as_of),
                snapshot(since),
                model(MODEL_NAMES["credit"], _one_version(dec_then, "credit_model_version", where)),
                credit_new,
                model(MODEL_NAMES["fraud"], _one_version(dec_then, "fraud_model_version", where)),
                fraud_new,
                policy_old,
                policy_new,
                as_of,
                since,
                users=users,
                max_age_days=max_age_days,
                n_threads=n_threads,
                usable_before=usable if since == prev_as_of else None,
                deferred_at=None if since == prev_as_of else prev_as_of,
            )
        )
    result = _merge_explanations(results)
    day = f"{as_of.date()}"
    out = as_of_dir(explanations_dir, day)
    rep = explanation_reports_dir(reports_dir, day)
    if users is not None:
        # A look at a few users must not replace the batch's files.
        out, rep = out / "selected", rep / "selected"
    records_path = write_parquet(result.records, out / "explanations.parquet")
    summary = {**result.summary, "as_of": day, "prev_as_of": f"{prev_as_of.date()}"}
    summary_path = write_json(summary, out / "summary.json")
    json_path, report_path = out / "explanations.json", rep / "index.html"
    if report_writer is None:
        write_reports(result.details, summary, day, out, rep)
    else:
        report_writer.submit(day, result.details, summary, out, rep)
    return ExplainRunResult(
        as_of,
        prev_as_of,
        len(result.records),
        records_path,
        json_path,
        summary_path,
        report_path,
        len(result.details),
        summary,
    )


def write_reports(
    details: list[dict[str, Any]], summary: dict[str, Any], day: str, out: Path, rep: Path
) -> int:
    """explanations.json, one reviewer page per explained user and the batch page; returns the
    number of user pages."""
    from serving.explain.report import render_summary_report, render_user_report

    write_json(details, out / "explanations.json")
    n = write_texts(
        (rep / "users" / f"{d['user_id']}.html", render_user_report(d)) for d in details
    )
    write_text(render_summary_report(summary, details, day), rep / "index.html")
    return n


class ReportWriter:
    """Writes explanation reports (`write_reports`) in one worker process, one batch at a time.

    For a loop over months: the JSON details and per-user pages of month m are written while
    month m+1 is scored and explained (the rendering is pure Python, so a thread would not run
    beside it). At most one batch waits besides the one being written, so memory stays bounded.
    `finish()` waits for everything and returns the batches that failed, with their errors.
    """

    def __init__(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork where there is one: a spawned worker would re-run the caller's main script (one
        # without a `__main__` guard would start the loop again). The worker only renders and
        # writes files; the parent's threads and connections are never used in it.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx)
        self._pending: list[tuple[str, Any]] = []
        self.failures: list[dict[str, str]] = []
        self.pages = 0

    def submit(
        self, day: str, details: list[dict[str, Any]], summary: dict[str, Any], out: Path, rep: Path
    ) -> None:
        while len(self._pending) >= 1:
            self._collect(*self._pending.pop(0))
        # the worker is forked on the first submit and flushes the stdio it inherited when it
        # exits: flush here so nothing the caller printed so far is written twice
        sys.stdout.flush()
        sys.stderr.flush()
        self._pending.append(
            (day, self._pool.submit(write_reports, details, summary, day, Path(out), Path(rep)))
        )

    def _collect(self, day: str, future) -> None:
        try:
            self.pages += future.result()
        except Exception as exc:  # reported by the caller, like a failed explanation
            log.error("writing the explanation reports of %s failed: %s", day, exc)
            self.failures.append({"as_of": day, "error": f"writing reports: {exc}"[:500]})

    def finish(self) -> list[dict[str, str]]:
        while self._pending:
            self._collect(*self._pending.pop(0))
        self._pool.shutdown(wait=True)
        return self.failures
