"""Explaining downgrades exactly: freshness first, then the path old -> new one factor at a time.

For every user whose line was lowered, frozen, closed (or whose adverse decision was deferred)
relative to the previous decision:

1. Freshness. A decision taken on data that is not current (fresh_stale, fresh_sync_lag_flag, a
   source older than the policy allows, or a defer) is a system/data cause before anything else:
   stale data is invisible to any attribution method.
2. The line. The line change is a step function of the PD, the fraud probability and the rules,
   so it is split exactly with Shapley values over a handful of factors by enumerating every
   mix of old and new: regulation rules, the rest of the policy (bands, risk appetite, fraud
   threshold), the model versions, and the data grouped by cause (bureau, own behaviour, fraud
   signals, data freshness). `serving.scoring.policy.decide_lines` is re-run on each mix. The top cause
   is the factor that took away the largest share of the line.
3. The margin. In log-odds, the credit decision margin (credit log-odds minus the adverse PD
   cut-off) moves old -> new by exact steps: data under the old model (split over features with
   exact baseline Shapley values, the old snapshot the only background row; see
   `serving.explain.attribution`), then the model version on the new snapshot, then the policy cut-off.
   The fraud margin is split the same way. These rank the reasons inside each cause.

Reasons come from `features.metadata` (REASONS, zh and en) plus the rule, model and policy
reasons defined here. Recourse is the smallest change of one actionable model input that brings
the credit margin back under the cut-off, the date an adverse record leaves its window, or the
step a rule or a reviewer needs. Nothing here reads personal data: user ids are pseudonymous.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.contracts import NO_LINE_ACTIONS
from serving.explain.attribution import CompiledTrees, attribute, compile_booster, raw_margin

log = logging.getLogger(__name__)

CAUSES = (
    "system_data",
    "fraud",
    "regulation",
    "policy",
    "model_update",
    "risk_bureau",
    "risk_behaviour",
)
CAUSE_TEXT = {
    "risk_bureau": ("风险：征信（其他机构）", "risk: credit bureau (other lenders)"),
    "risk_behaviour": ("风险：本产品使用与还款行为", "risk: own behaviour on this line"),
    "fraud": ("反欺诈标记", "fraud flag"),
    "model_update": ("模型更新", "model update"),
    "policy": ("政策 / 风险偏好调整", "policy / risk appetite"),
    "regulation": ("监管规则", "regulation"),
    "system_data": ("系统 / 数据未及时更新", "system / data not current"),
}
WHO_FIXES = {
    "risk_bureau": "user",
    "risk_behaviour": "user",
    "fraud": "reviewer",
    "model_update": "model owner",
    "policy": "risk owner",
    "regulation": "compliance",
    "system_data": "engineering",
}
# Factors of the line-space enumeration, in tie-break order.
FACTORS = (
    "regulation",
    "policy",
    "model_update",
    "risk_bureau",
    "risk_behaviour",
    "fraud",
    "system_data",
)
DATA_FACTORS = ("risk_bureau", "risk_behaviour", "fraud", "system_data", "regulation_data")
MAX_REASONS = 4
# Demographic bands: never shown in a report, never a reason (and no rule reads them).
NOT_REPORTED = frozenset({"ctx_age_band", "ctx_income_band", "ctx_city_tier"})
# Context columns the line policy's rules read.
RULE_CONTEXT = ("ctx_active_lenders_cnt", "ctx_dti_ratio", "ctx_kyc_expiry_days")
_WINDOW = re.compile(r"_(\d+)(d|m)$")


@dataclass(frozen=True)
class PreparedModel:
    """A scoring model with its trees compiled once for attribution."""

    name: str
    version: int
    features: tuple[str, ...]
    calib_a: float
    calib_b: float
    trees: CompiledTrees

    def margin(self, x, n_threads: int = 1) -> np.ndarray:
        """Calibrated log-odds (a * raw margin + b) of a frame or an array in `features` order."""
        return self.calib_a * raw_margin(self.trees, x, n_threads=n_threads) + self.calib_b


def prepare_model(model: Any) -> PreparedModel:
    """Compile a LoadedModel-like object (name, version, features, booster, calib_a, calib_b)."""
    feats = tuple(model.features)
    return PreparedModel(
        name=str(getattr(model, "name", "")),
        version=int(model.version),
        features=feats,
        calib_a=float(getattr(model, "calib_a", 1.0)),
        calib_b=float(getattr(model, "calib_b", 0.0)),
        trees=compile_booster(model.booster, list(feats)),
    )


@dataclass
class Explanations:
    """Flat records (one row per explained user) and the nested detail each report draws."""

    records: pd.DataFrame
    details: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- metadata helpers


def _meta():
    from features.metadata import FEATURES, REASONS

    return FEATURES, REASONS


def column_cause(name: str, features_meta: dict, reasons: dict) -> str:
    """The data factor a column belongs to (a cause category, or regulation_data for KYC)."""
    if name == "ctx_kyc_expiry_days":
        return "regulation_data"  # ages by itself; the KYC rule is a regulation
    if name.startswith("fresh_"):
        return "system_data"
    meta = features_meta.get(name)
    if meta is None:
        raise ValueError(
            f"explain: column {name!r} has no entry in features.metadata.FEATURES; add one"
        )
    return reasons[meta.reason].cause


def _reason_text(code: str, reasons: dict) -> tuple[str, str, str]:
    r = reasons[code]
    return r.cause, r.text_zh, r.text_en


def format_value(value: float, unit: str, fine: bool = False) -> str:
    """Human value with its unit (no personal data: amounts and counts only); `fine` adds
    digits (for two values that differ but would print the same).

    >>> format_value(1234.5, "CNY"), format_value(0.256, "ratio"), format_value(float("nan"), "days")
    ('¥1,234', '0.26', 'none')
    >>> format_value(0.1134, "ratio", fine=True), format_value(1234.5, "CNY", fine=True)
    ('0.1134', '¥1,234.50')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    u = unit.lower()
    if u == "cny":
        return f"¥{value:,.2f}" if fine else f"¥{value:,.0f}"
    if u == "ratio":
        return f"{value:.4f}" if fine else f"{value:.2f}"
    if u in ("count", "bucket", "flag", "band", "months", "days"):
        if fine:
            text = f"{value:.3f}"
        else:
            text = f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
        return text + ("" if u in ("count", "bucket", "flag", "band") else f" {u}")
    return f"{value:.6g}" if fine else f"{value:.3g}"


def before_after_text(before: float, after: float, unit: str) -> dict[str, str]:
    """`before` / `after` formatted; with more digits when they differ but would print the same
    (a reason must not read "0.11 (unchanged)" for 0.1063 -> 0.1119)."""
    b, a = format_value(before, unit), format_value(after, unit)
    if b == a and before != after and not (math.isnan(before) or math.isnan(after)):
        b, a = format_value(before, unit, fine=True), format_value(after, unit, fine=True)
    return {"before": b, "after": a}


# ----------------------------------------------------------------------------- policy helpers


def pin_policy(policy, as_of: pd.Timestamp):
    """The policy with only the rules active on `as_of`, made effective forever.

    Pinned policies can be mixed (regulations of one, the rest of another) and evaluated on any date.
    """
    from serving.scoring.policy import active_appetite, active_regulations

    forever = pd.Timestamp("1900-01-01")
    regs = tuple(
        dataclasses.replace(r, effective_from=forever)
        for _, r in sorted(active_regulations(policy, as_of).items())
    )
    app = active_appetite(policy, as_of)
    apps = (dataclasses.replace(app, effective_from=forever),) if app is not None else ()
    return dataclasses.replace(policy, regulations=regs, appetite=apps)


def _mix_policy(pin_old, pin_new, regulation_new: bool, policy_new: bool):
    base = pin_new if policy_new else pin_old
    regs = (pin_new if regulation_new else pin_old).regulations
    return dataclasses.replace(base, regulations=regs)


# ----------------------------------------------------------------------------- core


def usable_lines(previous: pd.DataFrame, took_effect: pd.DataFrame | None = None) -> pd.Series:
    """The line each user could draw on after `previous` (index: user_id as str).

    The line, or 0 when frozen or closed. A defer holds the state before it (a frozen user stays
    frozen while a decision waits for current data), so for a deferred user it is the usable
    line of `took_effect`'s row for that user (the latest earlier decision that was not a defer,
    `serving.explain.run.last_took_effect`); the defer's own line where there is none.
    """

    def usable(frame: pd.DataFrame) -> pd.Series:
        f = frame.assign(user_id=frame["user_id"].astype(str)).drop_duplicates("user_id")
        f = f.set_index("user_id")
        line = f["new_line_cny"].to_numpy(np.float64)
        return pd.Series(np.where(f["action"].isin(NO_LINE_ACTIONS), 0.0, line), index=f.index)

    out = usable(previous)
    if took_effect is not None and len(took_effect):
        held = usable(took_effect)
        deferred = set(
            previous.loc[previous["action"].astype(str).eq("defer"), "user_id"].astype(str)
        )
        held = held[held.index.isin(deferred)]
        out.loc[held.index] = held
    return out


def select_downgrades(
    new_decisions: pd.DataFrame,
    old_decisions: pd.DataFrame,
    usable_before: pd.Series | None = None,
) -> pd.DataFrame:
    """Users in both decision sets whose usable line fell, or whose adverse decision was deferred.

    The usable line is the line, or 0 when frozen or closed: a freeze or close after a keep counts,
    a user frozen both times does not (nothing new happened to explain). `usable_before` (from
    `usable_lines`, with the decisions before `old_decisions`) gives the line a deferred previous
    decision held: a user frozen, then deferred, then frozen again was never unfrozen. Without
    it a defer counts as holding its own line.
    """
    need = ["user_id", "new_line_cny", "action"]
    for name, df in (("new decisions", new_decisions), ("previous decisions", old_decisions)):
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise ValueError(f"explain: {name} lack column(s) {missing}")
    if usable_before is None:
        usable_before = usable_lines(old_decisions)
    new = new_decisions.assign(user_id=new_decisions["user_id"].astype(str))
    new = new[new["user_id"].isin(usable_before.index)]
    before = usable_before.loc[new["user_id"]].to_numpy(np.float64)
    usable_after = np.where(
        new["action"].isin(NO_LINE_ACTIONS), 0.0, new["new_line_cny"].to_numpy(np.float64)
    )
    adverse = (usable_after < before - 0.5) | (new["action"] == "defer").to_numpy()
    return new[adverse].sort_values("user_id").reset_index(drop=True)


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df.columns:
        return np.full(len(df), np.nan)
    return df[col].to_numpy(dtype=np.float64, na_value=np.nan)


def _shapley_from_subsets(values: np.ndarray, k: int) -> np.ndarray:
    """Exact Shapley values from v(S) for all 2^k subsets (bit i of the column = factor i new)."""
    n = values.shape[0]
    phi = np.zeros((n, k))
    fact = [math.factorial(i) for i in range(k + 1)]
    for i in range(k):
        bit = 1 << i
        for s in range(1 << k):
            if s & bit:
                continue
            size = bin(s).count("1")
            w = fact[size] * fact[k - size - 1] / fact[k]
            phi[:, i] += w * (values[:, s | bit] - values[:, s])
    return phi


def _effective_line(decided: pd.DataFrame) -> np.ndarray:
    """Line the user can draw on: a freeze or close leaves none; a defer keeps the previous line."""
    line = decided["new_line_cny"].to_numpy(np.float64)
    act = decided["action"].to_numpy().astype(str)
    return np.where(np.isin(act, NO_LINE_ACTIONS), 0.0, line)


@dataclass(frozen=True)
class _Batch:
    """The inputs every step of one `explain_downgrades` call reads, aligned on the explained users.

    Rows follow `ids` (the adverse new decisions, sorted by user_id); `xn`/`xo` (and `nv`/`ov`,
    their arrays) are the new and old snapshots in `columns` order.
    """

    as_of: pd.Timestamp
    prev_as_of: pd.Timestamp
    deferred_at: pd.Timestamp | None  # see `explain_downgrades`
    ids: np.ndarray
    down: pd.DataFrame  # the adverse new decisions
    old_dec: pd.DataFrame  # their previous decisions, index user_id
    xn: pd.DataFrame
    xo: pd.DataFrame
    nv: np.ndarray
    ov: np.ndarray
    columns: list[str]
    col_cause: dict[str, str]
    models: dict[str, PreparedModel]  # credit_old, credit_new, fraud_old, fraud_new
    policy_old: Any
    policy_new: Any
    limits: dict[str, float]  # source age limits (days) of the freshness test
    rule_ctx: dict[str, str]  # the ctx_ column each regulation reads
    fm: dict
    rs: dict
    n_threads: int


@dataclass(frozen=True)
class _LineSplit:
    """Step 2: the usable-line change split over FACTORS."""

    phi: np.ndarray  # (users, FACTORS): Shapley value of each factor, CNY
    continuing: np.ndarray  # the change with nothing new: the old state decided again now
    reproduced: np.ndarray  # the all-new mix gave the recorded decision


@dataclass(frozen=True)
class _Margins:
    """Step 3: credit (m) and fraud (g) log-odds margins: 0 old, 1 new data under the old model,
    2 new data and model; phi: exact Shapley values of the data step over the old model's inputs."""

    m0: np.ndarray
    m1: np.ndarray
    m2: np.ndarray
    phi_credit: np.ndarray
    g0: np.ndarray
    g1: np.ndarray
    g2: np.ndarray
    phi_fraud: np.ndarray
    cut_old: float  # adverse PD cut-off, log-odds
    cut_new: float
    fz_old: float  # fraud freeze threshold, log-odds
    fz_new: float
    add_err_credit: np.ndarray  # |sum(phi) - data step|
    add_err_fraud: np.ndarray
    unchanged_credit: np.ndarray  # largest |phi| of a feature that did not change
    unchanged_fraud: np.ndarray


@dataclass(frozen=True)
class _Found:
    """What steps 1-3 found for the batch, and the per-user inputs of step 4."""

    # steps 1-3
    stale: np.ndarray
    line: _LineSplit
    margins: _Margins
    # step 4
    level: np.ndarray  # explained by level (nothing new outweighs the continuing drop)
    phi_level_credit: np.ndarray  # the new models against a user in good standing
    phi_level_fraud: np.ndarray
    recourse: dict[str, Any]
    changed: np.ndarray  # (users, columns): the value moved
    new_rules: list[set[str]]
    old_rules: list[set[str]]
    # the decisions and snapshot as recorded
    old_rows: list[dict[str, Any]]
    new_rows: list[dict[str, Any]]
    fresh_cols: list[str]
    fresh_vals: np.ndarray  # (users, fresh_cols)
    repaid: np.ndarray
    prev_line: np.ndarray
    new_line: np.ndarray
    actions: np.ndarray
    prev_actions: np.ndarray


@dataclass(frozen=True)
class _ReasonCase:
    """One user, as `_reason_items` reads them (the batch holds the snapshots and metadata)."""

    i: int  # row in the batch
    cause: str
    shares: dict[str, float]  # line Shapley value per factor
    cited: np.ndarray  # the columns a reason may cite: the changed ones (all, explained by level)
    credit: PreparedModel  # the model whose attributions rank the data reasons
    phi_credit: np.ndarray
    fraud: PreparedModel
    phi_fraud: np.ndarray
    model_step_neg: float  # credit log-odds, new data: old model minus new model
    policy_step: float  # adverse cut-off, old minus new (log-odds)
    rules_new: set[str]
    stale: bool


def explain_downgrades(
    new_decisions: pd.DataFrame,
    old_decisions: pd.DataFrame,
    new_features: pd.DataFrame,
    old_features: pd.DataFrame,
    credit_old: Any,
    credit_new: Any,
    fraud_old: Any,
    fraud_new: Any,
    policy_old: Any,
    policy_new: Any,
    as_of: pd.Timestamp | str,
    prev_as_of: pd.Timestamp | str,
    users: list[str] | None = None,
    features_meta: dict | None = None,
    reasons: dict | None = None,
    max_age_days: dict[str, float] | None = None,
    n_threads: int = 2,
    usable_before: pd.Series | None = None,
    deferred_at: pd.Timestamp | str | None = None,
) -> Explanations:
    """Explain every adverse decision in `new_decisions` against `old_decisions`.

    Models are LoadedModel-like (or already `prepare_model`-ed); policies are
    `serving.scoring.policy.Policy` objects, evaluated on their own as-of dates (`prev_as_of` for the old).
    `usable_before`: see `select_downgrades` (the line a deferred previous decision held).
    `deferred_at`: set when `old_decisions` is the last decision that took effect and the
    decision(s) after it, up to this date, were deferred: the new decision went ahead from the
    deferred record, so it knew no previous band or rules (as scoring did), and the records say so.
    """
    fm, rs = _meta() if features_meta is None or reasons is None else (features_meta, reasons)
    fm = features_meta or fm
    rs = reasons or rs
    as_of = pd.Timestamp(as_of)
    prev_as_of = pd.Timestamp(prev_as_of)
    models = _prepare_models(credit_old, credit_new, fraud_old, fraud_new)
    down = select_downgrades(new_decisions, old_decisions, usable_before)
    if users is not None:
        down = down[down["user_id"].isin([str(u) for u in users])].reset_index(drop=True)
    n = len(down)
    log.info("explaining %d adverse decisions at %s against %s", n, as_of.date(), prev_as_of.date())
    if n == 0:
        return Explanations(
            records=pd.DataFrame({"user_id": pd.Series(dtype=str)}),
            details=[],
            summary={"explained": 0},
        )
    ids = down["user_id"].to_numpy()
    old_dec = (
        old_decisions.assign(user_id=old_decisions["user_id"].astype(str))
        .set_index("user_id")
        .loc[ids]
    )
    xn_all = _rows_of(new_features, ids, "new feature snapshot")
    xo_all = _rows_of(old_features, ids, "old feature snapshot")
    columns = _explained_columns(models, xn_all, xo_all, (policy_old, policy_new))
    xn = xn_all[columns].astype(np.float64)
    xo = xo_all[columns].astype(np.float64)
    b = _Batch(
        as_of=as_of,
        prev_as_of=prev_as_of,
        deferred_at=None if deferred_at is None else pd.Timestamp(deferred_at),
        ids=ids,
        down=down,
        old_dec=old_dec,
        xn=xn,
        xo=xo,
        nv=xn.to_numpy(),
        ov=xo.to_numpy(),
        columns=columns,
        col_cause={c: column_cause(c, fm, rs) for c in columns},
        models=models,
        policy_old=policy_old,
        policy_new=policy_new,
        limits=policy_new.max_age_days if max_age_days is None else max_age_days,
        rule_ctx=_rule_inputs(policy_old, policy_new),
        fm=fm,
        rs=rs,
        n_threads=n_threads,
    )
    found = _find(b, xn_all, new_features, new_decisions)
    records, details = [], []
    for i in range(n):
        row, detail = _explain_user(b, found, i)
        records.append(row)
        details.append(detail)
    frame = pd.DataFrame.from_records(records)
    summary = summarise(frame)
    return Explanations(records=frame, details=details, summary=summary)


def _prepare_models(credit_old, credit_new, fraud_old, fraud_new) -> dict[str, PreparedModel]:
    """The four models compiled; the same object given twice is compiled (and scored) once."""
    prepared: dict[int, PreparedModel] = {}
    models = {}
    for k, m in (
        ("credit_old", credit_old),
        ("credit_new", credit_new),
        ("fraud_old", fraud_old),
        ("fraud_new", fraud_new),
    ):
        if id(m) not in prepared:
            prepared[id(m)] = m if isinstance(m, PreparedModel) else prepare_model(m)
        models[k] = prepared[id(m)]
    return models


def _rows_of(frame: pd.DataFrame, ids: np.ndarray, what: str) -> pd.DataFrame:
    """The rows of `frame` for `ids`, in that order (index: user_id as str)."""
    f = (
        frame.assign(user_id=frame["user_id"].astype(str))
        .drop_duplicates("user_id")
        .set_index("user_id")
    )
    absent = [u for u in ids if u not in f.index]
    if absent:
        raise ValueError(
            f"explain: {what} has no row for {len(absent)} explained user(s) (first: {absent[0]})"
        )
    return f.loc[ids]


def _explained_columns(
    models: dict[str, PreparedModel], xn_all: pd.DataFrame, xo_all: pd.DataFrame, policies=()
) -> list[str]:
    """Every model input, then the reportable ctx_/fresh_ columns both snapshots have, then the
    columns the policies' model-update hold reads (its evidence: data like any other)."""
    from serving.scoring.policy import model_update_columns

    model_cols = sorted({c for m in models.values() for c in m.features})
    hold_cols = sorted(
        {c for p in policies for c in model_update_columns(p)}
        & set(xn_all.columns)
        & set(xo_all.columns)
    )
    ctx_cols = sorted(
        c
        for c in xn_all.columns
        if (c.startswith("ctx_") or c.startswith("fresh_"))
        and c in xo_all.columns
        and c not in NOT_REPORTED
    )
    columns = [c for c in dict.fromkeys(model_cols + ctx_cols + hold_cols)]
    for c in model_cols:
        for frame, what in ((xn_all, "new"), (xo_all, "old")):
            if c not in frame.columns:
                raise ValueError(f"explain: {what} feature snapshot lacks model input column {c!r}")
    return columns


def _rule_inputs(policy_old, policy_new) -> dict[str, str]:
    """The ctx_ column each regulation reads, so a regulation reason cites its own input."""
    from serving.scoring.policy import REGULATION_KINDS

    return {
        r.id: REGULATION_KINDS[r.kind][1]
        for pol in (policy_old, policy_new)
        for r in pol.regulations
        if r.kind in REGULATION_KINDS
    }


def _find(
    b: _Batch, xn_all: pd.DataFrame, new_features: pd.DataFrame, new_decisions: pd.DataFrame
) -> _Found:
    """Steps 1-3 for the whole batch, and what step 4 reads per user.

    `xn_all`: the explained users' rows of `new_features` (every column, in batch order).
    """
    from serving.scoring.policy import stale_mask

    n = len(b.ids)
    # --- 1. Freshness first.
    # The same test the scoring guard applies (`serving.scoring.policy.stale_mask`; a payment stuck in a
    # sync incident is caught by the features' fresh_sync_lag_flag), plus any deferred decision.
    stale = stale_mask(b.xn.reset_index(), b.limits) | (b.down["action"].to_numpy() == "defer")
    # --- 2. Line-space Shapley over factors, by enumerating every old/new mix.
    line = _split_line(b)
    # --- 3. Log-odds margins, step by step, and exact Shapley over features for the data steps.
    mg = _margin_steps(b)
    # --- 4. Per user: cause, reasons, recourse (`_explain_user`); here what it reads.
    # Back under the cut-off by the band hysteresis: the next decision knows the user's band.
    recourse = _recourse_search(
        b.models["credit_new"],
        b.xn,
        b.xo,
        mg.cut_new - b.policy_new.band_hysteresis_logodds,
        b.fm,
        b.n_threads,
    )
    new_rules, old_rules = _rules_fired(b)
    # A user whose line falls although nothing changed (someone who stays in a "lower" band is
    # lowered again each month) is explained by level: baseline Shapley of the new model against a
    # reference row in good standing (feature medians of users kept or raised at this as-of).
    # The part of the drop that happens with nothing new (the old state, decided again now, is
    # already lowered: the user stays in a lowering band). When it outweighs every factor, the
    # downgrade is explained by level, like one where nothing changed at all.
    level = (
        (np.abs(line.phi).sum(axis=1) < 1e-9)
        | (-line.continuing > (-line.phi).max(axis=1, initial=0.0))
    ) & ~stale
    phi_level_c, phi_level_f = _level_attributions(b, level, new_features, new_decisions)
    fresh_cols = sorted(c for c in xn_all.columns if c.startswith("fresh_"))
    return _Found(
        stale=stale,
        line=line,
        margins=mg,
        level=level,
        phi_level_credit=phi_level_c,
        phi_level_fraud=phi_level_f,
        recourse=recourse,
        changed=~_same(b.nv, b.ov),
        new_rules=new_rules,
        old_rules=old_rules,
        old_rows=b.old_dec.reset_index().to_dict("records"),
        new_rows=b.down.to_dict("records"),
        fresh_cols=fresh_cols,
        fresh_vals=(
            xn_all[fresh_cols].to_numpy(dtype=np.float64, na_value=np.nan)
            if fresh_cols
            else np.zeros((n, 0))
        ),
        repaid=_num(xn_all, "ctx_repaid_in_full_30d") == 1,
        prev_line=_num(b.down, "prev_line_cny"),
        new_line=_num(b.down, "new_line_cny"),
        actions=b.down["action"].to_numpy().astype(str),
        prev_actions=b.old_dec["action"].to_numpy().astype(str),
    )


def _rules_fired(b: _Batch) -> tuple[list[set[str]], list[set[str]]]:
    """The rules each new decision fired, and those its previous decision applied."""
    n = len(b.ids)
    new_rules = [
        set(filter(None, str(r).split(";")))
        for r in b.down.get("rules_fired", pd.Series([""] * n)).fillna("")
    ]
    # A deferred decision applied none of its rules (they were held back), so every rule the
    # decision that goes ahead now fires is new.
    old_rules = [
        set() if act == "defer" else set(filter(None, str(r).split(";")))
        for r, act in zip(
            b.old_dec.get("rules_fired", pd.Series([""] * n, index=b.old_dec.index)).fillna(""),
            b.old_dec["action"].astype(str),
            strict=True,
        )
    ]
    return new_rules, old_rules


def _level_attributions(
    b: _Batch, level: np.ndarray, new_features: pd.DataFrame, new_decisions: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Baseline Shapley values of the new credit and fraud models for the users explained by
    level, against a reference row in good standing (zero for the others)."""
    n = len(b.ids)
    c_new, f_new = b.models["credit_new"], b.models["fraud_new"]
    phi_level_c = np.zeros((n, len(c_new.features)))
    phi_level_f = np.zeros((n, len(f_new.features)))
    if level.any():
        for mdl, out_phi in ((c_new, phi_level_c), (f_new, phi_level_f)):
            ref = _good_standing(new_features, new_decisions, mdl.features)
            rows_ = b.xn[list(mdl.features)].to_numpy()[level]
            out_phi[level] = mdl.calib_a * attribute(
                mdl.trees, rows_, np.repeat(ref[None, :], len(rows_), axis=0), b.n_threads
            )
    return phi_level_c, phi_level_f


def _split_line(b: _Batch) -> _LineSplit:
    """Step 2: exact Shapley values of the usable-line change over FACTORS.

    Every mix of old and new of the factors that changed is decided again by
    `serving.scoring.policy.decide_lines`; the all-new mix must give the recorded decision.
    """
    from serving.scoring.policy import (
        decide_lines,
        previous_bands,
        previous_model_versions,
        previous_rules,
    )

    n = len(b.ids)
    prev_line = _num(b.down, "prev_line_cny")
    # The band the recorded new decision compared against (scoring passes the previous
    # decision's band): every mix carries it, so the all-new mix reproduces the decision.
    if b.deferred_at is None:
        prev_band = previous_bands(b.old_dec.reset_index(), b.policy_new).to_numpy()
        prev_rules = previous_rules(b.old_dec.reset_index()).to_numpy()
        prev_version = previous_model_versions(b.old_dec.reset_index()).to_numpy()
    else:  # scoring compared against the deferred record: band and rules unknown
        prev_band = np.full(n, None, dtype=object)
        prev_rules = np.full(n, None, dtype=object)
        prev_version = np.full(n, np.nan)  # (no band known: nothing can be held)
    pin_old = pin_policy(b.policy_old, b.prev_as_of)
    pin_new = pin_policy(b.policy_new, b.as_of)
    # Freshness is checked first and can only hold a line back (defer), never cut it: in the
    # mixes the freshness columns always take their new values, so a flag that cleared since the
    # last run (a deferred decision now going ahead) is not blamed for the cut.
    ov_mix = b.ov.copy()
    fresh_idx = [j for j, c in enumerate(b.columns) if b.col_cause[c] == "system_data"]
    ov_mix[:, fresh_idx] = b.nv[:, fresh_idx]
    mix_scores = _mix_scorer(b, ov_mix, pin_old, pin_new)
    active = _active_factors(b, ov_mix, pin_old, pin_new)
    k = len(active)
    values = np.zeros((n, 1 << k))
    full_new = None
    for s in range(1 << k):
        on = {active[i] for i in range(k) if s >> i & 1}
        hs = mix_scores(on)
        credit = hs["credit_new" if "model_update" in on else "credit_old"]
        fraud = hs["fraud_new" if "model_update" in on else "fraud_old"]
        pol = _mix_policy(pin_old, pin_new, "regulation" in on, "policy" in on)
        scored = pd.DataFrame(
            {
                "user_id": b.ids,
                "prev_line_cny": prev_line,
                # (a band id the mixed-in policy lacks counts as unknown)
                "prev_band": np.where(
                    np.isin(prev_band, [band.id for band in pol.bands]), prev_band, None
                ),
                "prev_rules": prev_rules,
                # the model-update hold compares the mix's credit model with the previous one
                "prev_credit_model_version": prev_version,
                "credit_model_version": float(
                    b.models["credit_new" if "model_update" in on else "credit_old"].version
                ),
                "credit_margin": credit,
                "pd": 1.0 / (1.0 + np.exp(-credit)),
                "fraud_p": 1.0 / (1.0 + np.exp(-fraud)),
                **hs["rule_cols"],
            }
        )
        decided = decide_lines(scored, pol, b.as_of, b.limits)
        values[:, s] = _effective_line(decided)
        if s == (1 << k) - 1:
            full_new = decided
    line_phi = np.zeros((n, len(FACTORS)))
    if k:
        line_phi[:, [FACTORS.index(f) for f in active]] = _shapley_from_subsets(values, k)
    reproduced = (
        np.abs(full_new["new_line_cny"].to_numpy() - _num(b.down, "new_line_cny")) < 0.5
    ) & (full_new["action"].to_numpy().astype(str) == b.down["action"].to_numpy().astype(str))
    if not reproduced.all():
        log.warning(
            "explain: %d of %d decisions were not reproduced by re-running the policy on the "
            "recorded models and snapshot (different models or policy file?)",
            int((~reproduced).sum()),
            n,
        )
    return _LineSplit(phi=line_phi, continuing=values[:, 0] - prev_line, reproduced=reproduced)


def _mix_scorer(b: _Batch, ov_mix: np.ndarray, pin_old, pin_new):
    """A function from the factors taken new to the model margins and rule inputs of that mix
    (each data mix scored once)."""
    from serving.scoring.policy import required_columns

    pos = {c: j for j, c in enumerate(b.columns)}
    model_idx = {key: [pos[c] for c in m.features] for key, m in b.models.items()}
    rule_cols = sorted(
        set(required_columns(pin_old, b.as_of, b.limits))
        | set(required_columns(pin_new, b.as_of, b.limits))
    )
    for c in rule_cols:
        if c not in pos:
            raise ValueError(f"explain: the policy reads {c!r}, which the feature snapshots lack")
    hybrid_scores: dict[int, dict[str, Any]] = {}

    def scores(on: set[str]) -> dict[str, Any]:
        dmask = sum(
            1 << i
            for i, key in enumerate(DATA_FACTORS)
            if (key in on) or (key == "regulation_data" and "regulation" in on)
        )
        # Scores of the snapshot that takes the data groups in `dmask` new and the rest old.
        if dmask not in hybrid_scores:
            chosen = {DATA_FACTORS[i] for i in range(len(DATA_FACTORS)) if dmask >> i & 1}
            take_new = np.array([b.col_cause[c] in chosen for c in b.columns])
            hyb = np.where(take_new[None, :], b.nv, ov_mix)
            margins: dict[int, np.ndarray] = {}
            for key, m in b.models.items():
                if id(m) not in margins:
                    margins[id(m)] = m.margin(hyb[:, model_idx[key]], n_threads=b.n_threads)
            hybrid_scores[dmask] = {
                "rule_cols": {c: hyb[:, pos[c]] for c in rule_cols},
                **{key: margins[id(m)] for key, m in b.models.items()},
            }
        return hybrid_scores[dmask]

    return scores


def _active_factors(b: _Batch, ov_mix: np.ndarray, pin_old, pin_new) -> list[str]:
    """The FACTORS that changed between old and new, in FACTORS order."""
    # A factor that did not change is a dummy player (Shapley value 0): leave it out of the mixes.
    changed_cols = ~_same(b.nv, ov_mix)
    moved = {
        key: bool(changed_cols[:, [b.col_cause[c] == key for c in b.columns]].any())
        for key in DATA_FACTORS
    }
    plain = dict(version="", digest="", regulations=())
    models = b.models
    return [
        f
        for f in FACTORS
        if (
            f == "regulation"
            and (pin_old.regulations != pin_new.regulations or moved["regulation_data"])
        )
        or (
            f == "policy"
            and dataclasses.replace(pin_old, **plain) != dataclasses.replace(pin_new, **plain)
        )
        or (
            f == "model_update"
            and (
                _model_key(models["credit_old"]) != _model_key(models["credit_new"])
                or _model_key(models["fraud_old"]) != _model_key(models["fraud_new"])
            )
        )
        or moved.get(f, False)
    ]


def _margin_steps(b: _Batch) -> _Margins:
    """Step 3: the credit and fraud margins old -> new data -> new model, and the data step split
    over features (exact baseline Shapley, the old snapshot the background row)."""
    from serving.scoring.policy import adverse_cutoff_logodds

    xn, xo, nt = b.xn, b.xo, b.n_threads
    c_old, c_new = b.models["credit_old"], b.models["credit_new"]
    f_old, f_new = b.models["fraud_old"], b.models["fraud_new"]
    m0 = c_old.margin(xo[list(c_old.features)], nt)
    m1 = c_old.margin(xn[list(c_old.features)], nt)
    m2 = c_new.margin(xn[list(c_new.features)], nt)
    phi_credit = c_old.calib_a * attribute(
        c_old.trees, xn[list(c_old.features)], xo[list(c_old.features)], nt
    )
    g0 = f_old.margin(xo[list(f_old.features)], nt)
    g1 = f_old.margin(xn[list(f_old.features)], nt)
    g2 = f_new.margin(xn[list(f_new.features)], nt)
    phi_fraud = f_old.calib_a * attribute(
        f_old.trees, xn[list(f_old.features)], xo[list(f_old.features)], nt
    )
    p_old, p_new = b.policy_old, b.policy_new
    same_c = _same(xn[list(c_old.features)].to_numpy(), xo[list(c_old.features)].to_numpy())
    same_f = _same(xn[list(f_old.features)].to_numpy(), xo[list(f_old.features)].to_numpy())
    return _Margins(
        m0=m0,
        m1=m1,
        m2=m2,
        phi_credit=phi_credit,
        g0=g0,
        g1=g1,
        g2=g2,
        phi_fraud=phi_fraud,
        cut_old=adverse_cutoff_logodds(p_old, b.prev_as_of),
        cut_new=adverse_cutoff_logodds(p_new, b.as_of),
        fz_old=float(np.log(p_old.fraud_freeze_p) - np.log1p(-p_old.fraud_freeze_p)),
        fz_new=float(np.log(p_new.fraud_freeze_p) - np.log1p(-p_new.fraud_freeze_p)),
        add_err_credit=np.abs(phi_credit.sum(axis=1) - (m1 - m0)),
        add_err_fraud=np.abs(phi_fraud.sum(axis=1) - (g1 - g0)),
        unchanged_credit=np.where(same_c, np.abs(phi_credit), 0.0).max(axis=1, initial=0.0),
        unchanged_fraud=np.where(same_f, np.abs(phi_fraud), 0.0).max(axis=1, initial=0.0),
    )


def _explain_user(b: _Batch, f: _Found, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Step 4 for one user: cause, reasons, recourse; the flat record and the report's detail."""
    mg = f.margins
    c_old, c_new = b.models["credit_old"], b.models["credit_new"]
    f_old, f_new = b.models["fraud_old"], b.models["fraud_new"]
    shares = {FACTORS[j]: float(f.line.phi[i, j]) for j in range(len(FACTORS))}
    cause = _cause(b, f, i)
    level = f.level[i]
    case = _ReasonCase(
        i=i,
        cause=cause,
        shares=shares,
        cited=f.changed[i] | level,
        credit=c_new if level else c_old,
        phi_credit=f.phi_level_credit[i] if level else mg.phi_credit[i],
        fraud=f_new if level else f_old,
        phi_fraud=f.phi_level_fraud[i] if level else mg.phi_fraud[i],
        model_step_neg=mg.m1[i] - mg.m2[i],
        policy_step=mg.cut_old - mg.cut_new,
        # a continuing downgrade blamed on a rule that already fired lists that rule too
        rules_new=f.new_rules[i] if cause == "regulation" else f.new_rules[i] - f.old_rules[i],
        stale=f.stale[i],
    )
    items = _reason_items(b, case)
    reasons_top = items[:MAX_REASONS]
    rec = _recourse_for(b, f.recourse, i, cause, f.changed[i], f.new_rules[i])
    row = _record(b, f, case, rec)
    for r in range(MAX_REASONS):
        it = reasons_top[r] if r < len(reasons_top) else None
        row[f"reason_{r + 1}_code"] = it["code"] if it else None
        row[f"reason_{r + 1}_cause"] = it["cause"] if it else None
        row[f"reason_{r + 1}_en"] = it["text_en"] if it else None
        row[f"reason_{r + 1}_zh"] = it["text_zh"] if it else None
        row[f"reason_{r + 1}_weight"] = float(it["weight"]) if it else None
    detail = {
        **{kk: v for kk, v in row.items() if not kk.startswith("reason_")},
        "deferred_at": b.deferred_at,  # None, not NaT, for the page's test
        "reasons": reasons_top,
        "other_reasons": items[MAX_REASONS:],
        "waterfall": _waterfall(mg, i, c_old, b.fm),
        "fraud_waterfall": _fraud_waterfall(mg, i, f_old, b.fm),
        "changed_features": _changed_table(b, i, f.changed[i], mg.phi_credit[i], mg.phi_fraud[i]),
        "freshness": _freshness_panel(f.fresh_cols, f.fresh_vals[i], f.stale[i], b.limits),
        "trace": _trace(f.old_rows[i], f.new_rows[i]),
        "recourse": rec,
    }
    return row, detail


def _cause(b: _Batch, f: _Found, i: int) -> str:
    """Stale data first; else the factor that took away the largest share of the line; else
    (explained by level) the binding rule or the risk family that keeps the PD high."""
    if f.stale[i]:
        return "system_data"
    drop = -f.line.phi[i]
    order = sorted(range(len(FACTORS)), key=lambda j: (-round(drop[j], 6), j))
    if drop[order[0]] > 1e-9 and not f.level[i]:
        return FACTORS[order[0]]
    return _level_cause(
        f.new_rules[i], f.actions[i], b.models["credit_new"], f.phi_level_credit[i], b.col_cause
    )


def _record(b: _Batch, f: _Found, case: _ReasonCase, rec: dict[str, Any]) -> dict[str, Any]:
    """The flat record of one explained user, without its reason columns."""
    i, cause, mg = case.i, case.cause, f.margins
    cz, ce = CAUSE_TEXT[cause]
    c_old, c_new = b.models["credit_old"], b.models["credit_new"]
    f_old, f_new = b.models["fraud_old"], b.models["fraud_new"]
    stale = f.stale[i]
    return {
        "user_id": b.ids[i],
        "as_of": b.as_of,
        "prev_as_of": b.prev_as_of,
        "deferred_at": pd.NaT if b.deferred_at is None else b.deferred_at,
        "prev_line_cny": float(f.prev_line[i]),
        "new_line_cny": float(f.new_line[i]),
        "action": f.actions[i],
        "prev_action": f.prev_actions[i],
        "repaid_in_full_30d": bool(f.repaid[i]),
        "freshness_flag": bool(stale),
        "freshness_reason": "flags" if stale else "",
        "continuing": bool(f.level[i]),
        "cause": cause,
        "cause_zh": cz,
        "cause_en": ce,
        "who_fixes": WHO_FIXES[cause],
        **{f"line_shapley_{f}": case.shares[f] for f in FACTORS},
        "line_continuing_cny": float(f.line.continuing[i]),
        "credit_margin_old": float(mg.m0[i]),
        "credit_margin_data": float(mg.m1[i]),
        "credit_margin_new": float(mg.m2[i]),
        "cutoff_old": float(mg.cut_old),
        "cutoff_new": float(mg.cut_new),
        "decision_margin_old": float(mg.m0[i] - mg.cut_old),
        "decision_margin_new": float(mg.m2[i] - mg.cut_new),
        "step_data": float(mg.m1[i] - mg.m0[i]),
        "step_model": float(mg.m2[i] - mg.m1[i]),
        "step_policy": float(mg.cut_old - mg.cut_new),
        "fraud_margin_old": float(mg.g0[i] - mg.fz_old),
        "fraud_margin_new": float(mg.g2[i] - mg.fz_new),
        "fraud_step_data": float(mg.g1[i] - mg.g0[i]),
        "fraud_step_model": float(mg.g2[i] - mg.g1[i]),
        "additivity_error": float(max(mg.add_err_credit[i], mg.add_err_fraud[i])),
        "max_unchanged_attribution": float(max(mg.unchanged_credit[i], mg.unchanged_fraud[i])),
        "n_changed_features": int(f.changed[i].sum()),
        "rules_new": ";".join(sorted(f.new_rules[i] - f.old_rules[i])),
        "reproduced": bool(f.line.reproduced[i]),
        "credit_model_version_old": int(c_old.version),
        "credit_model_version_new": int(c_new.version),
        "fraud_model_version_old": int(f_old.version),
        "fraud_model_version_new": int(f_new.version),
        "policy_version_old": str(b.policy_old.version),
        "policy_version_new": str(b.policy_new.version),
        "recourse_kind": rec["kind"],
        "recourse_en": rec["text_en"],
        "recourse_zh": rec["text_zh"],
        "recourse_date": rec.get("date"),
    }


def _model_key(m: PreparedModel) -> tuple:
    return (m.name, m.version, m.calib_a, m.calib_b)


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _good_standing(features: pd.DataFrame, decisions: pd.DataFrame, names) -> np.ndarray:
    """Feature medians of the users kept or raised (all users when there are none)."""
    good = set(decisions.loc[decisions["action"].isin(["keep", "raise"]), "user_id"].astype(str))
    rows_ = features[features["user_id"].astype(str).isin(good)] if good else features
    if rows_.empty:
        rows_ = features
    x = rows_[list(names)].to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=0)


def _level_cause(
    rules: set[str], action: str, model: PreparedModel, phi: np.ndarray, col_cause: dict
) -> str:
    """Cause of a continuing downgrade: the binding rule, else the risk family that keeps PD high."""
    if action == "freeze" and any(r.startswith("FRAUD") for r in rules):
        return "fraud"
    if any(r.startswith("REG") for r in rules):
        return "regulation"
    totals = {"risk_bureau": 0.0, "risk_behaviour": 0.0, "fraud": 0.0}
    for j, c in enumerate(model.features):
        cat = col_cause.get(c)
        if cat in totals and phi[j] > 0:
            totals[cat] += float(phi[j])
    best = max(totals, key=lambda c: (totals[c], c == "risk_behaviour"))
    return best if totals[best] > 0 else "risk_behaviour"


def _group_contrib(model: PreparedModel, phi: np.ndarray, fm: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for j, c in enumerate(model.features):
        if phi[j] != 0.0:
            code = fm[c].reason
            out[code] = out.get(code, 0.0) + float(phi[j])
    return out


def _before_after(
    code: str, columns, changed_row, xn, xo, i, fm, limit: int = 3, weights=None
) -> list[dict[str, str]]:
    """Before/after values of the changed features behind a reason.

    With `weights` (feature -> attribution toward higher risk), the features that pushed the
    risk up come first, largest first, and the ones that pulled it down are left out: a reason
    for a cut must not cite a value that fell, say fewer lenders (unless nothing in it rose).
    """
    cand = [
        (j, c) for j, c in enumerate(columns) if changed_row[j] and c in fm and fm[c].reason == code
    ]
    if weights is not None:
        pushed = [(j, c) for j, c in cand if weights.get(c, 0.0) > 0]
        if pushed:
            cand = sorted(pushed, key=lambda jc: (-weights[jc[1]], jc[0]))
    out = []
    for j, c in cand[:limit]:
        unit = fm[c].unit
        out.append(
            {
                "feature": c,
                "description": fm[c].description,
                **before_after_text(float(xo[i, j]), float(xn[i, j]), unit),
            }
        )
    return out


def _values_text(ba: list[dict[str, str]]) -> str:
    return "; ".join(
        f"{b['description']}: {b['after']} (unchanged)"
        if b["before"] == b["after"]
        else f"{b['description']}: {b['before']} → {b['after']}"
        for b in ba
    )


def _reason_items(b: _Batch, u: _ReasonCase) -> list[dict[str, Any]]:
    """All reasons for one user, ranked: the top cause's reasons first, then by weight."""
    drop = {f: -v for f, v in u.shares.items()}
    items = [
        *(_freshness_reasons(b, u) if u.stale else []),
        *_data_reasons(b, u, drop),
        *_rule_context_reasons(b, u, drop),
        *_decision_reasons(b, u, drop),
    ]
    items.sort(key=lambda it: (it["cause"] != u.cause, -it["weight"], it["code"]))
    for it in items:  # one entry per code (data reasons may appear from both models)
        it["text_en_full"] = it["text_en"] + (
            f" ({_values_text(it['values'])})" if it["values"] else ""
        )
        it["text_zh_full"] = it["text_zh"] + (
            f"（{_values_text(it['values'])}）" if it["values"] else ""
        )
    seen, unique = set(), []
    for it in items:
        if it["code"] not in seen:
            seen.add(it["code"])
            unique.append(it)
    return unique


def _reason(code, cause, weight, zh, en, values=None) -> dict[str, Any]:
    return {
        "code": code,
        "cause": cause,
        "weight": float(weight),
        "text_zh": zh,
        "text_en": en,
        "values": values or [],
    }


def _cited(b: _Batch, i: int, c: str, unit: str, description: str | None = None) -> dict[str, str]:
    """Column `c` of user `i`, before and after, as a reason cites it."""
    j = b.columns.index(c)
    return {
        "feature": c,
        "description": b.fm[c].description if description is None else description,
        **before_after_text(float(b.ov[i, j]), float(b.nv[i, j]), unit),
    }


def _freshness_reasons(b: _Batch, u: _ReasonCase) -> list[dict[str, Any]]:
    """The data were not current: the signals that say so, then the overdue it produced."""
    # (flags, the book's late-arrival share; source ages over their limit show in the freshness
    # panel)
    shown = {
        "fresh_stale": "flag",
        "fresh_sync_lag_flag": "flag",
        "fresh_payments_lag_share_7d": "ratio",
        "inst_dpd_now": "days",
    }
    vals = [
        _cited(
            b,
            u.i,
            c,
            shown[c],
            b.fm[c].description if c in b.fm else c.removeprefix("fresh_").replace("_", " "),
        )
        for j, c in enumerate(b.columns)
        if c in shown and (u.cited[j] or c == "fresh_sync_lag_flag")
    ]
    return [
        _reason(
            "data_not_current",
            "system_data",
            1e9,
            "决策时数据未及时同步（例如还款尚未到账）：不利调整应暂缓，待数据同步后重新评估",
            "data were not current when the decision ran (e.g. a repayment had not synced): hold the adverse decision and re-run it after the sync",
            vals[:4],
        )
    ]


def _data_reasons(b: _Batch, u: _ReasonCase, drop: dict[str, float]) -> list[dict[str, Any]]:
    """Each model's feature groups that pushed the risk up, under the cause of their features.

    (Fraud signals such as a device change can lower the line through the credit model as well.)
    """
    out = []
    # the credit model's groups under their features' cause, the fraud model's under fraud
    for model, phi, under in ((u.credit, u.phi_credit, None), (u.fraud, u.phi_fraud, "fraud")):
        weights = dict(zip(model.features, phi, strict=True))
        for code, w in _group_contrib(model, phi, b.fm).items():
            rc, zh, en = _reason_text(code, b.rs)
            if w <= 0:
                continue
            ba = _before_after(code, b.columns, u.cited, b.nv, b.ov, u.i, b.fm, weights=weights)
            cause = under or rc
            scale = max(drop.get(cause, 0.0), 0.0)
            out.append(_reason(code, cause, scale * 1e3 + w, zh, en, ba))
    return out


def _rule_context_reasons(
    b: _Batch, u: _ReasonCase, drop: dict[str, float]
) -> list[dict[str, Any]]:
    """Context columns that drive rules (lender count, debt-to-income) and moved toward them: a
    data factor can cut the line through them without moving the model's margin."""
    out = []
    i, fm = u.i, b.fm
    for j, c in enumerate(b.columns):
        if not (c in RULE_CONTEXT and u.cited[j] and c in fm and c in b.col_cause):
            continue
        # only a move toward the rule: more lenders, more debt, a KYC expiry nearer
        xn, xo = b.nv[i, j], b.ov[i, j]
        toward = xn < xo if c == "ctx_kyc_expiry_days" else xn > xo
        if not toward:
            continue
        cat = b.col_cause[c]
        if cat in drop and drop[cat] > 1e-9:
            _, zh, en = _reason_text(fm[c].reason, b.rs)
            weight = drop[cat] * 1e3 + 0.5
            out.append(_reason(fm[c].reason, cat, weight, zh, en, [_cited(b, i, c, fm[c].unit)]))
    return out


def _decision_reasons(b: _Batch, u: _ReasonCase, drop: dict[str, float]) -> list[dict[str, Any]]:
    """The reasons that are not the user's data: model update, policy, regulation, freshness."""
    out = []
    cv_old, cv_new = b.models["credit_old"].version, b.models["credit_new"].version
    step = u.model_step_neg
    if drop["model_update"] > 1e-9 or (cv_old != cv_new and step < 0):
        out.append(
            _reason(
                "model_update",
                "model_update",
                max(drop["model_update"], 0.0) * 1e3 - step,
                f"信用模型由 v{cv_old} 更新为 v{cv_new}，同样数据下风险评分变化 {-step:+.2f}（对数几率）",
                f"credit model updated v{cv_old} → v{cv_new}: the same data score {-step:+.2f} log-odds",
            )
        )
    pv_old, pv_new = b.policy_old.version, b.policy_new.version
    policy_step = u.policy_step
    if drop["policy"] > 1e-9 or policy_step > 1e-9:
        # the same policy file: the change is a dated appetite entry of its calendar; name it
        dated = sorted(r for r in u.rules_new if r.startswith("APPETITE@"))
        what = f"{pv_old} → {pv_new}" if pv_old != pv_new else (", ".join(dated) or pv_new)
        out.append(
            _reason(
                "policy",
                "policy",
                max(drop["policy"], 0.0) * 1e3 + policy_step,
                f"风险偏好 / 额度政策收紧（{what}），不利调整门槛对数几率变化 {-policy_step:+.2f}",
                f"risk appetite / line policy tightened ({what}); adverse cut-off moved {-policy_step:+.2f} log-odds",
            )
        )
    if drop["regulation"] > 1e-9 or any(r.startswith("REG") for r in u.rules_new):
        regs = sorted(r for r in u.rules_new if r.startswith("REG")) or ["regulation"]
        # the inputs of the rules that fired (all the rules' inputs when none did)
        read = [b.rule_ctx[r] for r in regs if r in b.rule_ctx] or list(RULE_CONTEXT)
        ctx = [
            _cited(
                b,
                u.i,
                c,
                b.fm[c].unit if c in b.fm else "",
                b.fm[c].description if c in b.fm else c,
            )
            for c in dict.fromkeys(read)
            if c in b.columns
        ]
        out.append(
            _reason(
                "regulation",
                "regulation",
                max(drop["regulation"], 0.0) * 1e3 + 1.0,
                f"监管规则限制额度：{', '.join(regs)}",
                f"a regulatory rule caps or freezes the line: {', '.join(regs)}",
                ctx,
            )
        )
    if drop["system_data"] > 1e-9 and not u.stale:
        out.append(
            _reason(
                "data_not_current",
                "system_data",
                drop["system_data"] * 1e3,
                "数据新鲜度变化影响了决策",
                "data freshness changed the decision",
            )
        )
    return out


def _waterfall(
    mg: _Margins, i: int, model: PreparedModel, fm: dict, top: int = 6
) -> list[dict[str, Any]]:
    """Steps of the credit decision margin (log-odds above the adverse cut-off), old -> new."""
    m0, m1, m2, phi = mg.m0[i], mg.m1[i], mg.m2[i], mg.phi_credit[i]
    cut_old, cut_new = mg.cut_old, mg.cut_new
    steps = [
        {
            "label": "old decision margin",
            "label_zh": "原决策边际",
            "value": float(m0 - cut_old),
            "kind": "start",
        }
    ]
    groups = _group_contrib(model, phi, fm)
    ranked = sorted(groups.items(), key=lambda kv: -abs(kv[1]))
    for code, v in ranked[:top]:
        steps.append(
            {"label": f"data: {code}", "label_zh": f"数据：{code}", "value": v, "kind": "data"}
        )
    rest = sum(v for _, v in ranked[top:])
    if ranked[top:]:
        steps.append(
            {"label": "data: other", "label_zh": "数据：其他", "value": rest, "kind": "data"}
        )
    steps.append(
        {"label": "model update", "label_zh": "模型更新", "value": float(m2 - m1), "kind": "model"}
    )
    steps.append(
        {
            "label": "policy cut-off",
            "label_zh": "政策门槛",
            "value": float(cut_old - cut_new),
            "kind": "policy",
        }
    )
    steps.append(
        {
            "label": "new decision margin",
            "label_zh": "新决策边际",
            "value": float(m2 - cut_new),
            "kind": "end",
        }
    )
    return steps


def _fraud_waterfall(
    mg: _Margins, i: int, model: PreparedModel, fm: dict, top: int = 4
) -> list[dict[str, Any]]:
    g0, g1, g2, phi = mg.g0[i], mg.g1[i], mg.g2[i], mg.phi_fraud[i]
    fz_old, fz_new = mg.fz_old, mg.fz_new
    groups = sorted(_group_contrib(model, phi, fm).items(), key=lambda kv: -abs(kv[1]))
    steps = [{"label": "old fraud margin", "value": float(g0 - fz_old), "kind": "start"}]
    steps += [{"label": f"data: {c}", "value": v, "kind": "data"} for c, v in groups[:top]]
    if groups[top:]:
        steps.append(
            {"label": "data: other", "value": sum(v for _, v in groups[top:]), "kind": "data"}
        )
    steps.append({"label": "model update", "value": float(g2 - g1), "kind": "model"})
    steps.append({"label": "freeze threshold", "value": float(fz_old - fz_new), "kind": "policy"})
    steps.append({"label": "new fraud margin", "value": float(g2 - fz_new), "kind": "end"})
    return steps


def _changed_table(
    b: _Batch, i: int, changed_row: np.ndarray, phi_c: np.ndarray, phi_f: np.ndarray
) -> list[dict[str, Any]]:
    """The changed columns of user `i`, with their attributions under the old models."""
    pc = dict(zip(b.models["credit_old"].features, phi_c, strict=True))
    pf = dict(zip(b.models["fraud_old"].features, phi_f, strict=True))
    xn, xo = b.nv, b.ov
    out = []
    for j, c in enumerate(b.columns):
        if not changed_row[j]:
            continue
        meta = b.fm.get(c)
        unit = meta.unit if meta else ""
        out.append(
            {
                "feature": c,
                "description": meta.description if meta else c,
                "reason": meta.reason if meta else "",
                "cause": b.col_cause[c],
                **before_after_text(float(xo[i, j]), float(xn[i, j]), unit),
                "credit_logodds": float(pc[c]) if c in pc else None,
                "fraud_logodds": float(pf[c]) if c in pf else None,
                "actionable": bool(meta.actionable) if meta else False,
            }
        )
    out.sort(key=lambda r: -max(abs(r["credit_logodds"] or 0.0), abs(r["fraud_logodds"] or 0.0)))
    return out


def _freshness_panel(
    cols: list[str], row: np.ndarray, stale: bool, limits: dict[str, float]
) -> dict[str, Any]:
    vals = {c: (None if math.isnan(v) else float(v)) for c, v in zip(cols, row, strict=True)}
    return {"stale": bool(stale), "values": vals, "limits_days": dict(limits)}


def _trace(old: dict, new: dict) -> list[dict[str, Any]]:
    keys = (
        "action",
        "new_line_cny",
        "pd",
        "fraud_p",
        "credit_margin",
        "decision_margin",
        "pd_band",
        "rules_fired",
        "defer_reason",
        "credit_model_version",
        "fraud_model_version",
        "policy_version",
    )
    out = []
    for key in keys:
        if key in new or key in old:
            a = old.get(key)
            b = new.get(key)
            out.append({"field": key, "before": _plain(a), "after": _plain(b)})
    return out


def _plain(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return float(f"{v:.6g}")
    return v if isinstance(v, (int, float, str, bool)) else str(v)


# ----------------------------------------------------------------------------- recourse


def _recourse_search(
    model: PreparedModel, xn: pd.DataFrame, xo: pd.DataFrame, cut: float, fm: dict, n_threads: int
):
    """For each user: the smallest single change of an actionable credit input that brings the
    credit log-odds to the cut-off or below, searched over the old value and population quantiles."""
    feats = [c for c in model.features if c in fm and fm[c].actionable and fm[c].monotone != 0]
    base = xn[list(model.features)].to_numpy(np.float64)
    old = xo[list(model.features)].to_numpy(np.float64)
    n = base.shape[0]
    best_feat = np.full(n, -1)
    best_val = np.full(n, np.nan)
    best_cost = np.full(n, np.inf)
    margin_now = model.margin(pd.DataFrame(base, columns=model.features), n_threads)
    need = margin_now > cut
    if not need.any() or not feats:
        return {
            "features": list(model.features),
            "best_feat": best_feat,
            "best_val": best_val,
            "margin_now": margin_now,
        }
    idx = np.flatnonzero(need)
    qs = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
    rows, meta = [], []
    for c in feats:
        j = model.features.index(c)
        col = base[:, j]
        finite = col[np.isfinite(col)]
        quant = np.quantile(finite, qs) if finite.size else np.array([])
        spread = float(np.subtract(*np.quantile(finite, [0.9, 0.1]))) if finite.size else 1.0
        spread = spread if spread > 0 else 1.0
        mono = fm[c].monotone
        for q in [*quant, None]:
            cand = old[idx, j] if q is None else np.full(idx.size, q)
            cur = base[idx, j]
            # only moves in the safer direction count (lower for +1, higher for -1)
            ok = np.isfinite(cand) & np.isfinite(cur) & ((cand < cur) if mono > 0 else (cand > cur))
            if not ok.any():
                continue
            x = base[idx[ok]].copy()
            x[:, j] = cand[ok]
            rows.append(x)
            meta.append((idx[ok], j, cand[ok], np.abs(cand[ok] - cur[ok]) / spread))
    if rows:
        m = model.margin(pd.DataFrame(np.vstack(rows), columns=model.features), n_threads)
        pos = 0
        for users, j, cand, cost in meta:
            mm = m[pos : pos + users.size]
            pos += users.size
            hit = (mm <= cut) & (cost < best_cost[users])
            best_cost[users[hit]] = cost[hit]
            best_feat[users[hit]] = j
            best_val[users[hit]] = cand[hit]
    return {
        "features": list(model.features),
        "best_feat": best_feat,
        "best_val": best_val,
        "margin_now": margin_now,
    }


def _rule_recourse(rules: set[str]) -> dict[str, Any] | None:
    """What a binding regulation rule needs (None when no regulation rule fired)."""
    if any("KYC" in r for r in rules):
        return {
            "kind": "rule",
            "text_en": "renew the identity document (KYC) to lift the freeze",
            "text_zh": "更新身份证件信息后可解除冻结",
        }
    if any("MULTI-LENDER" in r for r in rules):
        return {
            "kind": "rule",
            "text_en": "close accounts at other lenders so the number of active lenders falls under the regulatory limit",
            "text_zh": "结清并关闭其他机构账户，使在贷机构数低于监管上限",
        }
    if any("DTI" in r for r in rules):
        return {
            "kind": "rule",
            "text_en": "reduce total debt so the debt-to-income ratio falls under the regulatory limit",
            "text_zh": "降低总负债，使负债收入比低于监管上限",
        }
    return None


def _recourse_for(
    b: _Batch, rec: dict[str, Any], i: int, cause: str, changed_row: np.ndarray, rules: set[str]
) -> dict[str, Any]:
    """What brings user `i`'s line back: `rec` is `_recourse_search`'s result for the batch."""
    if cause == "system_data":
        return {
            "kind": "rerun",
            "text_en": "no action needed from the user: the decision is held until the data have synced and is then re-run",
            "text_zh": "无需用户操作：待数据同步后重新评估",
        }
    if cause == "fraud":
        return {
            "kind": "review",
            "text_en": "a reviewer verifies the account (identity and device check); the freeze is lifted if the flag was a false positive",
            "text_zh": "由审核人员核实身份与设备；如为误报将解除冻结",
        }
    rule_step = _rule_recourse(rules)
    if cause == "regulation" and rule_step:
        return rule_step
    fm, columns, xn, xo, as_of = b.fm, b.columns, b.nv, b.ov, b.as_of
    j = int(rec["best_feat"][i])
    if j >= 0:
        c = rec["features"][j]
        unit = fm[c].unit
        col = columns.index(c)
        shown = before_after_text(float(xn[i, col]), float(rec["best_val"][i]), unit)
        now, to = shown["before"], shown["after"]
        return {
            "kind": "feature",
            "feature": c,
            "from": now,
            "to": to,
            "text_en": f"{fm[c].description}: from {now} to {to} would bring the risk back under the cut-off",
            "text_zh": f"{fm[c].description}：由 {now} 变为 {to} 即可回到门槛以内",
        }
    # The margin is fine but a rule caps the line: what the rule needs.
    if rule_step:
        return rule_step
    # No single actionable change suffices: the earliest date adverse records leave their windows.
    dates = []
    for jj, c in enumerate(columns):
        if not changed_row[jj] or c not in fm or fm[c].monotone == 0 or not fm[c].model_input:
            continue
        worse = (float(xn[i, jj]) - float(xo[i, jj])) * fm[c].monotone > 0
        m = _WINDOW.search(c)
        if worse and m:
            size, unit = int(m.group(1)), m.group(2)
            end = as_of + (pd.DateOffset(days=size) if unit == "d" else pd.DateOffset(months=size))
            dates.append((end, c))
    if dates:
        end, c = max(dates)
        return {
            "kind": "age_out",
            "feature": c,
            "date": str(end.date()),
            "text_en": f"the adverse records behind this decision leave their windows by {end.date()} (longest: {c}); the line can be reviewed again then",
            "text_zh": f"相关不良记录最迟于 {end.date()} 移出统计窗口（最长：{c}），届时可重新评估",
        }
    return {
        "kind": "none",
        "text_en": "no single actionable change restores the line; keep repaying on time and it is reviewed each month",
        "text_zh": "暂无单一可操作的调整可恢复额度；按时还款，每月会重新评估",
    }


# ----------------------------------------------------------------------------- summary


def summarise(records: pd.DataFrame, examples: int = 3) -> dict[str, Any]:
    """Counts by cause, the most frequent principal reasons, example users per cause."""
    if records.empty:
        return {"explained": 0, "by_cause": {}, "top_reasons": [], "examples": {}}
    by_cause = records["cause"].value_counts().sort_index()
    reasons = pd.concat([records[f"reason_{r}_code"] for r in range(1, MAX_REASONS + 1)]).dropna()
    top = reasons.value_counts().sort_values(ascending=False, kind="stable").head(10)
    ex = {
        c: sorted(records.loc[records["cause"] == c, "user_id"].astype(str))[:examples]
        for c in by_cause.index
    }
    rif = records["repaid_in_full_30d"].astype(bool)
    return {
        "explained": int(len(records)),
        "by_cause": {str(k): int(v) for k, v in by_cause.items()},
        "repaid_in_full_by_cause": {
            str(k): int(v) for k, v in records.loc[rif, "cause"].value_counts().sort_index().items()
        },
        "top_reasons": [{"code": str(k), "count": int(v)} for k, v in top.items()],
        "examples": ex,
        "max_additivity_error": float(records["additivity_error"].max()),
        "max_unchanged_attribution": float(records["max_unchanged_attribution"].max()),
        "reproduced_share": float(records["reproduced"].mean()),
    }


__all__ = [
    "CAUSES",
    "Explanations",
    "PreparedModel",
    "explain_downgrades",
    "format_value",
    "pin_policy",
    "prepare_model",
    "select_downgrades",
    "usable_lines",
    "summarise",
]
