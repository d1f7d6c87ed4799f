"""Benchmark of `creditline score`: the whole job against bare `Booster.predict` on the same matrix.

    python -m benchmarks.bench_score --sizes 100000,1000000

Builds a synthetic feature table with the feature table's layout (features, ctx_, fresh_ columns),
trains a realistic credit model (400 trees x 63 leaves) and fraud model (200 x 31) on 30k rows,
then for each size, in one process: bare predict of both boosters on the table's matrix, and the
job (`score_batch`: validation, chunked read, previous-decision join, predict, policy, decisions
+ log). A previous month's decisions file (95% of the users, 5% of them deferred) sits beside the
output, so the job looks up every user's previous line, band and rules as the nightly run does.
Prints one JSON line per figure. The job's time ratio is reported with and without file I/O
(validation reads + digest, chunk reads, writes; the previous-decision join counts as work, not
I/O). The job runs in a fresh process (models loaded from files); its peak resident memory is
VmHWM from /proc/self/status, the high-water mark of its own address space. (ru_maxrss is not
used: after subprocess's vfork+exec it also holds the parent's high-water mark, which here is the
bare-predict matrix, so it grew with the table whatever the job did.) Bare predict runs in this
process. After the last size, one line compares the peak memory of the largest and smallest size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CREDIT = [
    "inst_dpd_max_3m",
    "inst_dpd_max_6m",
    "inst_dpd_max_12m",
    "inst_late_cnt_3m",
    "inst_late_cnt_6m",
    "inst_late_cnt_12m",
    "inst_pay_ratio_3m",
    "inst_pay_ratio_6m",
    "inst_shortfall_cny_3m",
    "inst_outstanding_cny",
    "loan_draws_cnt_3m",
    "loan_draws_cnt_12m",
    "loan_draw_amount_cny_3m",
    "line_utilisation_ratio_1m",
    "line_utilisation_ratio_3m",
    "line_payoff_then_draw_cnt_6m",
    "bureau_accounts_open_cnt",
    "bureau_lenders_cnt",
    "bureau_overdue_accounts_cnt_3m",
    "bureau_overdue_cny",
    "bureau_balance_cny",
    "bureau_limit_cny",
    "bureau_util_ratio",
    "bureau_dpd_bucket_max_6m",
    "bureau_new_accounts_cnt_3m",
    "bureau_microloan_accounts_cnt",
    "bureau_inquiries_cnt_1m",
    "bureau_inquiries_cnt_3m",
    "bureau_inquiries_cnt_12m",
    "tenure_days",
    "age_band",
    "income_band",
    "city_tier",
    "logins_cnt_30d",
]
FRAUD = [
    "device_changes_cnt_30d",
    "sim_changes_cnt_30d",
    "password_resets_cnt_30d",
    "geo_jumps_cnt_30d",
    "device_shared_users_cnt",
    "ip_prefix_shared_users_cnt",
    "logins_cnt_30d",
    "loan_draws_cnt_3m",
    "line_utilisation_ratio_1m",
    "bureau_inquiries_cnt_1m",
    "bureau_new_accounts_cnt_3m",
    "tenure_days",
]
FEATURES = list(dict.fromkeys(CREDIT + FRAUD))


def _synthetic(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = {}
    for i, name in enumerate(FEATURES):
        x = rng.gamma(1.0 + i % 3, 1.0 + i % 5, n)
        x[rng.uniform(size=n) < 0.05] = np.nan  # no history
        cols[name] = x
    return cols


def _write_table(path: Path, n: int, seed: int, as_of: str, part_rows: int = 100_000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    for start in range(0, n, part_rows):
        m = min(part_rows, n - start)
        rng = np.random.default_rng(seed + start)
        cols = {
            "user_id": pa.array([f"u{start + i:08d}" for i in range(m)]),
            "as_of": pa.array(np.full(m, np.datetime64(as_of, "ns"))),
        }
        cols.update({k: pa.array(v) for k, v in _synthetic(m, seed + start).items()})
        cols.update(
            {
                "ctx_line_cny": pa.array(rng.choice([2000.0, 5000.0, 10000.0, 20000.0], m)),
                "ctx_kyc_expiry_days": pa.array(rng.integers(-30, 700, m).astype(float)),
                "ctx_active_lenders_cnt": pa.array(rng.poisson(2.0, m).astype(float)),
                "ctx_dti_ratio": pa.array(rng.uniform(0, 0.9, m)),
                "fresh_bureau_accounts_age_days": pa.array(
                    np.full(m, 12.0)
                ),  # book-level watermarks
                "fresh_installments_age_days": pa.array(np.full(m, 0.2)),
                "fresh_sync_lag_flag": pa.array((rng.uniform(size=m) < 0.02).astype(float)),
                "fresh_stale": pa.array((rng.uniform(size=m) < 0.02).astype(float)),
            }
        )
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table)
    writer.close()


def _write_previous(path: Path, n: int, seed: int, part_rows: int = 100_000) -> None:
    """Last month's decisions for 95% of the table's users (id order, as the job writes them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    for start in range(0, n, part_rows):
        m = min(part_rows, n - start)
        rng = np.random.default_rng(seed + start)
        ids = np.arange(start, start + m)[rng.uniform(size=m) < 0.95]
        k = len(ids)
        table = pa.table(
            {
                "user_id": pa.array([f"u{i:08d}" for i in ids]),
                "new_line_cny": pa.array(rng.choice([2000.0, 5000.0, 10000.0, 20000.0], k)),
                "action": pa.array(
                    rng.choice(["keep", "raise", "lower", "defer"], k, p=[0.7, 0.1, 0.15, 0.05])
                ),
                "pd_band": pa.array(rng.choice(["PD1", "PD2", "PD3", "PD4", "PD5"], k)),
                "rules_fired": pa.array(np.where(rng.uniform(size=k) < 0.1, "REG-DTI", None)),
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table)
    writer.close()


def _peak_rss_mb() -> float:
    """VmHWM: this process's own resident high-water mark (MiB)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _train(features: list[str], trees: int, leaves: int, seed: int):
    import lightgbm as lgb

    cols = _synthetic(30_000, seed)
    X = np.column_stack([cols[f] for f in features])
    rng = np.random.default_rng(seed)
    z = np.nan_to_num(X, nan=0.0) @ rng.normal(0, 0.3, X.shape[1])
    y = (rng.uniform(size=len(z)) < 1 / (1 + np.exp(-(z - np.median(z)) + 3))).astype(int)
    params = {
        "objective": "binary",
        "num_leaves": leaves,
        "learning_rate": 0.05,
        "min_data_in_leaf": 20,
        "verbose": -1,
        "seed": seed,
        "num_threads": 2,
    }
    return lgb.train(params, lgb.Dataset(X, y, feature_name=features), num_boost_round=trees)


def _run_child(
    features: Path, out_dir: Path, files: dict[str, Path], chunk_rows: int, threads: int
) -> dict:
    """The job in a fresh process (clean peak memory): `python -m benchmarks.bench_score --child ...`."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_score",
        "--child",
        str(features),
        str(out_dir),
        str(files["credit"]),
        str(files["fraud"]),
        str(chunk_rows),
        str(threads),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(argv: list[str]) -> None:
    import resource

    import lightgbm as lgb
    import psutil

    from serving.scoring.batch import score_batch
    from serving.scoring.models import scoring_model
    from serving.scoring.policy import load_policy

    features, out_dir, credit_file, fraud_file, chunk_rows, threads = argv
    credit, fraud = lgb.Booster(model_file=credit_file), lgb.Booster(model_file=fraud_file)
    models = {
        "credit": scoring_model("credit-pd", 1, CREDIT, credit, 0.95, -0.05),
        "fraud": scoring_model("fraud", 1, FRAUD, fraud),
    }
    policy = load_policy()
    start_rss = psutil.Process().memory_info().rss / 2**20
    c0 = time.process_time()
    t0 = time.perf_counter()
    res = score_batch(
        features,
        models,
        policy,
        out_dir,
        chunk_rows=int(chunk_rows),
        num_threads=int(threads),
        progress=False,
    )
    job_s = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    print(
        json.dumps(
            {
                "job_s": job_s,
                "cpu_s": cpu_s,
                "timings": res.timings,
                "start_rss_mb": round(start_rss, 1),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
                # KiB on Linux; inherits the parent's high-water mark (see the module docstring)
                "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "counts": res.counts,
            }
        )
    )


def _line(name, value, unit, size, baseline=None, baseline_value=None, ratio=None, **extra) -> None:
    rec = {
        "name": name,
        "value": round(float(value), 4),
        "unit": unit,
        "baseline": baseline,
        "baseline_value": None if baseline_value is None else round(float(baseline_value), 4),
        "ratio": None if ratio is None else round(float(ratio), 4),
        "size": size,
        **extra,
    }
    print(json.dumps(rec), flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1:])
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--trees", type=int, default=400)
    ap.add_argument("--leaves", type=int, default=63)
    ap.add_argument("--chunk-rows", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=0, help="LightGBM threads (0 = all cores)")
    ap.add_argument(
        "--workdir", default=None, help="scratch folder (default: a temp folder, removed)"
    )
    args = ap.parse_args(argv)

    scratch = Path(args.workdir or tempfile.mkdtemp(prefix="bench_score_"))
    try:
        credit_b = _train(CREDIT, args.trees, args.leaves, 1)
        fraud_b = _train(FRAUD, max(args.trees // 2, 1), 31, 2)
        files = {"credit": scratch / "credit.txt", "fraud": scratch / "fraud.txt"}
        credit_b.save_model(str(files["credit"]))
        fraud_b.save_model(str(files["fraud"]))
        trees = f"credit {credit_b.num_trees()}x{args.leaves}, fraud {fraud_b.num_trees()}x31"
        peaks: dict[int, float] = {}
        for n in (int(s) for s in args.sizes.split(",")):
            table = scratch / f"n{n}" / "features" / "as_of=2026-10-31" / "features.parquet"
            _write_table(table, n, seed=n, as_of="2026-10-31")
            out_dir = scratch / f"n{n}" / "decisions"
            _write_previous(out_dir / "as_of=2026-09-30" / "decisions.parquet", n, seed=n + 1)

            # Bare predict before and after the job (the machine is shared: the mean of the two
            # brackets the job's conditions), the job in between.
            pred_runs, load_s = [], 0.0
            for rep in range(2):
                if rep == 1:
                    child = _run_child(table.parent, out_dir, files, args.chunk_rows, args.threads)
                    job_s, tm = child["job_s"], child["timings"]
                t0 = time.perf_counter()
                cols = pq.read_table(table, columns=FEATURES)
                Xc = np.column_stack([cols.column(f).to_numpy() for f in CREDIT])
                Xf = np.column_stack([cols.column(f).to_numpy() for f in FRAUD])
                del cols
                load_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                credit_b.predict(Xc, raw_score=True, num_threads=args.threads)
                fraud_b.predict(Xf, raw_score=True, num_threads=args.threads)
                pred_runs.append(time.perf_counter() - t0)
                del Xc, Xf
            pred_s = float(np.mean(pred_runs))
            io_s = tm["validate_s"] + tm["read_s"] + tm["write_s"]

            _line(
                "score_job_users_per_s",
                n / job_s,
                "users/s",
                n,
                "booster_predict_users_per_s",
                n / pred_s,
                job_s / pred_s,
                models=trees,
                chunk_rows=args.chunk_rows,
                job_s=round(job_s, 3),
                job_cpu_s=round(child["cpu_s"], 3),
                predict_s=round(pred_s, 3),
                predict_runs_s=[round(x, 3) for x in pred_runs],
            )
            _line(
                "score_job_time_ratio_without_io",
                (job_s - io_s) / pred_s,
                "x predict time",
                n,
                "booster_predict_s",
                pred_s,
                (job_s - io_s) / pred_s,
                io_s=round(io_s, 3),
                **{k: round(v, 3) for k, v in tm.items()},
            )
            # Contention-proof view: the job's own overhead around its own predict calls.
            _line(
                "score_job_overhead_ratio_internal",
                (job_s - io_s) / tm["predict_s"],
                "x in-job predict time",
                n,
                "in_job_predict_s",
                tm["predict_s"],
                (job_s - io_s) / tm["predict_s"],
                with_io=round(job_s / tm["predict_s"], 4),
            )
            _line("score_job_predict_share", tm["predict_s"] / job_s, "fraction", n)
            _line("score_bare_matrix_load_s", load_s, "s", n)
            _line(
                "score_job_peak_rss_mb",
                child["peak_rss_mb"],
                "MB",
                n,
                chunk_rows=args.chunk_rows,
                start_rss_mb=child["start_rss_mb"],
                growth_mb=round(child["peak_rss_mb"] - child["start_rss_mb"], 1),
                ru_maxrss_mb=child["ru_maxrss_mb"],
            )
            peaks[n] = child["peak_rss_mb"]
            day = out_dir / "as_of=2026-10-31" / "decisions.parquet"
            log_file = out_dir / "log" / "as_of=2026-10-31.parquet"
            _line(
                "score_decisions_file_mb",
                day.stat().st_size / 2**20,
                "MB",
                n,
                log_mb=round(log_file.stat().st_size / 2**20, 2),
            )
            shutil.rmtree(scratch / f"n{n}")
        if len(peaks) > 1:
            lo, hi = min(peaks), max(peaks)
            _line(
                "score_job_peak_rss_ratio_largest_vs_smallest",
                peaks[hi] / peaks[lo],
                "x",
                hi,
                f"peak RSS at {lo} users",
                peaks[lo],
                peaks[hi] / peaks[lo],
                users_ratio=hi / lo,
                peak_rss_mb_by_size={str(k): v for k, v in peaks.items()},
            )
    finally:
        if args.workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
