"""Benchmark the simulator: seconds, peak memory and rows/s per table by number of users.

Each size runs in its own child process, so peak RSS is that run's alone. The smallest size is
the baseline; `ratio` is time per user (or peak memory) relative to it, which shows how the
simulator scales: time should grow linearly with users, memory stay bounded by the chunk size.

    python -m benchmarks.bench_simulate --sizes 10000,100000
    python -m benchmarks.bench_simulate --sizes 10000,100000,1000000 --months 24
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, resource, sys, time
from features.world.simulate import simulate_world
users, months, chunk, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
scen = [s for s in sys.argv[5].split(",") if s]
t0 = time.perf_counter()
s = simulate_world(users, months, seed=7, scenarios=scen, chunk_users=chunk, out_dir=out, progress=False)
s["wall_seconds"] = time.perf_counter() - t0
s["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
s["cpu_seconds"] = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
print(json.dumps(s))
"""


def run_size(users: int, months: int, chunk_users: int, scenarios: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_sim_") as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(users), str(months), str(chunk_users), tmp, scenarios],
            capture_output=True, text=True, env=env, cwd=ROOT, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"simulate {users} users failed:\n{proc.stderr[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_simulate", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes", default="10000,100000", help="comma-separated user counts (1M only when asked)"
    )
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--chunk-users", type=int, default=50_000)
    ap.add_argument(
        "--scenarios", default="all", help="comma-separated scenario specs ('' for none)"
    )
    args = ap.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    base: dict | None = None
    for n in sizes:
        r = run_size(n, args.months, args.chunk_users, args.scenarios)
        if base is None:
            base = r
        figures = [
            (
                "simulate_seconds",
                r["wall_seconds"],
                "s",
                base["wall_seconds"],
                (r["wall_seconds"] / n) / (base["wall_seconds"] / base["users"]),
            ),
            (
                "simulate_cpu_seconds",
                r["cpu_seconds"],
                "s",
                base["cpu_seconds"],
                (r["cpu_seconds"] / n) / (base["cpu_seconds"] / base["users"]),
            ),
            (
                "simulate_peak_rss",
                r["peak_rss_mb"],
                "MB",
                base["peak_rss_mb"],
                r["peak_rss_mb"] / base["peak_rss_mb"],
            ),
        ]
        total = sum(r["rows"].values())
        figures.append(
            (
                "simulate_rows_per_s_total",
                total / r["wall_seconds"],
                "rows/s",
                sum(base["rows"].values()) / base["wall_seconds"],
                None,
            )
        )
        for t, rows in r["rows"].items():
            figures.append(
                (
                    f"simulate_rows_per_s_{t}",
                    rows / r["wall_seconds"],
                    "rows/s",
                    base["rows"][t] / base["wall_seconds"],
                    None,
                )
            )
            figures.append(
                (f"simulate_rows_{t}", rows, "rows", base["rows"][t], rows / base["rows"][t])
            )
        for name, value, unit, bval, ratio in figures:
            if ratio is None:
                ratio = value / bval if bval else None
            print(json.dumps({
                "name": name, "value": round(value, 3), "unit": unit, "baseline": f"{base['users']} users",
                "baseline_value": round(bval, 3), "ratio": round(ratio, 3) if ratio is not None else None,
                "size": n, "months": args.months, "chunk_users": args.chunk_users,
            }), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
