"""Benchmark the feature build: time, peak memory, raw rows/s, and two baselines.

    python -m benchmarks.bench_features --sizes 10000,100000 [--months 24] [--baselines-max 100000]

Per size: the builder on the whole book; a straightforward pandas implementation of the main
families (`benchmarks/pandas_features.py`; goal: builder >= 3x faster); the builder's own
repayment steps against one hand-written DuckDB query for the core repayment aggregates
(goal: within 1.25x). One JSON line per figure. Raw tables come from the simulator when it is
importable (`features.world`), else from `benchmarks/raw_world.py` (same schema).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from features import repayment
from features.builder import _connect, build_features
from features.sql import render, view_statements

AS_OF_MONTHS_BEFORE_END = 1
SAME_FAMILY_STEPS = (
    "load",
    "sched",
    "loan_status",
    "line_at",
    "active",
    "f_repayment",
    "bureau_latest",
    "bureau_latest_3m",
    "f_bureau",
    "f_behaviour",
    "final",
)

# The core repayment aggregates written by hand in one query: schedule, DPD, window aggregates.
HAND_QUERY = """
SELECT l.user_id,
{aggs}
FROM raw_loans l
JOIN term_seqs k ON k.term_months = l.term_months
LEFT JOIN raw_installments p
  ON p.loan_id = l.loan_id AND p.seq = k.seq AND p.available_time <= {T} AND p.event_time < {T}
CROSS JOIN LATERAL (SELECT CAST(CAST(l.event_time AS DATE) + to_months(k.seq) AS TIMESTAMP) AS due) d
CROSS JOIN LATERAL (SELECT CASE WHEN p.event_time IS NOT NULL
                                THEN GREATEST(0, date_diff('day', d.due, CAST(p.event_time AS DATE)))
                                WHEN d.due < {T} THEN date_diff('day', d.due, CAST({T} AS DATE)) END AS dpd) x
WHERE l.available_time <= {T} AND l.event_time < {T}
GROUP BY l.user_id
"""


def _hand_query() -> str:
    aggs = []
    for w in repayment.DPD_WINDOWS:
        win = f"d.due >= {{T}} - INTERVAL {w} MONTH AND d.due < {{T}}"
        aggs += [
            f"MAX(CASE WHEN {win} THEN x.dpd END) AS dpd_max_{w}m",
            f"AVG(CASE WHEN {win} THEN x.dpd END) AS dpd_mean_{w}m",
            f"SUM(CASE WHEN {win} AND x.dpd > 0 THEN 1 ELSE 0 END) AS late_cnt_{w}m",
        ]
    for w in repayment.PAY_WINDOWS:
        win = f"d.due >= {{T}} - INTERVAL {w} MONTH AND d.due < {{T}}"
        aggs += [
            f"SUM(CASE WHEN {win} THEN COALESCE(p.amount_paid_cny, 0) END) / "
            f"NULLIF(SUM(CASE WHEN {win} THEN l.installment_cny END), 0) AS paid_due_{w}m",
            f"SUM(CASE WHEN {win} THEN GREATEST(0, l.installment_cny - COALESCE(p.amount_paid_cny, 0)) ELSE 0 END) AS shortfall_{w}m",
        ]
    return HAND_QUERY.replace("{aggs}", ",\n".join("  " + a for a in aggs))


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self):
        self.proc, self.base, self.peak, self._stop = psutil.Process(), 0, 0, threading.Event()
        self.base = self.peak = self.proc.memory_info().rss
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _world(users: int, months: int, seed: int):
    """Raw tables in memory: from the simulator when it is on this branch, else raw_world."""
    try:
        from features.world.simulate import simulate_world
    except ImportError:
        from benchmarks.raw_world import make_world

        return make_world(users=users, months=months, seed=seed), "raw_world"
    from features.contracts import TABLES
    from features.tables import read_table_dir

    with tempfile.TemporaryDirectory() as tmp:
        summary = simulate_world(users=users, months=months, seed=seed, out_dir=tmp, progress=False)
        tables = {t: read_table_dir(Path(tmp) / "raw" / t) for t in TABLES}
    return (tables, pd.Timestamp(summary["extracted_at"])), "simulator"


def _emit(name, value, unit, size, baseline=None, baseline_value=None, **extra):
    ratio = (baseline_value / value) if baseline_value and value else None
    rec = {
        "name": name,
        "value": round(float(value), 4),
        "unit": unit,
        "baseline": baseline,
        "baseline_value": None if baseline_value is None else round(float(baseline_value), 4),
        "ratio": None if ratio is None else round(ratio, 3),
        "size": size,
        **extra,
    }
    print(json.dumps(rec), flush=True)
    return rec


def _time_repayment(tables, as_of, threads):
    """Builder's repayment steps vs the hand query, same connection and loaded tables."""
    con = _connect(tables, threads)
    try:
        for stmt in view_statements(as_of):
            con.execute(stmt)
        step_s = {}
        for name, sql in repayment.STEPS:
            t0 = time.perf_counter()
            con.execute(render(sql, as_of))
            step_s[name] = time.perf_counter() - t0
        ours = sum(step_s.values())
        # the core alone as the builder runs it: the materialised schedule + one aggregate pass
        t0 = time.perf_counter()
        con.execute(f"CREATE TEMP TABLE core AS {render(repayment._INST_SELECT, as_of)}")
        core = step_s["sched"] + time.perf_counter() - t0
        t0 = time.perf_counter()
        con.execute(f"CREATE TEMP TABLE hand AS {render(_hand_query(), as_of)}")
        hand = time.perf_counter() - t0
        # same numbers: the hand query's max DPD over 12 months equals the builder's
        diff = con.execute(
            "SELECT COUNT(*) FROM hand h JOIN f_repayment r ON r.user_id = h.user_id "
            "WHERE h.dpd_max_12m IS DISTINCT FROM r.inst_dpd_max_12m "
            "OR h.late_cnt_3m IS DISTINCT FROM r.inst_late_cnt_3m"
        ).fetchone()[0]
    finally:
        con.close()
    return ours, core, hand, int(diff)


def run_size(users: int, months: int, seed: int, threads: int, baselines: bool) -> list[dict]:
    out = []
    t0 = time.perf_counter()
    (tables, end), source = _world(users, months, seed)
    gen_s = time.perf_counter() - t0
    raw_rows = sum(len(df) for df in tables.values())
    as_of = (pd.Timestamp(end) - pd.DateOffset(months=AS_OF_MONTHS_BEFORE_END)).normalize()
    tag = {"source": source, "raw_rows": raw_rows, "months": months, "threads": threads}
    out.append(_emit("features.raw_generation_s", gen_s, "s", users, **tag))
    timings: dict[str, float] = {}
    with PeakRSS() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        feats = build_features(tables, as_of, threads=threads, timings=timings)
        build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    out.append(
        _emit(
            "features.build_s",
            build_s,
            "s",
            users,
            rows=len(feats),
            cpu_s=round(build_cpu, 2),
            features=len(feats.columns) - 2,
            **tag,
        )
    )
    out.append(_emit("features.build_peak_mem_mb", mem.delta_mb, "MB", users, **tag))
    out.append(_emit("features.raw_rows_per_s", raw_rows / build_s, "rows/s", users, **tag))
    out.append(
        _emit(
            "features.build_step_s",
            build_s,
            "s",
            users,
            steps={k: round(v, 3) for k, v in timings.items()},
            **tag,
        )
    )
    if not baselines:
        return out
    with PeakRSS() as pmem:
        t0, c0 = time.perf_counter(), time.process_time()
        pf = pandas_features_safe(tables, as_of)
        pandas_s, pandas_cpu = time.perf_counter() - t0, time.process_time() - c0
    out.append(
        _emit(
            "features.build_vs_pandas_s",
            build_s,
            "s",
            users,
            baseline="pandas (main families only)",
            baseline_value=pandas_s,
            pandas_peak_mem_mb=round(pmem.delta_mb, 1),
            pandas_columns=len(pf.columns) - 1,
            max_abs_diff=_max_diff(feats, pf),
            **tag,
        )
    )
    # The same families only: hand-over + the builder steps that compute what pandas computes.
    same = sum(timings.get(k, 0.0) for k in SAME_FAMILY_STEPS)
    out.append(
        _emit(
            "features.same_families_vs_pandas_s",
            same,
            "s",
            users,
            baseline="pandas (main families only)",
            baseline_value=pandas_s,
            **tag,
        )
    )
    out.append(
        _emit(
            "features.build_cpu_vs_pandas_cpu_s",
            build_cpu,
            "cpu-s",
            users,
            baseline="pandas (main families only), CPU seconds",
            baseline_value=pandas_cpu,
            **tag,
        )
    )
    ours, core, hand, diff = _time_repayment(tables, as_of, threads)
    out.append(
        _emit(
            "features.repayment_core_only_vs_hand_query_s",
            core,
            "s",
            users,
            baseline="one hand-written DuckDB query",
            baseline_value=hand,
            **tag,
        )
    )
    # ratio here = hand / ours: >= 0.8 means the builder is within 1.25x of the hand query
    out.append(
        _emit(
            "features.repayment_core_vs_hand_query_s",
            ours,
            "s",
            users,
            baseline="one hand-written DuckDB query",
            baseline_value=hand,
            rows_differing=diff,
            **tag,
        )
    )
    return out


def pandas_features_safe(tables, as_of):
    from benchmarks.pandas_features import pandas_features

    return pandas_features(tables, as_of)


def _max_diff(ours: pd.DataFrame, theirs: pd.DataFrame) -> float:
    a = ours.set_index("user_id")
    b = theirs.set_index("user_id").reindex(a.index)
    cols = [c for c in b.columns if c in a.columns]
    x, y = a[cols].to_numpy(float), b[cols].to_numpy(float)
    both = ~(np.isnan(x) & np.isnan(y))
    d = np.abs(np.nan_to_num(x, nan=1e18) - np.nan_to_num(y, nan=1e18))[both]
    return float(d.max()) if d.size else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--sizes",
        default="10000,100000",
        help="comma-separated user counts (e.g. 10000,100000,1000000)",
    )
    p.add_argument("--months", type=int, default=24)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument(
        "--baselines-max", type=int, default=100_000, help="largest size to run the baselines at"
    )
    a = p.parse_args(argv)
    for n in [int(s) for s in a.sizes.split(",") if s]:
        run_size(n, a.months, a.seed, a.threads, baselines=n <= a.baselines_max)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
