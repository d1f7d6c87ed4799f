"""Model behaviour on hand-made feature tables with a planted signal, through real MLflow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests.training.conftest import CREDIT_FEATURES, FRAUD_FEATURES, OOT_AS_OF, TRAIN_AS_OF
from training import metrics as evaluation
from training.splits import read_snapshots


def manual(gates: dict) -> dict:
    """The gate settings `promote` takes (the section also holds the loop's own gates)."""
    from training.promote import GATE_KEYS

    return {k: gates[k] for k in GATE_KEYS}


def _oot(feature_dir) -> pd.DataFrame:
    df, _ = read_snapshots(feature_dir, [OOT_AS_OF])
    return df


def test_learns_planted_signal_better_than_logistic_regression(credit_run, feature_dir):
    # a baseline trained here, independently of the pipeline: plain LR on the same training dates
    train, _ = read_snapshots(feature_dir, TRAIN_AS_OF)
    oot = _oot(feature_dir)
    feats = list(CREDIT_FEATURES)
    lr = LogisticRegression(max_iter=2000).fit(train[feats].fillna(0), train["label_default_12m"])
    lr_auc = evaluation.auc(oot["label_default_12m"], lr.predict_proba(oot[feats].fillna(0))[:, 1])
    model_auc = evaluation.auc(oot["label_default_12m"], credit_run.model.predict_proba(oot))
    # thresholds, an interaction and a U-shape: trees see them, a linear model cannot
    assert model_auc > lr_auc + 0.04, (model_auc, lr_auc)
    assert model_auc > 0.72
    assert credit_run.metrics["oot_auc"] == pytest.approx(model_auc)
    assert credit_run.metrics["baseline_lr_oot_auc"] < model_auc


def test_calibrated_pd_means_what_it_says(credit_run):
    m = credit_run.metrics
    # mean PD on out-of-time rows within 1.5 points of the observed default rate
    assert abs(m["oot_mean_pred"] - m["oot_bad_rate"]) < 0.015
    assert m["oot_calibration_error"] < 0.03
    assert 0.7 < m["oot_calibration_slope"] < 1.3


def test_monotone_features_move_pd_the_right_way(credit_run, feature_dir):
    model = credit_run.model
    sample = _oot(feature_dir).head(300)
    for name, direction in CREDIT_FEATURES.items():
        if direction == 0:
            continue
        lo = sample.assign(**{name: sample[name].quantile(0.05)})
        hi = sample.assign(**{name: sample[name].quantile(0.95)})
        diff = model.predict_proba(hi) - model.predict_proba(lo)
        assert (direction * diff >= -1e-12).all(), name
        assert (direction * diff).max() > 0 or name == "income_band", (
            name
        )  # the planted ones do move PD


def test_registry_champion_predicts_exactly_the_in_memory_model(
    credit_run, feature_dir, tracking_uri, gates
):
    import mlflow.pyfunc

    from training.promote import promote
    from training.registry import load_model
    from training.tracking import using_store

    result = promote("credit-pd", credit_run.version, tracking_uri=tracking_uri, **manual(gates))
    assert result.passed, [g.line() for g in result.gates]
    oot = _oot(feature_dir)
    expected = credit_run.model.predict_proba(oot)
    with using_store(tracking_uri):
        pyf = mlflow.pyfunc.load_model("models:/credit-pd@champion")
    got = np.asarray(pyf.predict(oot[list(CREDIT_FEATURES)].astype("float64")))
    np.testing.assert_array_equal(got, expected)
    loaded = load_model("credit-pd", "champion", tracking_uri)
    assert loaded.version == credit_run.version and loaded.features == list(CREDIT_FEATURES)
    np.testing.assert_array_equal(loaded.predict_proba(oot), expected)
    np.testing.assert_array_equal(loaded.margin(oot), credit_run.model.margin(oot))
    # column order and extra columns do not matter
    np.testing.assert_array_equal(loaded.predict_proba(oot[oot.columns[::-1]]), expected)


def test_gates_refuse_a_worse_model(credit_run, feature_dir, tracking_uri, settings, gates):
    from mlflow import MlflowClient

    from training.promote import promote
    from training.registry import current_version
    from training.train import train_on_feature_tables

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if current_version(client, "credit-pd", "champion") is None:
        promote("credit-pd", credit_run.version, tracking_uri=tracking_uri, **manual(gates))
    # deliberately worse: only noise and one weak feature
    worse = train_on_feature_tables(
        "credit",
        feature_dir,
        TRAIN_AS_OF,
        OOT_AS_OF,
        tracking_uri=tracking_uri,
        settings=settings,
        gates=gates,
        features=["noise_a", "noise_b", "income_band"],
        monotone=[0, 0, -1],
        metadata_version="test-meta",
        num_threads=1,
    )
    assert worse.version > credit_run.version
    assert (
        int(client.get_model_version_by_alias("credit-pd", "challenger").version) == worse.version
    )
    result = promote("credit-pd", None, tracking_uri=tracking_uri, **manual(gates))
    assert not result.passed
    failed = {g.name: g for g in result.failed()}
    assert "auc" in failed
    champ_auc = credit_run.metrics["oot_auc"]
    expected_short = champ_auc - gates["auc_margin"] - worse.metrics["oot_auc"]
    assert failed["auc"].shortfall == pytest.approx(expected_short, abs=1e-6)
    assert f"champion v{credit_run.version}" in failed["auc"].detail
    # the champion did not move; the refusal is on the version's tags
    assert (
        int(client.get_model_version_by_alias("credit-pd", "champion").version)
        == credit_run.version
    )
    tags = client.get_model_version("credit-pd", str(worse.version)).tags
    assert tags["gate.auc"] == "fail" and tags["gates.passed"] == "false"
    assert float(tags["gate.auc.shortfall"]) == pytest.approx(expected_short, abs=1e-5)


def test_model_card_and_artifacts_logged(credit_run, tracking_uri):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    names = {a.path for a in client.list_artifacts(credit_run.run_id)}
    assert {"model_card.md", "lineage.json", "plots", "tables", "gate_data"} <= names
    plots = {a.path for a in client.list_artifacts(credit_run.run_id, "plots")}
    assert {"plots/roc_ks_oot.png", "plots/calibration_oot.png", "plots/shap_summary.png"} <= plots
    run = client.get_run(credit_run.run_id)
    for key in ("oot_auc", "oot_gini", "oot_ks", "oot_brier", "score_psi", "baseline_lr_oot_auc"):
        assert key in run.data.metrics
    assert run.data.params["metadata_version"] == "test-meta"
    import mlflow

    card = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/model_card.md")
    assert (
        f"credit-pd v{credit_run.version}" in card
        and "## Gates" in card
        and "## Known limits" in card
    )
    lineage = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/lineage.json")
    assert [s["as_of"] for s in lineage["snapshots"]] == [*TRAIN_AS_OF, OOT_AS_OF]
    assert all(len(s["sha256"]) == 64 for s in lineage["snapshots"])


def test_fraud_model_handles_rare_class(feature_dir, tracking_uri, settings, gates):
    from training.train import train_on_feature_tables

    run = train_on_feature_tables(
        "fraud",
        feature_dir,
        TRAIN_AS_OF,
        OOT_AS_OF,
        tracking_uri=tracking_uri,
        settings=settings,
        gates=gates,
        features=FRAUD_FEATURES,
        metadata_version="test-meta",
        num_threads=1,
    )
    assert run.name == "fraud"
    assert run.params["scale_pos_weight"] > 1
    m = run.metrics
    assert m["oot_bad_rate"] < 0.05
    assert m["oot_auc"] > 0.65
    # calibration undoes the up-weighting: mean probability close to the observed rate
    assert abs(m["oot_mean_pred"] - m["oot_bad_rate"]) < 0.01


def test_features_come_from_metadata_or_fail_clearly(feature_dir, tracking_uri, settings, gates):
    import importlib.util

    from training.train import train_on_feature_tables

    def run():
        return train_on_feature_tables(
            "credit", feature_dir, TRAIN_AS_OF, OOT_AS_OF, tracking_uri=tracking_uri, settings=settings,
            gates=gates, num_threads=1,
        )  # fmt: skip

    if importlib.util.find_spec("features.metadata") is None:
        with pytest.raises(RuntimeError, match="features.metadata is not available"):
            run()
    else:
        # the hand-made tables do not carry the real feature set: the error names what is missing
        from features.metadata import model_features

        with pytest.raises(ValueError, match="model feature\\(s\\) missing"):
            run()
        assert model_features("credit")


def test_out_of_time_date_must_follow_training(feature_dir, tracking_uri, settings, gates):
    from training.train import train_on_feature_tables

    with pytest.raises(ValueError, match="must be after every training"):
        train_on_feature_tables(
            "credit", feature_dir, [OOT_AS_OF], TRAIN_AS_OF[0], tracking_uri=tracking_uri, settings=settings,
            gates=gates, features=list(CREDIT_FEATURES), num_threads=1,
        )  # fmt: skip
    with pytest.raises(ValueError, match="never model inputs"):
        train_on_feature_tables(
            "credit", feature_dir, TRAIN_AS_OF, OOT_AS_OF, tracking_uri=tracking_uri, settings=settings,
            gates=gates, features=["ctx_line_cny", "noise_a"], num_threads=1,
        )  # fmt: skip
