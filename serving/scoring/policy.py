"""The credit-line policy: a versioned TOML file turned into pure, vectorised line decisions.

A decision is a pure function of (PD, fraud probability, `ctx_`/`fresh_` columns, previous line,
policy, as-of date), so the explanation engine can re-run `decide_lines` on an old decision's
inputs under another policy version and see exactly what the policy change did. PD cut-offs are
compared in log-odds: `decision_margin = credit_margin - adverse_cutoff` is > 0 exactly when the
PD band alone asks for an adverse action (lower/close).

Order in which rules act on a user (later steps see the earlier result):

1. PD band (cut-offs shifted by the active risk appetite) -> band action and line multiplier.
   With the user's previous band known (`prev_band`), a line moves when the risk moves: a
   `lower` band cuts only a user who moved into a worse band, a `raise` band raises only a user
   who moved into a better one; otherwise the band action is keep (line unchanged).
2. Risk appetite `allow_raise = false` -> a raise becomes keep.  Product max (LINE-MAX).
3. Regulation caps (multi-lender count, debt-to-income): line capped, never raised.
4. Rounding down to `step_cny`; a lowered line under `min_line_cny` closes (LINE-MIN).
5. Expired KYC or fraud probability >= freeze threshold -> freeze (line amount kept, no draws).
6. Freshness guard: stale data and an adverse action (lower/freeze/close) -> defer, line kept.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.contracts import DECISION_ACTIONS, DOWNGRADE_ACTIONS

REPAID_COLUMN = "ctx_repaid_in_full_30d"
# The credit model version of the previous decision and of this one: the model-update hold needs both.
MODEL_VERSION_COLUMNS = ("prev_credit_model_version", "credit_model_version")
ACTIONS = DECISION_ACTIONS  # the decision table stores an action as its index here
KEEP, RAISE, LOWER, FREEZE, CLOSE, DEFER = range(len(ACTIONS))
BAND_ACTIONS = ("raise", "keep", "lower", "close")
DEFAULT_POLICY_FILE = Path(__file__).with_name("line_policy.toml")
DEFER_REASON_EN = "data not current"
DEFER_REASON_ZH = "数据未及时更新"

# Parameters each dated rule kind takes, and the ctx_ column it reads.
REGULATION_KINDS: dict[str, tuple[frozenset[str], str]] = {
    "multi_lender_cap": (
        frozenset({"max_active_lenders", "line_cap_cny"}),
        "ctx_active_lenders_cnt",
    ),
    "dti_cap": (frozenset({"max_dti_ratio"}), "ctx_dti_ratio"),
    "kyc_expired": (frozenset({"grace_days"}), "ctx_kyc_expiry_days"),
}
REGULATION_IDS = {
    "multi_lender_cap": "REG-MULTI-LENDER",
    "dti_cap": "REG-DTI",
    "kyc_expired": "REG-KYC",
}
APPETITE_PARAMS = frozenset({"pd_cutoff_shift", "allow_raise", "line_multiplier"})
# Calendar spellings (features/world/scenarios.py) -> the policy's parameter names.
CALENDAR_ALIASES = {"dti_cap": "max_dti_ratio"}
# Calendar entries may carry a human note; it is kept out of the rule parameters.
CALENDAR_NOTE_KEYS = frozenset({"description", "note", "reason"})
FRESH_FLAG_COLUMNS = ("fresh_stale", "fresh_sync_lag_flag")
LINE_MAX_ID = "LINE-MAX"
LINE_MIN_ID = "LINE-MIN"
_PD_EPS = 1e-12


@dataclass(frozen=True)
class Band:
    id: str
    pd_max: float
    action: str
    multiplier: float


@dataclass(frozen=True)
class DatedRule:
    id: str
    kind: str  # a REGULATION_KINDS key, or "risk_appetite"
    effective_from: pd.Timestamp
    params: dict[str, Any] = field(default_factory=dict)
    source: str = "policy"  # "policy" (the TOML file) or "calendar"


@dataclass(frozen=True)
class Policy:
    version: str
    bands: tuple[Band, ...]
    fraud_rule_id: str
    fraud_freeze_p: float
    step_cny: float
    min_line_cny: float
    max_line_cny: float
    freshness_rule_id: str
    adverse_actions: tuple[str, ...]
    max_age_days: dict[str, float]
    regulations: tuple[DatedRule, ...]
    appetite: tuple[DatedRule, ...]
    digest: str  # sha256 of the policy file bytes + calendar entries used
    # log-odds a known user's credit margin must pass a band edge by before the band changes
    band_hysteresis_logodds: float = 0.0
    # Model-update protection ([model_update]): rule id, None = off; evidence column -> the
    # largest value that is still "no adverse evidence".
    model_update_rule_id: str | None = None
    model_update_evidence: dict[str, float] = field(default_factory=dict)


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _PD_EPS, 1.0 - _PD_EPS)
    return np.log(p) - np.log1p(-p)


def _hysteresis(line: dict[str, Any], where: str) -> float:
    h = float(line.get("band_hysteresis_logodds", 0.0))
    if not (np.isfinite(h) and h >= 0.0):
        raise ValueError(f"{where}: [line] band_hysteresis_logodds must be >= 0; got {h}")
    return h


def _model_update(section: dict | None, where: str) -> tuple[str | None, dict[str, float]]:
    """The [model_update] section: (rule id or None when off, evidence column -> max value)."""
    if not section or not section.get("hold", False):
        return None, {}
    unknown = set(section) - {"id", "hold", "evidence_max"}
    if unknown:
        raise ValueError(f"{where}: [model_update] unknown key(s) {sorted(unknown)}")
    evidence = {str(k): float(v) for k, v in dict(section.get("evidence_max", {})).items()}
    if not evidence:
        raise ValueError(f"{where}: [model_update] hold = true needs evidence_max (column = max)")
    return str(section.get("id", "MODEL-UPDATE-HOLD")), evidence


def _date(value: Any, where: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(str(value)).normalize()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: '{value}' is not a date (YYYY-MM-DD)") from exc


def _check_params(
    kind: str, params: dict[str, Any], allowed: frozenset[str], where: str
) -> dict[str, Any]:
    unknown = sorted(set(params) - allowed - CALENDAR_NOTE_KEYS)
    if unknown:
        raise ValueError(
            f"{where}: {kind} has unknown parameter(s) {unknown}; allowed: {sorted(allowed)}. "
            "Fix the entry or teach serving/scoring/policy.py the new rule."
        )
    return {k: v for k, v in params.items() if k in allowed}


def _regulations_from_params(
    params: dict[str, Any], start: pd.Timestamp, where: str
) -> list[DatedRule]:
    """Split one calendar `regulation` entry into one dated rule per kind its params name."""
    params = {
        CALENDAR_ALIASES.get(k, k): v for k, v in params.items() if k not in CALENDAR_NOTE_KEYS
    }
    # a switch in the calendar: freeze from the expiry day on
    if "kyc_expiry_freeze" in params and params.pop("kyc_expiry_freeze"):
        params.setdefault("grace_days", 0)
    known = set().union(*(keys for keys, _ in REGULATION_KINDS.values()))
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            f"{where}: regulation parameter(s) {unknown} are not understood by the line policy; "
            f"known: {sorted(known)}. Fix the calendar or add the rule kind to serving/scoring/policy.py."
        )
    rules = []
    for kind, (keys, _) in REGULATION_KINDS.items():
        present = keys & set(params)
        if not present:
            continue
        if kind == "multi_lender_cap" and "max_active_lenders" not in params:
            raise ValueError(f"{where}: line_cap_cny needs max_active_lenders in the same entry")
        kp = {k: params[k] for k in present}
        if kind == "multi_lender_cap":
            kp.setdefault("line_cap_cny", 0.0)
        rules.append(
            DatedRule(f"{REGULATION_IDS[kind]}@{start.date()}", kind, start, kp, "calendar")
        )
    return rules


def _read_calendar(calendar: str | Path | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if calendar is None:
        return []
    if isinstance(calendar, list):
        return calendar
    path = Path(calendar)
    if not path.exists():
        raise FileNotFoundError(f"scenario calendar {path} not found")
    entries = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of {{name, start, params}} entries")
    return entries


def load_policy(
    path: str | Path | None = None,
    calendar: str | Path | list[dict[str, Any]] | None = None,
) -> Policy:
    """Read the policy TOML and, if given, the scenario calendar's `regulation`/`risk_appetite` entries.

    With a calendar the recorded version is `<file version>+cal-<8 hex>` so that two worlds with
    different calendars never share a policy version. Other calendar entries are ignored.
    """
    path = Path(path) if path is not None else DEFAULT_POLICY_FILE
    if not path.exists():
        raise FileNotFoundError(f"policy file {path} not found")
    data = path.read_bytes()
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    where = str(path)
    for key in ("version", "bands", "fraud", "line", "freshness"):
        if key not in raw:
            raise ValueError(f"{where}: missing top-level key '{key}'")
    known_top = {
        "version", "bands", "fraud", "line", "freshness", "regulation", "risk_appetite",
        "model_update",
    }  # fmt: skip
    if set(raw) - known_top:
        raise ValueError(f"{where}: unknown top-level key(s) {sorted(set(raw) - known_top)}")

    bands = tuple(
        Band(str(b["id"]), float(b["pd_max"]), str(b["action"]), float(b["multiplier"]))
        for b in raw["bands"]
    )
    for b in bands:
        if b.action not in BAND_ACTIONS:
            raise ValueError(f"{where}: band {b.id} action '{b.action}' not one of {BAND_ACTIONS}")
    pd_maxes = [b.pd_max for b in bands]
    if pd_maxes != sorted(pd_maxes) or len(set(pd_maxes)) != len(pd_maxes) or pd_maxes[-1] != 1.0:
        raise ValueError(
            f"{where}: band pd_max values must increase strictly and the last must be 1.0; got {pd_maxes}"
        )

    regulations: list[DatedRule] = []
    for i, r in enumerate(raw.get("regulation", [])):
        kind = str(r.get("kind"))
        if kind not in REGULATION_KINDS:
            raise ValueError(
                f"{where}: regulation[{i}] kind '{kind}' not one of {sorted(REGULATION_KINDS)}"
            )
        params = _check_params(
            kind, dict(r.get("params", {})), REGULATION_KINDS[kind][0], f"{where} regulation[{i}]"
        )
        regulations.append(DatedRule(str(r["id"]), kind, _date(r["effective_from"], where), params))
    appetite: list[DatedRule] = []
    for i, r in enumerate(raw.get("risk_appetite", [])):
        params = _check_params(
            "risk_appetite",
            dict(r.get("params", {})),
            APPETITE_PARAMS,
            f"{where} risk_appetite[{i}]",
        )
        appetite.append(
            DatedRule(str(r["id"]), "risk_appetite", _date(r["effective_from"], where), params)
        )

    cal_used = []
    for i, entry in enumerate(_read_calendar(calendar)):
        name = entry.get("name")
        if name not in ("regulation", "risk_appetite"):
            continue
        cwhere = f"scenario calendar entry {i} ({name})"
        start = _date(entry.get("start"), cwhere)
        params = dict(entry.get("params") or {})
        if name == "regulation":
            regulations.extend(_regulations_from_params(params, start, cwhere))
        else:
            params = _check_params("risk_appetite", params, APPETITE_PARAMS, cwhere)
            appetite.append(
                DatedRule(f"APPETITE@{start.date()}", "risk_appetite", start, params, "calendar")
            )
        cal_used.append(entry)

    h = hashlib.sha256(data)
    version = str(raw["version"])
    if cal_used:
        cal_bytes = json.dumps(cal_used, sort_keys=True, default=str).encode()
        h.update(cal_bytes)
        version = f"{version}+cal-{hashlib.sha256(cal_bytes).hexdigest()[:8]}"
    fresh = raw["freshness"]
    hold_id, evidence = _model_update(raw.get("model_update"), where)
    return Policy(
        model_update_rule_id=hold_id,
        model_update_evidence=evidence,
        version=version,
        bands=bands,
        fraud_rule_id=str(raw["fraud"]["id"]),
        fraud_freeze_p=float(raw["fraud"]["freeze_p"]),
        step_cny=float(raw["line"]["step_cny"]),
        min_line_cny=float(raw["line"]["min_line_cny"]),
        max_line_cny=float(raw["line"]["max_line_cny"]),
        band_hysteresis_logodds=_hysteresis(raw["line"], where),
        freshness_rule_id=str(fresh["id"]),
        adverse_actions=tuple(fresh.get("adverse_actions", DOWNGRADE_ACTIONS)),
        max_age_days={str(k): float(v) for k, v in fresh.get("max_age_days", {}).items()},
        regulations=tuple(regulations),
        appetite=tuple(appetite),
        digest=h.hexdigest(),
    )


def active_regulations(policy: Policy, as_of: pd.Timestamp | str) -> dict[str, DatedRule]:
    """The regulation in force per kind on `as_of`: the latest effective entry (a later one replaces it)."""
    as_of = pd.Timestamp(as_of)
    active: dict[str, DatedRule] = {}
    for rule in sorted(
        policy.regulations, key=lambda r: (r.effective_from, r.source == "calendar")
    ):
        if rule.effective_from <= as_of:
            active[rule.kind] = rule
    return active


def active_appetite(policy: Policy, as_of: pd.Timestamp | str) -> DatedRule | None:
    """The risk-appetite entry in force on `as_of` (latest effective), or None."""
    as_of = pd.Timestamp(as_of)
    live = [r for r in policy.appetite if r.effective_from <= as_of]
    return max(live, key=lambda r: (r.effective_from, r.source == "calendar")) if live else None


def band_cutoffs_logodds(policy: Policy, as_of: pd.Timestamp | str) -> np.ndarray:
    """Upper log-odds edge of each PD band on `as_of` (risk-appetite shift applied; last is +inf).

    A user with credit log-odds m falls in the first band whose edge is >= m.
    """
    app = active_appetite(policy, as_of)
    shift = float(app.params.get("pd_cutoff_shift", 0.0)) if app else 0.0
    edges = np.array([b.pd_max for b in policy.bands[:-1]], dtype=np.float64) + shift
    return np.append(_logit(edges), np.inf)


def adverse_cutoff_logodds(policy: Policy, as_of: pd.Timestamp | str) -> float:
    """Log-odds above which the PD band asks for an adverse action (the last raise/keep band's edge)."""
    edges = band_cutoffs_logodds(policy, as_of)
    ok = [i for i, b in enumerate(policy.bands) if b.action in ("raise", "keep")]
    return float(edges[ok[-1]]) if ok else -math.inf


def required_columns(
    policy: Policy, as_of: pd.Timestamp | str, max_age_days: dict[str, float] | None = None
) -> list[str]:
    """The ctx_/fresh_ columns `decide_lines` reads under this policy on `as_of`."""
    cols = [REGULATION_KINDS[k][1] for k in sorted(active_regulations(policy, as_of))]
    limits = policy.max_age_days if max_age_days is None else max_age_days
    cols += list(FRESH_FLAG_COLUMNS) + [f"fresh_{s}_age_days" for s in sorted(limits)]
    return cols + [c for c in model_update_columns(policy) if c not in cols]


def model_update_columns(policy: Policy) -> list[str]:
    """The columns the model-update hold reads (none when the policy turns it off)."""
    if not policy.model_update_rule_id:
        return []
    return [REPAID_COLUMN, *sorted(policy.model_update_evidence)]


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    return df[col].to_numpy(dtype=np.float64, na_value=np.nan)


def stale_mask(scored: pd.DataFrame, max_age_days: dict[str, float]) -> np.ndarray:
    """True where the user's data is not current: a fresh_ flag is set or a source is older than its limit.

    NaN flags count as 0; a NaN age means no data from that source, which cannot be late.
    """
    stale = np.zeros(len(scored), dtype=bool)
    for col in FRESH_FLAG_COLUMNS:
        stale |= np.nan_to_num(_num(scored, col), nan=0.0) > 0
    for source, limit in max_age_days.items():
        age = _num(scored, f"fresh_{source}_age_days")
        with np.errstate(invalid="ignore"):
            stale |= age > limit
    return stale


def _categorical(codes: np.ndarray, labels: list[str], index: pd.Index) -> pd.Series:
    return pd.Series(pd.Categorical.from_codes(codes, categories=labels), index=index)


def _join_rules(fired: list[tuple[str, np.ndarray]], index: pd.Index) -> pd.Series:
    """';'-joined ids of the rules that fired, per row, in rule order (a categorical).

    Rows are grouped by their bit pattern of fired rules, so the strings are built once per
    distinct pattern, not once per user.
    """
    bits = np.zeros(len(index), dtype=np.uint64)
    ids = [rule_id for rule_id, _ in fired]
    for i, (_, mask) in enumerate(fired):
        bits |= mask.astype(np.uint64) << np.uint64(i)
    patterns, inverse = np.unique(bits, return_inverse=True)
    labels = [";".join(ids[i] for i in range(len(ids)) if int(p) >> i & 1) for p in patterns]
    # two rules with the same id (impossible in a loaded policy) would give equal labels
    return (
        _categorical(inverse.astype(np.int32), labels, index)
        if len(set(labels)) == len(labels)
        else pd.Series(np.array(labels, dtype=object)[inverse], index=index, dtype="str")
    )


def _not_deferred(prev_decisions: pd.DataFrame) -> np.ndarray:
    """False where the previous decision was a defer (its adverse action is still owed)."""
    if "action" not in prev_decisions.columns:
        return np.ones(len(prev_decisions), dtype=bool)
    return (prev_decisions["action"] != "defer").to_numpy(dtype=bool)  # missing: not a defer


def previous_bands(prev_decisions: pd.DataFrame, policy: Policy) -> pd.Series:
    """`prev_band` per user (index: user_id as str) from a previous decisions record.

    The previous decision's `pd_band`, except where that decision was deferred (its adverse
    action was held back on stale data and must still go ahead once the data is current) or
    where the band id is not one of `policy`'s bands (a renamed band): there the previous band
    is unknown (None) and `decide_lines` applies the band action as on a first decision.
    Scoring and the explanation engine both use this, so a re-run reproduces the decision.
    """
    ids = pd.Index(prev_decisions["user_id"].astype(str))
    if "pd_band" not in prev_decisions.columns:
        return pd.Series([None] * len(ids), index=ids, dtype=object)
    band = prev_decisions["pd_band"].astype(object).to_numpy()
    ok = np.isin(band, [b.id for b in policy.bands]) & _not_deferred(prev_decisions)
    return pd.Series(np.where(ok, band, None), index=ids, dtype=object)


def previous_model_versions(prev_decisions: pd.DataFrame) -> pd.Series:
    """`prev_credit_model_version` per user (index: user_id as str), NaN where unknown.

    Scoring and the explanation engine both pass it to `decide_lines` (the model-update hold).
    """
    ids = pd.Index(prev_decisions["user_id"].astype(str))
    if "credit_model_version" not in prev_decisions.columns:
        return pd.Series(np.nan, index=ids)
    v = pd.to_numeric(prev_decisions["credit_model_version"].astype(object), errors="coerce")
    return pd.Series(v.to_numpy(np.float64), index=ids)


def previous_rules(prev_decisions: pd.DataFrame) -> pd.Series:
    """`prev_rules` per user (index: user_id as str): the previous decision's `rules_fired`.

    None where unknown or where that decision was deferred (its adverse action was held back
    on stale data and must still go ahead). `decide_lines` uses it so that a cap that already
    bound at the previous decision holds the line rather than cutting it again every run.
    """
    ids = pd.Index(prev_decisions["user_id"].astype(str))
    if "rules_fired" not in prev_decisions.columns:
        return pd.Series([None] * len(ids), index=ids, dtype=object)
    rules = prev_decisions["rules_fired"].astype(object).to_numpy()
    ok = ~pd.isna(rules) & _not_deferred(prev_decisions)
    return pd.Series(np.where(ok, rules, None), index=ids, dtype=object)


def _fired_before(scored: pd.DataFrame, rule_id: str) -> np.ndarray:
    """True where the row's `prev_rules` lists `rule_id` (False when unknown or no column)."""
    if "prev_rules" not in scored.columns:
        return np.zeros(len(scored), dtype=bool)
    # a few distinct rule lists among many users: test each distinct one once
    codes, lists = pd.factorize(
        scored["prev_rules"].astype(object).to_numpy(), use_na_sentinel=True
    )
    text = pd.Series(lists, dtype=object).astype(str)
    hit = (";" + text + ";").str.contains(";" + rule_id + ";", regex=False).to_numpy(dtype=bool)
    return np.append(hit, False)[codes]  # code -1 (unknown) -> the appended False


def _model_update_hold(
    scored: pd.DataFrame,
    policy: Policy,
    prev_idx: np.ndarray,
    band_idx: np.ndarray,
    fraud_p: np.ndarray,
) -> np.ndarray:
    """Users whose band would worsen only because the credit model changed: held in their band.

    Held where the policy turns it on, the previous band is known, the band would get worse,
    the credit model version differs from the previous decision's (`prev_credit_model_version`
    vs `credit_model_version`) or the previous decision was already held, the user repaid in
    full in the last 30 days, no evidence column is above its maximum (NaN = no record = no
    evidence) and the fraud model does not flag them. The hold lasts while the user stays so:
    the new model's view applies from the first month with adverse evidence. Without the
    version columns (a caller that does not know them) nothing is held.
    """
    n = len(scored)
    if not policy.model_update_rule_id or not set(MODEL_VERSION_COLUMNS) <= set(scored.columns):
        return np.zeros(n, dtype=bool)
    prev_v = _num(scored, "prev_credit_model_version")
    now_v = _num(scored, "credit_model_version")
    updated = (np.isfinite(prev_v) & (prev_v != now_v)) | _fired_before(
        scored, policy.model_update_rule_id
    )
    clean = np.nan_to_num(_num(scored, REPAID_COLUMN), nan=0.0) == 1
    for col, most in policy.model_update_evidence.items():
        with np.errstate(invalid="ignore"):
            clean &= ~(_num(scored, col) > most)
    clean &= fraud_p < policy.fraud_freeze_p
    return updated & clean & (prev_idx >= 0) & (band_idx > prev_idx)


def _band_index(
    edges: np.ndarray, margin: np.ndarray, prev_idx: np.ndarray, h: float
) -> np.ndarray:
    """Band index per row from the log-odds band edges, with hysteresis `h` for known users.

    A user whose previous band is known (prev_idx >= 0) changes band only when the margin is
    past an edge by more than h: to the worst band reached with h to spare (or the best, when
    the risk fell), else stays. So a PD that wobbles around an edge does not cut the line one
    month and raise it the next. Unknown users (and h = 0) get the plain band.
    """
    band = np.searchsorted(edges, margin, side="left")
    if h <= 0:
        return band
    worse = np.searchsorted(edges + h, margin, side="left")
    better = np.searchsorted(edges - h, margin, side="left")
    sticky = np.where(worse > prev_idx, worse, np.where(better < prev_idx, better, prev_idx))
    return np.where(prev_idx >= 0, sticky, band)


def _prev_band_index(scored: pd.DataFrame, policy: Policy) -> np.ndarray:
    """Index of each row's `prev_band` in the policy's bands; -1 where unknown (NaN/None/"")."""
    n = len(scored)
    if "prev_band" not in scored.columns:
        return np.full(n, -1, dtype=np.int64)
    # a few distinct band ids among many users: look each distinct one up once
    codes, uniques = pd.factorize(scored["prev_band"].astype(object).to_numpy())  # NaN/None: -1
    labels = np.array([str(u) for u in uniques] + [""], dtype=object)  # code -1 -> ""
    lookup = {b.id: i for i, b in enumerate(policy.bands)}
    pos = np.array([lookup.get(v, -1) for v in labels], dtype=np.int64)
    bad = (pos < 0) & (labels != "")
    rows_bad = np.flatnonzero(bad[codes])
    if len(rows_bad):
        raise ValueError(
            f"decide_lines: column prev_band has {len(rows_bad)} row(s) with a band id not in "
            f"policy {policy.version} (bands {list(lookup)}); first: user "
            f"{scored['user_id'].iloc[rows_bad[0]]} prev_band={labels[codes[rows_bad[0]]]!r}. "
            "Pass NaN/None for an unknown previous band."
        )
    return pos[codes]


def decide_lines(
    scored: pd.DataFrame,
    policy: Policy,
    as_of: pd.Timestamp | str,
    max_age_days: dict[str, float] | None = None,
) -> pd.DataFrame:
    """New line, action, fired rules and decision margins for each scored user.

    `scored` needs user_id, prev_line_cny, pd, fraud_p (credit_margin optional: log-odds of pd),
    the fresh_ columns and the ctx_ columns of the regulations active on `as_of`
    (`required_columns`). NaN in a ctx_ column means the rule cannot fire for that user (no
    bureau record, no DTI estimate, no KYC date).

    Optional `prev_band`: the band id of the user's previous decision (`previous_bands`);
    NaN/None/"" = unknown (a first decision). When known, a `lower` band applies its multiplier
    only if it is worse (later in the policy file) than `prev_band`, a `raise` band only if it is
    better (earlier); otherwise the band action is keep and the line stays `prev_line_cny`, so a
    user who stays in a band is not cut (or raised) again each run. A `keep` band keeps the line
    of a user whose previous band is known, so the risk appetite's `line_multiplier` (which
    scales band multipliers) tightens lines that move, never the same user again every run.
    `close` bands act as always, and the band id still fires in `rules_fired`. A risk-appetite shift that moves a
    user into a worse band still lowers. Unknown `prev_band` (or no column): the band action
    always applies, as before. Optional `prev_rules` (`previous_rules`): the previous
    decision's `rules_fired`; a debt-to-income cap that already bound then holds the line
    instead of cutting it again. `max_age_days` overrides the policy's
    per-source staleness limits. The input frame is not changed; the result keeps its index.
    Text columns (action, rules_fired, ...) are categoricals: a million users share a few
    dozen distinct values.
    """
    as_of = pd.Timestamp(as_of)
    limits = policy.max_age_days if max_age_days is None else dict(max_age_days)
    need = ["user_id", "prev_line_cny", "pd", "fraud_p", *required_columns(policy, as_of, limits)]
    if not set(MODEL_VERSION_COLUMNS) <= set(scored.columns):  # no hold possible: no evidence read
        need = [c for c in need if c not in model_update_columns(policy)]
    missing = [c for c in need if c not in scored.columns]
    if missing:
        raise ValueError(f"decide_lines: scored frame lacks column(s) {missing}")
    n = len(scored)
    prev = _num(scored, "prev_line_cny")
    pd_ = _num(scored, "pd")
    fraud_p = _num(scored, "fraud_p")
    margin = _num(scored, "credit_margin") if "credit_margin" in scored.columns else _logit(pd_)
    fired: list[tuple[str, np.ndarray]] = []

    # 1. PD band, with the risk appetite's shifted cut-offs.
    edges = band_cutoffs_logodds(policy, as_of)
    prev_idx = _prev_band_index(scored, policy)
    band_idx = _band_index(edges, margin, prev_idx, policy.band_hysteresis_logodds)
    # 1b. Model-update protection (版本更新): a new model version alone never moves a user who
    # repaid in full and shows no adverse evidence into a worse band.
    protected = _model_update_hold(scored, policy, prev_idx, band_idx, fraud_p)
    band_idx = np.where(protected, prev_idx, band_idx)
    band_act = np.array([ACTIONS.index(b.action) for b in policy.bands], dtype=np.int8)[band_idx]
    mult = np.array([b.multiplier for b in policy.bands])[band_idx]
    # A line moves when the risk moves: no repeated cut (or raise) for staying in a band.
    # A keep band holds a known user's line too: otherwise a risk appetite's line multiplier
    # (which scales the band multipliers) would cut every keep-band user again on every run.
    held = (prev_idx >= 0) & (
        ((band_act == LOWER) & (band_idx <= prev_idx))
        | ((band_act == RAISE) & (band_idx >= prev_idx))
        | (band_act == KEEP)
    )
    band_act = np.where(held, KEEP, band_act).astype(np.int8)
    app = active_appetite(policy, as_of)
    line_mult = float(app.params.get("line_multiplier", 1.0)) if app else 1.0
    mult = mult * line_mult  # the line matrix scaled by the risk appetite
    for i, b in enumerate(policy.bands):
        fired.append((b.id, band_idx == i))
    if policy.model_update_rule_id:
        fired.append((policy.model_update_rule_id, protected))
    target = np.where(held, prev, prev * mult)

    # 2. Risk appetite: fires where it moved the band, scaled the line or blocked a raise.
    if app is not None:
        base_edges = np.append(_logit([b.pd_max for b in policy.bands[:-1]]), np.inf)
        base_idx = _band_index(base_edges, margin, prev_idx, policy.band_hysteresis_logodds)
        moved = band_idx != base_idx
        blocked = np.zeros(n, dtype=bool)
        if not bool(app.params.get("allow_raise", True)):
            blocked = band_act == RAISE
            target = np.where(blocked, prev, target)
        scaled = (line_mult != 1.0) & (mult > 0) & (prev > 0) & ~held
        fired.append((app.id, moved | blocked | scaled))
    over_max = (target > policy.max_line_cny) & (target > prev)
    target = np.where(over_max, np.maximum(policy.max_line_cny, prev), target)
    fired.append((LINE_MAX_ID, over_max))

    # 3. Regulation caps (never raise a capped user).
    regs = active_regulations(policy, as_of)
    if "multi_lender_cap" in regs:
        rule = regs["multi_lender_cap"]
        with np.errstate(invalid="ignore"):
            hit = _num(scored, "ctx_active_lenders_cnt") >= float(rule.params["max_active_lenders"])
        cap = float(rule.params.get("line_cap_cny", 0.0))
        target = np.where(hit, np.minimum(np.minimum(target, prev), cap), target)
        fired.append((rule.id, hit))
    if "dti_cap" in regs:
        rule = regs["dti_cap"]
        max_dti = float(rule.params["max_dti_ratio"])
        dti = _num(scored, "ctx_dti_ratio")
        with np.errstate(invalid="ignore", divide="ignore"):
            hit = dti > max_dti
            cap = np.where(hit, prev * max_dti / np.where(hit, dti, 1.0), np.inf)
        # The cap scales the previous line and own debt does not fall with the line, so a cap
        # that already bound at the previous decision holds the line (no raise, no new cut)
        # instead of cutting the same user again every run.
        held_cap = hit & _fired_before(scored, rule.id)
        capped = np.minimum(np.minimum(target, prev), cap)
        target = np.where(held_cap, np.minimum(target, prev), np.where(hit, capped, target))
        fired.append((rule.id, hit))

    # 4. Round changed lines down to the step; a small lowered line closes.
    rounded = np.floor(target / policy.step_cny + 1e-9) * policy.step_cny
    rounded = np.where(
        target > prev, np.maximum(rounded, prev), rounded
    )  # a raise never rounds into a cut
    target = np.where(target != prev, rounded, target)
    too_small = (target > 0) & (target < policy.min_line_cny) & (target < prev)
    target = np.where(too_small, 0.0, target)
    fired.append((LINE_MIN_ID, too_small))
    action = np.where(target < prev, LOWER, np.where(target > prev, RAISE, KEEP)).astype(np.int8)
    closing = ((band_act == CLOSE) | too_small) & (target == 0) & (prev > 0)  # 0 stays 0: keep
    action = np.where(closing, CLOSE, action).astype(np.int8)

    # 5. Freezes: expired KYC (regulation) and the fraud model; the line amount is kept, drawing stops.
    freeze = np.zeros(n, dtype=bool)
    if "kyc_expired" in regs:
        rule = regs["kyc_expired"]
        with np.errstate(invalid="ignore"):
            hit = _num(scored, "ctx_kyc_expiry_days") < float(rule.params.get("grace_days", 0))
        freeze |= hit
        fired.append((rule.id, hit))
    fraud_hit = fraud_p >= policy.fraud_freeze_p
    fired.append((policy.fraud_rule_id, fraud_hit))
    freeze |= fraud_hit
    action = np.where(freeze, FREEZE, action).astype(np.int8)
    new_line = np.where(freeze, prev, target)

    # 6. Freshness guard: never an adverse decision on data that is not current.
    stale = stale_mask(scored, limits)
    defer = stale & np.isin(action, [ACTIONS.index(a) for a in policy.adverse_actions])
    action = np.where(defer, DEFER, action).astype(np.int8)
    new_line = np.where(defer, prev, new_line)
    fired.append((policy.freshness_rule_id, defer))

    adverse_cut = adverse_cutoff_logodds(policy, as_of)
    idx = scored.index
    zeros = np.zeros(n, dtype=np.int8)
    return pd.DataFrame(
        {
            "user_id": scored["user_id"],
            "prev_line_cny": prev,
            "new_line_cny": new_line.astype(np.float64),
            "action": _categorical(action, list(ACTIONS), idx),
            "pd": pd_,
            "fraud_p": fraud_p,
            "credit_margin": margin,
            "rules_fired": _join_rules(fired, idx),
            "defer_reason": _categorical(defer.astype(np.int8), ["", DEFER_REASON_EN], idx),
            "defer_reason_zh": _categorical(defer.astype(np.int8), ["", DEFER_REASON_ZH], idx),
            "policy_version": _categorical(zeros, [policy.version], idx),
            "pd_band": _categorical(band_idx.astype(np.int16), [b.id for b in policy.bands], idx),
            "decision_margin": margin - adverse_cut,
            "fraud_margin": _logit(fraud_p) - float(_logit(policy.fraud_freeze_p)),
        },
        index=idx,
    )
