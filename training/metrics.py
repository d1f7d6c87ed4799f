"""The one metrics module: discrimination, calibration, lift and score stability (PSI), in plain numpy.

Training, the promotion gates, retraining and monitoring all import these, so a gate and the
monitor can never disagree on the same scores.

Implemented here rather than through `mlflow.evaluate` (deprecated) so the numbers are
exactly what the promotion gates compare.

>>> round(auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)  # 3 of 4 (bad, good) pairs ordered right
0.75
>>> psi([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], bins=2)
0.0
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Floor for an empty bin's share: keeps log(p/q) finite; identical samples still give exactly 0.
PSI_FLOOR = 1e-4


def _arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if y.shape != p.shape:
        raise ValueError(f"labels ({y.shape}) and scores ({p.shape}) differ in shape")
    if np.isnan(y).any() or np.isnan(p).any():
        raise ValueError("labels or scores contain NaN; drop unmatured/unlabelled rows first")
    return y, p


def auc(y, p) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula; ties count one half."""
    y, p = _arrays(y, p)
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(p).rank(method="average").to_numpy()
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def gini(y, p) -> float:
    return 2.0 * auc(y, p) - 1.0


def ks(y, p) -> float:
    """Kolmogorov-Smirnov: the largest gap between the score CDFs of bads and goods."""
    y, p = _arrays(y, p)
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ys, ps = y[order], p[order]
    # evaluate the CDFs only at the last row of each run of tied scores
    last = np.r_[ps[1:] != ps[:-1], True]
    cdf_pos = np.cumsum(ys)[last] / n_pos
    cdf_neg = np.cumsum(1 - ys)[last] / n_neg
    return float(np.max(np.abs(cdf_pos - cdf_neg)))


def brier(y, p) -> float:
    y, p = _arrays(y, p)
    return float(np.mean((p - y) ** 2))


def average_precision(y, p) -> float:
    """Area under the precision-recall curve (step-wise), useful for the rare fraud class."""
    y, p = _arrays(y, p)
    n_pos = y.sum()
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    last = np.r_[ps[1:] != ps[:-1], True]
    tp = np.cumsum(ys)[last]
    fp = np.cumsum(1 - ys)[last]
    precision = tp / (tp + fp)
    recall_step = np.diff(np.r_[0.0, tp]) / n_pos
    return float(np.sum(precision * recall_step))


def _deciles(p: np.ndarray, bins: int) -> np.ndarray:
    """Bin index 0..bins-1 by score rank (equal-count bins; ties broken by position)."""
    order = np.argsort(p, kind="mergesort")
    idx = np.empty(len(p), dtype=int)
    idx[order] = (np.arange(len(p)) * bins) // max(len(p), 1)
    return idx


def calibration_table(y, p, bins: int = 10) -> pd.DataFrame:
    """Mean predicted probability against observed rate per score decile (bin 1 = lowest score)."""
    y, p = _arrays(y, p)
    b = _deciles(p, bins)
    df = pd.DataFrame({"bin": b + 1, "y": y, "p": p})
    out = df.groupby("bin").agg(
        rows=("y", "size"), mean_pred=("p", "mean"), observed_rate=("y", "mean")
    )
    out["abs_gap"] = (out["mean_pred"] - out["observed_rate"]).abs()
    return out.reset_index()


def calibration_error(y, p, bins: int = 10) -> float:
    """Expected calibration error: row-weighted mean of |mean PD - observed rate| over deciles."""
    t = calibration_table(y, p, bins)
    return float(np.average(t["abs_gap"], weights=t["rows"]))


def calibration_slope_intercept(y, p) -> tuple[float, float]:
    """Logistic recalibration of the outcome on logit(p): slope 1, intercept 0 = well calibrated."""
    y, p = _arrays(y, p)
    z = np.log(np.clip(p, 1e-9, 1 - 1e-9) / np.clip(1 - p, 1e-9, 1))
    a, b = fit_logistic_1d(z, y)
    return a, b


def calibration_slope(y, p) -> float:
    """The calibration slope alone; NaN when only one class is present (nothing to fit)."""
    y, p = _arrays(y, p)
    if not 0 < y.sum() < len(y):
        return float("nan")
    return calibration_slope_intercept(y, p)[0]


def fit_logistic_1d(x, y, l2: float = 1e-6, iters: int = 50) -> tuple[float, float]:
    """Fit P(y=1) = sigmoid(a*x + b) by Newton-Raphson (deterministic; tiny ridge keeps it finite)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(np.unique(y)) < 2:
        raise ValueError(
            "calibration needs both classes in the held-out set; add rows or as-of dates"
        )
    X = np.column_stack([x, np.ones_like(x)])
    w = np.zeros(2)
    for _ in range(iters):
        eta = X @ w
        mu = 1.0 / (1.0 + np.exp(-eta))
        grad = X.T @ (y - mu) - l2 * w
        hess = (X * (mu * (1 - mu))[:, None]).T @ X + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w = w + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(w[0]), float(w[1])


def lift_table(y, p, bins: int = 10) -> pd.DataFrame:
    """Decile table for a scorecard: decile 1 holds the highest scores (riskiest)."""
    y, p = _arrays(y, p)
    b = bins - _deciles(p, bins)  # 1 = top decile
    df = pd.DataFrame({"decile": b, "y": y, "p": p})
    out = df.groupby("decile").agg(
        rows=("y", "size"),
        bads=("y", "sum"),
        min_score=("p", "min"),
        max_score=("p", "max"),
        mean_score=("p", "mean"),
    )
    total_bads = max(y.sum(), 1e-12)
    out["bad_rate"] = out["bads"] / out["rows"]
    out["cum_bad_capture"] = out["bads"].cumsum() / total_bads
    out["lift"] = out["bad_rate"] / max(y.mean(), 1e-12)
    return out.reset_index()


def quantile_edges(reference: np.ndarray, bins: int = 10) -> np.ndarray:
    """Interior bin edges at the reference's quantiles (NaN ignored, duplicate edges merged).

    >>> quantile_edges(np.arange(10.0), bins=2).tolist()
    [4.5]
    >>> quantile_edges(np.zeros(5), bins=10).tolist()  # a constant column has one bin
    []
    """
    if bins < 2:
        raise ValueError(f"PSI needs at least 2 bins, got {bins}")
    values = np.asarray(reference, dtype="float64")
    values = values[~np.isnan(values)]
    if values.size == 0:
        return np.empty(0)
    edges = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = np.unique(edges)
    # An edge equal to the minimum makes an always-empty first bin; drop it.
    return edges[edges > values.min()]


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values per bin: len(edges)+1 value bins, then one bin for NaN (missing)."""
    values = np.asarray(values, dtype="float64")
    missing = np.isnan(values)
    idx = np.searchsorted(edges, values[~missing], side="right")
    counts = np.bincount(idx, minlength=edges.size + 1).astype("float64")
    counts = np.append(counts, float(missing.sum()))
    return counts / values.size


def psi(reference, current, bins: int = 10) -> float:
    """Population stability index of `current` against `reference`.

    Bins are the reference's quantiles (so each holds ~1/bins of it); missing values get a bin
    of their own, because "no history" showing up more often is drift too.
    PSI = sum (cur - ref) * ln(cur / ref); < 0.1 stable, 0.1-0.25 watch, > 0.25 act.

    >>> psi([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    0.0
    >>> round(psi([0.0] * 50 + [1.0] * 50, [0.0] * 10 + [1.0] * 90), 4)  # (0.1-0.5)ln(0.2)+(0.9-0.5)ln(1.8)
    0.8789
    """
    ref = np.asarray(reference, dtype="float64")
    cur = np.asarray(current, dtype="float64")
    if ref.size == 0 or cur.size == 0:
        raise ValueError(
            f"PSI needs non-empty samples (reference has {ref.size} rows, current {cur.size})"
        )
    edges = quantile_edges(ref, bins)
    p_ref = np.maximum(bin_shares(ref, edges), PSI_FLOOR)
    p_cur = np.maximum(bin_shares(cur, edges), PSI_FLOOR)
    return float(np.sum((p_cur - p_ref) * np.log(p_cur / p_ref)))


def roc_curve(y, p) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at each distinct score threshold (highest first)."""
    y, p = _arrays(y, p)
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    last = np.r_[ps[1:] != ps[:-1], True]
    tp = np.cumsum(ys)[last]
    fp = np.cumsum(1 - ys)[last]
    return np.r_[0.0, fp / max(fp[-1], 1e-12)], np.r_[0.0, tp / max(tp[-1], 1e-12)]


def summarise(y, p, prefix: str) -> dict[str, float]:
    """The headline metrics of one sample, keyed `<prefix>_<metric>` for MLflow."""
    y, p = _arrays(y, p)
    a = auc(y, p)
    slope, intercept = (
        calibration_slope_intercept(y, p) if 0 < y.sum() < len(y) else (np.nan, np.nan)
    )
    return {
        f"{prefix}_rows": float(len(y)),
        f"{prefix}_bad_rate": float(y.mean()) if len(y) else float("nan"),
        f"{prefix}_auc": a,
        f"{prefix}_gini": 2 * a - 1,
        f"{prefix}_ks": ks(y, p),
        f"{prefix}_brier": brier(y, p),
        f"{prefix}_avg_precision": average_precision(y, p),
        f"{prefix}_mean_pred": float(p.mean()) if len(p) else float("nan"),
        f"{prefix}_calibration_error": calibration_error(y, p) if len(y) >= 10 else float("nan"),
        f"{prefix}_calibration_slope": slope,
        f"{prefix}_calibration_intercept": intercept,
    }
