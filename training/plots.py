"""Figures logged with every run: ROC + KS, calibration by decile, SHAP summary (matplotlib Agg).

SHAP values come from LightGBM's own TreeSHAP (`pred_contrib=True`): the same numbers as
`shap.TreeExplainer` on the raw margin, without importing shap (8 s) in every training run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training import metrics as evaluation


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc_ks(y, p, path: Path, title: str) -> Path:
    plt = _pyplot()
    fpr, tpr = evaluation.roc_curve(y, p)
    if len(fpr) > 2000:  # a 2000-point curve looks the same and draws much faster
        keep = np.unique(np.linspace(0, len(fpr) - 1, 2000).astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    ax1.plot(fpr, tpr, lw=1.5, label=f"AUC {evaluation.auc(y, p):.3f}")
    ax1.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax1.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC — {title}")
    ax1.legend(loc="lower right")
    y = np.asarray(y, dtype=float)
    order = np.argsort(np.asarray(p), kind="mergesort")
    share = np.arange(1, len(y) + 1) / len(y)
    cdf_bad = np.cumsum(y[order]) / max(y.sum(), 1)
    cdf_good = np.cumsum(1 - y[order]) / max((1 - y).sum(), 1)
    gap = np.abs(cdf_bad - cdf_good)
    k = int(np.argmax(gap))
    if len(share) > 2000:
        keep = np.unique(np.r_[np.linspace(0, len(share) - 1, 2000).astype(int), k])
        share, cdf_bad, cdf_good, gap = share[keep], cdf_bad[keep], cdf_good[keep], gap[keep]
        k = int(np.argmax(gap))
    ax2.plot(share, cdf_bad, label="bads")
    ax2.plot(share, cdf_good, label="goods")
    ax2.vlines(share[k], cdf_bad[k], cdf_good[k], colors="red", label=f"KS {gap[k]:.3f}")
    ax2.set(
        xlabel="share of population (by score, ascending)", ylabel="cumulative share", title="KS"
    )
    ax2.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_calibration(table: pd.DataFrame, path: Path, title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    top = max(table["mean_pred"].max(), table["observed_rate"].max()) * 1.05
    ax.plot([0, top], [0, top], ls="--", c="grey", lw=0.8)
    ax.plot(table["mean_pred"], table["observed_rate"], marker="o")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed rate",
        title=f"Calibration by decile — {title}",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def shap_values(booster, X: np.ndarray) -> np.ndarray:
    """TreeSHAP contributions on the raw margin (last column, the expected value, dropped)."""
    return booster.predict(X, pred_contrib=True)[:, :-1]


def plot_shap_summary(
    contrib: np.ndarray,
    X: np.ndarray,
    features: list[str],
    path: Path,
    top: int = 20,
    max_dots: int = 1000,
) -> Path:
    """Beeswarm-style summary: one row per feature, dots coloured by the feature's value rank.

    Feature order uses every row; at most `max_dots` rows (the first ones: pass a random sample)
    are drawn, which looks the same and draws in half the time.
    """
    plt = _pyplot()
    importance = np.abs(contrib).mean(axis=0)
    order = np.argsort(-importance, kind="mergesort")[:top][::-1]
    contrib, X = contrib[:max_dots], X[:max_dots]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(order) + 1.5))
    rng = np.random.default_rng(0)
    ax.set_yticks(range(len(order)), [features[j] for j in order], fontsize=8)
    ax.axvline(0, c="grey", lw=0.8)
    ax.set(xlabel="SHAP value (raw log-odds; red = high feature value)", title="SHAP summary")
    ax.set_ylim(-0.6, len(order) - 0.4)
    fig.tight_layout()  # before the dots: tight_layout draws the figure once to measure it
    xs = contrib[:, order].T.ravel()
    rows = np.repeat(np.arange(len(order)), len(contrib)) + rng.uniform(-0.3, 0.3, xs.size)
    colour = pd.DataFrame(X[:, order]).rank(pct=True).fillna(0.5).to_numpy().T.ravel()
    ax.scatter(xs, rows, c=colour, cmap="coolwarm", s=4, alpha=0.6, vmin=0, vmax=1)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
