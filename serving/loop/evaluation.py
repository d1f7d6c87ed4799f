"""How the loop is judged: wrongful post-repayment downgrades, outcome rates, downgrades by cause.

Reads the simulator's truth (`truth/` beside the raw tables) when there is one, else the labels
that matured. The nightly path (score, explain, monitor) never imports this module; the loop
does, to judge every month against the truth and against the frozen models.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.catalog import decisions_path, explanations_path
from features.contracts import ADVERSE_ACTIONS
from serving.explain.downgrades import select_downgrades
from serving.explain.run import usable_before


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


def month_stats(
    decisions: pd.DataFrame,
    previous: pd.DataFrame | None,
    good: pd.Series,
    explanations: pd.DataFrame | None,
    usable: pd.Series | None = None,
) -> dict:
    """Adverse actions, downgrades by cause, and wrongful post-repayment downgrades for one month.

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
    down_ids = (
        set()
        if previous is None
        else set(select_downgrades(decisions, previous, usable)["user_id"])
    )
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
    decisions_dir: Path, months: list[pd.Timestamp], d: pd.Timestamp, good, explained
) -> dict:
    """`month_stats` of the decisions at `d` against the month before (a defer's held line resolved)."""
    dec = pd.read_parquet(decisions_path(decisions_dir, d))
    prev = _previous_decisions(decisions_dir, months, d)
    usable = (
        None if prev is None else usable_before(decisions_dir, prev, months[months.index(d) - 1])
    )
    return month_stats(dec, prev, good, explained, usable)


def read_explanations(explanations_dir: Path, as_of: pd.Timestamp) -> pd.DataFrame | None:
    p = explanations_path(explanations_dir, as_of)
    return pd.read_parquet(p) if p.exists() else None
