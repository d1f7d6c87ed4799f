"""`creditline explain` parses options and reports problems clearly (the job itself: test_explain_run)."""

from __future__ import annotations

from typer.testing import CliRunner

from serving.cli import _register, app


def test_explain_without_decisions_says_what_to_run(tmp_path):
    _register()
    cfg = tmp_path / "creditline.toml"
    cfg.write_text(
        f'[paths]\ndecisions = "{tmp_path / "decisions"}"\nfeatures = "{tmp_path / "features"}"\n'
    )
    res = CliRunner().invoke(app, ["explain", "--as-of", "2025-08-01", "--config", str(cfg)])
    assert res.exit_code == 2
    assert "creditline score --as-of 2025-08-01" in res.output


def test_explain_help_has_an_example():
    _register()
    res = CliRunner().invoke(app, ["explain", "--help"])
    assert res.exit_code == 0
    assert "Example: creditline explain" in res.output
    assert "fidelity" in res.output


def test_fidelity_all_pools_every_explained_month(tmp_path):
    import json

    import pandas as pd

    from features.tables import write_parquet

    _register()
    cfg = tmp_path / "creditline.toml"
    cfg.write_text(
        f'[paths]\nraw = "{tmp_path / "raw"}"\nexplanations = "{tmp_path / "explanations"}"\n'
    )
    months = {"2026-05-31": ("2026-04-30", ["risk_bureau", "risk_bureau"]),
              "2026-06-30": ("2026-05-31", ["risk_bureau", "fraud"])}  # fmt: skip
    for as_of, (prev, causes) in months.items():
        write_parquet(
            pd.DataFrame(
                {
                    "user_id": ["a", "b"],
                    "as_of": pd.Timestamp(as_of),
                    "prev_as_of": pd.Timestamp(prev),
                    "cause": causes,
                    "freshness_flag": False,
                    "repaid_in_full_30d": False,
                    "additivity_error": 1e-15,
                    "max_unchanged_attribution": 0.0,
                    "reproduced": True,
                }
            ),
            tmp_path / "explanations" / f"as_of={as_of}" / "explanations.parquet",
        )
    order = ["sync_delay", "fraud", "kyc_expiry", "device_change", "behaviour", "bureau", "macro"]
    rows = [("a", "2026-05-01", "bureau"), ("b", "2026-05-01", "bureau"),
            ("a", "2026-06-01", "bureau"), ("b", "2026-06-01", "behaviour")]  # fmt: skip
    truth = pd.DataFrame(
        {
            "user_id": [u for u, _, _ in rows],
            "month": [pd.Timestamp(m) for _, m, _ in rows],
            "primary_cause": [c for _, _, c in rows],
            **{f"cause_{c}": [c == k for _, _, k in rows] for c in order},
        }
    )
    write_parquet(truth, tmp_path / "truth" / "user_month.parquet")
    res = CliRunner().invoke(app, ["explain", "fidelity", "--all", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    # May: both match; June: a matches, b (behaviour planted) was explained as fraud
    assert "top_cause_match_share: 0.75" in res.output
    assert "| **all 2 months** | 4 | **0.750**" in res.output
    saved = json.loads((tmp_path / "explanations" / "fidelity_all.json").read_text())
    assert [m["as_of"] for m in saved["per_month"]] == ["2026-05-31", "2026-06-30"]
    assert saved["pooled"]["downgrades"] == 4
    assert (tmp_path / "explanations" / "as_of=2026-06-30" / "fidelity.json").exists()
    # without a month and without --all: a clear error
    res = CliRunner().invoke(app, ["explain", "fidelity", "--config", str(cfg)])
    assert res.exit_code != 0 and "--all" in res.output
