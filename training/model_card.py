"""Model card per registered version: a markdown artifact `model_card.md` in the version's run.

Written at training time (gates checked against the champion of that moment) and rewritten by
`promote` with the gates that decided. Everything on it is read back from the run, so the card
always shows what MLflow holds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

CARD = "model_card.md"
LINEAGE = "lineage.json"
IMPORTANCE = "shap_importance.csv"


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def render(
    name: str,
    version: int,
    run_id: str,
    params: dict[str, str],
    metrics: dict[str, float],
    lineage: dict,
    importance: list[dict],
    gates: list | None,
    against: str,
) -> str:
    """The card as markdown (pure: values in, text out)."""
    m = metrics.get
    lines = [
        f"# Model card — {name} v{version}",
        "",
        f"- MLflow run: `{run_id}`; label `{params.get('label', '?')}`; model kind `{params.get('kind', '?')}`",
        f"- Features: {params.get('n_features', '?')} (metadata version `{params.get('metadata_version', 'n/a')}`)",
        f"- Trees: {params.get('best_iteration', '?')} (early stopping on validation AUC); "
        f"calibration: log-odds = {float(params.get('calib_a', 'nan')):.4f} × raw margin + {float(params.get('calib_b', 'nan')):.4f}",
        "",
        "## Data window",
        "",
        f"- Split: {lineage.get('split', '?')}",
    ]
    for part in ("train", "valid", "oot"):
        info = lineage.get(part, {})
        window = info.get("as_of") or info.get("time_range") or "—"
        lines.append(
            f"- {part}: {int(m(f'{part}_rows', 0))} rows, bad rate {_fmt(m(f'{part}_bad_rate'))}, window {window}"
        )
    for snap in lineage.get("snapshots", []):
        lines.append(
            f"  - as-of {snap['as_of']}: {snap['rows']} rows, sha256 `{snap['sha256'][:12]}`"
        )
    if lineage.get("table"):
        t = lineage["table"]
        lines.append(
            f"- source table `{t['path']}` (sha256 `{t['sha256'][:12]}`, {t['rows']} rows)"
        )
    lines += [
        "",
        "## Metrics",
        "",
        "| sample | AUC | Gini | KS | Brier | calibration error | mean PD | bad rate |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for part in ("train", "valid", "oot"):
        lines.append(
            f"| {part} | {_fmt(m(f'{part}_auc'))} | {_fmt(m(f'{part}_gini'))} | {_fmt(m(f'{part}_ks'))} | "
            f"{_fmt(m(f'{part}_brier'))} | {_fmt(m(f'{part}_calibration_error'))} | {_fmt(m(f'{part}_mean_pred'))} | "
            f"{_fmt(m(f'{part}_bad_rate'))} |"
        )
    lines += [
        "",
        f"- Logistic-regression baseline on the same split: OOT AUC {_fmt(m('baseline_lr_oot_auc'))} "
        f"(model {_fmt(m('oot_auc'))}, uplift {_fmt(m('oot_auc_uplift_vs_lr'))})",
        f"- Score PSI train vs OOT: {_fmt(m('score_psi'))}",
        "",
        f"## Gates (against {against})",
        "",
    ]
    if gates:
        lines += ["| gate | result | shortfall | detail |", "| --- | --- | --- | --- |"]
        lines += [
            f"| {g.name} | {'pass' if g.passed else 'FAIL'} | {_fmt(g.shortfall)} | {g.detail} |"
            for g in gates
        ]
    else:
        lines.append("not evaluated")
    lines += ["", "## Top features (mean |SHAP| on OOT rows, raw log-odds)", ""]
    lines += ["| feature | mean abs SHAP | declared direction |", "| --- | --- | --- |"]
    for row in importance[:15]:
        d = int(row.get("monotone", 0))
        lines.append(
            f"| {row['feature']} | {row['mean_abs_shap']:.4f} | {'+' if d > 0 else '-' if d < 0 else 'free'} |"
        )
    lines += ["", "## Known limits", ""]
    lines += [f"- {x}" for x in known_limits(params, metrics)]
    return "\n".join(lines) + "\n"


def known_limits(params: dict[str, str], metrics: dict[str, float]) -> list[str]:
    out = []
    n_bad = metrics.get("oot_rows", 0) * metrics.get("oot_bad_rate", 0)
    if n_bad:
        # standard error of AUC is roughly sqrt(AUC(1-AUC)/min(bads, goods)) (Hanley-McNeil, crude)
        a = metrics.get("oot_auc", 0.5)
        se = math.sqrt(max(a * (1 - a), 1e-9) / max(n_bad, 1))
        out.append(
            f"OOT sample holds {int(round(n_bad))} positives: AUC is known to about ±{1.96 * se:.3f}."
        )
    if params.get("kind") == "credit":
        out.append(
            "Labels mature 12 months after the as-of date: the newest months are not in training."
        )
    if params.get("kind") == "fraud":
        out.append(
            "Fraud positives are rare and labelled by bust-out within 90 days; rings that wait longer are missed."
        )
    if params.get("encoding_columns", "0") != "0":
        out.append(
            "Text columns are encoded from training values; a value never seen in training scores as missing."
        )
    out.append("Trained on observed outcomes of approved users only (no reject inference).")
    out.append(
        "Calibration is fitted on the validation sample; recheck it when the bad rate shifts."
    )
    return out


def log_card(
    client, uri: str, run_id: str, name: str, version: int, gates: list | None, against: str
) -> str:
    """Render the card from what the run holds and log it as `model_card.md`."""
    import mlflow

    run = client.get_run(run_id)
    folder = Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, tracking_uri=uri, artifact_path=LINEAGE)
    ).parent
    lineage = json.loads((folder / LINEAGE).read_text())
    imp_path = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, tracking_uri=uri, artifact_path=IMPORTANCE
        )
    )
    import pandas as pd

    importance = pd.read_csv(imp_path).to_dict("records")
    text = render(
        name,
        version,
        run_id,
        run.data.params,
        run.data.metrics,
        lineage,
        importance,
        gates,
        against,
    )
    client.log_text(run_id, text, CARD)
    return text
