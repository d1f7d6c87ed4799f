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

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training import metrics as evaluation
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
    chall_auc = evaluation.auc(y_oot, challenger.predict_proba(oot))
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
            champ_auc = evaluation.auc(y_oot, champion.predict_proba(oot))
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


GATE_KEYS = ("auc_margin", "min_auc", "calibration_tolerance", "psi_alert", "monotone_sample_rows")
EXCEPTION_TAG = "governance.exception"
BOOTSTRAP_OVERRIDE = "bootstrap_gate_override"


class GatesRefused(ValueError):
    """A model failed its gates and nothing may decide in its place."""


@dataclass(frozen=True)
class GovernanceException:
    """A model version deciding lines although it failed its promotion gates, and who allowed it."""

    name: str
    version: int
    kind: str
    failed_gates: tuple[str, ...]
    approved: str  # who approved and why, as configured
    as_of: str  # the date the exception was granted

    def tags(self) -> dict[str, str]:
        return {
            EXCEPTION_TAG: self.kind,
            "governance.failed_gates": ",".join(self.failed_gates),
            "governance.approved": self.approved,
            "governance.as_of": self.as_of,
        }

    def line(self) -> str:
        return (
            f"{self.name} v{self.version} decides although it FAILED gates {', '.join(self.failed_gates)} "
            f"({self.kind} of {self.as_of}; approved: {self.approved})"
        )

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "failed_gates": list(self.failed_gates)}


def governance_exception(client, name: str, version: int) -> GovernanceException | None:
    """The exception recorded on a model version's tags, if any."""
    tags = client.get_model_version(name, str(version)).tags or {}
    if EXCEPTION_TAG not in tags:
        return None
    return GovernanceException(
        name,
        int(version),
        tags[EXCEPTION_TAG],
        tuple(g for g in tags.get("governance.failed_gates", "").split(",") if g),
        tags.get("governance.approved", ""),
        tags.get("governance.as_of", ""),
    )


def promote_first(
    name: str,
    version: int,
    *,
    tracking_uri: str,
    gates: dict,
    override: str | None,
    as_of: str,
) -> tuple[PromotionResult, GovernanceException | None]:
    """Promote a bootstrap model through the gates; never let a failing one decide silently.

    - passes: it is champion;
    - fails while a champion exists: the champion stays, the new version stays @challenger
      (tagged `governance.outcome`);
    - fails with no champion at all: with `override` (who approved, why) it becomes champion
      and the exception is recorded as tags on the version; without it, `GatesRefused`.
    """
    from training.registry import CHAMPION
    from training.tracking import open_client

    pr = promote(name, version, tracking_uri=tracking_uri, **{k: gates[k] for k in GATE_KEYS})
    if pr.passed:
        return pr, None
    client = open_client(tracking_uri)
    failed = tuple(g.name for g in pr.failed())
    if pr.champion_before is not None:
        client.set_model_version_tag(
            name,
            str(version),
            "governance.outcome",
            f"refused; champion v{pr.champion_before} kept",
        )
        log.warning(
            "%s v%d failed gates %s: champion v%d stays, v%d stays @challenger",
            name,
            version,
            list(failed),
            pr.champion_before,
            version,
        )
        return pr, None
    if not override:
        raise GatesRefused(
            f"{gates_report(pr)}\n{name} v{version} failed the promotion gates and no champion exists "
            "to keep deciding, so the loop cannot start. Train on more data (a larger world), or, "
            'to start anyway, set [monitor] bootstrap_gate_override = "<who approved and why>" in '
            "creditline.toml: the model then decides as a recorded governance exception."
        )
    exc = GovernanceException(name, int(version), BOOTSTRAP_OVERRIDE, failed, override, as_of)
    for k, v in exc.tags().items():
        client.set_model_version_tag(name, str(version), k, v)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    log.warning("GOVERNANCE EXCEPTION: %s", exc.line())
    return PromotionResult(name, int(version), False, pr.gates, None, int(version)), exc
