"""The feature table on disk: manifest, determinism, quarantine, errors, the CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from benchmarks.raw_world import make_world
from features.builder import FEATURE_COLUMNS, build_feature_table, build_features
from features.metadata import METADATA_VERSION
from features.tables import file_digest, write_json, write_parquet

AS_OF = pd.Timestamp("2024-10-01")


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    tables, end = make_world(users=30, months=12, seed=5, start="2024-01-01")
    root = tmp_path_factory.mktemp("world") / "raw"
    bad = tables["loans"].iloc[:1].assign(loan_id="l_bad", amount_cny=-5.0)  # breaks amount > 0
    tables["loans"] = pd.concat([tables["loans"], bad], ignore_index=True)
    for t, df in tables.items():
        write_parquet(df, root / t / "part-00000.parquet")
    write_json({"extracted_at": str(end), "seed": 5}, root / "manifest.json")
    return root


def test_table_and_manifest(raw_dir, tmp_path):
    path = build_feature_table(raw_dir, tmp_path / "features", AS_OF, tmp_path / "quarantine")
    assert path == tmp_path / "features" / "as_of=2024-10-01" / "features.parquet"
    df = pd.read_parquet(path)
    m = json.loads((path.parent / "manifest.json").read_text())
    assert m["as_of"] == "2024-10-01" and m["rows"] == len(df) > 0
    assert m["features"] == list(FEATURE_COLUMNS)
    assert m["metadata_version"] == METADATA_VERSION
    assert m["input_digests"]["loans"] == file_digest(raw_dir / "loans")
    assert set(m["input_digests"]) == {
        "users",
        "loans",
        "installments",
        "bureau_accounts",
        "bureau_inquiries",
        "app_events",
        "line_history",
    }
    # the bad draw was quarantined with its reason, not dropped silently
    assert m["quarantined_rows"]["loans"] == 1
    q = pd.read_parquet(tmp_path / "quarantine" / "loans" / "quarantine.parquet")
    assert q["loan_id"].tolist() == ["l_bad"] and "amount_cny" in q["quarantine_reason"].iloc[0]
    assert m["output_digest"] == file_digest(path)
    # same inputs -> same bytes
    again = build_feature_table(raw_dir, tmp_path / "again", AS_OF, tmp_path / "quarantine")
    assert again.read_bytes() == path.read_bytes()
    assert list(df.columns[:2]) == ["user_id", "as_of"]


def test_as_of_before_the_data_or_with_nobody_active_is_an_error():
    tables, _ = make_world(users=5, months=6, seed=1, start="2024-01-01")
    with pytest.raises(ValueError, match="not after the data starts"):
        build_features(tables, "2023-06-30")
    first = tables["users"].sort_values("event_time").iloc[0]
    # one second after the first signup, which reaches the warehouse 5 minutes later: nobody yet
    with pytest.raises(ValueError, match="no user is active"):
        build_features(tables, first["event_time"] + pd.Timedelta(seconds=1))
    with pytest.raises(ValueError, match="missing raw table"):
        build_features({k: v for k, v in tables.items() if k != "loans"}, "2024-05-01")


def test_cli_builds_and_reports(raw_dir, tmp_path, monkeypatch):
    import serving.cli.features  # noqa: F401  (registers the command)
    from serving.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    res = runner.invoke(
        app, ["features", "build", "--as-of", "2024-10-01", "--raw", str(raw_dir), "--out", "feat"]
    )
    assert res.exit_code == 0, res.output
    assert "loans:" in res.output and "1 quarantined" in res.output
    assert "wrote feat/as_of=2024-10-01/features.parquet" in res.output
    bad = runner.invoke(
        app, ["features", "build", "--as-of", "2020-01-01", "--raw", str(raw_dir), "--out", "feat"]
    )
    assert bad.exit_code == 2 and "not after the data starts" in bad.output
    assert (
        "Example: creditline features build"
        in runner.invoke(app, ["features", "build", "--help"]).output
    )
