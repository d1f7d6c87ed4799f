"""Retraining when monitoring fires: challenger on the latest mature window, backtest, gates.

The challenger trains on the most recent as-of dates whose labels have matured by the decision
date (the 12-month default label for the credit model, the 90-day bust-out label for the fraud
model), with the newest matured date held out as out-of-time data. Before the gates decide, it
is backtested against the champion on that out-of-time table, including a swap-set analysis at
the champion's approval rate (for the fraud model: the share it does not flag): who the
challenger would newly approve or decline, and how they turned out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.catalog import available_as_ofs, decisions_path, feature_table_path, model_ops_path
from features.contracts import DOWNGRADE_ACTIONS
from training.fit import MODEL_SPECS
from training.metrics import auc, calibration_slope, ks

log = logging.getLogger(__name__)

RETRAIN_EXPERIMENT = "creditline-retraining"


def matured_as_ofs(
    as_ofs: list[pd.Timestamp],
    decision_date: pd.Timestamp,
    horizon_months: int,
    margin_days: int = 14,
) -> list[pd.Timestamp]:
    """As-of dates whose default window (plus the sync margin) has closed by `decision_date`.

    >>> ds = [pd.Timestamp("2024-01-31"), pd.Timestamp("2024-02-29"), pd.Timestamp("2024-03-31")]
    >>> [d.strftime("%m-%d") for d in matured_as_ofs(ds, pd.Timestamp("2025-03-15"), 12)]
    ['01-31', '02-29']
    """
    cutoff = pd.Timestamp(decision_date)
    return sorted(
        t
        for t in as_ofs
        if pd.Timestamp(t) + pd.DateOffset(months=horizon_months) + pd.Timedelta(days=margin_days)
        <= cutoff
    )


def fraud_matured_as_ofs(
    as_ofs: list[pd.Timestamp], decision_date: pd.Timestamp
) -> list[pd.Timestamp]:
    """As-of dates whose 90-day bust-out label has closed by `decision_date`: a draw in the 90
    days, its first installment a month later, 60 days past due, plus the sync margin (the
    feature builder's own rule, `features.labels.matured`): about six months after the as-of.

    >>> ds = [pd.Timestamp("2024-09-30"), pd.Timestamp("2024-10-31"), pd.Timestamp("2024-12-31")]
    >>> [d.strftime("%m-%d") for d in fraud_matured_as_ofs(ds, pd.Timestamp("2025-05-15"))]
    ['09-30', '10-31']
    """
    from features.labels import matured

    return sorted(t for t in as_ofs if matured(pd.Timestamp(t), pd.Timestamp(decision_date))[1])


def choose_window(
    matured: list[pd.Timestamp], window_months: int
) -> tuple[list[pd.Timestamp], pd.Timestamp] | None:
    """Training as-ofs (the `window_months` before the newest) and the out-of-time as-of."""
    if len(matured) < 2:
        return None
    oot = matured[-1]
    return matured[-1 - window_months : -1], oot


def swap_set(
    y: np.ndarray, pd_champion: np.ndarray, pd_challenger: np.ndarray, approval_rate: float
) -> pd.DataFrame:
    """Who each model approves at the same approval rate (lowest PDs), and how they turned out.

    Rows: kept (both approve), swap_in (only the challenger approves), swap_out (only the
    champion approves), declined (neither); n and observed default rate each. A better
    challenger swaps in users who default less than those it swaps out.

    >>> s = swap_set(np.array([0, 0, 1, 1]), np.array([.1, .4, .2, .9]), np.array([.1, .2, .4, .9]), 0.5)
    >>> s.set_index("group")["n"].to_dict()
    {'kept': 1, 'swap_in': 1, 'swap_out': 1, 'declined': 1}
    >>> s.set_index("group")["default_rate"].to_dict()
    {'kept': 0.0, 'swap_in': 0.0, 'swap_out': 1.0, 'declined': 1.0}
    """
    y = np.asarray(y, dtype="float64")
    n = len(y)
    if not 0 < approval_rate <= 1:
        raise ValueError(f"approval rate must be in (0, 1], got {approval_rate}")
    k = int(round(approval_rate * n))

    def approved(p: np.ndarray) -> np.ndarray:
        order = np.lexsort((np.arange(n), np.asarray(p)))  # stable: ties by row order
        mask = np.zeros(n, dtype=bool)
        mask[order[:k]] = True
        return mask

    a, b = approved(pd_champion), approved(pd_challenger)
    groups = {"kept": a & b, "swap_in": ~a & b, "swap_out": a & ~b, "declined": ~a & ~b}
    rows = [
        {
            "group": g,
            "n": int(m.sum()),
            "default_rate": float(y[m].mean()) if m.any() else float("nan"),
            "defaults": int(y[m].sum()),
        }
        for g, m in groups.items()
    ]
    return pd.DataFrame(rows)


def backtest(
    oot: pd.DataFrame,
    champion: Any,
    challenger: Any,
    approval_rate: float,
    label: str = "label_default_12m",
) -> dict:
    """Champion vs challenger on matured out-of-time rows: AUC, Gini, KS, Brier, log loss,
    calibration slope, and the swap set at `approval_rate`."""
    rows = oot.loc[oot[label].notna()]
    if len(rows) == 0:
        raise ValueError(f"out-of-time table has no matured {label} rows to backtest on")
    y = rows[label].to_numpy(dtype="float64")
    out: dict[str, Any] = {
        "rows": int(len(rows)),
        "default_rate": float(y.mean()),
        "approval_rate": approval_rate,
    }
    preds = {}
    for role, model in (("champion", champion), ("challenger", challenger)):
        p = np.clip(model.predict_proba(rows[list(model.features)]), 1e-9, 1 - 1e-9)
        preds[role] = p
        a = auc(y, p)
        out[role] = {
            "version": int(model.version),
            "auc": a,
            "gini": 2 * a - 1,
            "ks": ks(y, p),
            "brier": float(np.mean((p - y) ** 2)),
            "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
            "predicted_rate": float(p.mean()),
            "calibration_slope": calibration_slope(y, p),
        }
    out["gini_uplift"] = out["challenger"]["gini"] - out["champion"]["gini"]
    swaps = swap_set(y, preds["champion"], preds["challenger"], approval_rate)
    out["swap_set"] = swaps.to_dict("records")
    s = swaps.set_index("group")
    out["swap_in_minus_out_default_rate"] = (
        float(s.loc["swap_in", "default_rate"] - s.loc["swap_out", "default_rate"])
        if s.loc["swap_in", "n"] and s.loc["swap_out", "n"]
        else None
    )
    return out


def book_stability(
    book: pd.DataFrame, champion: Any, challenger: Any, band_edges: tuple[float, ...]
) -> dict:
    """What promoting the challenger would do to tonight's book: mean PD shift, the share of
    users whose PD band (upper edges `band_edges`, the policy's) changes, and the share moved
    into a worse band.

    >>> from types import SimpleNamespace as M
    >>> book = pd.DataFrame({"x": [0.01, 0.05, 0.10, 0.30]})  # bands 0,1,2,3 -> 0,2,3,3 when doubled
    >>> old, new = M(features=["x"], predict_proba=lambda f: f["x"].to_numpy()), M(features=["x"], predict_proba=lambda f: f["x"].to_numpy() * 2)
    >>> book_stability(book, old, new, (0.03, 0.08, 0.15, 1.0))
    {'rows': 4, 'mean_pd_shift': 0.115, 'band_change_share': 0.5, 'band_worse_share': 0.5}
    """
    edges = np.asarray(band_edges[:-1], dtype="float64")
    p_old = champion.predict_proba(book[list(champion.features)])
    p_new = challenger.predict_proba(book[list(challenger.features)])
    b_old = np.searchsorted(edges, p_old, side="left")
    b_new = np.searchsorted(edges, p_new, side="left")
    return {
        "rows": int(len(book)),
        "mean_pd_shift": round(float(np.mean(p_new - p_old)), 6) if len(book) else 0.0,
        "band_change_share": float(np.mean(b_new != b_old)) if len(book) else 0.0,
        "band_worse_share": float(np.mean(b_new > b_old)) if len(book) else 0.0,
    }


def loop_gates(
    bt: dict,
    book: dict,
    *,
    min_auc_uplift: float,
    max_mean_pd_shift: float,
    max_band_worse_share: float,
) -> list:
    """The gates the loop adds before `promote`: never a challenger worse than the champion on
    the same out-of-time rows, and a book that does not lurch (mean PD, users moved to a worse
    band; users moved to a better one are what a better model is for)."""
    from training.promote import Gate

    champ, chall = bt["champion"]["auc"], bt["challenger"]["auc"]
    floor = champ + min_auc_uplift
    shift, moved = abs(book["mean_pd_shift"]), book["band_worse_share"]
    return [
        Gate("auc-uplift", bool(chall >= floor), chall, floor, max(floor - chall, 0.0),
             f"challenger OOT AUC {chall:.4f} vs champion {champ:.4f} on the same {bt['rows']} "
             f"rows (needs uplift >= {min_auc_uplift:.4f})"),
        Gate("pd-shift", bool(shift <= max_mean_pd_shift), shift, max_mean_pd_shift,
             max(shift - max_mean_pd_shift, 0.0),
             f"mean PD of tonight's book {book['mean_pd_shift']:+.4f} (limit ±{max_mean_pd_shift:.4f}, "
             f"{book['rows']} users)"),
        Gate("band-worse", bool(moved <= max_band_worse_share), moved, max_band_worse_share,
             max(moved - max_band_worse_share, 0.0),
             f"{moved:.1%} of tonight's book would move to a worse PD band ({book['band_change_share']:.1%} "
             f"change band at all; limit {max_band_worse_share:.0%})"),
    ]  # fmt: skip


@dataclass(frozen=True)
class RetrainOutcome:
    as_of: pd.Timestamp
    model: str  # the registered name retrained
    status: str  # skipped | trained | promoted | refused
    reasons: list[str]
    challenger_version: int | None = None
    champion_before: int | None = None
    champion_after: int | None = None
    train_as_of: list[str] = field(default_factory=list)
    oot_as_of: str | None = None
    backtest: dict | None = None
    gates: list[str] = field(default_factory=list)
    mlflow_run_id: str | None = None

    def to_dict(self) -> dict:
        return {
            "as_of": self.as_of.strftime("%Y-%m-%d"),
            "model": self.model,
            "status": self.status,
            "reasons": self.reasons,
            "challenger_version": self.challenger_version,
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "train_as_of": self.train_as_of,
            "oot_as_of": self.oot_as_of,
            "backtest": self.backtest,
            "gates": self.gates,
            "mlflow_run_id": self.mlflow_run_id,
        }


def approval_rate_at(
    decisions_file: Path | None, default: float, fraud_threshold: float | None = None
) -> float:
    """Share of users the champion did not downgrade on that date (default when unknown); with
    `fraud_threshold`, the share whose fraud probability stayed below it (not flagged)."""
    if decisions_file is None or not Path(decisions_file).exists():
        return default
    column = "action" if fraud_threshold is None else "fraud_p"
    values = pd.read_parquet(decisions_file, columns=[column])[column]
    if not len(values):
        return default
    kept = ~values.isin(DOWNGRADE_ACTIONS) if fraud_threshold is None else values < fraud_threshold
    return min(max(float(kept.mean()), 0.01), 1.0)


def retrain(
    *,
    as_of: pd.Timestamp,
    features_dir: str | Path,
    decisions_dir: str | Path,
    tracking_uri: str,
    reasons: list[str],
    model_settings: dict,
    gate_settings: dict,
    horizon_months: int = 12,
    margin_days: int = 14,
    window_months: int = 6,
    min_train_months: int = 3,
    band_edges: tuple[float, ...] | None = None,
    auto_promote: bool = True,
    default_approval_rate: float = 0.9,
    seed: int = 42,
    num_threads: int = 2,
    decision_log_dir: str | Path | None = None,
    kind: str = "credit",
    fraud_flag_threshold: float = 0.5,
) -> RetrainOutcome:
    """Train a `kind` (credit or fraud) challenger on the latest mature window, backtest it,
    promote via the gates. `horizon_months`/`margin_days` say when the credit label has matured;
    the fraud label's own rule is `fraud_matured_as_ofs`. The fraud model's book-stability bands are "not flagged" and "flagged" at
    `fraud_flag_threshold`; `band_edges` are the credit policy's PD bands.

    Every step goes to one MLflow run (experiment `creditline-retraining`) and, when
    `decision_log_dir` is given, to `decision_log_dir/model_ops/as_of=D.parquet` (the fraud
    model's to `model_ops/fraud/as_of=D.parquet`).
    """
    from training.promote import GATE_KEYS, promote
    from training.registry import CHAMPION, current_version, load_model
    from training.tracking import open_client
    from training.train import train_on_feature_tables

    spec = MODEL_SPECS[kind]
    name = spec.registered_name
    if kind == "fraud":
        band_edges = (fraud_flag_threshold, 1.0)
    as_of = pd.Timestamp(as_of)
    matured = (
        fraud_matured_as_ofs(available_as_ofs(features_dir), as_of)
        if kind == "fraud"
        else matured_as_ofs(available_as_ofs(features_dir), as_of, horizon_months, margin_days)
    )
    window = choose_window(matured, window_months)
    client = open_client(tracking_uri)
    champ_before = current_version(client, name, CHAMPION)
    short = window is not None and len(window[0]) < min_train_months
    if window is None or short:
        why = (
            f"training window too short: {len(window[0])} matured month(s) < "
            f"{min_train_months} (min_train_months)"
            if short
            else f"not enough matured as-of dates by {as_of:%Y-%m-%d} ({len(matured)}; need 2)"
        )
        outcome = RetrainOutcome(
            as_of,
            name,
            "skipped",
            reasons + [why],
            champion_before=champ_before,
            champion_after=champ_before,
        )
        _log_outcome(outcome, tracking_uri, decision_log_dir)
        return outcome
    train_dates, oot_date = window
    train_s = [f"{d:%Y-%m-%d}" for d in train_dates]
    oot_s = f"{oot_date:%Y-%m-%d}"
    log.info("retraining %s on %s, out-of-time %s: %s", name, train_s, oot_s, "; ".join(reasons))
    result = train_on_feature_tables(
        kind,
        features_dir,
        train_s,
        oot_s,
        tracking_uri=tracking_uri,
        settings=model_settings,
        gates=gate_settings,
        seed=seed,
        num_threads=num_threads,
    )
    challenger = load_model(name, result.version, tracking_uri)
    bt = None
    if champ_before is not None:
        champion = load_model(name, champ_before, tracking_uri)
        oot = pd.read_parquet(feature_table_path(features_dir, oot_date))
        rate = approval_rate_at(
            decisions_path(decisions_dir, oot_date),
            default_approval_rate,
            fraud_flag_threshold if kind == "fraud" else None,
        )
        bt = backtest(oot, champion, challenger, rate, label=spec.label)
    status, gates, champ_after = "trained", [], champ_before
    refused = []
    if bt is not None and band_edges is not None:
        book = pd.read_parquet(feature_table_path(features_dir, as_of))
        bt["book"] = book_stability(book, champion, challenger, band_edges)
        checks = loop_gates(
            bt,
            bt["book"],
            min_auc_uplift=gate_settings.get("loop_min_auc_uplift", 0.0),
            max_mean_pd_shift=gate_settings.get("loop_max_mean_pd_shift", 0.02),
            max_band_worse_share=gate_settings.get("loop_max_band_worse_share", 0.25),
        )
        gates = [g.line() for g in checks]
        refused = [g.name for g in checks if not g.passed]
    if refused and auto_promote:
        status = "refused"
        log.warning("challenger v%s refused by the loop's gates: %s", result.version, refused)
    elif auto_promote:
        pr = promote(
            name,
            result.version,
            tracking_uri=tracking_uri,
            **{k: gate_settings[k] for k in GATE_KEYS},
        )
        gates += [g.line() for g in pr.gates]
        status = "promoted" if pr.passed else "refused"
        champ_after = current_version(client, name, CHAMPION)
    outcome = RetrainOutcome(
        as_of,
        name,
        status,
        reasons,
        challenger_version=int(result.version),
        champion_before=champ_before,
        champion_after=champ_after,
        train_as_of=train_s,
        oot_as_of=oot_s,
        backtest=bt,
        gates=gates,
    )
    run_id = _log_outcome(outcome, tracking_uri, decision_log_dir)
    return RetrainOutcome(**{**outcome.__dict__, "mlflow_run_id": run_id})


def _log_outcome(
    outcome: RetrainOutcome, tracking_uri: str, decision_log_dir: str | Path | None
) -> str:
    """One MLflow run per retraining decision (metrics, backtest JSON); a model-ops log row."""
    import mlflow

    from features.tables import jsonable, write_parquet

    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(RETRAIN_EXPERIMENT)
    exp_id = exp.experiment_id if exp else client.create_experiment(RETRAIN_EXPERIMENT)
    d = jsonable(outcome.to_dict())
    run = client.create_run(
        exp_id,
        run_name=f"retrain {outcome.model} as_of={d['as_of']}",
        tags={
            "creditline.kind": "retraining",
            "creditline.model": outcome.model,
            "creditline.as_of": d["as_of"],
            "creditline.status": outcome.status,
            "creditline.reasons": " | ".join(outcome.reasons)[:4900],
            "creditline.challenger_version": str(outcome.challenger_version),
            "creditline.champion_before": str(outcome.champion_before),
            "creditline.champion_after": str(outcome.champion_after),
        },
    )
    rid = run.info.run_id
    bt = outcome.backtest or {}
    for role in ("champion", "challenger"):
        for k in ("auc", "gini", "ks", "brier", "log_loss", "calibration_slope"):
            v = (bt.get(role) or {}).get(k)
            if v is not None and np.isfinite(v):
                client.log_metric(rid, f"backtest.{role}.{k}", float(v))
    if bt.get("gini_uplift") is not None:
        client.log_metric(rid, "backtest.gini_uplift", float(bt["gini_uplift"]))
    client.log_dict(rid, d, "retrain.json")
    client.set_terminated(rid)
    if decision_log_dir is not None:
        row = pd.DataFrame(
            [
                {
                    "as_of": outcome.as_of,
                    "event": "retrain",
                    "model": outcome.model,
                    "status": outcome.status,
                    "challenger_version": outcome.challenger_version or -1,
                    "champion_before": outcome.champion_before or -1,
                    "champion_after": outcome.champion_after or -1,
                    "reasons": " | ".join(outcome.reasons),
                    "mlflow_run_id": rid,
                }
            ]
        )
        # The credit model's file keeps its old place; the fraud model's sits beside it, so a
        # month that retrains both loses neither row.
        kind = None if outcome.model == MODEL_SPECS["credit"].registered_name else outcome.model
        write_parquet(row, model_ops_path(decision_log_dir, d["as_of"], kind))
    return rid
