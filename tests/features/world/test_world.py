"""The simulated lending world: contracts, determinism, realism, scenarios, ground truth.

Realism ranges (approximate public industry figures for Chinese consumer finance / internet
micro-loans; see docs-fragments/simulator.md for where each comes from) are deliberately wide:
the test checks the world is in a plausible regime, not a point estimate.
"""

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from features.contracts import TABLES, validate_tables
from features.ids import pseudonymise
from features.schedule import due_dates
from features.tables import file_digest, read_table_dir
from features.world.ids import pseudonymise_many
from features.world.scenarios import parse_scenarios
from features.world.simulate import simulate_world

ALL_ARGS = dict(users=2000, months=12, seed=11, scenarios=["all"], chunk_users=800, progress=False)
BASE_ARGS = dict(users=4000, months=24, seed=3, chunk_users=50_000, progress=False)


@pytest.fixture(scope="module")
def world_all(tmp_path_factory):
    out = tmp_path_factory.mktemp("world_all")
    return out, simulate_world(out_dir=out, **ALL_ARGS)


@pytest.fixture(scope="module")
def world_base(tmp_path_factory):
    out = tmp_path_factory.mktemp("world_base")
    return out, simulate_world(out_dir=out, scenarios=[], **BASE_ARGS)


@pytest.fixture(scope="module")
def world_macro(tmp_path_factory):
    out = tmp_path_factory.mktemp("world_macro")
    return out, simulate_world(out_dir=out, scenarios=["macro_shock@2025-01"], **BASE_ARGS)


def _raw(out, table):
    return read_table_dir(out / "raw" / table)


def test_output_passes_the_contracts_with_nothing_quarantined(world_all):
    out, summary = world_all
    manifest = json.loads((out / "raw" / "manifest.json").read_text())
    assert manifest["extracted_at"] == "2025-01-01T00:00:00"
    assert (manifest["seed"], manifest["users"], manifest["months"], manifest["start"]) == (
        11,
        2000,
        12,
        "2024-01-01",
    )
    assert len(manifest["scenarios"]) == 5
    raw = {t: _raw(out, t) for t in TABLES}
    assert (
        len(list((out / "raw" / "loans").glob("part-*.parquet"))) == 3
    )  # 2000 users / 800 per chunk
    kept, quarantined, reports = validate_tables(raw, pd.Timestamp(manifest["extracted_at"]))
    for t in TABLES:
        assert reports[t].rows_in > 0, t
        assert reports[t].rows_quarantined == 0, (t, reports[t].reasons)
        assert summary["rows"][t] == reports[t].rows_in
    assert raw["users"]["user_id"].str.match(r"^u_[0-9a-f]{16}$").all()


def test_same_seed_and_args_give_byte_identical_files(world_all, tmp_path):
    out, _ = world_all
    simulate_world(out_dir=tmp_path, **ALL_ARGS)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 7 * 3 + 1 + 4  # 7 tables x 3 chunks, raw and truth manifests, 3 truths
    for f in files:
        assert file_digest(out / f) == file_digest(tmp_path / f), f


def test_world_is_in_realistic_ranges(world_base):
    _, s = world_base
    assert 0.015 <= s["default_rate_annual"] <= 0.06  # annual 90+ DPD default, ~2-6%
    assert 0.002 <= s["fraud_rate"] <= 0.025  # fraud: a fraction of a percent to ~1-2% of users
    assert 0.15 <= s["utilisation"] <= 0.60  # revolving utilisation
    assert 0.03 <= s["late_rate"] <= 0.12  # installments paid 1+ days late
    assert 0.005 <= s["late_30_rate"] <= 0.05  # M1+ (30+ DPD)
    assert 2.0 <= s["lenders_per_user"] <= 6.0  # 多头: several lenders per borrower


def _observable_drivers(out, as_of):
    """A few per-user drivers a lender could compute at `as_of` from the raw tables only."""
    vis = lambda df: df[(df["available_time"] <= as_of) & (df["event_time"] < as_of)]  # noqa: E731
    since = as_of - pd.DateOffset(months=6)
    users = vis(_raw(out, "users")).set_index("user_id")
    inst = vis(_raw(out, "installments"))
    inst = inst[inst["event_time"] >= since]
    bureau = vis(_raw(out, "bureau_accounts"))
    inq = vis(_raw(out, "bureau_inquiries"))
    loans = vis(_raw(out, "loans"))
    x = pd.DataFrame(index=users.index)
    x["income_band"] = users["income_band"]
    x["late_6m"] = (
        ((inst["event_time"] - inst["due_date"]).dt.days >= 1).groupby(inst["user_id"]).sum()
    )
    recent = bureau[bureau["event_time"] >= as_of - pd.DateOffset(months=2)]
    x["lenders"] = recent.groupby("user_id")["lender_token"].nunique()
    x["bureau_dpd_max_6m"] = (
        bureau[bureau["event_time"] >= since].groupby("user_id")["dpd_bucket"].max()
    )
    x["inquiries_6m"] = inq[inq["event_time"] >= since].groupby("user_id").size()
    drawn = loans[loans["event_time"] >= since].groupby("user_id")["amount_cny"].sum()
    x["drawn_to_line_6m"] = drawn / users["initial_line_cny"]
    return x.fillna(0.0)


def test_simple_model_on_observable_drivers_separates_defaults_but_not_trivially(world_base):
    out, _ = world_base
    as_of = pd.Timestamp("2025-01-01")
    x = _observable_drivers(out, as_of)
    outcomes = (
        pd.read_parquet(out / "truth" / "outcomes.parquet").set_index("user_id").reindex(x.index)
    )
    at_risk = ~(outcomes["default_date"] < as_of) & outcomes["fraud_date"].isna()
    x, outcomes = x[at_risk], outcomes[at_risk]
    y = (
        (outcomes["default_date"] >= as_of)
        & (outcomes["default_date"] < as_of + pd.DateOffset(months=12))
    ).astype(int)
    assert 40 <= y.sum() <= 0.08 * len(y)
    z = (x - x.mean()) / x.std()
    p = cross_val_predict(LogisticRegression(max_iter=1000), z, y, cv=5, method="predict_proba")[
        :, 1
    ]
    auc = roc_auc_score(y, p)
    assert 0.68 <= auc <= 0.92, auc


def test_macro_shock_moves_default_and_bureau_figures(world_base, world_macro):
    (base_dir, base), (macro_dir, macro) = world_base, world_macro
    assert macro["default_rate_annual"] > 1.2 * base["default_rate_annual"]
    assert macro["inquiries_per_user_month"] > 1.2 * base["inquiries_per_user_month"]
    shock = pd.Timestamp("2025-01-01")

    def after_shock(d):
        b = _raw(d, "bureau_accounts")
        b = b[b["event_time"] >= shock]
        q = _raw(d, "bureau_inquiries")
        return (b["dpd_bucket"] > 0).mean(), (q["event_time"] >= shock).sum()

    (od_base, inq_base), (od_macro, inq_macro) = after_shock(base_dir), after_shock(macro_dir)
    assert od_macro > 1.3 * od_base
    assert inq_macro > 1.3 * inq_base
    um = pd.read_parquet(macro_dir / "truth" / "user_month.parquet")
    assert (
        um.loc[um["month"] == shock, "cause_macro"].all()
        and not um.loc[um["month"] < shock, "cause_macro"].any()
    )
    assert (
        um.loc[um["month"] >= shock, "latent_pd"].mean()
        > 1.3 * um.loc[um["month"] < shock, "latent_pd"].mean()
    )


def test_truth_primary_cause_follows_the_flags(world_all):
    out, _ = world_all
    um = pd.read_parquet(out / "truth" / "user_month.parquet")
    order = ["sync_delay", "fraud", "kyc_expiry", "device_change", "behaviour", "bureau", "macro"]
    flags = um[[f"cause_{c}" for c in order]].to_numpy()
    expected = np.where(flags.any(axis=1), np.array(order)[flags.argmax(axis=1)], "none")
    assert (um["primary_cause"].to_numpy() == expected).all()
    assert set(um["primary_cause"]) == {*order, "none"}  # every cause occurs in the `all` world
    assert um["latent_pd"].between(0, 1).all() and um["repaid_in_full"].any()


def test_truth_causes_are_visible_in_the_raw_data(world_all):
    out, summary = world_all
    um = pd.read_parquet(out / "truth" / "user_month.parquet")
    # the raw tables can witness only the months before the extract (the truth runs on past it)
    um = um[um["month"] < pd.Timestamp(summary["extracted_at"])]
    month = lambda s: s.dt.to_period("M").dt.to_timestamp()  # noqa: E731
    # sync delay: the user has a payment made before that month's decision (month-end as-of: the
    # start of the last day; a payment on the last day counts in the next month) that reached the
    # warehouse 5+ days later, after the decision
    inst = _raw(out, "installments")
    lag = inst[(inst["available_time"] - inst["event_time"]) >= pd.Timedelta(days=5)]
    m_of = month(lag["event_time"] + pd.Timedelta(days=1))
    decided = m_of + pd.offsets.MonthEnd(0)
    lag, m_of = lag[lag["available_time"] > decided], m_of[lag["available_time"] > decided]
    lagged = set(zip(lag["user_id"], m_of, strict=True))
    sync = um[um["cause_sync_delay"]]
    assert len(sync) > 10
    assert set(zip(sync["user_id"], sync["month"], strict=True)) == lagged
    # ...and only a subset of users (3.5 %) is hit, only in the incident months (2024-10, 2024-11: month 9 of 12)
    assert set(month(lag["event_time"]).dt.strftime("%Y-%m")) <= {"2024-10", "2024-11"}
    payers = inst.loc[month(inst["event_time"]) >= pd.Timestamp("2024-10-01"), "user_id"].nunique()
    assert 0.01 <= lag["user_id"].nunique() / payers <= 0.06
    # bureau: a new record the lender's extract shows that month, counted in the month it becomes
    # available (a monthly report arrives days after its month, so a decision sees it a month
    # later): an account whose DPD bucket rose, an account's first report, an inquiry
    bur = _raw(out, "bureau_accounts").sort_values(["account_id", "event_time"])
    rose = bur["dpd_bucket"] > bur.groupby("account_id")["dpd_bucket"].shift().fillna(0)
    first_report = ~bur["account_id"].duplicated()
    q = _raw(out, "bureau_inquiries")
    shown = pd.concat(
        [
            bur.loc[rose | first_report, ["user_id", "available_time"]],
            q[["user_id", "available_time"]],
        ]
    )
    seen = set(zip(shown["user_id"], month(shown["available_time"]), strict=True))
    b = um[um["cause_bureau"]]
    assert len(b) > 20
    hit = np.mean([k in seen for k in zip(b["user_id"], b["month"], strict=True)])
    assert hit >= 0.95, hit
    # ... and every such record is flagged in its month (not in the month of the event)
    flagged = set(zip(b["user_id"], b["month"], strict=True))
    in_period = [k for k in seen if k[1] <= um["month"].max()]
    assert np.mean([k in flagged for k in in_period]) >= 0.95
    # drift: the open accounts' total balance (or balance / limit) in the report that became
    # available that month rose above the report before
    rep = bur[bur["close_date"].isna()].assign(m=month(bur["event_time"]))
    tot = rep.groupby(["user_id", "m"])[["balance_cny", "limit_cny"]].sum()
    tot["ratio"] = tot["balance_cny"] / tot["limit_cny"]
    prev = tot.groupby(level="user_id").shift()
    up = tot[
        (tot["balance_cny"] > prev["balance_cny"] + 0.5) | (tot["ratio"] > prev["ratio"] + 1e-9)
    ]
    up_avail = {(u, m + pd.offsets.MonthBegin(1)) for u, m in up.index}
    d = um[um["drift_bureau_debt"]]
    assert len(d) > 100
    assert np.mean([k in up_avail for k in zip(d["user_id"], d["month"], strict=True)]) >= 0.95
    # behaviour: an installment due that month paid 1+ days late or not paid (or a draw up to the line)
    loans = _raw(out, "loans")
    pos, seq, due = due_dates(loans["event_time"], loans["term_months"].to_numpy())
    sched = pd.DataFrame(
        {
            "loan_id": loans["loan_id"].to_numpy()[pos],
            "user_id": loans["user_id"].to_numpy()[pos],
            "seq": seq,
            "due": due,
        }
    )
    sched = sched[sched["due"] < pd.Timestamp("2025-01-01")].merge(
        inst[["loan_id", "seq", "event_time"]], on=["loan_id", "seq"], how="left"
    )
    late = sched[
        sched["event_time"].isna() | ((sched["event_time"] - sched["due"]) >= pd.Timedelta(days=1))
    ]
    late_months = set(zip(late["user_id"], month(late["due"]), strict=True))
    beh = um[um["cause_behaviour"]]
    assert (
        np.mean([k in late_months for k in zip(beh["user_id"], beh["month"], strict=True)]) >= 0.8
    )
    # kyc expiry: the month of the user's identity-document expiry date
    users = _raw(out, "users").set_index("user_id")
    kyc = um[um["cause_kyc_expiry"]]
    assert len(kyc) > 5
    assert (
        month(users.loc[kyc["user_id"], "kyc_expiry_date"]).to_numpy() == kyc["month"].to_numpy()
    ).all()
    # device change: a new phone or SIM, a password reset or a geo jump that month
    ev = _raw(out, "app_events")
    sig = ev[ev["event_type"].isin(["device_change", "sim_change", "password_reset", "geo_jump"])]
    sig_months = set(zip(sig["user_id"], month(sig["event_time"]), strict=True))
    dev = um[um["cause_device_change"] & (um["month"] < um["month"].max())]
    assert len(dev) > 20
    assert (
        np.mean([k in sig_months for k in zip(dev["user_id"], dev["month"], strict=True)]) >= 0.95
    )
    # fraud: the month of the user's bust-out or takeover draw
    outcomes = pd.read_parquet(out / "truth" / "outcomes.parquet")
    fr = um[um["cause_fraud"]].merge(outcomes, on="user_id")
    assert len(fr) > 5 and (month(fr["fraud_date"]) == fr["month"]).all()


def test_fraud_rings_share_devices_and_bust_out(world_all):
    out, summary = world_all
    outcomes = pd.read_parquet(out / "truth" / "outcomes.parquet")
    um = pd.read_parquet(out / "truth" / "user_month.parquet")
    ring_users = set(um.loc[um["is_fraudster"], "user_id"])
    assert 0.005 <= len(ring_users) / 2000 <= 0.03
    ev = _raw(out, "app_events")
    users_per_device = ev.groupby("device_token")["user_id"].nunique()
    shared = set(users_per_device[users_per_device > 1].index)
    on_shared = ev[ev["device_token"].isin(shared)].groupby("user_id").size()
    assert np.mean([u in on_shared.index for u in ring_users]) >= 0.9
    assert on_shared.index.isin(outcomes.loc[outcomes["ring_id"].notna(), "user_id"]).mean() >= 0.9
    # the fraud draw (bust-out or takeover) is never repaid; a ring's bust-out is its largest draw
    loans = _raw(out, "loans")
    busted = outcomes[outcomes["fraud_date"] < pd.Timestamp(summary["extracted_at"])]  # in raw
    fraud_loans = loans.merge(busted, on="user_id")
    fraud_loans = fraud_loans[fraud_loans["event_time"] == fraud_loans["fraud_date"]]
    assert len(fraud_loans) == len(busted) and busted["ring_id"].str.startswith("gang").any()
    assert not _raw(out, "installments")["loan_id"].isin(fraud_loans["loan_id"]).any()
    largest = loans.groupby("user_id")["amount_cny"].max()
    rings = fraud_loans[fraud_loans["ring_id"].str.startswith("ring")]
    assert len(rings) > 5
    assert (rings["amount_cny"].to_numpy() == largest.reindex(rings["user_id"]).to_numpy()).all()
    # ...and comes days after the ring member paid off everything early (还清)
    inst = _raw(out, "installments").merge(rings[["user_id", "fraud_date"]], on="user_id")
    payoff = inst[
        (inst["event_time"] < inst["fraud_date"])
        & (inst["event_time"] >= inst["fraud_date"] - pd.Timedelta(days=4))
        & (inst["event_time"] < inst["due_date"])
    ]
    assert payoff["user_id"].nunique() >= 0.5 * len(rings)
    month_of_fraud = rings["fraud_date"].dt.to_period("M").dt.to_timestamp()
    paid_off = um.set_index(["user_id", "month"])["repaid_in_full"]
    assert paid_off.reindex(list(zip(rings["user_id"], month_of_fraud, strict=True))).mean() >= 0.5
    # innocent bait: users outside any ring who changed phone and SIM
    sims = set(ev.loc[ev["event_type"] == "sim_change", "user_id"]) - set(
        outcomes.loc[outcomes["ring_id"].notna(), "user_id"]
    )
    assert len(sims) > 10


def test_scenarios_parse_and_reject_bad_specs():
    s = parse_scenarios(["macro_shock@2024-06", "sync_incident"], "2024-01-01", 24)
    assert [(x.name, x.start) for x in s] == [
        ("macro_shock", "2024-06-01"),
        ("sync_incident", "2025-07-01"),
    ]
    assert {x.name for x in parse_scenarios(["all"], "2024-01-01", 3)} == {
        "macro_shock",
        "fraud_wave",
        "sync_incident",
        "regulation",
        "risk_appetite",
    }
    with pytest.raises(ValueError, match="unknown.*known scenarios: macro_shock"):
        parse_scenarios(["meteor"], "2024-01-01", 12)
    with pytest.raises(ValueError, match="outside the simulated period"):
        parse_scenarios(["fraud_wave@2026-01"], "2024-01-01", 12)
    with pytest.raises(ValueError, match="NAME@YYYY-MM"):
        parse_scenarios(["macro_shock@June"], "2024-01-01", 12)


def test_calendar_holds_the_rules_the_policy_reads(world_all):
    out, _ = world_all
    cal = {e["name"]: e for e in json.loads((out / "truth" / "scenario_calendar.json").read_text())}
    assert cal["regulation"]["params"]["max_active_lenders"] == 5
    assert cal["risk_appetite"]["params"]["pd_cutoff_shift"] < 0
    assert all(e["start"].endswith("-01") for e in cal.values())


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="users"):
        simulate_world(0, 12, 1, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="first day of a month"):
        simulate_world(10, 12, 1, start="2024-01-15", out_dir=tmp_path, progress=False)


def test_fast_pseudonymise_matches_the_reference():
    ids = [f"sim-1-{i}" for i in range(50)] + ["", "长-ünïcode"]
    assert pseudonymise_many(ids) == [pseudonymise(s) for s in ids]
    for key in (b"k", b"x" * 64, b"long" * 40):  # short, block-sized, hashed (> 64 bytes)
        assert pseudonymise_many(ids, "l", key=key) == [pseudonymise(s, "l", key=key) for s in ids]


# --- the truth horizon: the world runs on past the extract, for the ground truth only -------
HORIZON_ARGS = dict(
    users=300, months=14, seed=5, scenarios=["all"], chunk_users=120, progress=False
)
# 14 months from 2024-01: the extract is taken at 2025-03-01; 12 months later is 2026-03-01
EXTRACT, TRUTH_END_12 = pd.Timestamp("2025-03-01"), pd.Timestamp("2026-03-01")


@pytest.fixture(scope="module")
def horizon_worlds(tmp_path_factory):
    worlds = {}
    for h in (0, 1, 12, 24):
        out = tmp_path_factory.mktemp(f"horizon_{h}")
        simulate_world(out_dir=out, truth_horizon_months=h, **HORIZON_ARGS)
        worlds[h] = out
    return worlds


def _digests(folder):
    return {str(p.relative_to(folder)): file_digest(p) for p in folder.rglob("*") if p.is_file()}


def test_raw_tables_are_byte_identical_whatever_the_truth_horizon(horizon_worlds):
    raw = {h: _digests(out / "raw") for h, out in horizon_worlds.items()}
    assert len(raw[0]) == 7 * 3 + 1  # 7 tables x 3 chunks (300 users / 120), the manifest
    for h in (1, 12, 24):
        assert raw[h] == raw[0], h
    manifest = json.loads((horizon_worlds[12] / "raw" / "manifest.json").read_text())
    assert manifest["extracted_at"] == EXTRACT.isoformat() and manifest["months"] == 14
    tables = {t: _raw(horizon_worlds[12], t) for t in TABLES}
    for t, df in tables.items():  # nothing of the months past the extract leaks into raw
        assert (df["event_time"] < EXTRACT).all() and (df["available_time"] <= EXTRACT).all(), t


def test_truth_runs_to_the_horizon_and_agrees_with_a_shorter_one(horizon_worlds):
    def truth(h):
        out = horizon_worlds[h] / "truth"
        return (
            pd.read_parquet(out / "user_month.parquet"),
            pd.read_parquet(out / "outcomes.parquet"),
            json.loads((out / "manifest.json").read_text()),
        )

    um0, out0, man0 = truth(0)
    um12, out12, man12 = truth(12)
    assert man0["truth_end"] == man0["extracted_at"] == EXTRACT.isoformat()
    assert man0["truth_horizon_months"] == 0
    assert (man12["truth_end"], man12["truth_horizon_months"]) == (TRUTH_END_12.isoformat(), 12)
    # horizon 0: user-months up to the extract's last month, no outcome after the extract
    assert um0["month"].max() == pd.Timestamp("2025-02-01")
    assert not (out0["default_date"] > EXTRACT).any() and not (out0["fraud_date"] > EXTRACT).any()
    # horizon 12: 12 more months of user-months (every user signed up before the extract, so
    # each has all 12), and defaults after the extract, none after the truth end
    assert um12["month"].max() == pd.Timestamp("2026-02-01")
    assert (um12["month"] >= EXTRACT).sum() == 300 * 12
    assert (out12["default_date"] > EXTRACT).sum() > 10
    assert not (out12["default_date"] > TRUTH_END_12).any()
    assert not (out12["fraud_date"] > TRUTH_END_12).any()
    # up to the extract, the two truths are the same rows (ring_id too: this world's fraud wave,
    # months 9-12, ends before the extract, so no victim is named by one horizon only)
    pd.testing.assert_frame_equal(um12[um12["month"] < EXTRACT].reset_index(drop=True), um0)
    for col in ("default_date", "fraud_date"):
        cut = out12[col].where(out12[col] <= EXTRACT)
        pd.testing.assert_series_equal(cut, out0[col])


def test_a_truth_horizon_past_the_simulated_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"truth_horizon_months must be 0\.\.24"):
        simulate_world(10, 12, 1, out_dir=tmp_path, progress=False, truth_horizon_months=25)
    with pytest.raises(ValueError, match="truth_horizon_months"):
        simulate_world(10, 12, 1, out_dir=tmp_path, progress=False, truth_horizon_months=-1)


def test_the_feature_path_never_imports_the_simulator():
    features = Path(__file__).resolve().parents[3] / "features"
    offenders = []
    for path in sorted(features.rglob("*.py")):
        if "world" in path.relative_to(features).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            offenders += [f"{path.name}: {m}" for m in names if m.startswith("features.world")]
    assert len(list(features.glob("*.py"))) > 10  # the scan saw the package
    assert offenders == []
