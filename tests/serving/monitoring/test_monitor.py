"""Monitoring summary, trigger rules, reports and the MLflow monitoring run."""

import json

import numpy as np
import pandas as pd
import pytest

from features.tables import write_parquet
from serving.config import MonitorConfig
from serving.monitoring.monitor import (
    baseline_gini_from_metrics,
    latest_matured_as_of,
    reference_paths_for,
    run_monitor,
    should_retrain,
    summarise_monitoring,
)
from tests.serving.monitoring_helpers import decisions_for, make_table, train_tiny

SETTINGS = MonitorConfig(drift_sample_rows=2000, min_matured_rows=200, max_drifted_share=0.3)


@pytest.fixture(scope="module")
def ref_and_model():
    ref = make_table(3000, "2024-06-30", seed=1)
    return ref, train_tiny(ref)


# ---- trigger rules (pure) -------------------------------------------------------------------


def _summary(
    share=0.0, psi=0.01, n=1000, gini=0.5, drop=0.0, gap=0.0, wrong=0.7, downs=500, se=0.01
):
    return {
        "drift": {"drifted_share": share, "drifted": ["x"] if share else []},
        "score": {"psi": psi},
        "performance": {
            "baseline_gini": gini + drop,
            "gini_drop": drop,
            "matured": {
                "available": True,
                "n": n,
                "gini": gini,
                "calibration_gap": gap,
                "auc_se": se,
                "default_rate_se": 0.002,
                "default_rate": 0.05 + gap,
                "predicted_rate": 0.05,
            },
        },
        "misjudgement": {
            "overall": {
                "wrongful_downgrade_rate": wrong,
                "downgraded_matured": downs,
                "expected_wrongful_rate": 0.7,
                "wrongful_excess": wrong - 0.7,
            }
        },
    }


@pytest.mark.parametrize(
    ("kwargs", "fires"),
    [
        ({}, None),
        ({"share": 0.3}, "feature drift"),
        ({"share": 0.29}, None),
        ({"psi": 0.25}, "score drift"),
        ({"psi": 0.2499}, None),
        ({"drop": 0.05}, "performance"),
        ({"drop": 0.049}, None),
        ({"drop": 0.2, "n": 100}, None),  # too few matured labels to judge
        ({"drop": 0.08, "se": 0.025}, None),  # within 2 s.e. of Gini (0.1): noise
        ({"drop": 0.11, "se": 0.025}, "performance"),
        ({"gap": 0.01}, "calibration"),
        ({"gap": -0.01}, "calibration"),
        ({"gap": 0.0099}, None),
        ({"wrong": 0.8}, "misjudgement"),
        ({"wrong": 0.79}, None),
        ({"wrong": 0.95, "downs": 5}, None),  # too few matured downgrades
    ],
)
def test_should_retrain_rules(kwargs, fires):
    retrain, reasons = should_retrain(_summary(**kwargs), SETTINGS)
    if fires is None:
        assert (retrain, reasons) == (False, [])
    else:
        assert retrain and len(reasons) == 1 and reasons[0].startswith(fires)


def test_should_retrain_without_matured_labels_uses_drift_only():
    s = {
        "drift": {"drifted_share": 0.0},
        "score": {"psi": 0.0},
        "performance": {"matured": {"available": False}},
        "misjudgement": {},
    }
    assert should_retrain(s, SETTINGS) == (False, [])


# ---- the summary on real frames ---------------------------------------------------------------


def test_stable_month_raises_no_alarm(ref_and_model):
    ref, model = ref_and_model
    cur = make_table(3000, "2024-07-31", seed=2)
    matured = make_table(3000, "2023-07-31", seed=3)
    summary, drift = summarise_monitoring(
        as_of=pd.Timestamp("2024-07-31"),
        model=model,
        reference=ref,
        current=cur,
        settings=SETTINGS,
        matured=matured,
        matured_decisions=decisions_for(matured, model),
        baseline_gini=None,
    )
    assert summary["trigger"] == {"retrain": False, "reasons": []}
    assert summary["score"]["psi"] < 0.1 and not drift["drifted"].any()
    m = summary["performance"]["matured"]
    assert m["available"] and m["n"] == 3000 and m["auc"] > 0.6
    assert abs(m["calibration_gap"]) < 0.01
    mis = summary["misjudgement"]["overall"]
    # decisions_for lowers every PD >= 0.15; most of them did not default
    assert mis["downgraded_matured"] > 0 and 0 < mis["wrongful_downgrade_rate"] < 1
    assert abs(mis["wrongful_excess"]) < 0.1  # calibrated PDs: as many stayed good as expected
    assert set(summary["misjudgement"]["by_segment"]) >= {"pd_band", "ctx_repaid_in_full_30d"}
    json.dumps(summary, allow_nan=False)  # strict JSON


def test_shifted_month_triggers_with_reasons(ref_and_model):
    ref, model = ref_and_model
    cur = make_table(3000, "2024-07-31", seed=2, shift=1.0)
    summary, drift = summarise_monitoring(
        as_of=pd.Timestamp("2024-07-31"),
        model=model,
        reference=ref,
        current=cur,
        settings=SETTINGS,
    )
    drifted = set(drift.loc[drift["drifted"], "feature"])
    assert "bureau_inquiries_cnt_1m" in drifted and "util_ratio_now" not in drifted
    assert summary["score"]["psi"] >= 0.25
    assert summary["trigger"]["retrain"]
    assert any(r.startswith("score drift") for r in summary["trigger"]["reasons"])


def test_concept_drift_shows_in_matured_calibration_not_in_the_estimate(ref_and_model):
    ref, model = ref_and_model
    cur = make_table(3000, "2025-07-31", seed=5)
    matured = make_table(3000, "2024-07-31", seed=4, concept=2.5)  # same features, more defaults
    summary, _ = summarise_monitoring(
        as_of=pd.Timestamp("2025-07-31"),
        model=model,
        reference=ref,
        current=cur,
        settings=SETTINGS,
        matured=matured,
        baseline_gini=0.5,
    )
    m = summary["performance"]["matured"]
    assert m["calibration_gap"] > 0.03  # observed defaults well above predicted
    assert summary["estimate"]["expected_default_rate"] == pytest.approx(
        m["predicted_rate"], abs=0.02
    )
    assert any(r.startswith("calibration") for r in summary["trigger"]["reasons"])


def test_missing_feature_is_named(ref_and_model):
    ref, model = ref_and_model
    with pytest.raises(ValueError, match="current feature table lacks 1 of champion v1"):
        summarise_monitoring(
            as_of=pd.Timestamp("2024-07-31"),
            model=model,
            reference=ref,
            current=ref.drop(columns=["util_ratio_now"]),
            settings=SETTINGS,
        )


# ---- IO: paths, lineage, reports, MLflow -------------------------------------------------------


def test_latest_matured_as_of_respects_horizon_and_margin(tmp_path):
    for d in ("2024-01-31", "2024-02-29", "2024-03-31"):
        write_parquet(pd.DataFrame({"a": [1]}), tmp_path / f"as_of={d}" / "features.parquet")
    # 2024-02-29 + 12 months = 2025-02-28, + 14 days = 2025-03-14
    assert latest_matured_as_of(tmp_path, pd.Timestamp("2025-03-13"), 12) == pd.Timestamp(
        "2024-01-31"
    )
    assert latest_matured_as_of(tmp_path, pd.Timestamp("2025-03-14"), 12) == pd.Timestamp(
        "2024-02-29"
    )
    assert latest_matured_as_of(tmp_path, pd.Timestamp("2024-12-31"), 12) is None


def test_reference_and_baseline_from_training_lineage(tmp_path):
    p = write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "as_of=2024-03-31" / "features.parquet")
    lineage = {
        "params": {},
        "tags": {},
        "lineage_json": {
            "train": {"as_of": ["2024-03-31", "2024-04-30"]},
            "oot": {"as_of": ["2024-05-31"]},
            "snapshots": [
                {"as_of": "2024-03-31", "path": str(p)},
                {"as_of": "2024-05-31", "path": "x"},
            ],
        },
    }
    assert reference_paths_for(lineage, tmp_path) == [p]
    only_params = {"params": {"train_tables": f"{p},/nope/features.parquet"}, "tags": {}}
    assert reference_paths_for(only_params, tmp_path / "elsewhere") == [p]
    assert baseline_gini_from_metrics({"train_gini": 0.9, "oot_gini": 0.41}) == 0.41
    assert baseline_gini_from_metrics({"oot_auc": 0.75}) == pytest.approx(0.5)
    assert baseline_gini_from_metrics({"loss": 1.0}) is None


def test_run_monitor_writes_reports_and_logs_a_run(tmp_path, ref_and_model, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    ref, model = ref_and_model
    fdir, ddir, rdir = tmp_path / "features", tmp_path / "decisions", tmp_path / "reports"
    ref_path = write_parquet(ref, fdir / "as_of=2024-06-30" / "features.parquet")
    old = make_table(2000, "2023-06-30", seed=7)
    write_parquet(old, fdir / "as_of=2023-06-30" / "features.parquet")
    write_parquet(decisions_for(old, model), ddir / "as_of=2023-06-30" / "decisions.parquet")
    cur = make_table(2000, "2024-07-31", seed=8, shift=1.0)
    write_parquet(cur, fdir / "as_of=2024-07-31" / "features.parquet")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = run_monitor(
        as_of=pd.Timestamp("2024-07-31"),
        features_dir=fdir,
        decisions_dir=ddir,
        reports_dir=rdir,
        tracking_uri=uri,
        settings=SETTINGS,
        model=model,
        reference_paths=[ref_path],
        baseline_gini=0.5,
        html=False,
    )
    folder = rdir / "monitoring" / "as_of=2024-07-31"
    assert out.folder == folder
    saved = json.loads((folder / "summary.json").read_text())
    assert saved["trigger"]["retrain"] and saved["performance"]["matured_as_of"] == "2023-06-30"
    assert "Retraining triggered" in (folder / "summary.html").read_text()
    assert len(pd.read_parquet(folder / "drift_features.parquet")) == 4

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(out.mlflow_run_id)
    assert run.data.tags["creditline.as_of"] == "2024-07-31"
    assert run.data.metrics["score.psi"] == pytest.approx(saved["score"]["psi"])
    names = {a.path for a in client.list_artifacts(out.mlflow_run_id, "monitoring")}
    assert "monitoring/summary.json" in names


def test_summary_is_deterministic_and_psi_ignores_row_order(ref_and_model):
    ref, model = ref_and_model
    cur = make_table(2500, "2024-07-31", seed=2, shift=0.3)
    kw = {
        "as_of": pd.Timestamp("2024-07-31"),
        "model": model,
        "reference": ref,
        "settings": SETTINGS,
    }
    a, _ = summarise_monitoring(current=cur, **kw)
    b, _ = summarise_monitoring(current=cur, **kw)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    shuffled, _ = summarise_monitoring(current=cur.sample(frac=1.0, random_state=0), **kw)
    assert shuffled["score"]["psi"] == pytest.approx(a["score"]["psi"], abs=1e-12)


def test_drift_against_the_recent_months_fires_at_a_lasting_shift_and_clears_after_it():
    # One feature, N(0, 1) for six months, N(1, 1) from month 7 on; PD = sigmoid(x). Against the
    # three months just scored, month 7 drifts (PSI ~ 1), months 10+ compare shifted with shifted.
    from serving.monitoring.monitor import alarm_kind, recent_drift

    rng = np.random.default_rng(3)
    months = {
        m: pd.DataFrame({"x": rng.normal(0.0 if m < 7 else 1.0, 1.0, 4000)}) for m in range(1, 13)
    }
    cfg = MonitorConfig()
    fired = {}
    for m in range(4, 13):
        recent = pd.concat([months[k] for k in (m - 3, m - 2, m - 1)], ignore_index=True)
        cur = months[m]
        r = recent_drift(
            recent, cur, ["x"], 1 / (1 + np.exp(-recent["x"])), 1 / (1 + np.exp(-cur["x"])), cfg
        )
        fired[m] = alarm_kind({"drift_recent": r}, cfg)["vs_recent"]
    assert fired == {
        4: False,
        5: False,
        6: False,
        7: True,
        8: True,
        9: False,  # against months 6-8 (two of three shifted): PSI under the 0.1 limit
        10: False,
        11: False,
        12: False,
    }
    # Against a training reference from before the shift the alarm never clears.
    train = pd.concat([months[k] for k in (1, 2, 3)], ignore_index=True)
    late = recent_drift(
        train,
        months[12],
        ["x"],
        1 / (1 + np.exp(-train["x"])),
        1 / (1 + np.exp(-months[12]["x"])),
        cfg,
    )
    assert late["drifted_share"] == 1.0 and late["score_psi"] > cfg.max_score_psi
