"""`creditline simulate` and `creditline demo` from the command line."""

import json

from typer.testing import CliRunner

from serving.cli import _register, app


def test_simulate_writes_raw_and_truth_and_prints_a_summary(tmp_path):
    _register()
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            "--users",
            "300",
            "--months",
            "4",
            "--seed",
            "5",
            "--scenario",
            "sync_incident@2024-03",
            "--start",
            "2024-01",
            "--truth-horizon-months",
            "3",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "(to 2024-08-01T00:00:00, 3 months past the extract)" in res.output
    assert "default rate" in res.output and "installments" in res.output
    assert json.loads((tmp_path / "raw" / "manifest.json").read_text())["scenarios"] == [
        "sync_incident@2024-03"
    ]
    assert (tmp_path / "truth" / "user_month.parquet").exists()
    truth = json.loads((tmp_path / "truth" / "manifest.json").read_text())
    assert (truth["extracted_at"], truth["truth_horizon_months"], truth["truth_end"]) == (
        "2024-05-01T00:00:00",  # 4 months from 2024-01
        3,
        "2024-08-01T00:00:00",
    )


def test_unknown_scenario_is_a_clear_error(tmp_path):
    _register()
    res = CliRunner().invoke(
        app, ["simulate", "--users", "10", "--scenario", "meteor", "--out", str(tmp_path)]
    )
    assert res.exit_code == 2
    assert "unknown" in res.output and "macro_shock" in res.output


def test_a_truth_horizon_past_the_simulated_one_is_a_clear_error(tmp_path):
    _register()
    res = CliRunner().invoke(
        app, ["simulate", "--users", "10", "--truth-horizon-months", "25", "--out", str(tmp_path)]
    )
    assert res.exit_code == 2
    assert "truth_horizon_months must be 0..24" in res.output


def test_demo_simulates_with_every_scenario_and_refuses_a_world_too_short_for_the_loop(
    tmp_path, monkeypatch
):
    # The loop itself is tested in test_loop_worlds; here: the world is simulated with every
    # scenario on, and a world too short for bootstrap + cycle is a clear error, not a crash.
    _register()
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["demo", "--users", "200", "--months", "6"])
    assert res.exit_code == 2
    assert "too short" in res.output and "at least" in res.output
    assert (
        len(json.loads((tmp_path / "data" / "raw" / "manifest.json").read_text())["scenarios"]) == 5
    )
