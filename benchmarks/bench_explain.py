"""Benchmark: exact baseline-Shapley attributions for downgrade pairs vs a shap.TreeExplainer per user.

Example: python -m benchmarks.bench_explain --sizes 10000 --baseline-pairs 50
A LightGBM model of 300 trees x 31 leaves on 40 features (the ANCHORS.md reference shape) explains
(new, old) snapshot pairs in which a few features changed. The baseline is what one would do
without this engine: build `shap.TreeExplainer(model, data=old_row, feature_perturbation=
"interventional")` for each user and explain the new row; measured on a few pairs, cost per pair
extrapolated. Prints one JSON line per figure.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import lightgbm as lgb
import numpy as np


def _model(
    n_features: int, n_trees: int, leaves: int, seed: int = 0
) -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 20_000
    x = rng.normal(size=(n, n_features))
    x[rng.random(x.shape) < 0.05] = np.nan
    z = np.nansum(x[:, :8] * np.linspace(1.0, 0.2, 8), axis=1) + 0.5 * np.nan_to_num(
        x[:, 8] * x[:, 9]
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-(z - 2)))).astype(int)
    params = dict(
        objective="binary",
        num_leaves=leaves,
        learning_rate=0.05,
        min_data_in_leaf=20,
        verbose=-1,
        num_threads=2,
        seed=seed,
        deterministic=True,
    )
    return lgb.train(params, lgb.Dataset(x, y), n_trees), x


def _pairs(x: np.ndarray, n: int, changed: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    old = x[rng.integers(0, len(x), n)]
    new = old.copy()
    donor = x[rng.integers(0, len(x), n)]
    cols = np.argsort(rng.random((n, x.shape[1])), axis=1)[:, :changed]
    rows = np.repeat(np.arange(n), changed)
    new[rows, cols.ravel()] = donor[rows, cols.ravel()]
    return new, old


def _line(name, value, unit, size, baseline=None, baseline_value=None, **extra) -> None:
    # ratio > 1 means ours is better: rates divide ours by the baseline, times the baseline by ours
    ratio = None
    if baseline_value and value:
        ratio = value / baseline_value if unit.endswith("/s") else baseline_value / value
    print(
        json.dumps(
            {
                "name": name,
                "value": value,
                "unit": unit,
                "baseline": baseline,
                "baseline_value": baseline_value,
                "ratio": ratio,
                "size": size,
                **extra,
            }
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    from serving.explain.attribution import attribute, compile_booster

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_explain", description=__doc__)
    p.add_argument("--sizes", default="10000", help="comma-separated numbers of downgrade pairs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trees", type=int, default=300)
    p.add_argument("--leaves", type=int, default=31)
    p.add_argument("--features", type=int, default=40)
    p.add_argument("--changed", type=int, default=6, help="features that changed per pair")
    p.add_argument("--baseline-pairs", type=int, default=50)
    args = p.parse_args(argv)

    booster, x = _model(args.features, args.trees, args.leaves)
    t = time.perf_counter()
    ct = compile_booster(booster)
    compile_s = time.perf_counter() - t
    _line(
        "explain_compile_model_s",
        round(compile_s, 3),
        "s",
        args.trees,
        trees=args.trees,
        leaves=args.leaves,
    )
    attribute(ct, *_pairs(x, 4, args.changed))  # JIT warm-up (cached on disk after the first run)

    nb = args.baseline_pairs
    new_b, old_b = _pairs(x, nb, args.changed, seed=2)
    import shap

    warnings.filterwarnings("ignore")
    t = time.perf_counter()
    base_phi = []
    for i in range(nb):
        explainer = shap.TreeExplainer(
            booster, data=old_b[i : i + 1], feature_perturbation="interventional"
        )
        base_phi.append(
            np.asarray(explainer.shap_values(new_b[i : i + 1], check_additivity=False)).reshape(
                -1, x.shape[1]
            )[-1]
        )
    per_pair_base = (time.perf_counter() - t) / nb
    ours_b = attribute(ct, new_b, old_b)
    agree = float(np.abs(np.array(base_phi) - ours_b).max())
    _line(
        "explain_shap_per_user_pairs_per_s",
        round(1 / per_pair_base, 2),
        "pairs/s",
        nb,
        max_abs_diff_vs_ours=agree,
    )

    for size in [int(s) for s in args.sizes.split(",") if s]:
        new, old = _pairs(x, size, args.changed, seed=3)
        t = time.perf_counter()
        phi = attribute(ct, new, old, n_threads=args.threads)
        dt = time.perf_counter() - t
        delta = booster.predict(new, raw_score=True, num_threads=args.threads) - booster.predict(
            old, raw_score=True, num_threads=args.threads
        )
        same = (new == old) | (np.isnan(new) & np.isnan(old))
        rate = size / dt
        _line(
            "explain_attributions_per_s",
            round(rate, 1),
            "pairs/s",
            size,
            baseline="shap.TreeExplainer per user (extrapolated)",
            baseline_value=round(1 / per_pair_base, 2),
            threads=args.threads,
            trees=args.trees,
            leaves=args.leaves,
            features=args.features,
            changed=args.changed,
            goal=">= 1000 pairs/s",
        )
        _line(
            "explain_ms_per_pair",
            round(1000 * dt / size, 4),
            "ms",
            size,
            baseline="shap.TreeExplainer per user",
            baseline_value=round(1000 * per_pair_base, 2),
        )
        _line(
            "explain_max_additivity_error",
            float(np.abs(phi.sum(1) - delta).max()),
            "log-odds",
            size,
        )
        _line(
            "explain_max_unchanged_attribution",
            float(np.abs(phi[same]).max(initial=0.0)),
            "log-odds",
            size,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
