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
