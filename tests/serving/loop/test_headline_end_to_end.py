"""The whole loop on a small simulated world, and its headline recomputed from the files it wrote.

One real run (simulate -> features -> bootstrap models in MLflow -> score both arms -> explain ->
monitor -> retrain) of 600 users x 22 months; the test then rebuilds every headline figure
from the decision files, the feature tables and the simulator's truth with plain pandas, without
the loop's own code, and requires the summary's numbers.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

USERS, MONTHS, SEED = 600, 22, 5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from features.world.simulate import simulate_world
    from serving.loop.cycle import run_cycle_on_world

    folder = tmp_path_factory.mktemp("loop_world")
    simulate_world(
        users=USERS, months=MONTHS, seed=SEED, scenarios=["all"], out_dir=folder, progress=False
    )
    result = run_cycle_on_world(
        folder,
        MONTHS,
        override="test: tiny simulated world",
        monitor={"html_report": "never", "headline_bootstrap": 100},
        seed=1,
    )
    return folder, result


def _usable(dec: pd.DataFrame) -> pd.Series:
    """The line each user can draw on (0 when frozen or closed); `dec` is indexed by user_id."""
    line = np.where(dec["action"].isin(["freeze", "close"]), 0.0, dec["new_line_cny"])
    return pd.Series(line, index=dec.index)


def _recompute(folder, decisions_dir, months: list[str], truth_end: pd.Timestamp) -> dict:
    truth = pd.read_parquet(folder / "truth" / "outcomes.parquet").set_index("user_id")
    num = {
        "wrong": 0,
        "wrong_noreg": 0,
        "good": 0,
        "missed": 0,
        "bad": 0,
        "open": 0.0,
        "known": 0,
        "ff": 0,
        "gu": 0,
    }
    took_effect: dict[str, float] = {}  # user -> usable line of the last decision not deferred
    prev = None
    for m in months:
        dec = pd.read_parquet(decisions_dir / f"as_of={m}" / "decisions.parquet")
        dec = dec.assign(user_id=dec["user_id"].astype(str)).set_index("user_id")
        feats = pd.read_parquet(folder / "features" / f"as_of={m}" / "features.parquet")
        repaid = feats.set_index(feats["user_id"].astype(str))["ctx_repaid_in_full_30d"] == 1
        t = pd.Timestamp(m)
        end = t + pd.DateOffset(months=12)
        tr = truth.reindex(dec.index)
        bad = ((tr["default_date"] > t) & (tr["default_date"] <= end)) | (
            (tr["fraud_date"] > t) & (tr["fraud_date"] <= end)
        )
        known = bad | (end <= truth_end)
        after = _usable(dec)
        if prev is not None:
            # the line each user could draw on before this decision: a defer holds the line that
            # took effect before it (its own line when none did)
            before = pd.Series(
                {u: took_effect.get(u, v) for u, v in _usable(prev).items()}, dtype="float64"
            )
            both = dec.index.intersection(before.index)
            down = pd.Series(False, index=dec.index)
            down.loc[both] = (after.loc[both] < before.loc[both] - 0.5) | (
                dec.loc[both, "action"] == "defer"
            )
            held = (dec["action"] == "defer") & dec.index.isin(before.index)
            after = after.where(~held, before.reindex(dec.index))
        else:
            down = pd.Series(False, index=dec.index)
        good = repaid.reindex(dec.index).fillna(False) & ~bad & known
        flag = dec["fraud_margin"] >= 0
        num["wrong"] += int((down & good).sum())
        regulation = (
            dec["rules_fired"]
            .fillna("")
            .str.split(";")
            .map(lambda rules: any(r.split("@")[0].startswith("REG-") for r in rules))
        )
        num["wrong_noreg"] += int((down & good & ~regulation).sum())
        num["good"] += int(good.sum())
        num["missed"] += int((bad & ~down & (after > 0.5)).sum())
        num["bad"] += int(bad.sum())
        num["open"] += float(after[bad].sum())
        num["known"] += int(known.sum())
        num["ff"] += int((flag & known & ~bad).sum())
        num["gu"] += int((known & ~bad).sum())
        for u, a in _usable(dec).items():
            if dec.loc[u, "action"] != "defer":
                took_effect[u] = a
        prev = dec
    return {
        "wrongful_per_10k": 1e4 * num["wrong"] / num["good"] if num["good"] else None,
        "wrongful_no_regulation_per_10k": 1e4 * num["wrong_noreg"] / num["good"]
        if num["good"]
        else None,
        "missed_defaulter_share": num["missed"] / num["bad"] if num["bad"] else None,
        "open_line_at_default_cny_per_10k": 1e4 * num["open"] / num["known"]
        if num["known"]
        else None,
        "fraud_false_flags_per_10k": 1e4 * num["ff"] / num["gu"] if num["gu"] else None,
    }


def test_headline_recomputed_from_the_decision_files_and_the_truth(world):
    folder, result = world
    s = result.summary
    h = s["headline"]
    months = [m["as_of"] for m in s["per_month"]]
    manifest = folder / "truth" / "manifest.json"
    truth_end = (
        pd.Timestamp(json.loads(manifest.read_text())["truth_end"])
        if manifest.exists()
        else pd.Timestamp(
            json.loads((folder / "raw" / "manifest.json").read_text())["extracted_at"]
        )
    )
    arms = {
        "with_loop": folder / "decisions",
        "without_loop": folder / "reports" / "cycle" / "no_loop_decisions",
    }
    for arm, ddir in arms.items():
        want = _recompute(folder, ddir, months, truth_end)
        for fig, value in want.items():
            got = h[arm][fig]["value"]
            assert (got is None and value is None) or got == pytest.approx(value, rel=1e-12), (
                arm,
                fig,
            )
            lo, hi = h[arm][fig]["ci95_low"], h[arm][fig]["ci95_high"]
            assert lo is None or lo <= got + 1e-9 <= hi + 2e-9 or lo == hi, (arm, fig, lo, got, hi)
    for fig in want:
        a, b = h["with_loop"][fig]["value"], h["without_loop"][fig]["value"]
        if a is not None and b is not None:
            assert h["difference"][fig]["value"] == pytest.approx(a - b, abs=1e-9)
    assert h["good_repayer_months_known"] > 0
    text = result.text_path.read_text()
    assert "HEADLINE (95% intervals" in text and "models frozen" in text
