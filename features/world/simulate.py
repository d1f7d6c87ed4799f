"""A simulated revolving-credit book (a credit line users draw on and repay) with ground truth.

The world, month by month with daily event times, vectorised over users:

- Each user has a latent creditworthiness `z` (log-odds of the true 12-month PD). It is partly
  observable (income, age, city; how many lenders the user borrows from) and partly hidden
  (idiosyncratic noise), and it evolves: a random walk, income shocks that decay, positive life
  events, external overdue episodes, a macro shock when that scenario runs.
- Trouble arrives as *distress*: a hazard from `z` (scaled so that `sigmoid(z)` is the true
  12-month default probability). Distress first shows at the bureau (an inquiry burst, new
  lenders, an account overdue elsewhere) for 1-3 months; then the user either cures (pays one
  month's installments 31-60 days late) or stops paying (90+ DPD = default).
- The lender: a line at signup, draws of 3/6/12 equal installments, repayments on time, a few
  days late, partial, or early payoff (还清: every remaining installment paid at payoff time).
  A legacy line rule lowers the line after 30+ DPD, closes it at 90+, raises it after 6 clean
  months with use.
- The bureau: accounts at other lenders (多头) with monthly report rows, and inquiries.
- App events: logins, device and SIM changes, password resets, geo jumps with opaque tokens.
- Fraud: organised rings (sharing devices and IP prefixes) that borrow small, repay on time,
  pay everything off, then draw the whole line and never pay (bust-out); innocent users who
  change phone and SIM (false-positive bait); and, in the `fraud_wave` scenario, SIM-swap
  account takeovers.

The raw tables are the extract a warehouse would hold at the end of `months`: nothing that
happens after it, and no payment, bureau record or app event that arrives after it (a signup,
draw or line change made before it is in it, available at the extract). The world runs on
`MAX_TRUTH_HORIZON` months past the extract whatever the truth horizon, so the raw bytes do not
depend on it; the ground truth (defaults, bust-outs, user-months) is written up to
`truth_horizon_months` past the extract.

Users are generated in chunks, each with its own RNG spawned from `SeedSequence(seed)`, so the
output is byte-identical for the same arguments (including `chunk_users`: a different chunk
size changes which users share a chunk RNG, so it gives a different, equally valid world).
Rings and takeover gangs are formed within a chunk.

One chunk, module by module: `users` (who, signup, rings), `months` (the month loop), then the
tables from what happened: `lending` (loans, installments, line history), `bureau`,
`app_events`, and `truth`; this module runs the chunks and writes the files.
"""

from __future__ import annotations

import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from features.contracts import COLUMNS, TABLES
from features.tables import concat_parquet, write_json, write_parquet
from features.world.app_events import app_events
from features.world.bureau import bureau_tables
from features.world.calendar import Calendar, times
from features.world.ids import Pools, draw_pools
from features.world.lending import line_history, loans_and_payments
from features.world.months import simulate_months
from features.world.scenarios import ScenarioMonths, parse_scenarios, scenario_months
from features.world.truth import truth_tables
from features.world.users import draw_users, users_table

log = logging.getLogger(__name__)

# The world always runs this many months past the extract, whatever truth horizon is asked for:
# every random draw is shaped by the number of months simulated, so a world of fixed length is
# what keeps the raw tables byte-identical for any horizon up to this one.
MAX_TRUTH_HORIZON = 24


def simulate_world(
    users: int,
    months: int,
    seed: int,
    scenarios: list[str] | tuple[str, ...] = (),
    start: str = "2024-01-01",
    chunk_users: int = 50_000,
    out_dir: str | Path = "data",
    progress: bool = True,
    truth_horizon_months: int = 12,
) -> dict:
    """Simulate the world and write DIR/raw/<table>/part-NNNNN.parquet, DIR/raw/manifest.json
    and the ground truth under DIR/truth/. Returns a summary (rows per table, rates, seconds).

    The raw tables are the extract taken at the end of `months`. The world runs on past it, and
    the truth (defaults, bust-outs and takeovers, user-months) is written up to
    `truth_horizon_months` after the extract (DIR/truth/manifest.json says to when), so labels
    whose window runs past the extract are known. The raw files do not depend on the horizon.
    """
    if users < 1 or months < 1:
        raise ValueError(f"simulate: users ({users}) and months ({months}) must be >= 1")
    if chunk_users < 1:
        raise ValueError(f"simulate: chunk_users must be >= 1, got {chunk_users}")
    if not 0 <= truth_horizon_months <= MAX_TRUTH_HORIZON:
        raise ValueError(
            f"simulate: truth_horizon_months must be 0..{MAX_TRUTH_HORIZON} (the world runs "
            f"{MAX_TRUTH_HORIZON} months past the extract), got {truth_horizon_months}"
        )
    t0 = time.perf_counter()
    start_ts = pd.Timestamp(start).normalize()
    if start_ts.day != 1:
        raise ValueError(f"simulate: start {start} must be the first day of a month (YYYY-MM-01)")
    parsed = parse_scenarios(list(scenarios), start_ts, months)
    cal = Calendar(start_ts, months, months + truth_horizon_months, months + MAX_TRUTH_HORIZON)
    out = Path(out_dir)
    raw_dir, truth_dir = out / "raw", out / "truth"
    for t in TABLES:  # a previous, larger world must not leave parts behind
        shutil.rmtree(raw_dir / t, ignore_errors=True)
    parts_dir = truth_dir / ".parts"
    shutil.rmtree(parts_dir, ignore_errors=True)

    n_chunks = -(-users // chunk_users)
    children = np.random.SeedSequence(seed).spawn(n_chunks + 1)
    pools = draw_pools(np.random.default_rng(children[0]))
    world_scenarios = scenario_months(parsed, cal.world_months)
    stats = _Stats()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=users, unit="user", desc="simulate", leave=False)
    for c in range(n_chunks):
        first = c * chunk_users
        n = min(chunk_users, users - first)
        tables, truth_um, truth_out, chunk_stats = _simulate_chunk(
            chunk=c,
            first=first,
            n=n,
            seed=seed,
            cal=cal,
            scenarios=world_scenarios,
            pools=pools,
            seed_seq=children[c + 1],
        )
        jobs = [(tables[t][COLUMNS[t]], raw_dir / t / f"part-{c:05d}.parquet") for t in TABLES]
        jobs += [
            (truth_um, parts_dir / f"user_month-{c:05d}.parquet"),
            (truth_out, parts_dir / f"outcomes-{c:05d}.parquet"),
        ]
        # parquet encoding releases the GIL: two writers use both cores; the bytes do not change
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda job: write_parquet(*job), jobs))
        del jobs
        stats.add(chunk_stats, {t: len(tables[t]) for t in TABLES})
        del tables, truth_um, truth_out
        if bar is not None:
            bar.update(n)
    if bar is not None:
        bar.close()
    for name in ("user_month", "outcomes"):
        concat_parquet(sorted(parts_dir.glob(f"{name}-*.parquet")), truth_dir / f"{name}.parquet")
    shutil.rmtree(parts_dir, ignore_errors=True)
    write_json([s.calendar_entry() for s in parsed], truth_dir / "scenario_calendar.json")
    extracted_at = pd.Timestamp(times(np.array([cal.extract]))[0])
    truth_end = pd.Timestamp(times(np.array([cal.truth_end]))[0])
    manifest = {
        "source": "simulator",
        "extracted_at": extracted_at.isoformat(),
        "seed": seed,
        "users": users,
        "months": months,
        "start": f"{start_ts:%Y-%m-%d}",
        "scenarios": [f"{s.name}@{s.start[:7]}" for s in parsed],
        "chunk_users": chunk_users,
    }
    write_json(manifest, raw_dir / "manifest.json")
    write_json(
        {
            "source": "simulator",
            "extracted_at": manifest["extracted_at"],
            "truth_horizon_months": truth_horizon_months,
            "truth_end": truth_end.isoformat(),
            "seed": seed,
            "users": users,
            "months": months,
        },
        truth_dir / "manifest.json",
    )
    summary = stats.summary()
    summary.update(
        users=users,
        months=months,
        seed=seed,
        scenarios=manifest["scenarios"],
        raw_dir=str(raw_dir),
        truth_dir=str(truth_dir),
        extracted_at=manifest["extracted_at"],
        truth_horizon_months=truth_horizon_months,
        truth_end=truth_end.isoformat(),
        seconds=round(time.perf_counter() - t0, 2),
    )
    return summary


class _Stats:
    """Sums over chunks for the summary figures."""

    KEYS = (
        "users", "defaults", "default_exposure_years", "fraud_users", "ring_users", "takeovers",
        "balance_sum", "line_sum", "inst_due", "inst_late", "inst_due_30", "inst_late_30",
        "bureau_user_months", "bureau_rows_reported", "inquiries", "user_months", "sync_delayed",
    )  # fmt: skip

    def __init__(self):
        self.v = dict.fromkeys(self.KEYS, 0.0)
        self.rows = dict.fromkeys(TABLES, 0)

    def add(self, chunk: dict, rows: dict):
        for k in self.KEYS:
            self.v[k] += float(chunk[k])
        for t, r in rows.items():
            self.rows[t] += r

    def summary(self) -> dict:
        v = self.v
        div = lambda a, b: round(a / b, 4) if b else float("nan")  # noqa: E731
        return {
            "rows": dict(self.rows),
            "default_rate_annual": div(v["defaults"], v["default_exposure_years"]),
            "default_users": int(v["defaults"]),
            "fraud_rate": div(v["fraud_users"], v["users"]),
            "fraud_users": int(v["fraud_users"]),
            "ring_users": int(v["ring_users"]),
            "takeovers": int(v["takeovers"]),
            "utilisation": div(v["balance_sum"], v["line_sum"]),
            "late_rate": div(v["inst_late"], v["inst_due"]),
            "late_30_rate": div(v["inst_late_30"], v["inst_due_30"]),
            "lenders_per_user": div(v["bureau_rows_reported"], v["bureau_user_months"]),
            "inquiries_per_user_month": div(v["inquiries"], v["user_months"]),
            "sync_delayed_payments": int(v["sync_delayed"]),
        }


def _simulate_chunk(
    *,
    chunk: int,
    first: int,
    n: int,
    seed: int,
    cal: Calendar,
    scenarios: ScenarioMonths,
    pools: Pools,
    seed_seq: np.random.SeedSequence,
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, pd.DataFrame, dict]:
    """One chunk's raw tables, truth rows and summary sums.

    Seven random streams, one per part of the world, so that one part drawing more (or fewer)
    numbers never shifts another's.
    """
    rng_user, rng_lat, rng_loan, rng_pay, rng_bur, rng_app, rng_fraud = (
        np.random.default_rng(s) for s in seed_seq.spawn(7)
    )
    users = draw_users(rng_user, cal, chunk=chunk, first=first, n=n, seed=seed)
    history = simulate_months(
        users, scenarios, cal, rng_lat=rng_lat, rng_loan=rng_loan, rng_fraud=rng_fraud
    )
    tables = {"users": users_table(users, cal, rng_user)}
    tables["loans"], tables["installments"], payments = loans_and_payments(
        users=users, history=history, scenarios=scenarios, cal=cal, rng=rng_pay
    )
    tables["bureau_accounts"], tables["bureau_inquiries"], bureau = bureau_tables(
        users=users, history=history, scenarios=scenarios, pools=pools, cal=cal, rng=rng_bur
    )
    tables["app_events"], device_signals = app_events(
        users=users, history=history, pools=pools, cal=cal, rng=rng_app
    )
    # after the users table: both draw from the users' stream, in this order
    tables["line_history"] = line_history(
        users=users, changes=history.line_changes, cal=cal, rng=rng_user
    )
    truth_um, truth_out, stats = truth_tables(
        users=users,
        history=history,
        scenarios=scenarios,
        cal=cal,
        payments=payments,
        bureau=bureau,
        device_signals=device_signals,
        seed=seed,
    )
    return tables, truth_um, truth_out, stats


def format_summary(summary: dict) -> str:
    """A short human-readable summary of `simulate_world`'s result."""
    rows = summary["rows"]
    width = max(len(t) for t in rows)
    lines = [
        f"simulated {summary['users']} users x {summary['months']} months (seed {summary['seed']}) "
        f"in {summary['seconds']:.1f} s; scenarios: {', '.join(summary['scenarios']) or 'none'}",
        f"raw tables -> {summary['raw_dir']} (extracted_at {summary['extracted_at']}); ground truth -> {summary['truth_dir']} "
        f"(to {summary['truth_end']}, {summary['truth_horizon_months']} months past the extract)",
        *(f"  {t:<{width}}  {r:>12,} rows" for t, r in rows.items()),
        f"  default rate (annual, 90+ DPD, fraud excluded): {summary['default_rate_annual']:.2%}",
        f"  fraud rate (users with a bust-out or takeover): {summary['fraud_rate']:.2%} "
        f"({summary['ring_users']} ring members, {summary['takeovers']} takeovers)",
        f"  utilisation (balance / line, open lines):       {summary['utilisation']:.1%}",
        f"  late rate (installments 1+ DPD / 30+ DPD):     {summary['late_rate']:.1%} / {summary['late_30_rate']:.1%}",
        f"  lenders per user (bureau accounts reported):    {summary['lenders_per_user']:.2f}",
        f"  inquiries per user-month:                       {summary['inquiries_per_user_month']:.2f}",
        f"  payments delayed by a sync incident:            {summary['sync_delayed_payments']:,}",
    ]
    return "\n".join(lines)
