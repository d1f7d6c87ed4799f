"""Model performance on matured labels, an estimate for unmatured cohorts, and misjudgements.

Matured labels are the truth the monitor may use: a default label for as-of T is known only
once its window has closed. Before that, CBPE-style estimates from calibrated PDs say what the
model *expects* (default rate, AUC); they follow covariate shift but cannot see concept drift
(the same features now meaning more risk), which is why a matured-label backtest is part of
every trigger.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.contracts import DOWNGRADE_ACTIONS
from training.metrics import auc, calibration_slope, ks

# PD bands for the calibration table (upper edges; the last band is open).
DEFAULT_PD_BANDS = (0.01, 0.02, 0.05, 0.10, 0.20, 0.40)


def calibration_table(
    y: np.ndarray, p: np.ndarray, bands: tuple[float, ...] = DEFAULT_PD_BANDS
) -> pd.DataFrame:
    """Predicted vs observed default rate per PD band.

    >>> calibration_table([0, 1, 0, 0], [0.005, 0.5, 0.5, 0.5], bands=(0.01,)).to_dict("records")
    [{'band': '<0.01', 'n': 1, 'predicted_rate': 0.005, 'observed_rate': 0.0, 'gap': -0.005}, {'band': '>=0.01', 'n': 3, 'predicted_rate': 0.5, 'observed_rate': 0.3333, 'gap': -0.1667}]
    """
    y = np.asarray(y, dtype="float64")
    p = np.asarray(p, dtype="float64")
    edges = np.asarray(bands, dtype="float64")
    idx = np.searchsorted(edges, p, side="right")
    labels = (
        [f"<{edges[0]:g}"]
        + [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
        + [f">={edges[-1]:g}"]
    )
    rows = []
    for i, label in enumerate(labels):
        mask = idx == i
        n = int(mask.sum())
        if n == 0:
            continue
        pred, obs = float(p[mask].mean()), float(y[mask].mean())
        rows.append(
            {
                "band": label,
                "n": n,
                "predicted_rate": round(pred, 4),
                "observed_rate": round(obs, 4),
                "gap": round(obs - pred, 4),
            }
        )
    return pd.DataFrame(rows, columns=["band", "n", "predicted_rate", "observed_rate", "gap"])


def matured_performance(
    y: np.ndarray, p: np.ndarray, bands: tuple[float, ...] = DEFAULT_PD_BANDS
) -> dict:
    """AUC, Gini, KS, calibration (overall gap, slope, per band) on matured labels.

    `calibration_gap` is observed minus predicted default rate over all rows (positive: the
    model under-predicts risk); `calibration_gap_max_band` the largest |gap| over bands.
    """
    y = np.asarray(y, dtype="float64")
    p = np.asarray(p, dtype="float64")
    if y.shape != p.shape:
        raise ValueError(f"labels ({y.shape}) and scores ({p.shape}) differ in length")
    if np.isnan(y).any():
        raise ValueError(f"{int(np.isnan(y).sum())} labels are NaN; pass matured rows only")
    if len(y) == 0:
        return {"n": 0, "available": False}
    a = auc(y, p)
    table = calibration_table(y, p, bands)
    n_pos = int(y.sum())
    return {
        "defaults": n_pos,
        "auc_se": auc_standard_error(a, n_pos, len(y) - n_pos),
        # sampling error of the observed default rate if the predictions were right
        "default_rate_se": float(np.sqrt(np.clip(p.mean() * (1 - p.mean()), 0, None) / len(y))),
        "available": True,
        "n": int(len(y)),
        "default_rate": float(y.mean()),
        "predicted_rate": float(p.mean()),
        "auc": a,
        "gini": 2 * a - 1 if not np.isnan(a) else float("nan"),
        "ks": ks(y, p),
        "brier": float(np.mean((p - y) ** 2)),
        "calibration_gap": float(y.mean() - p.mean()),
        "calibration_gap_max_band": float(table["gap"].abs().max()) if len(table) else 0.0,
        "calibration_slope": calibration_slope(y, p),
        "calibration_by_band": table.to_dict("records"),
    }


def auc_standard_error(a: float, n_pos: int, n_neg: int) -> float:
    """Hanley-McNeil standard error of an AUC (Gini's is twice this).

    >>> round(auc_standard_error(0.75, 100, 900), 4)  # (0.1875 + 99*0.0375 + 899*0.0804) / 90000
    0.0291
    """
    if not (n_pos and n_neg) or np.isnan(a):
        return float("nan")
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    return float(np.sqrt(max(var, 0.0)))


def expected_auc(p: np.ndarray) -> float:
    """AUC the model expects if its calibrated PDs are right (CBPE).

    Every row counts as a default with weight p and as a non-default with weight 1-p; the
    weighted AUC of that doubled sample is the expected AUC. It cannot see concept drift.
    """
    p = np.asarray(p, dtype="float64")
    if len(p) == 0 or np.all(p == p[0]):
        return float("nan")
    y = np.r_[np.ones(len(p)), np.zeros(len(p))]
    return float(roc_auc_score(y, np.r_[p, p], sample_weight=np.r_[p, 1 - p]))


def estimated_performance(p: np.ndarray) -> dict:
    """CBPE estimate for a cohort whose labels have not matured."""
    p = np.asarray(p, dtype="float64")
    a = expected_auc(p)
    return {
        "n": int(len(p)),
        "expected_default_rate": float(p.mean()) if len(p) else float("nan"),
        "expected_auc": a,
        "expected_gini": 2 * a - 1 if not np.isnan(a) else float("nan"),
        "caveat": "estimated from calibrated scores only: follows covariate shift, misses concept drift",
    }


def misjudgements(
    decisions: pd.DataFrame,
    labels: pd.DataFrame,
    segments: list[str] | None = None,
    fraud_threshold: float = 0.5,
) -> dict:
    """Wrongful downgrades and cleared fraud flags among users whose outcome has matured.

    `decisions`: user_id, action, fraud_p (+ segment columns). `labels`: user_id,
    label_default_12m, label_default_12m_matured, and optionally label_fraud_90d(_matured).
    Wrongful downgrade: action in lower/freeze/close and the user did not default once the
    label matured. Many downgraded users stay good even when the PDs are right (PD 0.3 means
    7 in 10 do), so with a `pd` column the expected share (mean 1 - pd over them) and the
    excess over it are given too: the excess is the misjudgement. Cleared fraud flag: fraud_p >= threshold and no fraud once matured.
    Rates are shares of the flagged group; `by_segment` repeats them per segment value.
    """
    for col in ("user_id", "action"):
        if col not in decisions.columns:
            raise ValueError(f"decisions lack column {col!r}")
    for col in ("user_id", "label_default_12m", "label_default_12m_matured"):
        if col not in labels.columns:
            raise ValueError(f"labels lack column {col!r}")
    keep = ["user_id", "label_default_12m", "label_default_12m_matured"]
    keep += [c for c in ("label_fraud_90d", "label_fraud_90d_matured") if c in labels.columns]
    seg_cols = [s for s in (segments or []) if s in labels.columns and s not in decisions.columns]
    df = decisions.merge(labels[keep + seg_cols], on="user_id", how="inner", validate="one_to_one")
    matured = df["label_default_12m_matured"].fillna(False).astype(bool)
    down = df["action"].isin(DOWNGRADE_ACTIONS)
    good = matured & (df["label_default_12m"] == 0)

    def _rates(frame_mask: pd.Series) -> dict:
        d = down & matured & frame_mask
        out = {
            "downgraded_matured": int(d.sum()),
            "wrongful_downgrades": int((d & good).sum()),
            "wrongful_downgrade_rate": _share((d & good).sum(), d.sum()),
            "good_matured": int((good & frame_mask).sum()),
            "wrongful_per_10k_good": _per_10k((d & good).sum(), (good & frame_mask).sum()),
        }
        if "pd" in df.columns:
            # What the model expected: a downgraded user with PD p stays good with prob 1 - p.
            expected = float((1 - df.loc[d, "pd"]).mean()) if d.any() else float("nan")
            out["expected_wrongful_rate"] = expected
            out["wrongful_excess"] = out["wrongful_downgrade_rate"] - expected
        if "fraud_p" in df.columns and "label_fraud_90d" in df.columns:
            fm = df.get("label_fraud_90d_matured", pd.Series(True, index=df.index))
            fm = fm.fillna(False).astype(bool) & frame_mask
            flagged = fm & (df["fraud_p"] >= fraud_threshold)
            cleared = flagged & (df["label_fraud_90d"] == 0)
            out.update(
                fraud_flagged_matured=int(flagged.sum()),
                fraud_flags_cleared=int(cleared.sum()),
                fraud_false_positive_rate=_share(cleared.sum(), flagged.sum()),
            )
        return out

    everyone = pd.Series(True, index=df.index)
    result = {"overall": _rates(everyone), "by_segment": {}}
    for seg in segments or []:
        if seg not in df.columns:
            continue
        result["by_segment"][seg] = {
            str(v): _rates(df[seg] == v) for v in sorted(df[seg].dropna().unique())
        }
    return result


def _share(num, den) -> float:
    return float(num) / float(den) if den else float("nan")


def _per_10k(num, den) -> float:
    return 1e4 * float(num) / float(den) if den else float("nan")
