"""The loop retrains the fraud model on its own label (integration; ~1 minute on 2 cores).

A fraud-wave world, a fraud champion trained before the wave; the fraud watch's triggers, and
a retrain on the newest months whose 90-day bust-out label has closed, backtested against the
champion on the same out-of-time rows and gated like the credit model's. Real simulator,
feature builder, LightGBM and MLflow (sqlite).
"""

from __future__ import annotations

import pandas as pd
import pytest

from serving.config import GatesConfig, MonitorConfig
from serving.loop.cycle import CycleSettings, _fraud_performance, _fraud_retrain, build_month_tables
from tests.serving.loop.test_loop_worlds import _dates, _model_settings, _world
from training.retrain import fraud_matured_as_ofs, retrain

DECISION = pd.Timestamp("2025-06-30")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from training.registry import CHAMPION
    from training.tracking import open_client, tracking_uri, using_store
    from training.train import train_on_feature_tables

    tmp = tmp_path_factory.mktemp("fraud_world")
    raw = _world(tmp, ["fraud_wave@2024-10"], months=20, seed=3)
    fdir = tmp / "features"
    months = _dates(("2024-03-01", "2024-12-31"))
    build_month_tables(raw, fdir, tmp / "q", months + [DECISION], threads=2)
    uri = tracking_uri(tmp / "mlruns")
    with using_store(uri):
        boot = [f"{d:%Y-%m-%d}" for d in months[:4]]
        res = train_on_feature_tables(
            "fraud", fdir, boot, f"{months[4]:%Y-%m-%d}", tracking_uri=uri,
            settings=_model_settings(), gates=GatesConfig().model_dump(), seed=1, num_threads=2,
        )  # fmt: skip
        open_client(uri).set_registered_model_alias("fraud", CHAMPION, str(res.version))
        yield {"tmp": tmp, "fdir": fdir, "uri": uri, "champion": int(res.version)}


def _retrain(world, **gates):
    return retrain(
        as_of=DECISION,
        features_dir=world["fdir"],
        decisions_dir=world["tmp"] / "decisions",
        tracking_uri=world["uri"],
        reasons=["test"],
        model_settings=_model_settings(),
        gate_settings=GatesConfig(**gates).model_dump(),
        window_months=6,
        seed=1,
        kind="fraud",
        decision_log_dir=world["tmp"] / "decisions" / "log",
    )


def test_fraud_label_matures_about_six_months_after_the_as_of(world):
    from features.catalog import available_as_ofs

    got = fraud_matured_as_ofs(available_as_ofs(world["fdir"]), DECISION)
    assert got[-1] == pd.Timestamp("2024-11-30")  # 2024-12-31's window closes in mid-July
    table = pd.read_parquet(world["fdir"] / "as_of=2024-11-30" / "features.parquet")
    assert table["label_fraud_90d_matured"].all()  # the builder's rule, not a second one


def test_fraud_retrain_trains_on_the_fraud_label_and_is_gated_like_the_credit_model(world):
    from training.registry import CHAMPION, current_version
    from training.tracking import open_client

    out = _retrain(world)
    assert out.model == "fraud" and out.challenger_version is not None
    assert out.train_as_of == [f"{d:%Y-%m-%d}" for d in _dates(("2024-05-01", "2024-10-31"))]
    assert out.oot_as_of == "2024-11-30"  # a fraud-wave month
    bt = out.backtest
    oot = pd.read_parquet(world["fdir"] / "as_of=2024-11-30" / "features.parquet")
    assert bt["rows"] == int(oot["label_fraud_90d"].notna().sum())
    assert bt["default_rate"] == pytest.approx(oot["label_fraud_90d"].mean())
    assert sum(r["n"] for r in bt["swap_set"]) == bt["rows"]
    # Book stability for a fraud model: the bands are "not flagged" and "flagged".
    assert 0 <= bt["book"]["band_worse_share"] <= bt["book"]["band_change_share"] <= 1
    names = [g.split()[0] for g in out.gates]
    assert names[:3] == ["auc-uplift", "pd-shift", "band-worse"]
    passed = all("PASS" in g for g in out.gates)
    assert (out.status == "promoted") == passed, out.gates
    champion = current_version(open_client(world["uri"]), "fraud", CHAMPION)
    assert champion == (out.challenger_version if passed else world["champion"])
    log = pd.read_parquet(
        world["tmp"] / "decisions" / "log" / "model_ops" / "fraud" / "as_of=2025-06-30.parquet"
    )
    assert log.loc[0, "model"] == "fraud" and log.loc[0, "status"] == out.status

    # A challenger must beat the champion on the same rows: an impossible uplift refuses it.
    strict = _retrain(world, loop_min_auc_uplift=0.5)
    assert strict.status == "refused"
    assert current_version(open_client(world["uri"]), "fraud", CHAMPION) == champion


def test_fraud_watch_triggers_retrain_on_a_gini_drop_and_respects_cooldown_and_new_data(world):
    from training.registry import load_model

    s = CycleSettings(monitor=MonitorConfig(min_fraud_positives=5, retrain_cooldown_months=3))
    model = load_model("fraud", world["champion"], world["uri"])
    perf = _fraud_performance(world["fdir"], DECISION, model, world["uri"], s)
    assert perf["as_of"] == "2024-11-30" and perf["bust_outs"] >= 5
    assert perf["gini"] is not None and perf["baseline_gini"] is not None
    assert perf["alarm"] == (perf["gini_drop"] >= s.monitor.max_gini_drop)
    quiet = {"alarm": False, "score_psi": 0.01, "model_version": world["champion"]}
    assert _fraud_retrain(
        DECISION, {**quiet, "performance": {**perf, "alarm": False}}, None,
        world["fdir"], world["tmp"] / "decisions", world["uri"], s,
    ) is None  # fmt: skip
    loud = {**quiet, "alarm": True, "score_psi": 0.4, "performance": perf}
    cooling = _fraud_retrain(
        DECISION, loud, DECISION - pd.DateOffset(months=1),
        world["fdir"], world["tmp"] / "decisions", world["uri"], s,
    )  # fmt: skip
    assert cooling["status"] == "cooldown" and "fraud score PSI 0.400" in cooling["reasons"][0]
    # Months the champion already learnt from are not new data: no retrain on them.
    early = _fraud_retrain(
        pd.Timestamp("2025-01-31"), loud, None,
        world["fdir"], world["tmp"] / "decisions", world["uri"], s,
    )  # fmt: skip
    assert early["status"] == "no_new_data", early
    off = CycleSettings(monitor=MonitorConfig(fraud_retrain=False))
    assert _fraud_retrain(
        DECISION, loud, None, world["fdir"], world["tmp"] / "decisions", world["uri"], off
    ) is None  # fmt: skip
