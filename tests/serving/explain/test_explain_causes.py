"""One hand-built downgrade per cause: that cause must come out first, with its reasons and recourse."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.explain.downgrades import MAX_REASONS, explain_downgrades, select_downgrades
from serving.scoring.policy import load_policy
from tests.serving.explain_world import (
    AS_OF_NEW,
    AS_OF_OLD,
    base_snapshot,
    decide,
    new_version,
    train_models,
)


@pytest.fixture(scope="module")
def world():
    models = train_models()
    old = base_snapshot(400, seed=1)
    policy = load_policy()
    dec_old = decide(
        old, models["credit"], models["fraud"], policy, AS_OF_OLD, old["ctx_line_cny"].to_numpy()
    )
    return {"models": models, "old": old, "policy": policy, "dec_old": dec_old}


def _keep_band(world) -> tuple[float, float]:
    """PD range of the policy's keep band (from the policy file, so a retuned band moves the tests)."""
    bands = world["policy"].bands
    i = next(k for k, b in enumerate(bands) if b.action == "keep")
    return (bands[i - 1].pd_max if i else 0.0), bands[i].pd_max


def _pick(world, lo=None, hi=None, repaid=None) -> int:
    """A user kept at the old decision, PD inside (lo, hi) (default: inside the keep band), low
    fraud p; `repaid`: whether they repaid in full in the last 30 days (default: either)."""
    k_lo, k_hi = _keep_band(world)
    lo = k_lo + 0.005 if lo is None else lo
    hi = k_hi - 0.01 if hi is None else hi
    d = world["dec_old"]
    ok = (d["action"] == "keep") & d["pd"].between(lo, hi) & (d["fraud_p"] < 0.2)
    if repaid is not None:
        ok &= (world["old"]["ctx_repaid_in_full_30d"].to_numpy() == 1) == repaid
    assert ok.any(), "world has no user in the wanted PD range"
    return int(np.flatnonzero(ok.to_numpy())[0])


def _run(world, i, changes=None, credit_new=None, policy_new=None):
    old = world["old"]
    new = old.assign(as_of=AS_OF_NEW)
    for col, val in (changes or {}).items():
        new.loc[i, col] = val
    m = world["models"]
    credit_new = credit_new or m["credit"]
    policy_new = policy_new or world["policy"]
    dec_new = decide(
        new,
        credit_new,
        m["fraud"],
        policy_new,
        AS_OF_NEW,
        world["dec_old"]["new_line_cny"].to_numpy(),
        world["dec_old"],
    )
    uid = old["user_id"].iat[i]
    assert uid in set(select_downgrades(dec_new, world["dec_old"])["user_id"]), dec_new.iloc[i][
        ["action", "pd", "fraud_p"]
    ]
    res = explain_downgrades(
        dec_new,
        world["dec_old"],
        new,
        old,
        m["credit"],
        credit_new,
        m["fraud"],
        m["fraud"],
        world["policy"],
        policy_new,
        AS_OF_NEW,
        AS_OF_OLD,
        users=[uid],
        n_threads=1,
    )
    assert len(res.records) == 1
    return res.records.iloc[0], res.details[0]


def _check_common(rec, det):
    assert rec["reproduced"]
    assert rec["additivity_error"] < 1e-6
    assert rec["max_unchanged_attribution"] == 0.0
    assert 1 <= len(det["reasons"]) <= MAX_REASONS
    assert det["reasons"][0]["cause"] == rec["cause"]
    assert rec["reason_1_en"] and rec["reason_1_zh"]
    # the line-space Shapley values add up to the usable-line change
    shares = sum(v for k, v in rec.items() if k.startswith("line_shapley_"))
    usable_new = 0.0 if rec["action"] in ("freeze", "close") else rec["new_line_cny"]
    assert (
        shares == pytest.approx(usable_new - rec["prev_line_cny"], abs=1e-6)
        or rec["cause"] == "system_data"
    )


def test_bureau_cause(world):
    i = _pick(world)
    rec, det = _run(world, i, {"bureau_overdue_accounts_cnt": 4.0, "bureau_dpd_bucket_max_3m": 4.0})
    assert rec["cause"] == "risk_bureau"
    _check_common(rec, det)
    assert det["reasons"][0]["code"] in ("bureau_overdue", "bureau_delinquency_history")
    # before/after values in the reason
    assert "→" in det["reasons"][0]["text_en_full"]


def test_behaviour_cause(world):
    i = _pick(world)
    rec, det = _run(world, i, {"inst_late_cnt_3m": 4.0, "inst_dpd_max_3m": 60.0})
    assert rec["cause"] == "risk_behaviour"
    _check_common(rec, det)
    assert det["reasons"][0]["code"] == "repay_late"
    # recourse never names a non-actionable feature
    if rec["recourse_kind"] == "feature":
        from features.metadata import FEATURES

        assert FEATURES[det["recourse"]["feature"]].actionable


def test_fraud_cause(world):
    i = _pick(world)
    rec, det = _run(
        world,
        i,
        {
            "app_device_changes_cnt_30d": 5.0,
            "app_sim_changes_cnt_30d": 4.0,
            "graph_device_shared_users_cnt": 4.0,
        },
    )
    assert rec["action"] == "freeze"
    assert rec["cause"] == "fraud"
    _check_common(rec, det)
    assert det["reasons"][0]["code"] in ("fraud_device_change", "fraud_shared_device")
    assert rec["recourse_kind"] == "review"


def test_model_update_cause(world):
    # a user who did not repay in full: the model-update hold does not cover them
    i = _pick(world, repaid=False)
    credit_new = new_version(world["models"]["credit"], calib_b_shift=1.5)
    rec, det = _run(world, i, credit_new=credit_new)
    assert rec["cause"] == "model_update"
    _check_common(rec, det)
    assert rec["n_changed_features"] == 0
    assert rec["step_data"] == 0.0 and rec["step_model"] == pytest.approx(1.5)


def test_model_update_alone_does_not_cut_a_clean_repayer_but_evidence_does(world):
    # The same model update on a user who repaid in full with no adverse evidence: held in band
    # (MODEL-UPDATE-HOLD), nothing to explain. With a late payment this month the hold ends and
    # the cut is explained, the new data named beside the model update.
    old = world["old"]
    evidence = ["inst_dpd_max_1m", "inst_overdue_cnt_now", "bureau_delinquent_accounts_cnt_3m",
                "bureau_lenders_opened_cnt_1m", "bureau_inquiries_cnt_1m", "app_sim_changes_cnt_30d"]  # fmt: skip
    clean = (old[evidence].fillna(0) <= [0, 0, 0, 1, 3, 0]).all(axis=1).to_numpy()
    d = world["dec_old"]
    k_lo, k_hi = _keep_band(world)
    ok = (d["action"] == "keep") & d["pd"].between(k_lo + 0.005, k_hi - 0.01) & (d["fraud_p"] < 0.2)
    ok &= (old["ctx_repaid_in_full_30d"] == 1).to_numpy() & clean
    i = int(np.flatnonzero(ok.to_numpy())[0])
    m = world["models"]
    credit_new = new_version(m["credit"], calib_b_shift=1.5)
    new = old.assign(as_of=AS_OF_NEW)
    dec = decide(
        new, credit_new, m["fraud"], world["policy"], AS_OF_NEW, d["new_line_cny"].to_numpy(), d
    )
    assert dec["action"].iat[i] == "keep" and "MODEL-UPDATE-HOLD" in str(dec["rules_fired"].iat[i])
    assert old["user_id"].iat[i] not in set(select_downgrades(dec, d)["user_id"])
    rec, det = _run(world, i, {"inst_dpd_max_1m": 12.0}, credit_new=credit_new)
    _check_common(rec, det)  # (the decision reproduced, the attribution adds up)
    assert rec["action"] in ("lower", "close")
    assert rec["step_model"] == pytest.approx(1.5)


def test_policy_cause(world):
    _, k_hi = _keep_band(world)
    # the -0.03 shift moves the keep edge below the user by more than the band hysteresis
    h = world["policy"].band_hysteresis_logodds
    edge = np.log(k_hi - 0.03) - np.log1p(-(k_hi - 0.03))
    lo = 1.0 / (1.0 + np.exp(-(edge + h + 0.02)))
    i = _pick(world, lo, k_hi - 0.005)
    tight = load_policy(
        calendar=[
            {"name": "risk_appetite", "start": "2026-06-15", "params": {"pd_cutoff_shift": -0.03}}
        ]
    )
    rec, det = _run(world, i, policy_new=tight)
    assert rec["cause"] == "policy"
    _check_common(rec, det)
    assert rec["step_policy"] > 0  # cut-off moved down = tighter
    # the same policy file and calendar at both decisions: the reason names the dated change
    rec, det = _run({**world, "policy": tight}, i, policy_new=tight)
    assert rec["cause"] == "policy" and rec["policy_version_old"] == rec["policy_version_new"]
    assert "APPETITE@2026-06-15" in rec["reason_1_en"], rec["reason_1_en"]


def test_regulation_cause(world):
    i = _pick(world)
    world["old"].loc[i, "ctx_active_lenders_cnt"] = 3.0  # unchanged between snapshots
    reg = load_policy(
        calendar=[
            {
                "name": "regulation",
                "start": "2026-06-15",
                "params": {"max_active_lenders": 3, "line_cap_cny": 2000},
            }
        ]
    )
    try:
        rec, det = _run(world, i, policy_new=reg)
    finally:
        world["old"].loc[i, "ctx_active_lenders_cnt"] = world["old"]["ctx_active_lenders_cnt"].iat[
            i
        ]
    assert rec["cause"] == "regulation"
    _check_common(rec, det)
    assert "REG-MULTI-LENDER" in rec["rules_new"]


def test_sync_delay_is_system_data_first(world):
    i = _pick(world)
    rec, det = _run(
        world, i, {"inst_late_cnt_3m": 4.0, "inst_dpd_max_3m": 60.0, "fresh_sync_lag_flag": 1.0}
    )
    assert rec["action"] == "defer"
    assert rec["cause"] == "system_data"
    assert rec["freshness_flag"]
    assert det["reasons"][0]["code"] == "data_not_current"
    assert rec["recourse_kind"] == "rerun"


def test_unchanged_world_has_no_downgrades(world):
    m = world["models"]
    new = world["old"].assign(as_of=AS_OF_NEW)
    dec_new = decide(
        new,
        m["credit"],
        m["fraud"],
        world["policy"],
        AS_OF_NEW,
        world["dec_old"]["new_line_cny"].to_numpy(),
        world["dec_old"],
    )
    res = explain_downgrades(
        dec_new,
        world["dec_old"],
        new,
        world["old"],
        m["credit"],
        m["credit"],
        m["fraud"],
        m["fraud"],
        world["policy"],
        world["policy"],
        AS_OF_NEW,
        AS_OF_OLD,
    )
    # users already in an adverse band stay adverse; nothing they get is blamed on a change
    if len(res.records):
        assert (res.records["n_changed_features"] == 0).all()
        assert (res.records["step_data"] == 0).all()
    assert isinstance(res.records, pd.DataFrame)


def test_a_deferred_kyc_freeze_going_ahead_leads_with_the_rule(world):
    # The old decision was a KYC freeze deferred on stale data; now the data are current and
    # the freeze goes ahead. Nothing else changed: the cause is the rule, and so is the first reason.
    i = _pick(world)
    m, policy = world["models"], world["policy"]
    old = world["old"].copy()
    old.loc[i, ["ctx_kyc_expiry_days", "fresh_sync_lag_flag"]] = [-5.0, 1.0]
    dec_old = decide(
        old, m["credit"], m["fraud"], policy, AS_OF_OLD, old["ctx_line_cny"].to_numpy()
    )
    assert dec_old["action"].iat[i] == "defer"
    new = old.assign(as_of=AS_OF_NEW)
    new.loc[i, "fresh_sync_lag_flag"] = 0.0
    dec_new = decide(
        new, m["credit"], m["fraud"], policy, AS_OF_NEW, dec_old["new_line_cny"].to_numpy(), dec_old
    )
    assert dec_new["action"].iat[i] == "freeze"
    uid = old["user_id"].iat[i]
    res = explain_downgrades(
        dec_new, dec_old, new, old, m["credit"], m["credit"], m["fraud"], m["fraud"],
        policy, policy, AS_OF_NEW, AS_OF_OLD, users=[uid], n_threads=1,
    )  # fmt: skip
    rec, det = res.records.iloc[0], res.details[0]
    assert rec["cause"] == "regulation"
    assert det["reasons"][0]["cause"] == "regulation"
    assert "REG-KYC" in det["reasons"][0]["text_en"]
    # it cites the KYC rule's own input, not the other rules' (lenders, debt-to-income)
    assert [v["feature"] for v in det["reasons"][0]["values"]] == ["ctx_kyc_expiry_days"]


def test_reason_values_cite_what_pushed_the_risk_up():
    from features.metadata import FEATURES
    from serving.explain.downgrades import _before_after

    cols = ["bureau_overdue_cny", "bureau_overdue_accounts_cnt", "bureau_dpd_bucket_max_3m"]
    xo = np.array([[800.0, 1.0, 1.0]])
    xn = np.array([[0.0, 3.0, 4.0]])  # the amount overdue fell; accounts and bucket rose
    weights = {"bureau_overdue_cny": -0.2, "bureau_overdue_accounts_cnt": 0.3,
               "bureau_dpd_bucket_max_3m": 0.9}  # fmt: skip
    got = _before_after("bureau_overdue", cols, [True] * 3, xn, xo, 0, FEATURES, weights=weights)
    assert [v["feature"] for v in got] == [
        "bureau_dpd_bucket_max_3m",
        "bureau_overdue_accounts_cnt",
    ]
    # nothing pushed up (e.g. a rule's context): the changed values as they come
    none_up = {c: -1.0 for c in cols}
    got = _before_after("bureau_overdue", cols, [True] * 3, xn, xo, 0, FEATURES, weights=none_up)
    assert [v["feature"] for v in got] == cols


def test_a_small_change_is_shown_with_the_digits_that_show_it():
    from features.metadata import FEATURES
    from serving.explain.downgrades import _before_after, _values_text

    cols = ["bureau_debt_limit_ratio", "bureau_balance_cny"]
    xo = np.array([[0.1134, 5000.2]])
    xn = np.array([[0.1149, 5000.2]])  # the ratio rose a little; the balance did not move
    got = _before_after("bureau_debt_level", cols, [True, False], xn, xo, 0, FEATURES)
    assert [(v["before"], v["after"]) for v in got] == [("0.1134", "0.1149")]
    assert "unchanged" not in _values_text(got)
    from serving.explain.downgrades import before_after_text

    assert before_after_text(0.106287, 0.111935, "ratio") == {"before": "0.1063", "after": "0.1119"}
    assert before_after_text(0.25, 0.26, "ratio") == {"before": "0.25", "after": "0.26"}
    # a value that really did not change (a level explanation lists it) says so
    same = _before_after("bureau_debt_level", cols, [True, True], xo, xo, 0, FEATURES)
    assert _values_text(same).count("(unchanged)") == 2
