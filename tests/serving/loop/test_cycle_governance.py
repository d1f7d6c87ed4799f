"""The loop's accounting and governance: downgrades as `creditline explain` selects them, every one
with a cause; a model that fails its gates never decides unless an exception is recorded.

Real LightGBM, real `explain_downgrades`, real MLflow (sqlite in tmp_path), small frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.tables import write_json, write_parquet
from serving.config import GatesConfig, ModelConfig, MonitorConfig
from serving.explain.downgrades import explain_downgrades, select_downgrades
from serving.loop.evaluation import good_repayers, month_stats
from serving.scoring.policy import load_policy
from tests.serving.explain_world import (
    AS_OF_NEW,
    AS_OF_OLD,
    base_snapshot,
    decide,
    new_version,
    train_models,
)

# ---- 1) downgrades: one selection, every downgrade explained -------------------------------


@pytest.fixture(scope="module")
def month():
    """Two months of decisions: a model update that raises every PD, plus a few users whose own
    data got worse; users frozen for fraud signals in both months stay adverse without a new
    downgrade."""
    models = train_models()
    policy = load_policy()
    old = base_snapshot(400, seed=3)
    hot = np.arange(5, 400, 40)  # strong fraud signals in both months: frozen twice
    for c in (
        "app_device_changes_cnt_30d",
        "app_sim_changes_cnt_30d",
        "graph_device_shared_users_cnt",
    ):
        old.loc[hot, c] = 5.0
    dec_old = decide(
        old, models["credit"], models["fraud"], policy, AS_OF_OLD, old["ctx_line_cny"].to_numpy()
    )
    new = old.assign(as_of=AS_OF_NEW)
    worse = np.arange(0, 400, 25)
    new.loc[worse, "bureau_overdue_accounts_cnt"] = 3.0
    credit_new = new_version(models["credit"], 0.4)
    dec_new = decide(
        new,
        credit_new,
        models["fraud"],
        policy,
        AS_OF_NEW,
        dec_old["new_line_cny"].to_numpy(),
        dec_old,
    )
    res = explain_downgrades(
        dec_new,
        dec_old,
        new,
        old,
        models["credit"],
        credit_new,
        models["fraud"],
        models["fraud"],
        policy,
        policy,
        AS_OF_NEW,
        AS_OF_OLD,
        n_threads=1,
    )
    good = pd.Series(
        pd.array(new["ctx_repaid_in_full_30d"].to_numpy() == 1, dtype="boolean"),
        index=new["user_id"].to_numpy(),
    )
    return {"dec_old": dec_old, "dec_new": dec_new, "records": res.records, "good": good}


def test_cycle_counts_the_downgrades_explain_selects_and_the_cause_table_adds_up(month):
    stats = month_stats(month["dec_new"], month["dec_old"], month["good"], month["records"])
    selected = select_downgrades(month["dec_new"], month["dec_old"])
    assert stats["downgrades"] == len(selected) == len(month["records"]) > 0
    causes = stats["downgrades_by_cause"]
    assert sum(causes.values()) == stats["downgrades"]
    assert "not_explained" not in causes and "unexplained" not in causes
    assert causes == month["records"]["cause"].value_counts().to_dict()
    # Adverse actions include users adverse in both months (nothing new to explain).
    adverse = month["dec_new"]["action"].isin(["lower", "freeze", "close", "defer"])
    assert stats["adverse_actions"] == int(adverse.sum())
    repeated = (
        adverse.to_numpy() & ~month["dec_new"]["user_id"].isin(selected["user_id"]).to_numpy()
    )
    assert repeated.any(), "the world should have users adverse in both months"
    assert stats["adverse_actions"] > stats["downgrades"]
    # Wrongful post-repayment downgrades are downgrades of known good repayers.
    down_good = month["good"].reindex(selected["user_id"]).fillna(False).astype(bool)
    assert stats["wrongful_post_repayment_downgrades"] == int(down_good.sum())


def test_first_month_has_no_downgrades_and_a_failed_explain_step_is_visible(month):
    first = month_stats(month["dec_new"], None, month["good"], None)
    assert first["downgrades"] == 0 and first["downgrades_by_cause"] == {}
    assert first["adverse_actions"] > 0
    failed = month_stats(
        month["dec_new"],
        month["dec_old"],
        month["good"],
        pd.DataFrame({"user_id": pd.Series(dtype=str), "cause": pd.Series(dtype=str)}),
    )
    assert failed["downgrades_by_cause"] == {"not_explained": failed["downgrades"]}


# ---- 5) good repayers: an outcome not yet seen is neither good nor bad ---------------------


def test_good_repayers_leave_out_outcomes_cut_by_the_end_of_the_data():
    feats = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "ctx_repaid_in_full_30d": [1, 1, 1, 0]})
    truth = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d"],
            # b defaults 2 months after the as-of; a and c never (as far as the data goes)
            "default_date": pd.to_datetime([None, "2025-08-15", None, None]),
            "fraud_date": pd.to_datetime([None, None, None, None]),
        }
    )
    as_of = pd.Timestamp("2025-06-30")
    ended_early = good_repayers(feats, truth, as_of, 12, world_end=pd.Timestamp("2025-12-31"))
    # a and c: window to 2026-06-30 not seen -> unknown; b: default seen -> bad; d: no repayment
    assert ended_early.isna().tolist() == [True, False, True, False]
    assert ended_early.fillna(False).tolist() == [False, False, False, False]
    full = good_repayers(feats, truth, as_of, 12, world_end=pd.Timestamp("2026-12-31"))
    assert full.tolist() == [True, False, True, False]


# ---- 4) one source of monitoring defaults ---------------------------------------------------


def test_cycle_settings_validate_the_monitor_section_and_keep_its_defaults():
    from pydantic import ValidationError

    from serving.loop.cycle import cycle_settings

    plain = {"model": {}, "gates": {}, "scoring": {}, "seed": 1, "num_threads": 1}
    s = cycle_settings(monitor={"max_score_psi": 0.3}, **plain)
    assert s.monitor.max_score_psi == 0.3
    assert s.monitor.model_dump() == MonitorConfig(max_score_psi=0.3).model_dump()
    assert cycle_settings(monitor={}, baseline_arm=False, **plain).monitor.baseline_arm is False
    with pytest.raises(ValidationError, match="max_scor_psi"):
        cycle_settings(monitor={"max_scor_psi": 0.3}, **plain)  # a typo is refused
    with pytest.raises(ValidationError, match="retrain_window_months"):
        cycle_settings(monitor={"retrain_window_months": 0}, **plain)


# ---- 2) governance: gates are never overridden silently ------------------------------------

FEATURES = {"inst_dpd_max_6m": 1, "util_ratio": 1, "noise_a": 0}
TRAIN, OOT = ["2024-01-31", "2024-02-29"], "2024-03-31"
# A calibration tolerance of 0 fails every real model: the "gate-failing" model of these tests.
STRICT = {**GatesConfig().model_dump(), "calibration_tolerance": 0.0}


def _snapshot(as_of: str, seed: int, n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dpd = np.round(rng.exponential(8, n))
    util = rng.beta(2, 2, n)
    p = 1 / (1 + np.exp(-(-3.0 + 1.6 * (dpd > 15) + 1.5 * util)))
    return pd.DataFrame(
        {
            "user_id": [f"u{i:05d}" for i in range(n)],
            "as_of": pd.Timestamp(as_of),
            "inst_dpd_max_6m": dpd,
            "util_ratio": util,
            "noise_a": rng.normal(size=n),
            "label_default_12m": (rng.random(n) < p).astype(float),
            "label_default_12m_matured": True,
        }
    )


@pytest.fixture()
def registry(tmp_path, monkeypatch):
    from training.tracking import tracking_uri, using_store

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    fdir = tmp_path / "features"
    for i, d in enumerate([*TRAIN, OOT]):
        write_parquet(_snapshot(d, 10 + i), fdir / f"as_of={d}" / "features.parquet")
        write_json({"as_of": d, "metadata_version": "test"}, fdir / f"as_of={d}" / "manifest.json")
    uri = tracking_uri(tmp_path / "mlruns")
    with using_store(uri):
        yield fdir, uri


def _train(fdir, uri, seed):
    from training.train import train_on_feature_tables

    settings = ModelConfig(max_rounds=60, small_table_rows=0, shap_sample_rows=100).model_dump()
    return train_on_feature_tables(
        "credit",
        fdir,
        TRAIN,
        OOT,
        tracking_uri=uri,
        settings=settings,
        gates=STRICT,
        seed=seed,
        num_threads=1,
        features=list(FEATURES),
        monotone=list(FEATURES.values()),
        metadata_version="test",
    ).version


def test_failing_bootstrap_model_needs_a_recorded_exception_and_never_replaces_a_champion(
    registry,
):
    from serving.loop.cycle import _governance_exceptions
    from training.promote import GatesRefused, governance_exception, promote_first
    from training.registry import CHALLENGER, CHAMPION, current_version
    from training.tracking import open_client

    fdir, uri = registry
    client = open_client(uri)
    v1 = _train(fdir, uri, seed=1)

    # No champion, no override: the loop must not start with a model that failed its gates.
    with pytest.raises(GatesRefused, match="calibration"):
        promote_first("credit-pd", v1, tracking_uri=uri, gates=STRICT, override=None, as_of=OOT)
    assert current_version(client, "credit-pd", CHAMPION) is None

    # No champion, explicit override: it decides, and the exception is on the version.
    note = "model risk committee: test world too small for calibration"
    pr, exc = promote_first(
        "credit-pd", v1, tracking_uri=uri, gates=STRICT, override=note, as_of=OOT
    )
    assert not pr.passed and pr.champion_after == v1
    assert current_version(client, "credit-pd", CHAMPION) == v1
    assert exc is not None and exc.failed_gates == ("calibration",) and exc.approved == note
    recorded = governance_exception(client, "credit-pd", v1)
    assert recorded == exc
    tags = client.get_model_version("credit-pd", str(v1)).tags
    assert tags["governance.exception"] == "bootstrap_gate_override"
    assert tags["gate.calibration"] == "fail"
    assert [e.line() for e in _governance_exceptions(client, {"credit-pd": v1})] == [exc.line()]

    # A champion exists: a gate-failing model stays @challenger even with an override configured.
    v2 = _train(fdir, uri, seed=2)
    pr2, exc2 = promote_first(
        "credit-pd", v2, tracking_uri=uri, gates=STRICT, override=note, as_of=OOT
    )
    assert exc2 is None and not pr2.passed
    assert current_version(client, "credit-pd", CHAMPION) == v1
    assert current_version(client, "credit-pd", CHALLENGER) == v2
    assert governance_exception(client, "credit-pd", v2) is None
    assert (
        client.get_model_version("credit-pd", str(v2))
        .tags["governance.outcome"]
        .startswith(f"refused; champion v{v1} kept")
    )


# ---- 3) fraud signals: measured and shown, no automatic fraud retrain ----------------------


def test_fraud_watch_alarms_on_fraud_score_drift_and_reports_cleared_flags(tmp_path):
    from types import SimpleNamespace

    from serving.loop.cycle import CycleSettings, _fraud_watch

    s = CycleSettings()
    rng = np.random.default_rng(0)
    ref = rng.beta(1, 30, 5000)  # fraud probabilities on the model's training tables
    model = SimpleNamespace(version=3)
    summary = {
        "misjudgement": {
            "overall": {
                "fraud_flagged_matured": 8,
                "fraud_flags_cleared": 6,
                "fraud_false_positive_rate": 0.75,
            }
        }
    }
    same = write_parquet(pd.DataFrame({"fraud_p": ref}), tmp_path / "same.parquet")
    calm = _fraud_watch(ref, model, same, summary, s)
    assert calm["score_psi"] == 0.0 and not calm["alarm"]
    assert (calm["flags_matured"], calm["flags_cleared"], calm["false_positive_rate"]) == (
        8,
        6,
        0.75,
    )
    shifted = write_parquet(pd.DataFrame({"fraud_p": ref * 4}), tmp_path / "shifted.parquet")
    loud = _fraud_watch(ref, model, shifted, {}, s)
    assert loud["score_psi"] >= s.monitor.max_score_psi and loud["alarm"]
    assert loud["flagged_share"] == float((ref * 4 >= s.monitor.fraud_flag_threshold).mean())


def test_a_governance_exception_reaches_the_decision_log_and_every_month_it_decides_in(tmp_path):
    from serving.loop.cycle import _exception_months, _log_bootstrap

    exc = {
        "name": "fraud",
        "version": 1,
        "kind": "bootstrap_gate_override",
        "failed_gates": ["auc"],
        "approved": "risk committee: small world",
        "as_of": "2024-08-31",
    }
    events = [
        {
            "model": "credit-pd",
            "version": 1,
            "status": "promoted",
            "champion_before": None,
            "champion_after": 1,
            "gates": ["auc PASS"],
            "governance_exception": None,
        },
        {
            "model": "fraud",
            "version": 1,
            "status": "governance_exception",
            "champion_before": None,
            "champion_after": 1,
            "gates": ["auc FAIL (short by 0.03)"],
            "governance_exception": exc,
        },
    ]
    _log_bootstrap(events, "2024-08-31", tmp_path / "log")
    log = pd.read_parquet(tmp_path / "log" / "model_ops" / "bootstrap" / "as_of=2024-08-31.parquet")
    row = log.set_index("model").loc["fraud"]
    assert row["status"] == "governance_exception"
    assert row["reasons"].startswith(
        "GOVERNANCE EXCEPTION: failed gates auc; approved: risk committee"
    )
    line = "fraud v1 decides although it FAILED gates auc (...)"
    months = [
        {"as_of": "2024-09-30", "governance_exceptions": [line]},
        {"as_of": "2024-10-31", "governance_exceptions": []},
        {"as_of": "2024-11-30", "governance_exceptions": [line]},
    ]
    assert _exception_months(months) == [
        {"exception": line, "months": ["2024-09-30", "2024-11-30"]}
    ]
