"""The explain job end to end on files: records, JSON, HTML reports, determinism, fidelity figures."""

from __future__ import annotations

import pandas as pd
import pytest

from features.tables import write_parquet
from serving.explain.fidelity import measure_fidelity
from serving.explain.run import run_explain
from serving.scoring.policy import load_policy
from tests.serving.explain_world import AS_OF_NEW, AS_OF_OLD, base_snapshot, decide, train_models


def _world(root):
    m = train_models()
    old = base_snapshot(150, seed=7)
    new = old.assign(as_of=AS_OF_NEW)
    new.loc[0:9, "bureau_overdue_accounts_cnt"] = 4.0  # bureau trouble
    new.loc[10:19, "inst_late_cnt_3m"] = 4.0  # own late payments
    new.loc[15:19, "fresh_sync_lag_flag"] = (
        1.0  # ... five of them only look late: payments not synced
    )
    new.loc[
        20:24,
        ["app_device_changes_cnt_30d", "app_sim_changes_cnt_30d", "graph_device_shared_users_cnt"],
    ] = 5.0
    policy = load_policy()
    d_old = decide(old, m["credit"], m["fraud"], policy, AS_OF_OLD, old["ctx_line_cny"].to_numpy())
    d_new = decide(
        new, m["credit"], m["fraud"], policy, AS_OF_NEW, d_old["new_line_cny"].to_numpy(), d_old
    )
    for day, feats, dec in ((AS_OF_OLD, old, d_old), (AS_OF_NEW, new, d_new)):
        write_parquet(feats, root / "features" / f"as_of={day.date()}" / "features.parquet")
        write_parquet(
            dec.assign(policy_version=policy.version),
            root / "decisions" / f"as_of={day.date()}" / "decisions.parquet",
        )
    return {"credit-pd/1": m["credit"], "fraud/1": m["fraud"]}


def _run(root, models, users=None):
    return run_explain(
        AS_OF_NEW,
        root / "decisions",
        root / "features",
        root / "explanations",
        root / "reports",
        tracking_uri="sqlite:///unused.db",
        users=users,
        models=models,
        n_threads=1,
    )


def test_job_writes_records_reports_and_is_deterministic(tmp_path):
    models = _world(tmp_path)
    res = _run(tmp_path, models)
    assert res.prev_as_of == AS_OF_OLD
    rec = pd.read_parquet(res.records_path)
    assert res.explained == len(rec) > 0
    by_user = rec.set_index("user_id")
    assert by_user.loc["u_000001", "cause"] == "risk_bureau"
    assert by_user.loc["u_000011", "cause"] == "risk_behaviour"
    assert by_user.loc["u_000016", "cause"] == "system_data"
    assert by_user.loc["u_000021", "cause"] == "fraud"
    assert rec["additivity_error"].max() < 1e-6
    assert (rec["max_unchanged_attribution"] == 0).all()
    assert rec["reproduced"].all()
    # every user's first reason belongs to the cause the report names
    led = rec.dropna(subset=["reason_1_cause"])
    assert len(led) == len(rec) and (led["reason_1_cause"] == led["cause"]).all()

    page = (res.report_path.parent / "users" / "u_000001.html").read_text(encoding="utf-8")
    reason = by_user.loc["u_000001", "reason_1_en"]
    assert reason in page and by_user.loc["u_000001", "reason_1_zh"] in page
    for section in (
        "Decision trace",
        "Data freshness",
        "<svg",
        "Changed features",
        "What would restore the line",
        "Versions",
    ):
        assert section in page
    assert "ctx_age_band" not in page and "ctx_income_band" not in page  # demographics never shown
    index = res.report_path.read_text(encoding="utf-8")
    assert "By cause" in index and "users/u_000001.html" in index or "users/" in index

    before = {p: p.read_bytes() for p in (res.records_path, res.json_path, res.report_path)}
    res2 = _run(tmp_path, models)
    assert {
        p: p.read_bytes() for p in (res2.records_path, res2.json_path, res2.report_path)
    } == before


def test_single_user_and_clear_errors(tmp_path):
    models = _world(tmp_path)
    full = _run(tmp_path, models)
    before = full.records_path.read_bytes()
    res = _run(tmp_path, models, users=["u_000003"])
    assert res.explained == 1
    assert res.records_path.parent.name == "selected"
    assert full.records_path.read_bytes() == before  # the batch's files are untouched
    with pytest.raises(FileNotFoundError, match="creditline score"):
        run_explain(
            "2027-01-31",
            tmp_path / "decisions",
            tmp_path / "features",
            tmp_path / "e",
            tmp_path / "r",
            "sqlite:///x.db",
            models=models,
        )
    with pytest.raises(ValueError, match="no decisions before"):
        run_explain(
            AS_OF_OLD,
            tmp_path / "decisions",
            tmp_path / "features",
            tmp_path / "e",
            tmp_path / "r",
            "sqlite:///x.db",
            models=models,
        )


def _truth(rows: dict[str, tuple[str, ...]], month: str = "2026-06-01") -> pd.DataFrame:
    """A user-month truth table: per user, the simulator causes (and drift_<name>) flagged that month."""
    order = ["sync_delay", "fraud", "kyc_expiry", "device_change", "behaviour", "bureau", "macro"]
    return pd.DataFrame(
        {
            "user_id": list(rows),
            "month": pd.Timestamp(month),
            "primary_cause": [next((c for c in order if c in f), "none") for f in rows.values()],
            **{f"cause_{c}": [c in f for f in rows.values()] for c in order},
            **{
                f"drift_{d}": [f"drift_{d}" in f for f in rows.values()]
                for d in ("bureau_debt", "own_balance")
            },
        }
    )


def _records(users: list[str], **columns) -> pd.DataFrame:
    """Explanation records between AS_OF_OLD and AS_OF_NEW: clean checks unless given."""
    base = {
        "as_of": AS_OF_NEW,
        "prev_as_of": AS_OF_OLD,
        "freshness_flag": False,
        "repaid_in_full_30d": False,
        "additivity_error": 0.0,
        "max_unchanged_attribution": 0.0,
        "reproduced": True,
    }
    return pd.DataFrame({"user_id": users, **base, **columns})


def test_fidelity_figures_from_truth():
    records = _records(
        ["a", "b", "c", "d", "e", "f"],
        cause=[
            "risk_bureau",
            "system_data",
            "policy",
            "risk_behaviour",
            "risk_behaviour",
            "model_update",
        ],  # fmt: skip
        freshness_flag=[False, True, False, False, False, False],
        repaid_in_full_30d=[True, True, False, False, False, False],
        additivity_error=[1e-12, 0.0, 0.0, 2e-12, 0.0, 0.0],
        credit_model_version_old=[1, 1, 1, 1, 1, 1],
        credit_model_version_new=[1, 1, 1, 1, 1, 2],
    )
    truth = pd.concat(
        [
            _truth(
                {
                    "a": ("bureau",),
                    "b": ("sync_delay", "behaviour"),
                    "c": (),
                    "d": ("bureau",),
                    "e": ("behaviour", "bureau"),
                    "f": (),
                }
            ),
            _truth({"d": ("behaviour",)}, month="2026-05-01"),  # May is before the window
        ]
    )
    f = measure_fidelity(records, truth)
    # a: bureau; b: data not current comes first and alone; e: one of two planted causes;
    # f: the model version changed. c has nothing planted; d is blamed on behaviour (June: bureau)
    assert f["top_cause_match_share"] == pytest.approx(4 / 6)
    assert f["single_cause_downgrades"] == 4  # a, b, d, f
    assert f["top_cause_match_share_single_cause"] == pytest.approx(3 / 4)
    assert f["no_planted_cause_downgrades"] == 1
    assert f["best_constant_answer"] == "risk_bureau"  # planted for a, d, e
    assert f["best_constant_answer_share"] == pytest.approx(0.5)
    # strict: one primary cause by priority (e: behaviour), "none" matches policy (c) and model (f)
    assert f["top_cause_match_share_strict_priority"] == pytest.approx(5 / 6)
    assert f["sync_delay_cases"] == 1 and f["sync_delay_caught_share"] == 1.0
    assert f["top_cause_match_share_repaid_in_full"] == 1.0
    assert f["max_unchanged_attribution"] == 0.0
    assert f["flag_share_book"]["bureau"] == pytest.approx(3 / 6)


def test_fidelity_counts_a_new_regulation_only_for_users_its_rules_now_apply_to():
    records = _records(
        ["a", "b"],
        prev_action=["keep", "keep"],
        cause=["regulation", "regulation"],
        rules_new=["PD3;REG-DTI@2026-06-15", "PD3"],
    )
    truth = _truth({"a": ("behaviour",), "b": ("bureau",)})
    # the simulator's per-user truth cannot name a regulation: without the calendar, no match
    assert measure_fidelity(records, truth)["top_cause_match_share"] == 0.0
    calendar = [{"name": "regulation", "start": "2026-06-15", "params": {}}]
    f = measure_fidelity(records, truth, calendar)
    # a's new decision applied the new rule; b's did not, so the regulation is not b's cause
    assert f["top_cause_match_share"] == 0.5 and f["matched_by_calendar"] == 1
    late = [{"name": "regulation", "start": "2026-07-15", "params": {}}]  # after the new decision
    assert measure_fidelity(records, truth, late)["top_cause_match_share"] == 0.0


def test_fidelity_looks_a_month_further_back_for_a_cut_that_was_deferred():
    records = _records(
        ["a", "b", "c"],
        prev_action=["defer", "defer", "keep"],
        cause=["risk_bureau", "risk_behaviour", "risk_bureau"],
    )
    truth = pd.concat(
        [
            _truth({"a": (), "b": (), "c": ()}),
            # May: a's bureau event and b's late payment (hidden then by a sync delay, which the
            # deferral handled); c was not deferred, so May is not c's window
            _truth(
                {"a": ("bureau",), "b": ("sync_delay", "behaviour"), "c": ("bureau",)}, "2026-05-01"
            ),
        ]
    )
    f = measure_fidelity(records, truth)
    assert f["top_cause_match_share"] == pytest.approx(2 / 3)
    assert f["no_planted_cause_downgrades"] == 1  # c
    assert f["sync_delay_cases"] == 0  # the data were current at the new decision


def test_fidelity_uses_drifts_only_where_no_event_was_planted():
    records = _records(
        ["a", "b", "c", "d"], cause=["risk_bureau", "risk_bureau", "risk_behaviour", "risk_bureau"]
    )
    truth = _truth(
        {
            "a": ("drift_bureau_debt",),  # nothing planted but the debt elsewhere drifted up
            "b": ("behaviour", "drift_bureau_debt"),  # a late payment: the event is the cause
            "c": ("drift_own_balance", "drift_bureau_debt"),  # two drifts: either matches
            "d": (),  # nothing at all
        }
    )
    f = measure_fidelity(records, truth)
    assert f["top_cause_match_share"] == pytest.approx(2 / 4)  # a, c
    assert f["no_planted_cause_downgrades"] == 1  # d
    # events alone: only b has a planted cause, and it is not the one explained
    assert f["top_cause_match_share_events_only"] == 0.0
    assert f["no_planted_event_downgrades"] == 3


def test_fidelity_counts_a_regulation_started_before_a_deferral_for_the_held_cut():
    records = _records(
        ["a", "b"],
        prev_action=["defer", "keep"],
        cause=["regulation", "regulation"],
        rules_new=["PD3;REG-DTI@2026-05-15", "PD3;REG-DTI@2026-05-15"],
    )
    truth = pd.concat([_truth({"a": (), "b": ()}), _truth({"a": (), "b": ()}, "2026-05-01")])
    calendar = [{"name": "regulation", "start": "2026-05-15", "params": {}}]
    f = measure_fidelity(records, truth, calendar)
    # a's cut was held back in May, when the regulation started; b was decided then (not held)
    assert f["top_cause_match_share"] == 0.5


def test_fidelity_credits_a_defer_during_a_sync_incident_to_the_system():
    records = _records(
        ["a", "b"],
        prev_action=["keep", "keep"],
        action=["defer", "lower"],
        cause=["system_data", "system_data"],
        freshness_flag=True,
    )
    truth = _truth({"a": ("behaviour",), "b": ("behaviour",)})  # both paid late; no stuck payment
    assert measure_fidelity(records, truth)["top_cause_match_share"] == 0.0
    incident = [{"name": "sync_incident", "start": "2026-05-01", "params": {"months": 2}}]
    # a was held back by the guard while the incident ran: the system's doing; b was cut anyway
    assert measure_fidelity(records, truth, incident)["top_cause_match_share"] == 0.5
    over = [{"name": "sync_incident", "start": "2026-03-01", "params": {"months": 2}}]
    assert measure_fidelity(records, truth, over)["top_cause_match_share"] == 0.0


def test_reports_written_by_the_worker_process_are_the_same_bytes(tmp_path):
    from serving.explain.run import ReportWriter

    models = _world(tmp_path)
    inline = _run(tmp_path, models)
    files = sorted(p for p in (tmp_path / "explanations").rglob("*") if p.is_file())
    files += sorted(p for p in (tmp_path / "reports").rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    assert len([p for p in files if p.parent.name == "users"]) == inline.user_reports > 0
    for p in files:
        p.unlink()
    writer = ReportWriter()
    cache: dict = {}
    res = run_explain(
        AS_OF_NEW,
        tmp_path / "decisions",
        tmp_path / "features",
        tmp_path / "explanations",
        tmp_path / "reports",
        tracking_uri="sqlite:///unused.db",
        models=models,
        n_threads=1,
        report_writer=writer,
        model_cache=cache,
    )
    assert res.records_path.exists()  # the records are written before run_explain returns
    assert writer.finish() == [] and writer.pages == inline.user_reports
    assert {p: p.read_bytes() for p in files} == before


def test_a_failing_report_batch_is_reported_not_raised(tmp_path):
    from serving.explain.run import ReportWriter

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    writer = ReportWriter()
    writer.submit("2025-01-31", [{"user_id": "u"}], {}, blocker / "out", blocker / "rep")
    failures = writer.finish()
    assert [f["as_of"] for f in failures] == ["2025-01-31"]
    assert "writing reports" in failures[0]["error"]


def test_a_freeze_held_by_a_defer_is_not_a_new_downgrade(tmp_path):
    from serving.explain.downgrades import select_downgrades
    from serving.explain.run import usable_before

    def dec(actions: dict[str, str]) -> pd.DataFrame:
        return pd.DataFrame(
            {"user_id": list(actions), "new_line_cny": 5000.0, "action": list(actions.values())}
        )

    days = {
        "2026-04-30": dec({"f": "freeze", "k": "keep", "c": "close", "d": "defer"}),
        "2026-05-31": dec({"f": "defer", "k": "defer", "c": "defer", "d": "defer"}),
        "2026-06-30": dec({"f": "freeze", "k": "lower", "c": "freeze", "d": "freeze"}),
    }
    days["2026-06-30"].loc[1, "new_line_cny"] = 3000.0
    for day, frame in days.items():
        write_parquet(frame, tmp_path / f"as_of={day}" / "decisions.parquet")
    usable = usable_before(tmp_path, days["2026-05-31"], "2026-05-31")
    # f and c were frozen / closed before the defer and still are; k kept 5000; d was deferred
    # since before the first stored decision: its own line stands
    assert usable.to_dict() == {"f": 0.0, "k": 5000.0, "c": 0.0, "d": 5000.0}
    down = select_downgrades(days["2026-06-30"], days["2026-05-31"], usable)
    assert sorted(down["user_id"]) == ["d", "k"]
    # without the lookup a defer holds its own line: the frozen user would count again
    assert sorted(select_downgrades(days["2026-06-30"], days["2026-05-31"])["user_id"]) == [
        "c", "d", "f", "k",
    ]  # fmt: skip


def test_a_cut_held_back_by_a_deferral_is_explained_against_the_last_decision_that_took_effect(
    tmp_path,
):
    m = train_models()
    policy = load_policy()
    d0_day = AS_OF_OLD - pd.offsets.MonthEnd(1)
    s0 = base_snapshot(150, seed=7, as_of=d0_day)
    s0.loc[20:24, ["app_device_changes_cnt_30d", "app_sim_changes_cnt_30d",
                   "graph_device_shared_users_cnt"]] = 5.0  # fmt: skip  # frozen (fraud) at d0
    s1 = s0.assign(as_of=AS_OF_OLD)
    s1.loc[0:9, "bureau_overdue_accounts_cnt"] = 4.0  # bureau trouble in May ...
    s1.loc[[*range(0, 10), *range(20, 25)], "fresh_sync_lag_flag"] = 1.0  # ... seen on stale data
    s2 = s1.assign(as_of=AS_OF_NEW)
    s2["fresh_sync_lag_flag"] = 0.0  # June: the data are current, the held decisions go ahead
    d0 = decide(s0, m["credit"], m["fraud"], policy, d0_day, s0["ctx_line_cny"].to_numpy())
    d1 = decide(s1, m["credit"], m["fraud"], policy, AS_OF_OLD, d0["new_line_cny"].to_numpy(), d0)
    d2 = decide(s2, m["credit"], m["fraud"], policy, AS_OF_NEW, d1["new_line_cny"].to_numpy(), d1)
    assert (d0.loc[20:24, "action"] == "freeze").all()
    assert (d1.loc[[*range(0, 10), *range(20, 25)], "action"] == "defer").all()
    for day, feats, dec in ((d0_day, s0, d0), (AS_OF_OLD, s1, d1), (AS_OF_NEW, s2, d2)):
        write_parquet(feats, tmp_path / "features" / f"as_of={day.date()}" / "features.parquet")
        write_parquet(
            dec.assign(policy_version=policy.version),
            tmp_path / "decisions" / f"as_of={day.date()}" / "decisions.parquet",
        )
    res = _run(tmp_path, {"credit-pd/1": m["credit"], "fraud/1": m["fraud"]})
    rec = pd.read_parquet(res.records_path).set_index("user_id")
    cut = [u for u in (f"u_{i:06d}" for i in range(10)) if u in rec.index]
    assert len(cut) >= 5
    held = rec.loc[cut]
    # compared with d0 (the deferred record changed nothing), the bureau trouble is the cause
    assert (held["prev_as_of"] == d0_day).all() and (held["deferred_at"] == AS_OF_OLD).all()
    assert (held["cause"] == "risk_bureau").all() and held["reproduced"].all()
    # users frozen at d0, deferred at d1 and frozen again at d2 were never unfrozen: no new downgrade
    assert not {f"u_{i:06d}" for i in range(20, 25)} & set(rec.index)
    others = rec.drop(index=cut)
    assert (others["prev_as_of"] == AS_OF_OLD).all() and others["deferred_at"].isna().all()
    page = (res.report_path.parent / "users" / f"{cut[0]}.html").read_text(encoding="utf-8")
    assert f"the decision of {AS_OF_OLD.date()} was deferred" in page
