"""Promotion gates: move the `champion` alias only when a challenger is at least as good.

Gates (all must pass):
- auc: out-of-time AUC not worse than the champion's on the same rows by more than `auc_margin`
  (no champion yet: at least `min_auc`);
- calibration: expected calibration error on out-of-time rows at most `calibration_tolerance`;
- psi: score PSI between training and out-of-time rows below `psi_alert`;
- monotone: nudging each constrained feature up never moves the margin against its direction.
A refusal names the failing gate and the shortfall. Results are tags on the version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training import evaluate
from training.fit import CalibratedModel

log = logging.getLogger(__name__)

GATE_DATA = "gate_data/oot.parquet"
GATE_LABEL = "__label__"


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    value: float
    threshold: float
    shortfall: float  # how far on the wrong side of the threshold (0 when passed)
    detail: str

    def line(self) -> str:
        verdict = "PASS" if self.passed else f"FAIL (short by {self.shortfall:.4f})"
        return f"{self.name:<12} {verdict:<24} {self.detail}"


@dataclass(frozen=True)
class PromotionResult:
    name: str
    version: int
    passed: bool
    gates: list[Gate]
    champion_before: int | None
    champion_after: int | None

    def failed(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]


def check_monotone(
    model: CalibratedModel, X: pd.DataFrame, tol: float = 1e-9
) -> tuple[int, float, str]:
    """Count rows where raising a constrained feature moves the calibrated margin the wrong way.

    Returns (violations, worst wrong-way move in log-odds, feature of the worst move).
    """
    base = model.matrix(X)
    margin0 = model.calib_a * model.booster.predict(base, raw_score=True)
    violations, worst, worst_feature = 0, 0.0, ""
    for j, direction in enumerate(model.monotone):
        if direction == 0:
            continue
        col = base[:, j]
        ok = ~np.isnan(col)
        if not ok.any():
            continue
        step = np.nanstd(col) or 1.0
        moved = base.copy()
        moved[:, j] = col + step
        delta = model.calib_a * model.booster.predict(moved, raw_score=True) - margin0
        wrong = -direction * delta[ok]  # > 0 means the margin moved against the declared direction
        n_bad = int((wrong > tol).sum())
        violations += n_bad
        if n_bad and wrong.max() > worst:
            worst, worst_feature = float(wrong.max()), model.features[j]
    return violations, worst, worst_feature


def evaluate_gates(
    challenger: CalibratedModel,
    champion: CalibratedModel | None,
    oot: pd.DataFrame,
    y_oot: np.ndarray,
    *,
    calibration_error: float,
    score_psi: float,
    auc_margin: float,
    min_auc: float,
    calibration_tolerance: float,
    psi_alert: float,
    monotone_sample_rows: int,
    champion_label: str = "champion",
    seed: int = 0,
) -> list[Gate]:
    """All four gates on one out-of-time sample (pure: models and frames in, verdicts out)."""
    gates: list[Gate] = []
    chall_auc = evaluate.auc(y_oot, challenger.predict_proba(oot))
    if champion is None:
        ok = chall_auc >= min_auc
        gates.append(
            Gate(
                "auc",
                ok,
                chall_auc,
                min_auc,
                0.0 if ok else min_auc - chall_auc,
                f"OOT AUC {chall_auc:.4f} vs absolute floor {min_auc:.4f} (no champion yet)",
            )
        )
    else:
        missing = [c for c in champion.features if c not in oot.columns]
        if missing:
            gates.append(
                Gate(
                    "auc",
                    False,
                    chall_auc,
                    float("nan"),
                    float("nan"),
                    f"{champion_label} needs columns absent from this OOT sample ({', '.join(missing[:10])}): "
                    "the models are not comparable on the same data",
                )
            )
        else:
            champ_auc = evaluate.auc(y_oot, champion.predict_proba(oot))
            floor = champ_auc - auc_margin
            ok = chall_auc >= floor
            gates.append(
                Gate(
                    "auc",
                    ok,
                    chall_auc,
                    floor,
                    0.0 if ok else floor - chall_auc,
                    f"OOT AUC {chall_auc:.4f} vs {champion_label} {champ_auc:.4f} on the same {len(y_oot)} rows "
                    f"(margin {auc_margin:.4f})",
                )
            )
    ok = calibration_error <= calibration_tolerance
    gates.append(
        Gate(
            "calibration",
            ok,
            calibration_error,
            calibration_tolerance,
            0.0 if ok else calibration_error - calibration_tolerance,
            f"OOT expected calibration error {calibration_error:.4f} (tolerance {calibration_tolerance:.4f})",
        )
    )
    ok = score_psi < psi_alert
    gates.append(
        Gate(
            "psi",
            ok,
            score_psi,
            psi_alert,
            0.0 if ok else score_psi - psi_alert,
            f"score PSI train vs OOT {score_psi:.4f} (alert at {psi_alert:.4f})",
        )
    )
    if any(challenger.monotone):
        n = min(monotone_sample_rows, len(oot))
        sample = oot.sample(n=n, random_state=seed) if n < len(oot) else oot
        bad, worst, feat = check_monotone(challenger, sample)
        n_checks = n * sum(1 for d in challenger.monotone if d)
        gates.append(
            Gate(
                "monotone",
                bad == 0,
                float(bad),
                0.0,
                worst,
                f"{bad} of {n_checks} perturbations moved PD against the declared direction"
                + (f" (worst {worst:.4g} log-odds on {feat})" if bad else ""),
            )
        )
    else:
        gates.append(Gate("monotone", True, 0.0, 0.0, 0.0, "no monotone directions declared"))
    return gates


def gate_tags(gates: list[Gate], against: str) -> dict[str, str]:
    tags = {"gates.against": against, "gates.passed": str(all(g.passed for g in gates)).lower()}
    for g in gates:
        tags[f"gate.{g.name}"] = "pass" if g.passed else "fail"
        tags[f"gate.{g.name}.detail"] = g.detail
        tags[f"gate.{g.name}.shortfall"] = f"{g.shortfall:.6g}"
    return tags


def read_gate_data(client, run_id: str, uri: str) -> tuple[pd.DataFrame, np.ndarray]:
    import mlflow

    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=GATE_DATA, tracking_uri=uri
    )
    df = pd.read_parquet(path)
    return df.drop(columns=[GATE_LABEL]), df[GATE_LABEL].to_numpy(dtype=float)


def promote(
    name: str,
    version: int | None,
    *,
    tracking_uri: str,
    auc_margin: float,
    min_auc: float,
    calibration_tolerance: float,
    psi_alert: float,
    monotone_sample_rows: int,
) -> PromotionResult:
    """Evaluate the gates for a version (default: @challenger); move @champion if all pass."""
    from training import model_card
    from training.registry import CHALLENGER, CHAMPION, current_version, load_model, resolve_version
    from training.tracking import open_client

    client = open_client(tracking_uri)
    mv = resolve_version(client, name, version if version is not None else CHALLENGER)
    version = int(mv.version)
    challenger = load_model(name, version, tracking_uri)
    champ_version = current_version(client, name, CHAMPION)
    champion = load_model(name, champ_version, tracking_uri) if champ_version is not None else None
    metrics = client.get_run(mv.run_id).data.metrics
    oot, y = read_gate_data(client, mv.run_id, tracking_uri)
    against = f"champion v{champ_version}" if champion is not None else "absolute thresholds"
    gates = evaluate_gates(
        challenger,
        champion,
        oot,
        y,
        calibration_error=metrics.get("oot_calibration_error", float("nan")),
        score_psi=metrics.get("score_psi", float("nan")),
        auc_margin=auc_margin,
        min_auc=min_auc,
        calibration_tolerance=calibration_tolerance,
        psi_alert=psi_alert,
        monotone_sample_rows=monotone_sample_rows,
        champion_label=f"champion v{champ_version}",
    )
    passed = all(g.passed for g in gates)
    for k, v in gate_tags(gates, against).items():
        client.set_model_version_tag(name, str(version), k, v)
    after = champ_version
    if passed:
        client.set_registered_model_alias(name, CHAMPION, str(version))
        client.set_model_version_tag(
            name, str(version), "promoted_over", str(champ_version or "none")
        )
        after = version
        log.info("%s v%d is now @champion (was %s)", name, version, champ_version)
    else:
        log.warning(
            "%s v%d refused: %s", name, version, "; ".join(g.name for g in gates if not g.passed)
        )
    model_card.log_card(client, tracking_uri, mv.run_id, name, version, gates, against)
    return PromotionResult(name, version, passed, gates, champ_version, after)


def gates_report(result: PromotionResult) -> str:
    head = (
        f"{result.name} v{result.version}: PROMOTED to @champion"
        if result.passed
        else f"{result.name} v{result.version}: REFUSED (failed: {', '.join(g.name for g in result.failed())})"
    )
    return "\n".join([head, *("  " + g.line() for g in result.gates)])
