"""How well explanations match the simulator's ground truth (`creditline explain fidelity`).

Reads `truth/` beside the raw tables, so the nightly path (score, explain, monitor) never
imports this module.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.catalog import as_of_dir, as_of_dirs
from features.contracts import ADVERSE_ACTIONS
from features.tables import read_table_dir, write_json, write_text

log = logging.getLogger(__name__)

# Simulator cause flag -> the explanation causes it corresponds to (see README, "Fidelity").
# The simulator's own world has no policy, regulation calendar or model of its own: those causes
# come from the scenario calendar and the recorded model versions, which are ground truth too.
TRUE_CAUSE_EXPLAINED: dict[str, frozenset[str]] = {
    "sync_delay": frozenset({"system_data"}),
    "fraud": frozenset({"fraud"}),
    "kyc_expiry": frozenset({"regulation"}),
    "device_change": frozenset({"fraud"}),  # the fraud model's signals, whoever changed phone
    "behaviour": frozenset({"risk_behaviour"}),
    "bureau": frozenset({"risk_bureau"}),
    "macro": frozenset(),  # every user in the ramp-in months: it shows through the events above
}
# Background drifts the simulator records beside its events (truth column drift_<name>): a
# downgrade with no event planted between its decisions is caused by what drifted instead.
TRUE_DRIFT_EXPLAINED: dict[str, frozenset[str]] = {
    "bureau_debt": frozenset({"risk_bureau"}),  # debt at other lenders rose (balances drift)
    "own_balance": frozenset({"risk_behaviour"}),  # the balance on this line rose (draws)
}
# The strict reading: one primary cause per user by a fixed priority; "none" (no risk event
# planted) matches a model, policy or regulation change.
TRUE_CAUSE_MATCH: dict[str, frozenset[str]] = {
    **TRUE_CAUSE_EXPLAINED,
    "none": frozenset({"model_update", "policy", "regulation"}),
}
TRUE_CAUSE_PRIORITY = (
    "sync_delay", "fraud", "kyc_expiry", "device_change", "behaviour", "bureau", "macro", "none",
)  # fmt: skip


def _month_after(day: pd.Timestamp) -> pd.Timestamp:
    """First day of the truth month that follows a decision taken at `day`."""
    return (pd.Timestamp(day) + pd.Timedelta(days=1)).to_period("M").to_timestamp()


def _truth_window(
    truth_um: pd.DataFrame,
    as_of: pd.Timestamp,
    prev_as_of: pd.Timestamp,
    sync_from: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Per user with truth rows between the two decisions: the primary cause by priority and,
    per simulator cause, whether it was planted in any month of the window (flag_<cause>).
    `sync_from`: sync delays up to this (deferred) decision are not counted (it handled them)."""
    first = _month_after(prev_as_of)
    last = (as_of - pd.Timedelta(days=1)).to_period("M").to_timestamp()
    month = pd.to_datetime(truth_um["month"])
    t = truth_um[(month >= first) & (month <= last)]
    if sync_from is not None and pd.Timestamp(sync_from) > prev_as_of and "cause_sync_delay" in t:
        before = (pd.to_datetime(t["month"]) < _month_after(sync_from)).to_numpy()
        t = t.copy()
        t.loc[before, "cause_sync_delay"] = False
        rest = [c for c in TRUE_CAUSE_PRIORITY[1:-1] if f"cause_{c}" in t]
        flags = t.loc[before, [f"cause_{c}" for c in rest]].to_numpy(bool)
        t.loc[before, "primary_cause"] = np.where(
            flags.any(axis=1), np.array(rest)[flags.argmax(axis=1)], "none"
        )
    rank = {c: i for i, c in enumerate(TRUE_CAUSE_PRIORITY)}
    t = t.assign(_rank=t["primary_cause"].astype(str).map(rank).fillna(len(rank)).astype(int))
    g = t.groupby(t["user_id"].astype(str))
    out = pd.DataFrame(
        {
            "true_cause": g["_rank"]
            .min()
            .map(lambda r: TRUE_CAUSE_PRIORITY[r] if r < len(TRUE_CAUSE_PRIORITY) else "none"),
        }
    )
    for cause in TRUE_CAUSE_EXPLAINED:
        col = f"cause_{cause}"
        if col in t.columns:
            out[f"flag_{cause}"] = g[col].any()
    for drift in TRUE_DRIFT_EXPLAINED:
        col = f"drift_{drift}"
        if col in t.columns:
            out[f"flag_drift_{drift}"] = g[col].any()
    if "flag_sync_delay" not in out:  # an older truth table: the primary cause still says it
        out["flag_sync_delay"] = g["_rank"].min() == rank["sync_delay"]
    return out


CALENDAR_CAUSES = {"regulation": "regulation", "risk_appetite": "policy"}


def _new_dated_rule_fired(rules: Any, prev_as_of: pd.Timestamp, as_of: pd.Timestamp) -> bool:
    """Whether a calendar rule (`ID@YYYY-MM-DD`) that started between the decisions fired now."""
    if not isinstance(rules, str):
        return False
    for rule in rules.split(";"):
        _, at, start = rule.partition("@")
        if at and prev_as_of < pd.Timestamp(start) <= as_of:
            return True
    return False


def _incident_ran(calendar, prev_as_of: pd.Timestamp, as_of: pd.Timestamp) -> bool:
    """Whether the calendar's sync incident ran at some point between the two decisions."""
    for e in calendar or []:
        if e.get("name") == "sync_incident":
            start = pd.Timestamp(e["start"])
            end = start + pd.DateOffset(months=int((e.get("params") or {}).get("months", 1)))
            if start <= as_of and end > prev_as_of:
                return True
    return False


def planted_causes(
    row: pd.Series,
    started: frozenset[str],
    prev_as_of: pd.Timestamp,
    as_of: pd.Timestamp,
    drifts: bool = True,
) -> frozenset[str]:
    """The explanation causes the ground truth planted between a user's two decisions.

    Data not current comes first and alone (stale data hides whatever else happened, and the
    explanation checks freshness first). Otherwise: every simulator cause flagged in the window;
    a sync incident the calendar ran in it, for a decision the freshness guard deferred;
    a risk-appetite change the calendar started in it (it moves every user's cut-offs); a
    regulation the calendar started in it, for the users one of its dated rules now applies to;
    a model update when the recorded credit or fraud model version changed. Where the simulator
    planted no event for the user in the window, its background drifts stand in (debt at other
    lenders rose -> risk_bureau; the balance on this line rose -> risk_behaviour).
    """
    if bool(row.get("flag_sync_delay", False)):
        return frozenset({"system_data"})
    out: set[str] = set(started - {"regulation", "system_data"})
    if "system_data" in started and str(row.get("action", "")) == "defer":
        out.add("system_data")  # a sync incident ran, and the guard held this decision back
    if "regulation" in started and _new_dated_rule_fired(row.get("rules_new"), prev_as_of, as_of):
        out.add("regulation")
    events: set[str] = set()
    for cause, explained in TRUE_CAUSE_EXPLAINED.items():
        if bool(row.get(f"flag_{cause}", False)):
            events |= explained
    if drifts and not events:  # no event planted: what drifted in the window is the cause
        for drift, explained in TRUE_DRIFT_EXPLAINED.items():
            if bool(row.get(f"flag_drift_{drift}", False)):
                events |= explained
    out |= events
    for kind in ("credit", "fraud"):
        old, new = row.get(f"{kind}_model_version_old"), row.get(f"{kind}_model_version_new")
        if pd.notna(old) and pd.notna(new) and str(old) != str(new):
            out.add("model_update")
    return frozenset(out)


def _share(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if len(mask) else None


def measure_fidelity(
    records: pd.DataFrame, truth_um: pd.DataFrame, calendar: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Top-cause agreement with the ground truth, sync-delay catch rate, additivity and zero checks.

    `top_cause_match_share`: the explanation's top cause is one of the causes the truth planted
    between the two decisions (`planted_causes`). Beside it, so the figure can be judged: the
    same share on downgrades with exactly one planted cause, the count with none planted, the
    share a constant answer would get (the best constant is the floor an explainer must beat),
    how often each simulator flag is set across the whole book, and the strict reading (one
    primary cause by a fixed priority, "none" matching a model, policy or regulation change).
    """
    if records.empty:
        return {"downgrades": 0}
    as_of = pd.Timestamp(records["as_of"].iloc[0])
    row_prev = pd.to_datetime(records["prev_as_of"]).reset_index(drop=True)
    prev_as_of = row_prev.max()  # the previous recorded decision (held cuts compare earlier)
    # Each row's window: from its previous decision to this one. A cut that a deferral held back
    # and that goes ahead now was caused before the deferral too: a record explained against
    # the last decision that took effect (`deferred_at` set) has that decision as prev_as_of; one
    # explained against the deferred record itself (prev_action "defer") looks a month further
    # back. Either way the sync delay the deferral handled (up to the deferred decision) is not
    # counted: the data are current now.
    deferred_at = (
        pd.to_datetime(records["deferred_at"]).reset_index(drop=True)
        if "deferred_at" in records
        else pd.Series(pd.NaT, index=row_prev.index)
    )
    held_record = (
        records["prev_action"].astype(str).eq("defer").to_numpy()
        if "prev_action" in records
        else np.zeros(len(records), bool)
    )
    window_from = row_prev.where(~held_record, row_prev - pd.offsets.MonthEnd(1))
    sync_from = deferred_at.where(deferred_at.notna(), row_prev)
    ids = records["user_id"].astype(str).reset_index(drop=True)
    parts = []
    for (w_from, s_from), idx in (
        pd.DataFrame({"w": window_from, "s": sync_from}).groupby(["w", "s"]).groups.items()
    ):
        users = pd.Index(ids[idx].unique())
        part = truth_um[truth_um["user_id"].astype(str).isin(users)]
        parts.append(_truth_window(part, as_of, w_from, sync_from=s_from).reindex(users))
    truth = pd.concat(parts).dropna(how="all")
    r = records.assign(user_id=records["user_id"].astype(str)).join(truth, on="user_id")
    flag_cols = [c for c in truth.columns if c.startswith("flag_")]
    r = r.assign(
        true_cause=r["true_cause"].fillna("none"),
        **{c: r[c].fillna(False).astype(bool) for c in flag_cols},
    )

    def calendar_started(since: pd.Timestamp) -> frozenset[str]:
        return frozenset(
            CALENDAR_CAUSES[e["name"]]
            for e in (calendar or [])
            if e.get("name") in CALENDAR_CAUSES and since < pd.Timestamp(e["start"]) <= as_of
        ) | frozenset({"system_data"} if _incident_ran(calendar, since, as_of) else set())

    row_started = [calendar_started(w) for w in window_from]
    started = calendar_started(prev_as_of)

    def planted_all(drifts: bool) -> list[frozenset[str]]:
        return [
            planted_causes(row, st, w, as_of, drifts)
            for st, w, (_, row) in zip(row_started, window_from, r.iterrows(), strict=True)
        ]

    planted = planted_all(drifts=True)
    planted_events = planted_all(drifts=False)
    cause = r["cause"].astype(str).to_list()
    match = np.array([c in p for c, p in zip(cause, planted, strict=True)])
    match_events = np.array([c in p for c, p in zip(cause, planted_events, strict=True)])
    n_planted = np.array([len(p) for p in planted])
    single = n_planted == 1
    strict_by_truth = np.array(
        [c in TRUE_CAUSE_MATCH[t] for c, t in zip(cause, r["true_cause"], strict=True)]
    )
    by_calendar = np.array(
        [c in p and c in st for c, p, st in zip(cause, planted, row_started, strict=True)]
    )
    strict = strict_by_truth | by_calendar
    sync = r["flag_sync_delay"].to_numpy()
    rif = r["repaid_in_full_30d"].astype(bool).to_numpy()
    # A first downgrade (the previous decision kept or raised the line) is the question users ask;
    # a repeat (still in a lowering band) has its cause in an earlier month than the truth window.
    first = (
        ~r["prev_action"].isin(ADVERSE_ACTIONS).to_numpy()
        if "prev_action" in r
        else np.ones(len(r), bool)
    )
    causes_seen = sorted(set(cause) | {c for p in planted for c in p})
    constant = {c: float(np.mean([c in p for p in planted])) for c in causes_seen}
    single_planted = [p for p, one in zip(planted, single, strict=True) if one]
    constant_single = {
        c: float(np.mean([c in p for p in single_planted])) if single_planted else 0.0
        for c in causes_seen
    }
    planted_key = pd.Series(
        [",".join(sorted(p)) or "(none planted)" for p in planted], index=r.index
    )
    return {
        "as_of": f"{as_of.date()}",
        "prev_as_of": f"{prev_as_of.date()}",
        "downgrades": int(len(r)),
        "top_cause_match_share": float(match.mean()),
        "top_cause_match_share_single_cause": _share(match[single]),
        "single_cause_downgrades": int(single.sum()),
        "no_planted_cause_downgrades": int((n_planted == 0).sum()),
        "top_cause_match_share_events_only": float(match_events.mean()),
        "no_planted_event_downgrades": int(sum(len(p) == 0 for p in planted_events)),
        "best_constant_answer": max(constant, key=constant.get) if constant else None,
        "best_constant_answer_share": max(constant.values()) if constant else None,
        "constant_answer_share": constant,
        "best_constant_answer_share_single_cause": max(constant_single.values())
        if single_planted
        else None,
        "top_cause_match_share_repaid_in_full": _share(match[rif]),
        "new_downgrades": int(first.sum()),
        "top_cause_match_share_new": _share(match[first]),
        "top_cause_match_share_new_repaid_in_full": _share(match[first & rif]),
        "repaid_in_full_downgrades": int(rif.sum()),
        "top_cause_match_share_strict_priority": float(strict.mean()),
        "calendar_changes_in_window": sorted(started),
        "matched_by_calendar": int((by_calendar & ~strict_by_truth).sum()),
        "flag_share_book": {c[5:]: float(truth[c].mean()) for c in flag_cols},
        "flag_share_downgrades": {c[5:]: float(r[c].mean()) for c in flag_cols},
        "sync_delay_cases": int(sync.sum()),
        "sync_delay_caught_share": float(r.loc[sync, "freshness_flag"].mean())
        if sync.any()
        else None,
        "max_additivity_error": float(r["additivity_error"].max()),
        "max_unchanged_attribution": float(r["max_unchanged_attribution"].max()),
        "reproduced_share": float(r["reproduced"].mean()),
        "by_planted": {
            k: {
                "n": int((planted_key == k).sum()),
                "match_share": float(match[(planted_key == k).to_numpy()].mean()),
            }
            for k in sorted(planted_key.unique())
        },
        "confusion": {
            k: {kk: int(vv) for kk, vv in v.items()}
            for k, v in pd.crosstab(planted_key, r["cause"]).to_dict(orient="index").items()
        },
        "confusion_strict": {
            k: {kk: int(vv) for kk, vv in v.items()}
            for k, v in pd.crosstab(r["true_cause"], r["cause"]).to_dict(orient="index").items()
        },
        "goals": {
            "top_cause_match_share": ">= 0.90",
            "sync_delay_caught_share": "1.0",
            "max_unchanged_attribution": "0.0",
        },
    }


def run_fidelity(
    as_of: str | pd.Timestamp, explanations_dir: str | Path, truth_dir: str | Path
) -> tuple[dict[str, Any], Path]:
    """Read the explanations at `as_of` and the simulator's truth; write fidelity.json beside them."""
    as_of = pd.Timestamp(as_of)
    folder = as_of_dir(explanations_dir, as_of)
    path = folder / "explanations.parquet"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found; run `creditline explain --as-of {as_of.date()}` first"
        )
    truth_path = Path(truth_dir) / "user_month.parquet"
    if not truth_path.exists():
        raise FileNotFoundError(
            f"{truth_path} not found: fidelity needs a simulated world's ground truth"
        )
    records = read_table_dir(path)
    truth = read_table_dir(truth_path)
    cal_path = Path(truth_dir) / "scenario_calendar.json"
    calendar = json.loads(cal_path.read_text(encoding="utf-8")) if cal_path.exists() else []
    figures = measure_fidelity(records, truth, calendar)
    out = write_json(figures, folder / "fidelity.json")
    return figures, out


def pool_fidelity(per_month: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled figures over months (`measure_fidelity` results): shares weighted by their counts."""
    months = [f for f in per_month if f.get("downgrades")]
    n = sum(f["downgrades"] for f in months)

    def pooled(share: str, count: str | None = None) -> float | None:
        den = sum(f[count] if count else f["downgrades"] for f in months)
        num = sum((f[share] or 0.0) * (f[count] if count else f["downgrades"]) for f in months)
        return num / den if den else None

    sync_n = sum(f["sync_delay_cases"] for f in months)
    return {
        "months": len(months),
        "downgrades": n,
        "top_cause_match_share": pooled("top_cause_match_share"),
        "top_cause_match_share_events_only": pooled("top_cause_match_share_events_only"),
        "top_cause_match_share_single_cause": pooled(
            "top_cause_match_share_single_cause", "single_cause_downgrades"
        ),
        "single_cause_downgrades": sum(f["single_cause_downgrades"] for f in months),
        "no_planted_cause_downgrades": sum(f["no_planted_cause_downgrades"] for f in months),
        "no_planted_event_downgrades": sum(f["no_planted_event_downgrades"] for f in months),
        "best_constant_answer_share": pooled("best_constant_answer_share"),
        "best_constant_answer_share_single_cause": pooled(
            "best_constant_answer_share_single_cause", "single_cause_downgrades"
        ),
        "top_cause_match_share_strict_priority": pooled("top_cause_match_share_strict_priority"),
        "top_cause_match_share_repaid_in_full": pooled(
            "top_cause_match_share_repaid_in_full", "repaid_in_full_downgrades"
        ),
        "repaid_in_full_downgrades": sum(f["repaid_in_full_downgrades"] for f in months),
        "sync_delay_cases": sync_n,
        "sync_delay_caught": int(
            round(
                sum((f["sync_delay_caught_share"] or 0.0) * f["sync_delay_cases"] for f in months)
            )
        ),
        "max_additivity_error": max((f["max_additivity_error"] for f in months), default=None),
        "max_unchanged_attribution": max(
            (f["max_unchanged_attribution"] for f in months), default=None
        ),
        "reproduced_share": pooled("reproduced_share"),
        "goals": months[0]["goals"] if months else {},
    }


def fidelity_table(per_month: list[dict[str, Any]], pooled: dict[str, Any]) -> str:
    """The per-month figures and the pooled row as a markdown table (as in the README)."""

    def share(v) -> str:
        return "–" if v is None else f"{v:.3f}"

    rows = [
        "| as-of | downgrades | top cause = truth | events only | single-cause: n / match (best constant) | "
        "nothing planted | best constant answer | strict priority | repaid in full: n / match | "
        "sync-delay caught | max additivity error | max unchanged attribution | reproduced |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in per_month:
        if not f.get("downgrades"):
            rows.append(f"| {f.get('as_of', '?')} | 0 | | | | | | | | | | | |")
            continue
        cal = ",".join(f["calendar_changes_in_window"])
        sync = (
            f"{round(f['sync_delay_caught_share'] * f['sync_delay_cases'])}/{f['sync_delay_cases']}"
            if f["sync_delay_cases"]
            else "–"
        )
        rows.append(
            f"| {f['as_of']}{f' ({cal})' if cal else ''} | {f['downgrades']} "
            f"| {share(f['top_cause_match_share'])} | {share(f['top_cause_match_share_events_only'])} "
            f"| {f['single_cause_downgrades']} / {share(f['top_cause_match_share_single_cause'])} "
            f"({share(f.get('best_constant_answer_share_single_cause'))}) "
            f"| {f['no_planted_cause_downgrades']} "
            f"| {f['best_constant_answer']} {share(f['best_constant_answer_share'])} "
            f"| {share(f['top_cause_match_share_strict_priority'])} "
            f"| {f['repaid_in_full_downgrades']} / {share(f['top_cause_match_share_repaid_in_full'])} "
            f"| {sync} | {f['max_additivity_error']:.1e} | {f['max_unchanged_attribution']} "
            f"| {f['reproduced_share']} |"
        )
    p = pooled
    sync = f"{p['sync_delay_caught']}/{p['sync_delay_cases']}" if p["sync_delay_cases"] else "–"
    rows.append(
        f"| **all {p['months']} months** | {p['downgrades']} "
        f"| **{share(p['top_cause_match_share'])}** | {share(p['top_cause_match_share_events_only'])} "
        f"| {p['single_cause_downgrades']} / {share(p['top_cause_match_share_single_cause'])} "
        f"({share(p['best_constant_answer_share_single_cause'])}) "
        f"| {p['no_planted_cause_downgrades']} | {share(p['best_constant_answer_share'])} "
        f"| {share(p['top_cause_match_share_strict_priority'])} "
        f"| {p['repaid_in_full_downgrades']} / {share(p['top_cause_match_share_repaid_in_full'])} "
        f"| {sync} | {(p['max_additivity_error'] or 0):.1e} | {p['max_unchanged_attribution']} "
        f"| {share(p['reproduced_share'])} |"
    )
    return "\n".join(rows) + "\n"


def run_fidelity_all(
    explanations_dir: str | Path, truth_dir: str | Path
) -> tuple[list[dict[str, Any]], dict[str, Any], Path]:
    """`run_fidelity` for every explained as-of (each month's fidelity.json), then the pooled
    figures and the per-month table in fidelity_all.json / fidelity_all.md under `explanations_dir`."""
    folder = Path(explanations_dir)
    days = sorted(as_of_dirs(folder, "explanations.parquet"))
    if not days:
        raise FileNotFoundError(f"{folder}: no explanations; run `creditline explain` first")
    per_month = []
    for day in days:
        figures, _ = run_fidelity(day, folder, truth_dir)
        per_month.append({"as_of": f"{day.date()}", **figures})
    pooled = pool_fidelity(per_month)
    out = write_json({"pooled": pooled, "per_month": per_month}, folder / "fidelity_all.json")
    write_text(fidelity_table(per_month, pooled), folder / "fidelity_all.md")
    return per_month, pooled, out
