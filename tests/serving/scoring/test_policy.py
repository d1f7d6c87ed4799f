"""Line policy on hand-built rows: each band and rule, the freshness guard, dated calendar rules."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.scoring.policy import (
    DEFER_REASON_EN,
    DEFER_REASON_ZH,
    adverse_cutoff_logodds,
    band_cutoffs_logodds,
    decide_lines,
    load_policy,
    previous_bands,
    previous_rules,
)

AS_OF = pd.Timestamp("2026-10-31")
NAN = np.nan


def rows(*specs: dict) -> pd.DataFrame:
    """Rows with neutral defaults: 10000 CNY line, current data, no ctx rule in reach."""
    base = {
        "prev_line_cny": 10000.0,
        "pd": 0.04,
        "fraud_p": 0.01,
        "ctx_kyc_expiry_days": 300.0,
        "ctx_dti_ratio": 0.2,
        "ctx_active_lenders_cnt": 1.0,
        "fresh_stale": 0.0,
        "fresh_sync_lag_flag": 0.0,
        "fresh_bureau_accounts_age_days": 10.0,
        "fresh_installments_age_days": 0.5,
    }
    return pd.DataFrame([{"user_id": f"u{i}", **base, **s} for i, s in enumerate(specs)])


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def test_bands_and_rules_on_hand_rows(policy):
    # Default policy: PD1 <=3% raise x1.2, PD2 <=8% keep, PD3 <=15% lower x0.7, PD4 <=35% lower x0.4,
    # PD5 close; step 100, min 500, max 50000; fraud freeze at 0.5; KYC grace 0; DTI cap 0.6.
    df = rows(
        {"pd": 0.01},  # PD1: 10000*1.2 = 12000 raise
        {"pd": 0.04},  # PD2: keep 10000
        {"pd": 0.10},  # PD3: 7000 lower
        {"pd": 0.20},  # PD4: 4000 lower
        {"pd": 0.50},  # PD5: close -> 0
        {"pd": 0.01, "prev_line_cny": 1000.0, "fraud_p": 0.7},  # fraud freeze, line kept 1000
        {"ctx_kyc_expiry_days": -3.0},  # KYC expired: freeze
        {"ctx_dti_ratio": 1.2},  # DTI cap: 10000*0.6/1.2 = 5000 lower
        {"pd": 0.10, "prev_line_cny": 600.0},  # 420 < 500 min line: close
        {"pd": 0.01, "prev_line_cny": 45000.0},  # 54000 capped at product max 50000
        {
            "pd": 0.01,
            "ctx_dti_ratio": NAN,
            "ctx_active_lenders_cnt": NAN,
            "ctx_kyc_expiry_days": NAN,
        },  # NaN ctx: no rule
        {"pd": 0.10, "prev_line_cny": 3333.0},  # 2333.1 rounds down to 2300
        {
            "pd": 0.01,
            "prev_line_cny": 50.0,
        },  # 60 would round down to 0: a raise never cuts, keep 50
        {"pd": 0.50, "prev_line_cny": 0.0},  # already closed: stays 0, a keep
    )
    out = decide_lines(df, policy, AS_OF)
    assert out["action"].tolist() == [
        "raise",
        "keep",
        "lower",
        "lower",
        "close",
        "freeze",
        "freeze",
        "lower",
        "close",
        "raise",
        "raise",
        "lower",
        "keep",
        "keep",
    ]
    assert out["new_line_cny"].tolist() == [
        12000.0,
        10000.0,
        7000.0,
        4000.0,
        0.0,
        1000.0,
        10000.0,
        5000.0,
        0.0,
        50000.0,
        12000.0,
        2300.0,
        50.0,
        0.0,
    ]
    assert out["rules_fired"].tolist() == [
        "PD1",
        "PD2",
        "PD3",
        "PD4",
        "PD5",
        "PD1;FRAUD-FREEZE",
        "PD2;REG-KYC",
        "PD2;REG-DTI",
        "PD3;LINE-MIN",
        "PD1;LINE-MAX",
        "PD1",
        "PD3",
        "PD1",
        "PD5",
    ]
    assert (out["policy_version"] == "2026.12-1").all()
    assert (out["defer_reason"] == "").all()
    assert df["pd"].tolist()[0] == 0.01  # input untouched


def test_decision_margin_is_logodds_minus_adverse_cutoff(policy):
    df = rows({"pd": 0.05}, {"pd": 0.09})
    out = decide_lines(df, policy, AS_OF)
    cut = math.log(0.08 / 0.92)  # the last non-adverse band (PD2) ends at 8%
    assert adverse_cutoff_logodds(policy, AS_OF) == pytest.approx(cut)
    assert out["decision_margin"].tolist() == pytest.approx(
        [math.log(0.05 / 0.95) - cut, math.log(0.09 / 0.91) - cut]
    )
    assert out["decision_margin"].iloc[0] < 0 < out["decision_margin"].iloc[1]
    assert out["fraud_margin"].iloc[0] == pytest.approx(math.log(0.01 / 0.99) - 0.0)


def test_freshness_guard_defers_adverse_and_leaves_favourable(policy):
    df = rows(
        {"pd": 0.10, "fresh_stale": 1.0},  # lower -> defer, line kept
        {"pd": 0.50, "fresh_sync_lag_flag": 1.0},  # close -> defer
        {
            "fraud_p": 0.9,
            "fresh_bureau_accounts_age_days": 60.0,
        },  # freeze on 60-day-old bureau (> 45) -> defer
        {"pd": 0.01, "fresh_stale": 1.0},  # raise stays a raise
        {"pd": 0.04, "fresh_stale": 1.0},  # keep stays keep
        {
            "pd": 0.10,
            "fresh_bureau_accounts_age_days": NAN,
            "fresh_stale": NAN,
        },  # NaN age/flag: not stale -> lower
    )
    out = decide_lines(df, policy, AS_OF)
    assert out["action"].tolist() == ["defer", "defer", "defer", "raise", "keep", "lower"]
    assert out["new_line_cny"].tolist() == [10000.0, 10000.0, 10000.0, 12000.0, 10000.0, 7000.0]
    assert out["defer_reason"].tolist() == [DEFER_REASON_EN] * 3 + [""] * 3
    assert out["defer_reason_zh"].iloc[0] == DEFER_REASON_ZH
    assert out["rules_fired"].iloc[0] == "PD3;FRESH-DEFER"
    # A looser limit from config makes the 60-day bureau age current again: the freeze stands.
    loose = decide_lines(df.iloc[[2]], policy, AS_OF, max_age_days={"bureau_accounts": 90.0})
    assert loose["action"].tolist() == ["freeze"]


CALENDAR = [
    {"name": "macro_shock", "start": "2026-03-01", "params": {"unemployment_delta": 0.02}},
    {
        "name": "regulation",
        "start": "2026-06-01",
        "params": {"max_active_lenders": 5, "line_cap_cny": 3000},
    },
    {"name": "risk_appetite", "start": "2026-09-01", "params": {"pd_cutoff_shift": -0.02}},
]


def test_calendar_regulation_applies_from_its_start_date():
    policy = load_policy(calendar=CALENDAR)
    assert policy.version.startswith("2026.12-1+cal-")
    df = rows(
        {"pd": 0.01, "ctx_active_lenders_cnt": 6.0}, {"pd": 0.01, "ctx_active_lenders_cnt": 4.0}
    )
    before = decide_lines(df, policy, "2026-05-31")
    assert before["action"].tolist() == ["raise", "raise"]
    after = decide_lines(df, policy, "2026-06-30")
    # 6 lenders >= 5: capped at 3000 (a lower); 4 lenders: untouched raise to 12000
    assert after["action"].tolist() == ["lower", "raise"]
    assert after["new_line_cny"].tolist() == [3000.0, 12000.0]
    assert after["rules_fired"].iloc[0] == "PD1;REG-MULTI-LENDER@2026-06-01"


def test_risk_appetite_tightens_cutoffs_from_its_date():
    policy = load_policy(calendar=CALENDAR)
    df = rows({"pd": 0.07})  # PD2 (<=8%) before; the shift moves the PD2 edge to 6%: PD3
    assert decide_lines(df, policy, "2026-08-31")["action"].tolist() == ["keep"]
    after = decide_lines(df, policy, "2026-09-30")
    assert after["action"].tolist() == ["lower"]
    assert after["new_line_cny"].tolist() == [7000.0]
    assert after["rules_fired"].iloc[0] == "PD3;APPETITE@2026-09-01"
    assert band_cutoffs_logodds(policy, "2026-09-30")[1] == pytest.approx(math.log(0.06 / 0.94))
    # The same user re-evaluated under the policy without the calendar keeps the line: the
    # explanation engine attributes this downgrade to the policy change.
    assert decide_lines(df, load_policy(), "2026-09-30")["action"].tolist() == ["keep"]


def test_appetite_can_stop_raises(tmp_path):
    text = (load_policy.__globals__["DEFAULT_POLICY_FILE"]).read_text(encoding="utf-8")
    text = text.replace('version = "2026.12-1"', 'version = "test-no-raise"')
    text += '\n[[risk_appetite]]\nid = "APPETITE-FREEZE-RAISES"\neffective_from = "2026-10-01"\nparams = { allow_raise = false }\n'
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    out = decide_lines(rows({"pd": 0.01}), load_policy(path), AS_OF)
    assert out["action"].tolist() == ["keep"]
    assert out["rules_fired"].iloc[0] == "PD1;APPETITE-FREEZE-RAISES"


def test_unknown_calendar_parameters_are_an_error():
    bad = [{"name": "regulation", "start": "2026-06-01", "params": {"max_lenders": 5}}]
    with pytest.raises(ValueError, match=r"max_lenders"):
        load_policy(calendar=bad)


def test_bad_policy_file_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        'version = "x"\n[[bands]]\nid="A"\npd_max=0.5\naction="raise"\nmultiplier=1.0\n',
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"bad.toml: missing top-level key 'fraud'"):
        load_policy(path)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0001, 0.9999),
            st.floats(0, 1),
            st.floats(0, 60000),
            st.booleans(),
            st.floats(0, 2),
        ),
        min_size=1,
        max_size=30,
    ),
    st.randoms(use_true_random=False),
)
def test_invariants(specs, rnd):
    policy = load_policy()
    df = rows(
        *[
            {
                "pd": p,
                "fraud_p": f,
                "prev_line_cny": line,
                "fresh_stale": float(stale),
                "ctx_dti_ratio": dti,
            }
            for p, f, line, stale, dti in specs
        ]
    )
    out = decide_lines(df, policy, AS_OF)
    stale = df["fresh_stale"].to_numpy() > 0
    # never an adverse action on stale data
    assert not out["action"][stale].isin(["lower", "freeze", "close"]).any()
    # a line never rises above max(previous line, product maximum), and raises only on raise
    assert (
        out["new_line_cny"] <= np.maximum(df["prev_line_cny"], policy.max_line_cny) + 1e-9
    ).all()
    assert ((out["new_line_cny"] > df["prev_line_cny"]) == (out["action"] == "raise")).all()
    # row order changes nothing
    order = list(range(len(df)))
    rnd.shuffle(order)
    shuffled = decide_lines(df.iloc[order], policy, AS_OF).sort_values("user_id")
    pd.testing.assert_frame_equal(shuffled, out.sort_values("user_id"))


def test_simulator_calendar_spellings():
    # The entries features/world/scenarios.py writes for the `regulation` and `risk_appetite` scenarios.
    calendar = [
        {
            "name": "regulation",
            "start": "2026-08-01",
            "params": {
                "max_active_lenders": 5,
                "line_cap_cny": 5000.0,
                "dti_cap": 0.5,
                "kyc_expiry_freeze": True,
            },
        },
        {
            "name": "risk_appetite",
            "start": "2026-09-01",
            "params": {"pd_cutoff_shift": -0.02, "line_multiplier": 0.9},
        },
    ]
    policy = load_policy(calendar=calendar)
    df = rows(
        {"pd": 0.005, "ctx_active_lenders_cnt": 5.0},  # capped at 5000 (from 10800): lower
        # calendar DTI cap 0.5 replaces the file's 0.6: min(10000*0.9, 10000*0.5/0.55) -> 9000
        {"ctx_dti_ratio": 0.55},
        {"pd": 0.05},  # keep band, line matrix x0.9: 9000 lower
        {"pd": 0.005},  # PD1 (edge 3% - 2% = 1%): raise x1.2 x0.9 = 10800
    )
    out = decide_lines(df, policy, "2026-09-30")
    assert out["new_line_cny"].tolist() == [5000.0, 9000.0, 9000.0, 10800.0]
    assert out["action"].tolist() == ["lower", "lower", "lower", "raise"]
    assert out["rules_fired"].tolist() == [
        "PD1;APPETITE@2026-09-01;REG-MULTI-LENDER@2026-08-01",
        "PD2;APPETITE@2026-09-01;REG-DTI@2026-08-01",
        "PD2;APPETITE@2026-09-01",
        "PD1;APPETITE@2026-09-01",
    ]
    # in August only the regulation is active: the DTI user is capped, the keep user kept
    aug = decide_lines(df, policy, "2026-08-31")
    assert aug["action"].tolist() == ["lower", "lower", "keep", "raise"]


# --- prev_band: a line moves when the risk moves (no repeated cut or raise for staying in a band)


def test_same_lowering_band_keeps_and_a_worse_band_lowers(policy):
    df = rows(
        {"pd": 0.10, "prev_band": "PD3"},  # stays in PD3: keep 10000 (was a cut to 7000)
        {"pd": 0.20, "prev_band": "PD4"},  # stays in PD4: keep
        {"pd": 0.20, "prev_band": "PD3"},  # PD3 -> PD4, worse: 4000 lower
        {"pd": 0.11, "prev_band": "PD2"},  # PD2 -> PD3, worse (past the edge by 0.35): 7000 lower
        {"pd": 0.10, "prev_band": "PD4"},  # PD4 -> PD3, better but a lower band: keep
        {"pd": 0.50, "prev_band": "PD5"},  # close bands always close
        {"pd": 0.04, "prev_band": "PD1"},  # keep band: keep
    )
    out = decide_lines(df, policy, AS_OF)
    assert out["action"].tolist() == ["keep", "keep", "lower", "lower", "keep", "close", "keep"]
    assert out["new_line_cny"].tolist() == [10000.0, 10000.0, 4000.0, 7000.0, 10000.0, 0.0, 10000.0]
    # the band still fires and is recorded
    assert out["pd_band"].tolist() == ["PD3", "PD4", "PD4", "PD3", "PD3", "PD5", "PD2"]
    assert [r.split(";")[0] for r in out["rules_fired"].astype(str)] == out["pd_band"].tolist()


def test_band_hysteresis_holds_a_known_user_near_an_edge(policy, tmp_path):
    h = policy.band_hysteresis_logodds
    assert h > 0
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    edge = logit(0.08)  # PD2 (keep) / PD3 (lower)
    near_up, far_up = sigmoid(edge + 0.5 * h), sigmoid(edge + 1.5 * h)
    near_dn = sigmoid(edge - 0.5 * h)
    df = rows(
        {"pd": near_up, "prev_band": "PD2"},  # just past the edge: stays in PD2, keep
        {"pd": far_up, "prev_band": "PD2"},  # past it by more than h: PD3, lower
        {"pd": near_dn, "prev_band": "PD3"},  # just back under it: stays in PD3, keep
        {"pd": near_up},  # unknown band (first decision): the plain edge, PD3, lower
    )
    out = decide_lines(df, policy, AS_OF)
    assert out["pd_band"].tolist() == ["PD2", "PD3", "PD3", "PD3"]
    assert out["action"].tolist() == ["keep", "lower", "keep", "lower"]
    # without hysteresis the wobble cuts the line
    text = (load_policy.__globals__["DEFAULT_POLICY_FILE"]).read_text(encoding="utf-8")
    path = tmp_path / "p.toml"
    path.write_text(
        text.replace(f"band_hysteresis_logodds = {h}", "band_hysteresis_logodds = 0.0"),
        encoding="utf-8",
    )
    plain = decide_lines(df, load_policy(path), AS_OF)
    assert plain["action"].tolist()[:3] == ["lower", "lower", "keep"]
    bad = tmp_path / "bad.toml"
    bad.write_text(
        text.replace(f"band_hysteresis_logodds = {h}", "band_hysteresis_logodds = -1.0"),
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="band_hysteresis_logodds"):
        load_policy(bad)


def test_raise_band_raises_only_on_improvement(policy):
    df = rows(
        {"pd": 0.01, "prev_band": "PD2"},  # PD2 -> PD1, better: 12000 raise
        {"pd": 0.01, "prev_band": "PD3"},  # PD3 -> PD1: raise
        {"pd": 0.01, "prev_band": "PD1"},  # stays in PD1: keep (was a compounding raise)
    )
    out = decide_lines(df, policy, AS_OF)
    assert out["action"].tolist() == ["raise", "raise", "keep"]
    assert out["new_line_cny"].tolist() == [12000.0, 12000.0, 10000.0]


def test_unknown_prev_band_decides_as_without_it(policy):
    specs = [{"pd": p} for p in (0.01, 0.04, 0.10, 0.20, 0.50)] + [
        {"pd": 0.10, "ctx_dti_ratio": 1.2},
        {"pd": 0.10, "fresh_stale": 1.0},
    ]
    base = decide_lines(rows(*specs), policy, AS_OF)
    for unknown in (NAN, None, ""):
        df = rows(*specs).assign(prev_band=[unknown] * len(specs))
        pd.testing.assert_frame_equal(decide_lines(df, policy, AS_OF), base)
    # a categorical column (as read back from parquet) with missing values works too
    cat = rows(*specs).assign(prev_band=pd.Categorical([None] * len(specs), categories=["PD3"]))
    pd.testing.assert_frame_equal(decide_lines(cat, policy, AS_OF), base)
    assert base["action"].tolist()[:5] == ["raise", "keep", "lower", "lower", "close"]


def test_same_band_still_capped_by_dti_and_deferred_when_stale(policy):
    # Staying in PD3 no longer cuts, but a regulation cap still does (a continuing downgrade).
    df = rows(
        {"pd": 0.10, "prev_band": "PD3", "ctx_dti_ratio": 1.2},  # 10000*0.6/1.2 = 5000
        {"pd": 0.20, "prev_band": "PD3", "fresh_stale": 1.0},  # worse band on stale data: defer
        {"pd": 0.10, "prev_band": "PD3", "fresh_stale": 1.0},  # same band, stale: plain keep
    )
    out = decide_lines(df, policy, AS_OF)
    assert out["action"].tolist() == ["lower", "defer", "keep"]
    assert out["new_line_cny"].tolist() == [5000.0, 10000.0, 10000.0]


def test_appetite_shift_into_a_worse_band_still_lowers(tmp_path):
    # pd 0.07 is PD2 normally; a -0.03 shift moves the PD2/PD3 edge to 0.05 -> PD3.
    cal = [{"name": "risk_appetite", "start": "2026-10-01", "params": {"pd_cutoff_shift": -0.03}}]
    pol = load_policy(calendar=cal)
    out = decide_lines(rows({"pd": 0.07, "prev_band": "PD2"}), pol, AS_OF)
    assert out["action"].tolist() == ["lower"] and out["pd_band"].tolist() == ["PD3"]
    assert out["new_line_cny"].tolist() == [7000.0]
    assert "APPETITE@2026-10-01" in str(out["rules_fired"].iloc[0])


def test_unknown_band_id_is_an_error(policy):
    with pytest.raises(ValueError, match=r"prev_band.*u1.*PD9"):
        decide_lines(rows({"prev_band": "PD2"}, {"prev_band": "PD9"}), policy, AS_OF)


def test_previous_bands_forgets_a_deferred_band(policy):
    prev = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d"],
            "action": ["keep", "defer", "lower", "keep"],
            "pd_band": pd.Categorical(["PD2", "PD3", "PD3", "OLD"]),
        }
    )
    got = previous_bands(prev, policy)
    assert got.index.tolist() == ["a", "b", "c", "d"]
    assert got.tolist() == ["PD2", None, "PD3", None]
    # a deferred PD2 -> PD3 cut goes ahead once the data is current
    out = decide_lines(rows({"pd": 0.10, "prev_band": got["b"]}), policy, AS_OF)
    assert out["action"].tolist() == ["lower"]


def test_appetite_line_multiplier_tightens_moving_lines_not_the_same_users_every_month():
    # line_multiplier 0.9 from 2026-10-01. pd 0.04 is PD2 (keep, x1.0):
    #   first decision (no prev_band): 10000 x 1.0 x 0.9 = 9000 -> lower;
    #   staying in PD2 (prev_band PD2): the line is held at 10000, not cut again each month;
    #   moving PD2 -> PD3 (pd 0.11): 10000 x 0.7 x 0.9 = 6300 -> lower, tighter than 7000.
    cal = [{"name": "risk_appetite", "start": "2026-10-01", "params": {"line_multiplier": 0.9}}]
    pol = load_policy(calendar=cal)
    out = decide_lines(rows({}, {"prev_band": "PD2"}, {"pd": 0.11, "prev_band": "PD2"}), pol, AS_OF)
    assert out["action"].tolist() == ["lower", "keep", "lower"]
    assert out["new_line_cny"].tolist() == [9000.0, 10000.0, 6300.0]


def test_a_binding_dti_cap_cuts_once_then_holds_the_line(policy):
    # REG-DTI caps at prev x 0.6 / dti. dti 0.8 -> 10000 x 0.6 / 0.8 = 7500 on the first run;
    # when the previous decision already fired REG-DTI the line is held (no second cut, no
    # raise); a previous defer (held-back cut) or unknown prev_rules cuts as before.
    out = decide_lines(
        rows(
            {"ctx_dti_ratio": 0.8},
            {"ctx_dti_ratio": 0.8, "prev_band": "PD2", "prev_rules": "PD2;REG-DTI"},
            {"ctx_dti_ratio": 0.8, "prev_band": "PD2", "prev_rules": None},
            {"ctx_dti_ratio": 0.8, "pd": 0.02, "prev_band": "PD2", "prev_rules": "PD2;REG-DTI"},
        ),
        policy,
        AS_OF,
    )
    assert out["new_line_cny"].tolist() == [7500.0, 10000.0, 7500.0, 10000.0]
    assert out["action"].tolist() == ["lower", "keep", "lower", "keep"]
    assert all("REG-DTI" in str(r) for r in out["rules_fired"])
    prev = pd.DataFrame(
        {"user_id": ["a", "b"], "rules_fired": ["PD2;REG-DTI", "PD3"], "action": ["defer", "keep"]}
    )
    assert previous_rules(prev).tolist() == [None, "PD3"]


# --- model-update protection (版本更新): a new model version alone does not cut a clean repayer


CLEAN = {
    "ctx_repaid_in_full_30d": 1.0,
    "inst_dpd_max_1m": 0.0,
    "inst_overdue_cnt_now": 0.0,
    "bureau_delinquent_accounts_cnt_3m": 0.0,
    "bureau_lenders_opened_cnt_1m": 0.0,
    "bureau_inquiries_cnt_1m": 1.0,
    "app_sim_changes_cnt_30d": 0.0,
    "prev_band": "PD2",
    "prev_credit_model_version": 3.0,
    "credit_model_version": 4.0,
    "pd": 0.20,  # PD4 under the new model: a cut to 4000 without the hold
}


def test_model_update_hold_keeps_a_clean_repayer_and_cuts_one_with_new_evidence(policy):
    df = rows(
        CLEAN,  # held: keep 10000, MODEL-UPDATE-HOLD fires
        {**CLEAN, "inst_dpd_max_1m": 5.0},  # a late payment this month: new evidence, cut
        {**CLEAN, "bureau_delinquent_accounts_cnt_3m": 1.0},  # delinquent elsewhere: cut
        {**CLEAN, "bureau_inquiries_cnt_1m": 6.0},  # inquiry burst: cut
        {**CLEAN, "ctx_repaid_in_full_30d": 0.0},  # did not repay in full: cut
        {**CLEAN, "prev_credit_model_version": 4.0},  # same model as before: the data moved, cut
        {**CLEAN, "prev_credit_model_version": 4.0, "prev_rules": "PD2;MODEL-UPDATE-HOLD"},
        {**CLEAN, "pd": 0.06},  # still PD2 under the new model: nothing to hold, keep
        {**CLEAN, "fraud_p": 0.7},  # the fraud model flags them: frozen, not held
        {**CLEAN, "inst_dpd_max_1m": NAN, "bureau_inquiries_cnt_1m": NAN},  # no record: no evidence
    )
    out = decide_lines(df, policy, AS_OF)
    assert out["action"].tolist() == [
        "keep", "lower", "lower", "lower", "lower", "lower", "keep", "keep", "freeze", "keep",
    ]  # fmt: skip
    assert out["new_line_cny"].tolist()[:6] == [10000.0, 4000.0, 4000.0, 4000.0, 4000.0, 4000.0]
    held = out["rules_fired"].astype(str).str.contains("MODEL-UPDATE-HOLD").tolist()
    assert held == [True, False, False, False, False, False, True, False, False, True]
    assert out["pd_band"].astype(str).tolist()[0] == "PD2"  # the held band is what is recorded
    # A caller that does not know the model versions gets no hold (the policy cannot tell).
    plain = decide_lines(df.drop(columns=["prev_credit_model_version"]), policy, AS_OF)
    assert plain["action"].tolist()[0] == "lower"


def test_model_update_hold_can_be_turned_off(tmp_path, policy):
    from serving.scoring.policy import DEFAULT_POLICY_FILE

    text = DEFAULT_POLICY_FILE.read_text().replace("\nhold = true\n", "\nhold = false\n")
    off = tmp_path / "policy.toml"
    off.write_text(text)
    out = decide_lines(rows(CLEAN), load_policy(off), AS_OF)
    assert out["action"].tolist() == ["lower"]
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("\nhold = false\n", "\nhold = true\nholdd = 1\n"))
    with pytest.raises(ValueError, match=r"\[model_update\] unknown key\(s\) \['holdd'\]"):
        load_policy(bad)
