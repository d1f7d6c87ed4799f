"""How the loop is judged: wrongful post-repayment downgrades, outcome rates, downgrades by cause.

Reads the simulator's truth (`truth/` beside the raw tables) when there is one, else the labels
that matured. The nightly path (score, explain, monitor) never imports this module; the loop
does, to judge every month against the truth and against the frozen models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.catalog import decisions_path, explanations_path
from features.contracts import ADVERSE_ACTIONS, NO_LINE_ACTIONS
from serving.explain.downgrades import select_downgrades, usable_lines
from serving.explain.run import usable_before
from serving.scoring.policy import REGULATION_IDS


def read_truth(raw_dir: Path) -> pd.DataFrame | None:
    path = raw_dir.parent / "truth" / "outcomes.parquet"
    if not path.exists():
        return None
    return pd.read_parquet(path)


def good_repayers(
    features: pd.DataFrame,
    truth: pd.DataFrame | None,
    as_of: pd.Timestamp,
    horizon: int,
    world_end: pd.Timestamp | None = None,
) -> pd.Series:
    """Per user: True = a good repayer, False = not one, <NA> = repaid but outcome not known yet.

    A good repayer repaid in full in the 30 days before `as_of` and did not default (or bust
    out) within `horizon` months after it. From the simulator's truth when present: a window
    that runs past `world_end` (the end of the data) is known only if the user went bad before
    it; from the labels otherwise: known only once `label_default_12m` has matured. A repayer
    whose outcome is unknown is neither good nor bad (counting them as good would call every
    downgrade of a not-yet-defaulted user wrongful).

    >>> f = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "ctx_repaid_in_full_30d": [1, 1, 1, 0],
    ...                   "label_default_12m": [0, 1, None, 0], "label_default_12m_matured": [True, True, False, True]})
    >>> good_repayers(f, None, pd.Timestamp("2024-01-31"), 12).tolist()
    [True, False, <NA>, False]
    """
    repaid = (
        features.get("ctx_repaid_in_full_30d", pd.Series(0.0, index=features.index))
        .fillna(0)
        .to_numpy()
        == 1
    )
    if truth is not None:
        t = features[["user_id"]].merge(truth, on="user_id", how="left")
        end = as_of + pd.DateOffset(months=horizon)
        bad = t["default_date"].notna() & (t["default_date"] <= end)
        if "fraud_date" in t.columns:
            bad = bad | (t["fraud_date"].notna() & (t["fraud_date"] <= end))
        bad = bad.to_numpy()
        known = bad | (world_end is None or end <= world_end)
    else:
        label = features["label_default_12m"]
        matured = features.get("label_default_12m_matured", label.notna())
        known = (matured.fillna(False).astype(bool) & label.notna()).to_numpy()
        bad = (label == 1).to_numpy()
    good = pd.array(repaid & ~bad, dtype="boolean")
    good[repaid & ~known] = pd.NA
    return pd.Series(good, index=features["user_id"].astype(str).to_numpy())


def outcome_rates(
    features: pd.DataFrame,
    truth: pd.DataFrame | None,
    as_of: pd.Timestamp,
    horizon: int,
    world_end: pd.Timestamp | None,
) -> dict:
    """Realised default rate within `horizon` months and fraud rate within 90 days after as-of.

    From the simulator's truth when present (windows cut at the end of the world are flagged),
    else from the labels that matured by extraction.
    """
    if truth is not None:
        t = features[["user_id"]].merge(truth, on="user_id", how="left")
        d_end = as_of + pd.DateOffset(months=horizon)
        f_end = as_of + pd.Timedelta(days=90)
        out = {
            "default_rate": float(
                ((t["default_date"] > as_of) & (t["default_date"] <= d_end)).mean()
            ),
            "fraud_rate": float(((t["fraud_date"] > as_of) & (t["fraud_date"] <= f_end)).mean())
            if "fraud_date" in t.columns
            else None,
            "rates_from": "truth",
        }
        if world_end is not None and d_end > world_end:
            out["default_window_months_observed"] = round((world_end - as_of).days / 30.44, 1)
        return out
    out = {"rates_from": "labels"}
    for label, key in (("label_default_12m", "default_rate"), ("label_fraud_90d", "fraud_rate")):
        if label in features.columns and features[label].notna().any():
            out[key] = float(features[label].mean())
    return out


def downgraded_ids(
    decisions: pd.DataFrame, previous: pd.DataFrame | None, usable: pd.Series | None
) -> set[str]:
    """The users `select_downgrades` picks (none without a previous decision)."""
    if previous is None:
        return set()
    return set(select_downgrades(decisions, previous, usable)["user_id"])


def month_stats(
    decisions: pd.DataFrame,
    previous: pd.DataFrame | None,
    good: pd.Series,
    explanations: pd.DataFrame | None,
    usable: pd.Series | None = None,
    down_ids: set[str] | None = None,
) -> dict:
    """Adverse actions, downgrades by cause, and wrongful post-repayment downgrades for one month.

    `down_ids`: the downgraded users when the caller already has them (`downgraded_ids`).

    A downgrade is what `creditline explain` explains: `serving.explain.downgrades.select_downgrades`
    against the `previous` decisions (the usable line fell, or an adverse decision was
    deferred; `usable`: the line a deferred previous decision held, `serving.explain.run.usable_before`).
    A user frozen in both months had an adverse action but no new downgrade; with no
    previous decision there are no downgrades. `adverse_actions` counts every lower, freeze,
    close or defer. Causes come from `explanations` (records of `explain_downgrades`), every
    downgrade without a record is `not_explained`; without explanations (the no-loop arm),
    from the first policy rule that fired, else `model_score`.
    """
    dec = decisions.assign(user_id=decisions["user_id"].astype(str)).set_index("user_id")
    adverse = dec["action"].isin(ADVERSE_ACTIONS)
    if down_ids is None:
        down_ids = downgraded_ids(decisions, previous, usable)
    down = pd.Series(dec.index.isin(list(down_ids)), index=dec.index)
    g = good.reindex(dec.index)
    known_good = g.fillna(False).astype(bool)
    unknown = g.isna()
    out = {
        "users": int(len(dec)),
        "actions": {a: int(n) for a, n in dec["action"].value_counts().sort_index().items()},
        "adverse_actions": int(adverse.sum()),
        "downgrades": int(down.sum()),
        "good_repayers": int(known_good.sum()),
        "repayers_outcome_unknown": int(unknown.sum()),
        "wrongful_post_repayment_downgrades": int((down & known_good).sum()),
        "downgraded_repayers_outcome_unknown": int((down & unknown).sum()),
        "mean_pd": float(dec["pd"].mean()),
    }
    out["downgrades_by_cause"] = _causes(dec.loc[down.to_numpy()], explanations)
    return out


def _causes(down: pd.DataFrame, explanations: pd.DataFrame | None) -> dict[str, int]:
    if explanations is not None:
        col = next(
            (c for c in ("cause", "primary_cause", "top_cause") if c in explanations.columns), None
        )
        if col is None and len(explanations):
            raise ValueError(
                f"explanation records lack a cause column (have {list(explanations.columns)[:10]})"
            )
        e = (
            explanations.assign(user_id=explanations["user_id"].astype(str))
            .drop_duplicates("user_id")
            .set_index("user_id")[col]
            if col
            else pd.Series(dtype=object)
        )
        causes = e.reindex(down.index).fillna("not_explained")
        return {str(k): int(v) for k, v in causes.value_counts().sort_index().items()}
    # Without explanations: the policy rules that fired, else "model score".
    rules = down.get("rules_fired", pd.Series("", index=down.index)).fillna("")
    first = rules.str.split(";").str[0].replace("", "model_score")
    return {str(k): int(v) for k, v in first.value_counts().sort_index().items()}


def _previous_decisions(
    decisions_dir: Path, months: list[pd.Timestamp], as_of: pd.Timestamp
) -> pd.DataFrame | None:
    """The decisions of the cycle month before `as_of` (None in the first month)."""
    i = months.index(as_of)
    return pd.read_parquet(decisions_path(decisions_dir, months[i - 1])) if i else None


def stored_month_stats(
    decisions_dir: Path,
    months: list[pd.Timestamp],
    d: pd.Timestamp,
    good: pd.Series,
    explained: pd.DataFrame | None,
    truth: pd.DataFrame | None = None,
    horizon: int = 12,
    known_until: pd.Timestamp | None = None,
) -> tuple[dict, pd.DataFrame]:
    """`month_stats` and `outcome_rows` of the stored decisions at `d` against the month before
    (a defer's held line resolved)."""
    dec = pd.read_parquet(decisions_path(decisions_dir, d))
    prev = _previous_decisions(decisions_dir, months, d)
    usable = (
        None if prev is None else usable_before(decisions_dir, prev, months[months.index(d) - 1])
    )
    down = downgraded_ids(dec, prev, usable)  # one selection serves both
    rows = outcome_rows(dec, prev, usable, good, truth, d, horizon, known_until, down)
    return month_stats(dec, prev, good, explained, usable, down), rows


def read_explanations(explanations_dir: Path, as_of: pd.Timestamp) -> pd.DataFrame | None:
    p = explanations_path(explanations_dir, as_of)
    return pd.read_parquet(p) if p.exists() else None


# ---------------------------------------------------------------------------------------------
# The two-sided headline: wrongful downgrades of good repayers beside the risk let through

HEADLINE_FIGURES = (
    "wrongful_per_10k",
    "wrongful_no_regulation_per_10k",
    "missed_defaulter_share",
    "open_line_at_default_cny_per_10k",
    "fraud_false_flags_per_10k",
)
# Each figure as a ratio of two per-user-month sums: (numerator column, denominator column, scale).
_RATIOS = {
    "wrongful_per_10k": ("wrongful", "good_repayer", 1e4),
    "wrongful_no_regulation_per_10k": ("wrongful_no_regulation", "good_repayer", 1e4),
    "missed_defaulter_share": ("missed", "bad", 1.0),
    "open_line_at_default_cny_per_10k": ("open_line_bad_cny", "known", 1e4),
    "fraud_false_flags_per_10k": ("false_flag", "good_user", 1e4),
}
HEADLINE_DEFINITIONS = {
    "wrongful_per_10k": "downgrades of good repayers (repaid in full in the 30 days before the "
    "as-of, no default or bust-out within 12 months) per 10k good-repayer months",
    "wrongful_no_regulation_per_10k": "the same, leaving out downgrades whose decision fired a "
    "regulation rule (REG-*): the part of the first figure models and their loop can move "
    "(a part of the rest is the law, not a misjudgement)",
    "missed_defaulter_share": "of the user-months whose user defaults or busts out within 12 "
    "months, the share whose decision did not lower the usable line and left some of it open",
    "open_line_at_default_cny_per_10k": "usable line (CNY) the decisions left open to those users, "
    "per 10k user-months of known outcome",
    "fraud_false_flags_per_10k": "fraud flags (fraud log-odds at or above the freeze threshold) on "
    "users known not to default or bust out within 12 months, per 10k such user-months",
    "interval": "95% bootstrap over users (all of a user's months resampled together; the same "
    "resample for both arms, so the difference's interval is paired)",
}
OUTCOME_COLUMNS = [
    "user_id", "as_of", "good_repayer", "repayer_unknown", "downgraded", "wrongful",
    "wrongful_no_regulation", "known", "bad",
    "missed", "usable_after_cny", "open_line_bad_cny", "good_user", "fraud_flag", "false_flag",
]  # fmt: skip


# A regulation rule's id in a decision's `rules_fired` (serving.scoring.policy.REGULATION_IDS).
_REGULATION_RULE = "|".join(f"(?:^|;){i}(?:@|;|$)" for i in REGULATION_IDS.values())


def truth_end(raw_dir: Path) -> pd.Timestamp | None:
    """The date up to which the truth is known: `truth/manifest.json` `truth_end` (the simulator
    ran past the extract), else the extract itself (the raw manifest), else None."""
    import json

    from features.contracts import manifest_extracted_at

    m = raw_dir.parent / "truth" / "manifest.json"
    if m.exists():
        try:
            return pd.Timestamp(json.loads(m.read_text())["truth_end"])
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{m}: no readable truth_end ({exc})") from exc
    return manifest_extracted_at(raw_dir)


def outcome_rows(
    decisions: pd.DataFrame,
    previous: pd.DataFrame | None,
    usable: pd.Series | None,
    good: pd.Series,
    truth: pd.DataFrame | None,
    as_of: pd.Timestamp,
    horizon: int,
    known_until: pd.Timestamp | None,
    down_ids: set[str] | None = None,
) -> pd.DataFrame:
    """Per user at one decision: what the headline counts (OUTCOME_COLUMNS).

    `good`: `good_repayers` (True / False / <NA> unknown). `bad`: defaulted or busted out within
    `horizon` months after `as_of` (truth; without truth nothing is bad or known). `known`: bad,
    or the window closed by `known_until`. A defaulter is `missed` when this decision did not
    lower their usable line and left some of it open (a line frozen earlier and still frozen
    protects: nothing was missed). `open_line_bad_cny`: the usable line left open to a defaulter.
    A `false_flag` is a fraud flag (fraud log-odds at or above the freeze threshold) on a user
    known not to go bad. `wrongful_no_regulation`: a wrongful downgrade whose decision fired no
    regulation rule (`rules_fired` holds no REG-* id).
    """
    dec = decisions.assign(user_id=decisions["user_id"].astype(str)).drop_duplicates("user_id")
    ids = dec["user_id"].to_numpy()
    line = dec["new_line_cny"].to_numpy("float64")
    after = np.where(dec["action"].isin(NO_LINE_ACTIONS), 0.0, line)
    down = np.zeros(len(dec), dtype=bool)
    if previous is not None:
        before = usable if usable is not None else usable_lines(previous)
        held = dec["action"].eq("defer").to_numpy() & pd.Index(ids).isin(before.index)
        after = np.where(held, before.reindex(ids).to_numpy("float64"), after)
        if down_ids is None:
            down_ids = downgraded_ids(decisions, previous, usable)
        down = pd.Index(ids).isin(list(down_ids))
    g = good.reindex(ids)
    if truth is not None:
        t = pd.DataFrame({"user_id": ids}).merge(
            truth.assign(user_id=truth["user_id"].astype(str)), on="user_id", how="left"
        )
        end = as_of + pd.DateOffset(months=horizon)
        bad = t["default_date"].notna() & (t["default_date"] > as_of) & (t["default_date"] <= end)
        if "fraud_date" in t.columns:
            bad |= t["fraud_date"].notna() & (t["fraud_date"] > as_of) & (t["fraud_date"] <= end)
        bad = bad.to_numpy()
        known = bad | (known_until is None or end <= known_until)
    else:
        bad = np.zeros(len(dec), dtype=bool)
        known = np.zeros(len(dec), dtype=bool)
    flag = dec.get("fraud_margin", pd.Series(np.nan, index=dec.index)).to_numpy("float64") >= 0
    good_repayer = g.fillna(False).astype(bool).to_numpy()
    good_user = known & ~bad
    regulation = (
        dec["rules_fired"].fillna("").astype(str).str.contains(_REGULATION_RULE).to_numpy()
        if "rules_fired" in dec.columns
        else np.zeros(len(dec), dtype=bool)
    )
    return pd.DataFrame(
        {
            "user_id": ids,
            "as_of": pd.Timestamp(as_of),
            "good_repayer": good_repayer,
            "repayer_unknown": g.isna().to_numpy(),
            "downgraded": down,
            "wrongful": down & good_repayer,
            "wrongful_no_regulation": down & good_repayer & ~regulation,
            "known": known,
            "bad": bad,
            "missed": bad & ~down & (after > 0.5),
            "usable_after_cny": after,
            "open_line_bad_cny": np.where(bad, after, 0.0),
            "good_user": good_user,
            "fraud_flag": flag,
            "false_flag": flag & good_user,
        },
        columns=OUTCOME_COLUMNS,
    )


def headline_figures(
    arms: dict[str, pd.DataFrame], n_boot: int = 500, seed: int = 0
) -> dict[str, dict]:
    """The headline of each arm (`outcome_rows` pooled over months), 95% bootstrap intervals
    over users, and, with two arms, `difference` (first arm - second) with its interval.

    Users are resampled (all of a user's months together), the same resample for every arm, so
    the difference's interval is paired. Each figure is `{"value", "ci95_low", "ci95_high"}`;
    `relative_change` is the difference over the second arm's value.

    >>> rows = lambda w: pd.DataFrame({"user_id": list("abcd"), "wrongful": w, "wrongful_no_regulation": w,
    ...     "good_repayer": [True] * 4,
    ...     "missed": [False] * 4, "bad": [False] * 4, "open_line_bad_cny": [0.0] * 4, "known": [True] * 4,
    ...     "false_flag": [False] * 4, "good_user": [True] * 4})
    >>> h = headline_figures({"loop": rows([True, False, False, False]), "frozen": rows([True, True, False, False])})
    >>> h["loop"]["wrongful_per_10k"]["value"], h["frozen"]["wrongful_per_10k"]["value"]
    (2500.0, 5000.0)
    >>> h["difference"]["wrongful_per_10k"]["value"], h["relative_change"]["wrongful_per_10k"]["value"]
    (-2500.0, -0.5)
    """
    names = list(arms)
    users = pd.Index(sorted(set().union(*(set(a["user_id"].astype(str)) for a in arms.values()))))
    cols = sorted({c for ratio in _RATIOS.values() for c in ratio[:2]})
    sums = {}
    for name, rows in arms.items():
        per_user = (
            rows.assign(user_id=rows["user_id"].astype(str))[["user_id", *cols]]
            .astype({c: "float64" for c in cols})
            .groupby("user_id")
            .sum()
            .reindex(users, fill_value=0.0)
        )
        sums[name] = per_user.to_numpy("float64").T  # (columns, users)
    col_ix = {c: i for i, c in enumerate(cols)}
    rng = np.random.default_rng(seed)
    n = len(users)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype("float64") if n else None

    def ratio(s: np.ndarray, fig: str, w: np.ndarray | None) -> np.ndarray:
        num, den, scale = _RATIOS[fig]
        a, b = s[col_ix[num]], s[col_ix[den]]
        if w is None:
            top, bottom = np.array([a.sum()]), np.array([b.sum()])
        else:
            top, bottom = w @ a, w @ b
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(bottom > 0, scale * top / np.where(bottom > 0, bottom, 1.0), np.nan)

    def interval(point: float, boot: np.ndarray) -> dict:
        boot = boot[np.isfinite(boot)]
        low, high = np.quantile(boot, [0.025, 0.975]) if boot.size else (np.nan, np.nan)
        return {"value": float(point), "ci95_low": float(low), "ci95_high": float(high)}

    out: dict[str, dict] = {}
    points = {a: {f: ratio(sums[a], f, None)[0] for f in HEADLINE_FIGURES} for a in names}
    boots = {a: {f: ratio(sums[a], f, weights) for f in HEADLINE_FIGURES} for a in names}
    for a in names:
        out[a] = {f: interval(points[a][f], boots[a][f]) for f in HEADLINE_FIGURES}
    if len(names) == 2:
        x, y = names
        out["difference"] = {
            f: interval(points[x][f] - points[y][f], boots[x][f] - boots[y][f])
            for f in HEADLINE_FIGURES
        }
        with np.errstate(divide="ignore", invalid="ignore"):
            out["relative_change"] = {
                f: interval(
                    (points[x][f] - points[y][f]) / points[y][f],
                    (boots[x][f] - boots[y][f]) / boots[y][f],
                )
                for f in HEADLINE_FIGURES
            }
    return out
