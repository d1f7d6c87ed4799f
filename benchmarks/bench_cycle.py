"""Stage timings of the demo cycle: simulate N users x M months, then the monthly loop.

Example: python -m benchmarks.bench_cycle --sizes 50000 --months 24
Prints one JSON line per stage and one for the total; the goal is <= 15 minutes at 50k x 24
on 2 cores. Works in a temporary folder (nothing under data/ or mlruns/ is touched).
Beside the wall seconds it reports the CPU seconds of the process and its children (the
explanation report writer) and the machine's load average, since a shared machine inflates
wall time. `--cycle-months N` stops the loop after N months (for a partial run; label any
extrapolation from it as such).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

GOAL_SECONDS = 15 * 60


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_once(
    users: int, months: int, seed: int, folder: Path, cycle_months: int | None = None
) -> dict[str, float]:

    from features.world.simulate import simulate_world
    from serving.config import Config
    from serving.loop.cycle import run_cycle_on_world

    cfg = Config()
    load_start = os.getloadavg()[0]
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    simulate_world(
        users=users,
        months=months,
        seed=seed,
        scenarios=["all"],
        start="2024-01-01",
        chunk_users=cfg.simulation.chunk_users,
        out_dir=folder,
        progress=False,
    )
    simulate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = run_cycle_on_world(
        folder,
        months,
        override="benchmark: the demo cycle on a simulated world, as make demo",
        cycle_months=cycle_months,
    )
    cycle_s = time.perf_counter() - t0
    out = {
        "simulate": simulate_s,
        **result.timings,
        "cycle": cycle_s,
        "total": simulate_s + cycle_s,
    }
    out["_cpu"] = _cpu_seconds() - cpu0
    out["_load"] = (load_start, os.getloadavg()[0])
    out["_downgrades"] = sum(m["loop"]["downgrades"] for m in result.summary["per_month"])
    h = result.summary["headline"]
    out["_headline_with"] = h["with_loop"]["wrongful_per_10k"]["value"]
    out["_headline_without"] = ((h.get("without_loop") or {}).get("wrongful_per_10k") or {}).get(
        "value"
    )
    out["_months"] = result.summary["months"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_cycle", description=__doc__)
    parser.add_argument("--sizes", default="50000", help="comma-separated user counts")
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cycle-months", type=int, default=None, help="stop after N cycle months")
    parser.add_argument(
        "--out",
        default=None,
        help="keep the world and the loop's outputs here "
        "(an empty folder; default: a temporary folder, removed afterwards)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    for users in [int(s) for s in args.sizes.split(",") if s]:
        if args.out:
            t = run_once(
                users, args.months, args.seed, Path(args.out) / f"users={users}", args.cycle_months
            )
        else:
            with tempfile.TemporaryDirectory(prefix="bench_cycle_") as tmp:
                t = run_once(users, args.months, args.seed, Path(tmp), args.cycle_months)
        size = f"{users} users x {args.months} months ({t['_months']} cycle months)"
        for stage, secs in t.items():
            if stage.startswith("_") or stage == "total":
                continue
            print(
                json.dumps(
                    {
                        "name": f"cycle_stage_{stage}",
                        "value": round(secs, 2),
                        "unit": "s",
                        "baseline": None,
                        "baseline_value": None,
                        "ratio": None,
                        "size": size,
                    }
                )
            )
        print(
            json.dumps(
                {
                    "name": "cycle_total",
                    "value": round(t["total"], 2),
                    "unit": "s",
                    "baseline": "goal: 15 minutes on 2 cores",
                    "baseline_value": GOAL_SECONDS,
                    "ratio": round(t["total"] / GOAL_SECONDS, 3),
                    "size": size,
                    "cpu_s": round(t["_cpu"], 1),
                    "load_avg_1m_start_end": [round(x, 2) for x in t["_load"]],
                    "downgrades_decided": t["_downgrades"],
                }
            )
        )
        print(
            json.dumps(
                {
                    "name": "wrongful_post_repayment_downgrades_per_10k",
                    "value": t["_headline_with"],
                    "unit": "per 10k good repayers",
                    "baseline": "models frozen (no loop)",
                    "baseline_value": t["_headline_without"],
                    "ratio": (
                        round(t["_headline_with"] / t["_headline_without"], 3)
                        if t["_headline_with"] is not None and t["_headline_without"]
                        else None
                    ),
                    "size": size,
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
