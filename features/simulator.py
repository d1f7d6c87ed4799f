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
draw or line change made before it is in it, available at the extract). The world runs on `MAX_TRUTH_HORIZON` months past the extract
whatever the truth horizon, so the raw bytes do not depend on it; the ground truth (defaults,
bust-outs, user-months) is written up to `truth_horizon_months` past the extract.

Users are generated in chunks, each with its own RNG spawned from `SeedSequence(seed)`, so the
output is byte-identical for the same arguments (including `chunk_users`: a different chunk
size changes which users share a chunk RNG, so it gives a different, equally valid world).
Rings and takeover gangs are formed within a chunk.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.contracts import COLUMNS, LENDER_TYPES, TABLES
from features.ids import id_key
from features.scenarios import month_flags, parse_scenarios
from features.schedule import due_dates
from features.tables import concat_parquet, write_json, write_parquet

log = logging.getLogger(__name__)

DAY = 86_400 * 10**9
HOUR = 3_600 * 10**9
MINUTE = 60 * 10**9
NEVER = np.iinfo(np.int64).max // 2  # a time after everything (ns); "did not happen"
NS = "datetime64[ns]"

# --- world parameters (documented in docs-fragments/simulator.md) -------------------------
Z_MEAN = -3.75  # mean latent log-odds of the 12-month PD
Z_HIDDEN_SD = 0.6  # idiosyncratic risk no observable explains
WALK_SD = 0.08  # monthly random walk of latent risk
P_DEFAULT_GIVEN_DISTRESS = 0.65  # the rest cure
INCOME_SHOCK_HAZARD = 0.008  # per user-month
LIFE_EVENT_HAZARD = 0.004  # positive life event (new job, raise): risk down
EXTERNAL_OVERDUE_HAZARD = 0.004  # an overdue episode elsewhere, without own distress
RING_SHARE = 0.012  # share of users in organised fraud rings
RING_SIZE = (3, 15)
BAIT_HAZARD = 0.005  # innocent phone + SIM change per user-month (false-positive bait)
FEE_PER_MONTH = 0.0125  # flat monthly fee on the drawn amount (~15% simple APR)
LENDER_POOL = 400
IP_POOL = 20_000
# The world always runs this many months past the extract, whatever truth horizon is asked for:
# every random draw is shaped by the number of months simulated, so a world of fixed length is
# what keeps the raw tables byte-identical for any horizon up to this one.
MAX_TRUTH_HORIZON = 24
# Primary-cause priority. Data not current comes first (a decision taken on stale data is a
# system fault whatever else happened), then fraud, an expired identity document (a regulation
# freeze), a change of the user's own fraud signals (device, SIM), own behaviour, the bureau,
# the macro shock.
TRUTH_CAUSES = (
    "sync_delay", "fraud", "kyc_expiry", "device_change", "behaviour", "bureau", "macro",
)  # fmt: skip


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _round100(x):
    return np.floor(np.asarray(x) / 100.0) * 100.0


def pseudonymise_many(
    source_ids: list[str], prefix: str = "u", key: bytes | None = None
) -> list[str]:
    """`features.ids.pseudonymise` for many ids at once: the same HMAC-SHA256, with the keyed
    inner and outer hash states computed once and copied per id (several times faster)."""
    key = id_key() if key is None else key
    try:  # CPython's own SHA-256 copies its state faster than OpenSSL's
        from _sha2 import sha256 as _sha256  # Python >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256 as _sha256  # Python 3.11
        except ImportError:
            _sha256 = hashlib.sha256
    if len(key) > 64:  # the HMAC rule for keys longer than the block size
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner = _sha256(bytes(b ^ 0x36 for b in key))
    outer = _sha256(bytes(b ^ 0x5C for b in key))
    out = []
    for s in source_ids:  # one C-level hash per id; no faster pure-numpy SHA-256 exists
        h = inner.copy()
        h.update(s.encode())
        o = outer.copy()
        o.update(h.digest())
        out.append(f"{prefix}_{o.hexdigest()[:16]}")
    return out


def _tokens(rng: np.random.Generator, n: int, prefix: str) -> pa.Array:
    """Opaque random tokens like `d_3fa2...` (64 random bits in hex)."""
    vals = rng.integers(0, 2**63, size=n, dtype=np.int64)
    return pa.array([f"{prefix}_{v:016x}" for v in vals.tolist()], pa.string())


def _str(arr: pa.Array | pa.ChunkedArray) -> pd.Series:
    return pd.Series(arr, dtype="str") if len(arr) else pd.Series([], dtype="str")


def _join_ids(base: pa.Array, idx: np.ndarray, sep: str) -> pa.Array:
    """`base[i] + sep + str(idx[i])` without a Python loop."""
    return pc.binary_join_element_wise(base, pc.cast(pa.array(idx, pa.int64()), pa.string()), sep)


def _times(ns: np.ndarray) -> np.ndarray:
    return np.asarray(ns, dtype=np.int64).view(NS)


class _Calendar:
    """Month edges of the simulated world as int64 ns, plus helpers for any month index.

    The world runs `world_months` months. The raw extract is taken at the end of the first
    `months` (`extract`); the ground truth is written to the end of the first `truth_months`
    (`truth_end`); the months after that exist only so that neither depends on the other.
    """

    def __init__(self, start: pd.Timestamp, months: int, truth_months: int, world_months: int):
        self.start_m = np.datetime64(start.strftime("%Y-%m"), "M")
        self.months = months
        self.truth_months = truth_months
        self.world_months = world_months
        self.edges = self.month_start(np.arange(world_months + 1))
        self.extract = int(self.edges[months])
        self.truth_end = int(self.edges[truth_months])
        self.end = int(self.edges[-1])
        self.days = (np.diff(self.edges) // DAY).astype(np.int64)

    def month_start(self, m) -> np.ndarray:
        """ns of the first instant of month index m (any integer, also negative)."""
        m = np.asarray(m, dtype=np.int64)
        return (self.start_m + m.astype("timedelta64[M]")).astype(NS).view(np.int64)

    def days_in(self, m) -> np.ndarray:
        return (self.month_start(np.asarray(m) + 1) - self.month_start(m)) // DAY

    def month_of(self, t: np.ndarray) -> np.ndarray:
        """Month index of times t (ns), clipped to the world."""
        return np.clip(np.searchsorted(self.edges, t, side="right") - 1, 0, self.world_months - 1)


# ----------------------------------------------------------------------------------------
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
    cal = _Calendar(start_ts, months, months + truth_horizon_months, months + MAX_TRUTH_HORIZON)
    out = Path(out_dir)
    raw_dir, truth_dir = out / "raw", out / "truth"
    for t in TABLES:  # a previous, larger world must not leave parts behind
        shutil.rmtree(raw_dir / t, ignore_errors=True)
    parts_dir = truth_dir / ".parts"
    shutil.rmtree(parts_dir, ignore_errors=True)

    n_chunks = -(-users // chunk_users)
    children = np.random.SeedSequence(seed).spawn(n_chunks + 1)
    world = _global_pools(np.random.default_rng(children[0]), seed)
    stats = _Stats()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=users, unit="user", desc="simulate", leave=False)
    for c in range(n_chunks):
        first = c * chunk_users
        n = min(chunk_users, users - first)
        tables, truth_um, truth_out, chunk_stats = _simulate_chunk(
            c, first, n, seed, cal, parsed, world, children[c + 1]
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
    extracted_at = pd.Timestamp(_times(np.array([cal.extract]))[0])
    truth_end = pd.Timestamp(_times(np.array([cal.truth_end]))[0])
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


def _global_pools(rng: np.random.Generator, seed: int) -> dict:
    types = rng.choice(len(LENDER_TYPES), size=LENDER_POOL, p=[0.25, 0.25, 0.35, 0.15])
    return {
        "lender_token": _tokens(rng, LENDER_POOL, "lt"),
        "lender_type": types,
        "lenders_by_type": [np.flatnonzero(types == k) for k in range(len(LENDER_TYPES))],
        "ip_token": _tokens(rng, IP_POOL, "ip"),
        "seed": seed,
    }


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


# ----------------------------------------------------------------------------------------
def _simulate_chunk(c, first, n, seed, cal: _Calendar, scenarios, world, ss):
    M = cal.world_months  # the world runs past the extract (for the truth); arrays span it all
    data_months = cal.months  # users sign up, and rings form, before the extract
    rng_user, rng_lat, rng_loan, rng_pay, rng_bur, rng_app, rng_fraud = (
        np.random.default_rng(s) for s in ss.spawn(7)
    )
    flags = month_flags(scenarios, M)
    sc = {s.name: s for s in scenarios}
    macro_on = flags.get("macro_shock", np.zeros(M, bool))
    wave_on = flags.get("fraud_wave", np.zeros(M, bool))
    sync_on = flags.get("sync_incident", np.zeros(M, bool))
    macro_p = sc["macro_shock"].params if "macro_shock" in sc else {}

    uid_list = pseudonymise_many([f"sim-{seed}-{i}" for i in range(first, first + n)])
    uid = pa.array(uid_list, pa.string())
    users_ix = np.arange(n)

    # --- users -----------------------------------------------------------------------
    age = rng_user.choice(5, n, p=[0.22, 0.32, 0.25, 0.14, 0.07]) + 1
    income = rng_user.choice(5, n, p=[0.25, 0.30, 0.25, 0.13, 0.07]) + 1
    city = rng_user.choice(4, n, p=[0.15, 0.30, 0.35, 0.20]) + 1
    hidden = rng_user.normal(0.0, Z_HIDDEN_SD, n)
    age_eff = np.array([0.35, 0.10, -0.10, -0.15, 0.05])[age - 1]
    z_obs = Z_MEAN - 0.4 * (income - 2.5) + age_eff + 0.08 * (city - 2.5)
    z_base = z_obs + hidden
    signup_m = np.where(
        rng_user.random(n) < 0.5, 0, rng_user.integers(0, max(1, data_months - 3), n)
    )
    # organised rings: members sign up together and bust out together
    ring_of = np.full(n, -1)
    n_ring_target = int(round(RING_SHARE * n))
    perm = rng_user.permutation(n)
    sizes = []
    while sum(sizes) < n_ring_target:
        sizes.append(int(rng_user.integers(RING_SIZE[0], RING_SIZE[1] + 1)))
    if sizes and sum(sizes) > n:
        sizes = []
    pos = 0
    ring_start = rng_user.integers(0, max(1, data_months - 7), len(sizes))
    ring_bust = ring_start + rng_user.integers(6, 10, len(sizes))
    for k, s in enumerate(sizes):  # a loop over rings (tens per chunk), not users
        members = perm[pos : pos + s]
        ring_of[members] = k
        signup_m[members] = np.minimum(ring_start[k] + rng_user.integers(0, 2, s), data_months - 1)
        pos += s
    is_ring = ring_of >= 0
    bust_m = np.where(
        is_ring, ring_bust[np.maximum(ring_of, 0)] + (rng_user.random(n) < 0.3), NEVER
    )
    z_base = np.where(is_ring, np.minimum(z_base, Z_MEAN), z_base)  # rings look like good customers
    signup_t = cal.month_start(signup_m) + (
        rng_user.random(n) * cal.days_in(signup_m) * DAY
    ).astype(np.int64)
    signup_t = np.minimum(signup_t, cal.extract - HOUR)
    line0 = _round100(
        np.clip(
            np.exp(rng_user.normal(np.log(2500 + 2500 * income), 0.35) - 0.3 * (z_obs - Z_MEAN)),
            1000,
            50000,
        )
    )
    kyc_expiry = signup_t + (rng_user.uniform(6, 72, n) * 30.4 * DAY).astype(np.int64)
    kyc_expiry = (kyc_expiry // DAY) * DAY
    macro_sens = 1.0 + 0.2 * (3 - income)
    propensity = rng_user.normal(-1.0, 1.0, n)
    acct_util_user = np.clip(rng_user.beta(2, 3, n) + 0.08 * (z_base - Z_MEAN), 0.02, 0.98)
    sync_u = rng_user.random(n)  # drawn always, so scenarios do not shift the random streams

    # --- month loop: latent risk, distress, lines, draws -----------------------------
    walk = np.zeros(n)
    shock = np.zeros(n)
    ext_bump = np.zeros(n)
    distress_bump = np.zeros(n)
    distress_m = np.full(n, -1)
    distress_lag = np.zeros(n, dtype=np.int64)
    cures = np.zeros(n, dtype=bool)
    cure_m = np.full(n, -1)
    stop_m = np.full(n, NEVER)
    stop_t = np.full(n, NEVER, dtype=np.int64)
    stop_kind = np.zeros(n, dtype=np.int8)  # 0 none, 1 credit default path, 2 bust-out, 3 takeover
    ext_m = np.full(n, -1)
    ext_len = np.zeros(n, dtype=np.int64)
    fraud_t = np.full(n, NEVER, dtype=np.int64)
    ato_ring = np.full(n, -1)
    line = np.zeros(n)
    clean = np.zeros(n, dtype=np.int64)
    drew_recent = np.zeros(n, dtype=np.int64)
    owed_at_stop = np.zeros(n, dtype=bool)  # a user who stops owing nothing is merely inactive
    W = M + 14
    sched = np.zeros(n * W)  # remaining principal at the end of month j (flattened n x W)
    Z = np.zeros((n, M), dtype=np.float32)
    burst = np.zeros((n, M), dtype=bool)
    shock_ev = np.zeros((n, M), dtype=bool)
    util_jump = np.zeros((n, M), dtype=bool)
    drew = np.zeros((n, M), dtype=bool)
    fraud_month = np.zeros((n, M), dtype=bool)
    bal_sum = 0.0
    line_sum = 0.0
    loans: list[dict] = []
    changes: list[tuple] = []
    n_ato_rings = 0
    for m in range(M):
        active = signup_m <= m
        newly = signup_m == m
        if newly.any():
            line[newly] = line0[newly]
        # latent risk
        walk += rng_lat.normal(0.0, WALK_SD, n)
        sh_mult = macro_p.get("income_shock_multiplier", 1.0) if macro_on[m] else 1.0
        u_shock, u_life, u_dist, u_lag, u_cure, u_ext, u_extlen, u_stopday = rng_lat.random((8, n))
        shock *= 0.9
        hit = active & (u_shock < INCOME_SHOCK_HAZARD * sh_mult) & ~is_ring
        shock[hit] += rng_lat.normal(1.0, 0.3, n)[hit]
        shock_ev[hit, m] = True
        walk[active & (u_life < LIFE_EVENT_HAZARD)] -= 0.5
        macro = 0.0
        if macro_on[m]:
            s0 = sc["macro_shock"].start_month
            macro = (
                macro_p["z_shift"] * min(1.0, (m - s0 + 1) / macro_p["ramp_months"]) * macro_sens
            )
        ext_mult = macro_p.get("external_overdue_multiplier", 1.0) if macro_on[m] else 1.0
        z_pre = z_base + walk + shock + macro + ext_bump
        new_ext = (
            active
            & (ext_m < 0)
            & ~is_ring
            & (u_ext < EXTERNAL_OVERDUE_HAZARD * ext_mult * np.exp(0.6 * (z_pre - Z_MEAN)))
        )
        ext_m[new_ext] = m
        ext_len[new_ext] = 1 + (u_extlen[new_ext] * 4).astype(np.int64)
        in_ext = (ext_m >= 0) & (m >= ext_m) & (m < ext_m + ext_len)
        ext_bump = np.where(in_ext, 0.5, ext_bump * 0.8)
        z = z_base + walk + shock + macro + ext_bump + distress_bump
        pd12 = _sigmoid(z)
        hazard = np.minimum((1.0 - (1.0 - pd12) ** (1.0 / 12.0)) / P_DEFAULT_GIVEN_DISTRESS, 0.5)
        start_d = active & (distress_m < 0) & (stop_m == NEVER) & ~is_ring & (u_dist < hazard)
        distress_m[start_d] = m
        distress_lag[start_d] = 1 + (u_lag[start_d] < 0.5) + (u_lag[start_d] < 0.2)
        cures[start_d] = u_cure[start_d] < (1 - P_DEFAULT_GIVEN_DISTRESS)
        in_burst = (distress_m >= 0) & (m >= distress_m) & (m < distress_m + distress_lag)
        burst[:, m] = in_burst
        resolve = (distress_m >= 0) & (m == distress_m + distress_lag)
        cure_now = resolve & cures
        cure_m[cure_now] = m
        stop_now = resolve & ~cures & (stop_m == NEVER)
        stop_m[stop_now] = m
        stop_t[stop_now] = cal.edges[m] + (u_stopday[stop_now] * cal.days[m] * DAY).astype(np.int64)
        stop_kind[stop_now] = 1
        distress_bump = np.where(in_burst | (stop_m <= m), 0.9, distress_bump * 0.6)
        z = z_base + walk + shock + macro + ext_bump + distress_bump
        Z[:, m] = z

        # draws against the line
        row0 = users_ix * W
        bal_prev = sched[row0 + m - 1] if m > 0 else np.zeros(n)
        avail = np.maximum(line - sched[row0 + m], 0.0)
        u_draw, u_frac, u_term, u_day, u_pay, u_paym, u_payday = rng_loan.random((7, n))
        frac = rng_loan.beta(2.0, 3.0, n)
        open_ok = active & (stop_m > m) & (line > 0)
        p_draw = _sigmoid(propensity + 0.5 * (z - Z_MEAN) + 1.0 * in_burst)
        p_draw = np.where(is_ring, 0.85, p_draw)
        amount = np.where(
            is_ring, 0.15 + 0.15 * u_frac, np.clip(frac + 0.1 * (z - Z_MEAN), 0.05, 1.0)
        )
        amount = _round100(avail * amount)
        take = open_ok & (u_draw < p_draw) & (amount >= 500) & (bust_m != m)
        term = np.where(u_term < 0.3, 3, np.where(u_term < 0.7, 6, 12))
        term = np.where(is_ring, 3, term)
        day0 = np.where(newly, signup_t, cal.edges[m])
        t_draw = day0 + (u_day * (cal.edges[m + 1] - day0 - HOUR)).astype(np.int64)
        p_payoff = np.where(is_ring, 0.0, 0.22 - 0.04 * (z - Z_MEAN))
        payoff_m = np.where(u_pay < p_payoff, m + 1 + (u_paym * (term - 1)).astype(np.int64), NEVER)
        payoff_m = np.where(term > 1, payoff_m, NEVER)
        new = {
            "user": users_ix[take], "m": np.full(int(take.sum()), m), "slot": np.zeros(int(take.sum()), np.int64),
            "t": t_draw[take], "amount": amount[take], "term": term[take], "payoff_m": payoff_m[take],
            "payoff_u": u_payday[take],
        }  # fmt: skip

        # fraud: ring bust-out (pay everything off, then draw the whole line) and takeovers
        bust = active & (bust_m == m) & (stop_m > m) & (line > 0)
        if bust.any():
            _payoff_all(loans, bust, m)
            sched_b = sched.reshape(n, W)
            sched_b[bust, m:] = 0.0
            tb = cal.edges[m] + DAY + (rng_fraud.random(n)[bust] * 2 * DAY).astype(np.int64)
            bu = users_ix[bust]
            new_b = _fraud_draws(bu, m, tb + HOUR, line[bust])
            loans.append(new_b)
            _add_sched(sched, W, new_b)
            stop_m[bust], stop_t[bust], stop_kind[bust] = m, tb + HOUR, 2
            fraud_t[bust] = tb + HOUR
            fraud_month[bust, m] = True
        if wave_on[m]:
            rate = sc["fraud_wave"].params["monthly_takeover_rate"]
            cand = open_ok & ~is_ring & (stop_m > m) & ~take & (avail >= 1000)
            victims = users_ix[cand & (rng_fraud.random(n) < rate)]
            if len(victims):
                tv = cal.edges[m] + (
                    rng_fraud.random(len(victims)) * (cal.days[m] - 1) * DAY
                ).astype(np.int64)
                lo, hi = sc["fraud_wave"].params["ring_size"]
                gang = np.cumsum(rng_fraud.integers(lo, hi + 1, len(victims)))
                ato_ring[victims] = n_ato_rings + np.searchsorted(
                    gang, np.arange(len(victims)), side="right"
                )
                n_ato_rings = int(ato_ring[victims].max()) + 1
                new_v = _fraud_draws(victims, m, tv + 2 * HOUR, avail[victims])
                loans.append(new_v)
                _add_sched(sched, W, new_v)
                stop_m[victims], stop_t[victims], stop_kind[victims] = m, tv, 3
                fraud_t[victims] = tv + 2 * HOUR
                fraud_month[victims, m] = True
        if take.any():
            loans.append(new)
            _add_sched(sched, W, new)
        drew[:, m] = take
        bal = sched[row0 + m]
        util_jump[:, m] = take & (line > 0) & (bal_prev < 0.5 * line) & (bal >= 0.8 * line)
        if m < data_months:  # the summary describes the extract's months
            live = active & (stop_m > m) & (line > 0)
            bal_sum += float(bal[live].sum())
            line_sum += float(line[live].sum())

        # legacy line rule at month end (30+ DPD -> lower, 90+ -> close, 6 clean months -> raise)
        review_t = cal.edges[m + 1] - 2 * HOUR
        owed_at_stop |= (stop_m == m) & (bal > 0)
        lower = (((stop_m == m - 1) & owed_at_stop) | (cure_m == m)) & (line > 0)
        close = (stop_m == m - 3) & owed_at_stop & (line > 0)
        drew_recent = np.where(take, 6, np.maximum(drew_recent - 1, 0))
        clean = np.where(active & (stop_m > m) & ~in_burst & ~in_ext & (cure_m != m), clean + 1, 0)
        cap = 10000.0 * income + 10000.0
        raise_ = (
            active
            & (stop_m > m)
            & (clean >= 6)
            & (drew_recent > 0)
            & (line < cap)
            & ~lower
            & ~close
        )
        for mask, action, factor in (
            (lower, "lower", 0.5),
            (close, "close", 0.0),
            (raise_, "raise", 1.25),
        ):
            if mask.any():
                old = line[mask]
                newl = np.minimum(_round100(old * factor), np.where(factor > 1, cap[mask], np.inf))
                changes.append(
                    (users_ix[mask], np.full(int(mask.sum()), review_t), old, newl, action)
                )
                line[mask] = newl
        clean[raise_ | lower] = 0

    # --- tables ----------------------------------------------------------------------
    loans_all = _concat(loans)
    truth_fr = {
        "is_ring": is_ring, "ring_of": ring_of, "ato_ring": ato_ring, "fraud_t": fraud_t,
        "stop_t": stop_t, "stop_kind": stop_kind,
    }  # fmt: skip
    tables, obs = {}, {}
    tables["users"] = pd.DataFrame(
        {
            "user_id": _str(uid),
            "age_band": age.astype(np.int64),
            "income_band": income.astype(np.int64),
            "city_tier": city.astype(np.int64),
            "kyc_expiry_date": _times(kyc_expiry),
            "initial_line_cny": line0.astype(np.float64),
            "event_time": _times(signup_t),
            "available_time": _times(
                np.minimum(
                    signup_t + (rng_user.exponential(10.0, n) * MINUTE).astype(np.int64),
                    cal.extract,
                )
            ),
        }
    )
    tables["loans"], tables["installments"], obs["pay"] = _loans_and_payments(
        uid, loans_all, Z, cure_m, stop_t, is_ring, sync_u, sync_on, sc, cal, rng_pay, n
    )
    tables["bureau_accounts"], tables["bureau_inquiries"], obs["bur"] = _bureau(
        uid, n, cal, world, rng_bur, Z, z_base, income, signup_m, burst, shock_ev, distress_m, distress_lag,
        cures, cure_m, stop_m, ext_m, ext_len, acct_util_user, macro_on, macro_p,
    )  # fmt: skip
    tables["app_events"], device_signals = _app_events(
        uid,
        n,
        cal,
        world,
        rng_app,
        signup_m,
        signup_t,
        drew,
        is_ring,
        ring_of,
        bust_m,
        ato_ring,
        fraud_t,
    )
    tables["line_history"] = _line_history(uid, signup_t, line0, changes, rng_user, cal.extract)

    truth_um, truth_out, stats = _truth(
        c,
        seed,
        uid,
        n,
        cal,
        scenarios,
        Z,
        signup_m,
        signup_t,
        truth_fr,
        util_jump,
        sched.reshape(n, W),
        drew,
        fraud_month,
        obs,
        kyc_expiry,
        device_signals,
    )
    stats.update(balance_sum=bal_sum, line_sum=line_sum)
    return tables, truth_um, truth_out, stats


def _fraud_draws(users, m, t, amount):
    amount = _round100(amount)
    keep = amount >= 500
    k = int(keep.sum())
    return {
        "user": users[keep], "m": np.full(k, m), "slot": np.ones(k, np.int64), "t": np.asarray(t)[keep],
        "amount": amount[keep], "term": np.full(k, 12), "payoff_m": np.full(k, NEVER), "payoff_u": np.zeros(k),
    }  # fmt: skip


def _payoff_all(loans: list[dict], who: np.ndarray, m: int) -> None:
    """Every loan of `who` still running in month m is paid off early in month m (还清)."""
    for lo in loans:
        running = (
            who[lo["user"]] & (lo["m"] < m) & (lo["m"] + lo["term"] > m) & (lo["payoff_m"] > m)
        )
        lo["payoff_m"] = np.where(running, m, lo["payoff_m"])
        lo["payoff_u"] = np.where(running, 0.0, lo["payoff_u"])


def _add_sched(sched, W, lo) -> None:
    """Add each new loan's remaining principal per month end to the user x month schedule."""
    term = lo["term"]
    pos = np.repeat(np.arange(len(term)), term)
    k = np.arange(len(pos)) - np.repeat(np.cumsum(term) - term, term)  # 0..term-1
    month = lo["m"][pos] + k
    remaining = lo["amount"][pos] * (1.0 - k / term[pos])
    remaining = np.where(month < lo["payoff_m"][pos], remaining, 0.0)
    np.add.at(sched, lo["user"][pos] * W + month, remaining)


def _concat(loans: list[dict]) -> dict:
    keys = ("user", "m", "slot", "t", "amount", "term", "payoff_m", "payoff_u")
    if not loans:
        return {
            k: np.zeros(0, np.int64 if k not in ("amount", "payoff_u") else np.float64)
            for k in keys
        }
    return {k: np.concatenate([lo[k] for lo in loans]) for k in keys}


def _loans_and_payments(
    uid, lo, Z, cure_m, stop_t, is_ring, sync_u, sync_on, sc, cal: _Calendar, rng, n
):
    M = cal.world_months
    L = len(lo["user"])
    amount = lo["amount"]
    term = lo["term"].astype(np.int64)
    inst = np.round(amount * (1.0 + FEE_PER_MONTH * term) / term, 2)
    t_draw = lo["t"].astype(np.int64)
    loan_uid = pc.take(uid, pa.array(lo["user"]))
    loan_id = _join_ids(loan_uid, lo["m"] * 10 + lo["slot"], "-L")
    # draws before the extract, as it holds them (one that reached the warehouse after it is
    # in it, available at the extract: the rule the simulator always had for its last draws)
    av = np.minimum(t_draw + (rng.exponential(5.0, L) * MINUTE).astype(np.int64), cal.extract)
    drawn = t_draw < cal.extract
    loans = pd.DataFrame(
        {
            "loan_id": _str(loan_id.filter(pa.array(drawn))),
            "user_id": _str(loan_uid.filter(pa.array(drawn))),
            "amount_cny": amount[drawn].astype(np.float64),
            "term_months": term[drawn],
            "installment_cny": inst[drawn],
            "event_time": _times(t_draw[drawn]),
            "available_time": _times(av[drawn]),
        }
    )
    # payoff time: a day in the payoff month, after the draw
    payoff_t = np.where(
        lo["payoff_m"] < NEVER,
        cal.month_start(np.minimum(lo["payoff_m"], M + 13))
        + (lo["payoff_u"] * 27 * DAY).astype(np.int64)
        + 9 * HOUR,
        NEVER,
    )
    pos, seq, due = due_dates(_times(t_draw), term)
    due = due.view(np.int64)
    R = len(pos)
    user = lo["user"][pos]
    due_m = np.clip(lo["m"][pos] + seq, 0, M - 1)
    z_due = Z[user, due_m] if R else np.zeros(0)
    u_late, u_days, u_part, u_partamt, u_tod, u_avail, u_sync = rng.random((7, R))
    p_late = np.where(is_ring[user], 0.0, 0.6 * _sigmoid(z_due + 1.0))  # rings build trust
    late_days = np.minimum(1 + np.floor(np.log1p(-u_days) / np.log(0.8)), 29)
    paid = due - (u_tod * 3 * DAY).astype(np.int64)
    late = u_late < p_late
    paid = np.where(
        late, due + (late_days * DAY).astype(np.int64) + (u_tod * DAY).astype(np.int64), paid
    )
    in_cure = (cure_m[user] >= 0) & (lo["m"][pos] + seq == cure_m[user])
    paid = np.where(in_cure, due + ((31 + u_days * 29) * DAY).astype(np.int64), paid)
    paid = np.maximum(paid, t_draw[pos] + HOUR)
    early = payoff_t[pos] < due
    paid = np.where(early, payoff_t[pos], paid)
    paid = np.where(paid >= stop_t[user], NEVER, paid)  # a user who stopped pays nothing more
    amount_due = inst[pos]
    partial = ~early & (u_part < 0.01 + 0.1 * late)
    amount_paid = np.where(partial, np.round(amount_due * (0.3 + 0.65 * u_partamt), 2), amount_due)
    avail = paid + (rng.exponential(20.0, R) * MINUTE).astype(np.int64) + MINUTE
    # sync incident: payments of affected users reach the warehouse 5..20 days late
    sync_user = np.zeros(n, dtype=bool)
    delayed = np.zeros(R, dtype=bool)
    if sync_on.any():
        p = sc["sync_incident"].params
        sync_user = sync_u < p["user_share"]
        lo_d, hi_d = p["delay_days"]
        pay_m = cal.month_of(np.minimum(paid, cal.end - 1))
        delayed = (paid < NEVER) & sync_user[user] & sync_on[pay_m] & (paid >= cal.edges[0])
        avail = np.where(
            delayed, paid + ((lo_d + u_sync * (hi_d - lo_d)) * DAY).astype(np.int64), avail
        )
    kept = (paid < NEVER) & (avail <= cal.extract)
    inst_uid = pc.take(loan_id, pa.array(pos[kept]))
    installments = pd.DataFrame(
        {
            "loan_id": _str(inst_uid),
            "user_id": _str(pc.take(loan_uid, pa.array(pos[kept]))),
            "seq": seq[kept],
            "due_date": _times(due[kept]),
            "amount_due_cny": amount_due[kept],
            "amount_paid_cny": amount_paid[kept],
            "event_time": _times(paid[kept]),
            "available_time": _times(avail[kept]),
        }
    )
    obs = {
        "user": user,
        "due": due,
        "due_m_raw": lo["m"][pos] + seq,
        "paid": paid,
        "delayed": delayed,
        "avail": avail,
    }
    return loans, installments, obs


def _bureau(uid, n, cal: _Calendar, world, rng, Z, z_base, income, signup_m, burst, shock_ev, distress_m,
            distress_lag, cures, cure_m, stop_m, ext_m, ext_len, acct_util_user, macro_on, macro_p):  # fmt: skip
    M = cal.world_months
    # accounts held at signup (opened up to 4 years before) and accounts opened during the period
    lam0 = np.clip(4.5 * np.exp(0.5 * (z_base - Z_MEAN)) + 0.3 * (income - 3), 0.3, 12.0)
    k0 = rng.poisson(lam0)
    u0 = np.repeat(np.arange(n), k0)
    open0 = signup_m[u0] - rng.integers(1, 49, len(u0))
    inq_mult = np.where(macro_on, macro_p.get("inquiry_multiplier", 1.0), 1.0)
    zc = Z - Z_MEAN
    rate_new = 0.02 * np.exp(0.3 * zc) + 0.8 * burst + 0.5 * shock_ev + 0.02 * macro_on[None, :]
    month_ix = np.arange(M)[None, :]
    after = month_ix >= signup_m[:, None]
    k_new = rng.poisson(np.where(after, rate_new, 0.0))
    u1, m1 = np.nonzero(k_new)
    reps = k_new[u1, m1]
    u1, m1 = np.repeat(u1, reps), np.repeat(m1, reps)
    acct_user = np.concatenate([u0, u1])
    acct_open = np.concatenate([open0, m1])
    A = len(acct_user)
    risky_new = np.concatenate([np.zeros(len(u0), bool), burst[u1, m1] | shock_ev[u1, m1]])
    u_type = rng.random(A)
    ltype = np.where(
        risky_new,
        np.where(u_type < 0.7, 2, 1),  # distress borrowing: microloans, consumer finance
        np.searchsorted(np.cumsum([0.30, 0.20, 0.25, 0.25]), u_type, side="right"),
    ).clip(0, 3)
    lender = np.empty(A, dtype=np.int64)
    u_l = rng.random(A)
    for k, pool in enumerate(world["lenders_by_type"]):  # four lender types
        sel = ltype == k
        lender[sel] = pool[(u_l[sel] * len(pool)).astype(np.int64)]
    base_limit = np.array([40000.0, 8000.0, 3000.0, 15000.0])[ltype]  # bank, cf, micro, card
    limit = _round100(base_limit * (0.6 + 0.25 * income[acct_user]) * np.exp(rng.normal(0, 0.4, A)))
    limit = np.maximum(limit, 500.0)
    close_m = acct_open + 1 + rng.geometric(0.02, A)
    util = np.clip(acct_util_user[acct_user] + rng.normal(0, 0.15, A), 0.0, 1.0)

    # overdue episodes at other lenders: [od_start, od_end) in months
    od_start = np.full(A, NEVER)
    od_end = np.full(A, NEVER)
    ua = acct_user
    open_at = lambda mm: (acct_open <= mm) & (close_m > mm)  # noqa: E731
    u_od = rng.random((3, A))
    dm = distress_m[ua]

    trig = (dm >= 0) & open_at(dm) & (u_od[0] < 0.6)
    first_acct = _first_per_user(ua, (dm >= 0) & open_at(dm), n)
    trig |= first_acct  # distress always shows at least one overdue account, if the user has one
    s = np.where(trig, dm + (u_od[1] < 0.4), NEVER)
    e = np.where(trig & cures[ua], np.maximum(cure_m[ua] + 1 + (u_od[2] < 0.5), dm + 1), NEVER)
    od_start, od_end = _merge_episode(od_start, od_end, s, e)
    sm = stop_m[ua]
    trig = (sm < NEVER) & open_at(sm) & (u_od[2] < 0.6)
    od_start, od_end = _merge_episode(
        od_start, od_end, np.where(trig, sm, NEVER), np.full(A, NEVER)
    )
    em = ext_m[ua]
    trig = _first_per_user(ua, (em >= 0) & open_at(em), n)
    od_start, od_end = _merge_episode(
        od_start, od_end, np.where(trig, em, NEVER), np.where(trig, em + ext_len[ua], NEVER)
    )
    close_m = np.where(
        od_start < NEVER, np.maximum(close_m, od_end), close_m
    )  # overdue accounts stay open

    # monthly report rows from the later of signup month and open month, to close month
    first_m = np.maximum(np.maximum(acct_open, signup_m[ua]), 0)
    last_m = np.minimum(close_m, M - 1)
    nrow = np.maximum(last_m - first_m + 1, 0)
    keep_acct = nrow > 0
    rpos = np.repeat(np.arange(A), nrow)
    rm = first_m[rpos] + (np.arange(len(rpos)) - np.repeat(np.cumsum(nrow) - nrow, nrow))
    ru = ua[rpos]
    closing = rm == close_m[rpos]
    bucket = np.where(
        (rm >= od_start[rpos]) & (rm < od_end[rpos]), np.minimum(rm - od_start[rpos] + 1, 6), 0
    )
    bal = np.clip(util[rpos] + 0.25 * burst[ru, rm] + rng.normal(0, 0.05, len(rpos)), 0.0, 1.0)
    bal = np.where(bucket > 0, np.maximum(bal, 0.5), bal)
    bal = np.where(closing, 0.0, np.round(bal * limit[rpos], 2))
    overdue = np.where(bucket > 0, np.round(bal * np.minimum(1.0, 0.12 * bucket), 2), 0.0)
    ev = cal.edges[rm + 1] - DAY  # report month end (last day, midnight)
    av = ev + ((3 + 3 * rng.random(len(rpos))) * DAY).astype(np.int64)
    open_t = cal.month_start(acct_open) + (rng.random(A) * 25 * DAY).astype(np.int64)
    open_t = np.minimum(open_t, cal.end - 2 * DAY)
    close_t = cal.month_start(np.minimum(close_m, M)) + (rng.random(A) * 25 * DAY).astype(np.int64)
    close_t = np.maximum(close_t, open_t + DAY)
    ok = av <= cal.extract  # in the extract (the last month's report arrives after it)
    known = av <= cal.end  # in the world, for the truth
    acct_uid = pc.take(uid, pa.array(ua))
    acct_id = _join_ids(acct_uid, np.arange(A), "-A")
    sel = pa.array(rpos[ok])
    accounts = pd.DataFrame(
        {
            "account_id": _str(pc.take(acct_id, sel)),
            "user_id": _str(pc.take(acct_uid, sel)),
            "lender_token": _str(pc.take(world["lender_token"], pa.array(lender[rpos[ok]]))),
            "lender_type": _str(pc.take(pa.array(LENDER_TYPES), pa.array(ltype[rpos[ok]]))),
            "open_date": _times(open_t[rpos[ok]]),
            "close_date": _times(np.where(closing[ok], close_t[rpos[ok]], 0)),
            "limit_cny": limit[rpos[ok]],
            "balance_cny": bal[ok],
            "overdue_cny": overdue[ok],
            "dpd_bucket": bucket[ok].astype(np.int64),
            "event_time": _times(ev[ok]),
            "available_time": _times(av[ok]),
        }
    )
    accounts["close_date"] = accounts["close_date"].where(closing[ok])
    del keep_acct

    # inquiries: background rate rising with risk, bursts under distress and income shocks
    rate = (
        (0.15 * np.exp(0.7 * zc)) * inq_mult[None, :] + 2.5 * burst + 1.2 * shock_ev + 0.8 * k_new
    )
    k_inq = rng.poisson(np.where(after, rate, 0.0))
    iu, im = np.nonzero(k_inq)
    reps = k_inq[iu, im]
    iu, im = np.repeat(iu, reps), np.repeat(im, reps)
    n_inq = len(iu)
    it = cal.edges[im] + (rng.random(n_inq) * cal.days[im] * DAY).astype(np.int64)
    it = np.maximum(it, cal.edges[signup_m[iu]])
    iav = it + ((0.2 + 2 * rng.random(n_inq)) * DAY).astype(np.int64)
    itype = np.where(
        burst[iu, im] & (rng.random(n_inq) < 0.7), 2, (rng.random(n_inq) * 4).astype(np.int64)
    )
    ok_i = iav <= cal.extract
    known_i = iav <= cal.end
    inq_uid = pc.take(uid, pa.array(iu[ok_i]))
    inquiries = pd.DataFrame(
        {
            "inquiry_id": _str(_join_ids(inq_uid, np.flatnonzero(ok_i), "-Q")),
            "user_id": _str(inq_uid),
            "lender_type": _str(pc.take(pa.array(LENDER_TYPES), pa.array(itype[ok_i]))),
            "event_time": _times(it[ok_i]),
            "available_time": _times(iav[ok_i]),
        }
    )
    # what the truth needs: per user-month new overdue accounts, new accounts, inquiries
    new_od = np.zeros((n, M), dtype=np.int64)
    b1 = bucket == 1
    np.add.at(new_od, (ru[b1], rm[b1]), 1)
    inq_cnt = np.zeros((n, M), dtype=np.int64)
    np.add.at(inq_cnt, (iu, im), 1)
    # ... and, for the truth, per user and month whether the lender's bureau extract shows a new
    # record that month, counted in the month it becomes available (a monthly report arrives days
    # after its month ends, so a decision first sees it a month after the event): an account
    # newly or further overdue (its DPD bucket rose), an account's first report (a new account,
    # or one a new customer already had: the lender had no bureau view of it before), an inquiry.
    fresh = np.zeros((n, M), dtype=bool)
    opened_here = rm == first_m[rpos]
    worse = (bucket > 0) & (rm - od_start[rpos] < 6)  # the bucket rises each overdue month to 6
    mark = (worse | opened_here) & known
    avail_m = cal.month_of(np.minimum(av, cal.end - 1))
    np.logical_or.at(fresh, (ru[mark], avail_m[mark]), True)
    iav_m = cal.month_of(np.minimum(iav[known_i], cal.end - 1))
    np.logical_or.at(fresh, (iu[known_i], iav_m), True)
    # ... and whether the debt at other lenders the extract shows rose that month (the open
    # accounts' total balance or balance/limit above the report before): balances drift every
    # month, so this is background, not an event (the fidelity truth uses it only when no event
    # was planted).
    open_row = ~closing & known
    tot_bal = np.zeros((n, M))
    tot_lim = np.zeros((n, M))
    np.add.at(tot_bal, (ru[open_row], rm[open_row]), bal[open_row])
    np.add.at(tot_lim, (ru[open_row], rm[open_row]), limit[rpos][open_row])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(tot_lim > 0, tot_bal / tot_lim, np.nan)
    rose = (
        (tot_lim[:, 1:] > 0)
        & (tot_lim[:, :-1] > 0)
        & ((tot_bal[:, 1:] > tot_bal[:, :-1] + 0.5) | (ratio[:, 1:] > ratio[:, :-1] + 1e-9))
    )
    debt_up = np.zeros((n, M), dtype=bool)
    debt_up[:, 2:] = rose[:, :-1]  # report month m rose vs m-1; available in month m+1
    obs = {
        "new_overdue": new_od,
        "new_accounts": k_new,
        "inquiries": inq_cnt,
        "new_record_visible": fresh,
        "debt_up_visible": debt_up,
        "rows_user_month": np.bincount(ru * M + rm, minlength=n * M).reshape(n, M),
    }
    return accounts, inquiries, obs


def _first_per_user(user: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """True at the first position per user where mask holds."""
    idx = np.flatnonzero(mask)
    out = np.zeros(len(user), dtype=bool)
    if len(idx):
        _, first = np.unique(user[idx], return_index=True)
        out[idx[first]] = True
    return out


def _merge_episode(s0, e0, s1, e1):
    """One overdue episode per account: the earliest start; the end of whichever started first,
    extended to cover an overlapping later trigger."""
    start = np.minimum(s0, s1)
    end = np.where(s1 < s0, e1, e0)
    overlap = (np.maximum(s0, s1) < NEVER) & (np.maximum(s0, s1) <= np.where(s1 < s0, e1, e0))
    end = np.where(overlap, np.maximum(e0, e1), end)
    return start, end


def _app_events(
    uid,
    n,
    cal: _Calendar,
    world,
    rng,
    signup_m,
    signup_t,
    drew,
    is_ring,
    ring_of,
    bust_m,
    ato_ring,
    fraud_t,
):
    M = cal.world_months
    after = np.arange(M)[None, :] >= signup_m[:, None]
    # device vocabulary: one own device per user, new phones, ring devices, gang devices
    n_rings = int(ring_of.max()) + 1 if is_ring.any() else 0
    n_gangs = int(ato_ring.max()) + 1 if (ato_ring >= 0).any() else 0
    ring_dev_n = 3  # devices per ring, shared by its members
    change = after & (rng.random((n, M)) < BAIT_HAZARD + 0.008)  # new phone (with or without SIM)
    with_sim = change & (rng.random((n, M)) < BAIT_HAZARD / (BAIT_HAZARD + 0.008))
    change[is_ring] = False
    with_sim[is_ring] = False
    cu, cm = np.nonzero(change)
    n_dev = n + len(cu) + n_rings * ring_dev_n + n_gangs * 2
    dev_tok = _tokens(rng, n_dev, "d")
    new_dev = np.full((n, M), -1)
    new_dev[cu, cm] = n + np.arange(len(cu))
    ring_dev0 = n + len(cu)
    gang_dev0 = ring_dev0 + n_rings * ring_dev_n
    own = np.where(
        is_ring,
        ring_dev0 + np.maximum(ring_of, 0) * ring_dev_n + rng.integers(0, ring_dev_n, n),
        np.arange(n),
    )
    # ip prefixes: a home prefix from the city pool; rings share one prefix per ring
    home_ip = rng.integers(0, IP_POOL, n)
    ring_ip = rng.integers(0, IP_POOL, max(n_rings, 1))
    gang_ip = rng.integers(0, IP_POOL, max(n_gangs, 1))
    home_ip = np.where(is_ring, ring_ip[np.maximum(ring_of, 0)], home_ip)
    change_t = np.where(
        new_dev >= 0,
        cal.edges[None, :M] + (rng.random((n, M)) * cal.days[None, :] * DAY).astype(np.int64),
        NEVER,
    )
    change_t = np.maximum(change_t, signup_t[:, None])
    # device in use at the end of each month, and at the start (for events before a change)
    dev_end = np.empty((n, M), dtype=np.int64)
    cur = own.copy()
    dev_start = np.empty((n, M), dtype=np.int64)
    ato_m = np.where(fraud_t < NEVER, cal.month_of(np.minimum(fraud_t, cal.end - 1)), NEVER)
    ato = ato_ring >= 0
    gang_dev = gang_dev0 + np.maximum(ato_ring, 0) * 2 + rng.integers(0, 2, n)
    for m in range(M):  # months, not users
        dev_start[:, m] = cur
        cur = np.where(new_dev[:, m] >= 0, new_dev[:, m], cur)
        cur = np.where(ato & (ato_m == m), gang_dev, cur)
        dev_end[:, m] = cur

    rows = []  # (user, time, type, device, ip)
    # logins
    k = rng.poisson(np.where(after, 1.2 + 0.8 * drew, 0.0))
    lu, lm = np.nonzero(k)
    reps = k[lu, lm]
    lu, lm = np.repeat(lu, reps), np.repeat(lm, reps)
    lt = np.maximum(
        cal.edges[lm] + (rng.random(len(lu)) * cal.days[lm] * DAY).astype(np.int64),
        signup_t[lu] + MINUTE,
    )
    ld = np.where(lt >= change_t[lu, lm], dev_end[lu, lm], dev_start[lu, lm])
    ato_after = ato[lu] & (lt >= fraud_t[lu] - 2 * HOUR)
    ld = np.where(ato_after, gang_dev[lu], ld)
    lip = np.where(ato_after, gang_ip[np.maximum(ato_ring[lu], 0)], home_ip[lu])
    geo = after & (rng.random((n, M)) < 0.01)
    gu, gm = np.nonzero(geo)
    lip = np.where(
        geo[lu, lm] & (rng.random(len(lu)) < 0.5), rng.integers(0, IP_POOL, len(lu)), lip
    )
    rows.append((lu, lt, 0, ld, lip))
    # new phones (device_change) and, for bait users, a SIM change the same hour
    rows.append((cu, change_t[cu, cm], 1, new_dev[cu, cm], home_ip[cu]))
    su, sm = np.nonzero(with_sim)
    rows.append((su, change_t[su, sm] + 30 * MINUTE, 2, new_dev[su, sm], home_ip[su]))
    # password resets and geo jumps (travel)
    pr = after & (rng.random((n, M)) < 0.008)
    pu, pm = np.nonzero(pr)
    pt = np.maximum(
        cal.edges[pm] + (rng.random(len(pu)) * cal.days[pm] * DAY).astype(np.int64),
        signup_t[pu] + MINUTE,
    )
    rows.append((pu, pt, 3, dev_end[pu, pm], home_ip[pu]))
    gt = np.maximum(
        cal.edges[gm] + (rng.random(len(gu)) * cal.days[gm] * DAY).astype(np.int64),
        signup_t[gu] + MINUTE,
    )
    rows.append((gu, gt, 4, dev_end[gu, gm], rng.integers(0, IP_POOL, len(gu))))
    # takeovers: SIM swap, password reset, the gang's device, a geo jump, then the draw
    vu = np.flatnonzero(ato)
    ft = fraud_t[vu] - 2 * HOUR
    gip = gang_ip[np.maximum(ato_ring[vu], 0)]
    rows.append((vu, ft - 90 * MINUTE, 2, dev_start[vu, np.minimum(ato_m[vu], M - 1)], gip))
    rows.append((vu, ft - 60 * MINUTE, 3, gang_dev[vu], gip))
    rows.append((vu, ft - 30 * MINUTE, 1, gang_dev[vu], gip))
    rows.append((vu, ft - 20 * MINUTE, 4, gang_dev[vu], gip))
    # ring members switch to a fresh shared device before the bust-out
    bu = np.flatnonzero(is_ring & (bust_m < M) & (fraud_t < NEVER))
    rows.append(
        (
            bu,
            fraud_t[bu] - 3 * HOUR,
            1,
            ring_dev0 + ring_of[bu] * ring_dev_n + (own[bu] + 1 - ring_dev0) % ring_dev_n,
            home_ip[bu],
        )
    )

    u = np.concatenate([r[0] for r in rows])
    t = np.concatenate([np.asarray(r[1], np.int64) for r in rows])
    typ = np.concatenate([np.full(len(r[0]), r[2]) for r in rows])
    dev = np.concatenate([np.asarray(r[3], np.int64) for r in rows])
    ip = np.concatenate([np.asarray(r[4], np.int64) for r in rows])
    t = np.maximum(t, signup_t[u] + MINUTE)
    av = t + (rng.exponential(2.0, len(u)) * MINUTE).astype(np.int64)
    ok = av <= cal.extract
    ev_uid = pc.take(uid, pa.array(u[ok]))
    # what the truth needs: the months a user's own fraud signals changed (new phone or SIM,
    # password reset, geo jump; innocent bait included: the fraud model sees the same signals)
    signals = change | pr | geo
    return pd.DataFrame(
        {
            "event_id": _str(_join_ids(ev_uid, np.flatnonzero(ok), "-E")),
            "user_id": _str(ev_uid),
            "event_type": _str(
                pc.take(
                    pa.array(
                        ["login", "device_change", "sim_change", "password_reset", "geo_jump"]
                    ),
                    pa.array(typ[ok]),
                )
            ),
            "device_token": _str(pc.take(dev_tok, pa.array(dev[ok]))),
            "ip_prefix_token": _str(pc.take(world["ip_token"], pa.array(ip[ok]))),
            "event_time": _times(t[ok]),
            "available_time": _times(av[ok]),
        }
    ), signals


def _line_history(uid, signup_t, line0, changes, rng, extract):
    """Line changes up to the extract, as the extract holds them: a change made before it that
    reached the warehouse later is in it, available at the extract (the earlier rule kept
    every change of the period this way)."""
    n = len(signup_t)
    us = [np.arange(n)] + [ch[0] for ch in changes]
    ts = [signup_t] + [ch[1] for ch in changes]
    old = [np.zeros(n)] + [ch[2] for ch in changes]
    new = [line0] + [ch[3] for ch in changes]
    act = [np.zeros(n, np.int64)] + [
        np.full(len(ch[0]), ("open", "lower", "close", "raise").index(ch[4])) for ch in changes
    ]
    u, t = np.concatenate(us), np.concatenate(ts).astype(np.int64)
    a = np.concatenate(act)
    av = np.minimum(t + ((1 + rng.exponential(30.0, len(u))) * MINUTE).astype(np.int64), extract)
    ok = t < extract
    ch_uid = pc.take(uid, pa.array(u[ok]))
    return pd.DataFrame(
        {
            "change_id": _str(_join_ids(ch_uid, np.flatnonzero(ok), "-C")),
            "user_id": _str(ch_uid),
            "old_line_cny": np.concatenate(old)[ok].astype(np.float64),
            "new_line_cny": np.concatenate(new)[ok].astype(np.float64),
            "action": _str(pc.take(pa.array(["open", "lower", "close", "raise"]), pa.array(a[ok]))),
            "event_time": _times(t[ok]),
            "available_time": _times(av[ok]),
        }
    )


def _truth(
    c,
    seed,
    uid,
    n,
    cal: _Calendar,
    scenarios,
    Z,
    signup_m,
    signup_t,
    fr,
    util_jump,
    sched,
    drew,
    fraud_month,
    obs,
    kyc_expiry,
    device_signals,
):
    # Every flag is computed over the whole world; rows are written up to the truth horizon.
    M = cal.world_months
    pay, bur = obs["pay"], obs["bur"]
    # behaviour: an installment due this month paid >= 1 day late or not paid (and due before the end)
    due_in = (pay["due_m_raw"] < M) & (pay["due"] < cal.end)
    late1 = due_in & (pay["paid"] - pay["due"] >= DAY)
    behaviour = util_jump.copy()
    np.logical_or.at(behaviour, (pay["user"][late1], pay["due_m_raw"][late1]), True)
    # after a user stopped paying, missed installments are no news: flag up to 90+ DPD only
    stop_month = np.where(
        fr["stop_t"] < NEVER, cal.month_of(np.minimum(fr["stop_t"], cal.end - 1)), NEVER
    )
    behaviour &= np.arange(M)[None, :] <= stop_month[:, None] + 3
    # bureau: any new record the lender's bureau extract shows that month (the month it becomes
    # available, when a decision can first see it): an account newly or further overdue, a new
    # account, an inquiry. Each is drawn from a rate that rises with risk (and jumps under
    # distress and income shocks), so each is risk evidence the simulator planted.
    bureau = bur["new_record_visible"].copy()
    # sync delay: a payment made before this month's decision that the decision cannot see yet.
    # Decisions are taken at month-end as-of dates (T = the start of the month's last day), so a
    # month runs from the last day of the month before to the start of its own last day; a
    # payment made on the last day counts in the next month (the decision was already taken).
    sync = np.zeros((n, M), dtype=bool)
    d = pay["delayed"]
    if d.any():
        pm = np.searchsorted(cal.edges, pay["paid"][d] + DAY, side="right") - 1
        inside = (pm >= 0) & (pm < M)
        decision_t = cal.edges[np.clip(pm, 0, M - 1) + 1] - DAY
        crosses = inside & (pay["avail"][d] > decision_t)
        np.logical_or.at(sync, (pay["user"][d][crosses], pm[crosses]), True)
    macro = np.zeros((n, M), dtype=bool)
    for s in scenarios:
        if s.name == "macro_shock":
            macro[:, s.start_month : s.start_month + s.params["ramp_months"]] = True
    fraud = fraud_month
    # an identity document (KYC) that expires that month: the regulation rule freezes the line
    kyc_m = cal.month_of(np.minimum(kyc_expiry, cal.end - 1))
    in_period = (kyc_expiry >= cal.edges[0]) & (kyc_expiry < cal.end)
    kyc = (np.arange(M)[None, :] == kyc_m[:, None]) & in_period[:, None]
    causes = {
        "sync_delay": sync,
        "fraud": fraud,
        "kyc_expiry": kyc,
        "device_change": device_signals,
        "behaviour": behaviour,
        "bureau": bureau,
        "macro": macro,
    }
    primary = np.full((n, M), len(TRUTH_CAUSES), dtype=np.int64)
    for k in reversed(range(len(TRUTH_CAUSES))):
        primary = np.where(causes[TRUTH_CAUSES[k]], k, primary)
    after = np.arange(M)[None, :] >= signup_m[:, None]
    bal_end = sched[:, :M]
    bal_prev = np.concatenate([np.zeros((n, 1)), bal_end[:, :-1]], axis=1)
    # Background drifts (not events, not in the primary cause): the debt at other lenders the
    # bureau extract shows rose; the balance on this line rose (draws above repayments).
    drifts = {
        "bureau_debt": bur["debt_up_visible"] & after,
        "own_balance": (bal_end > bal_prev + 0.5) & after,
    }
    stopped = fr["stop_t"][:, None] < cal.edges[None, 1 : M + 1]
    repaid = ((bal_prev > 0) | drew) & (bal_end <= 1e-6) & ~stopped & after
    # a ring pays everything off (还清) days before its bust-out draw in the same month
    repaid |= fraud_month & fr["is_ring"][:, None] & (bal_prev > 0)
    uu, mm = np.nonzero(after[:, : cal.truth_months])
    # a ring member is one from signup; a takeover victim is named only if taken over in time
    victim = (fr["ato_ring"] >= 0) & (fr["fraud_t"] <= cal.truth_end)
    ring_name = np.where(
        fr["is_ring"], np.char.add(f"ring-{seed}-{c}-", fr["ring_of"].astype(str)),
        np.where(victim, np.char.add(f"gang-{seed}-{c}-", fr["ato_ring"].astype(str)), ""),
    )  # fmt: skip
    ring_col = pd.Series(ring_name, dtype="str").replace("", np.nan)
    users_s = _str(uid)
    um = pd.DataFrame(
        {
            "user_id": users_s.iloc[uu].reset_index(drop=True),
            "month": _times(cal.edges[mm]),
            "latent_pd": _sigmoid(Z[uu, mm].astype(np.float64)),
            "ring_id": ring_col.iloc[uu].reset_index(drop=True),
            "is_fraudster": fr["is_ring"][uu],
            **{f"cause_{k}": causes[k][uu, mm] for k in TRUTH_CAUSES},
            **{f"drift_{k}": v[uu, mm] for k, v in drifts.items()},
            "primary_cause": _str(
                pc.take(pa.array([*TRUTH_CAUSES, "none"]), pa.array(primary[uu, mm]))
            ),
            "repaid_in_full": repaid[uu, mm],
        }
    )
    # outcomes: first 90+ DPD (an installment unpaid, or paid, 90+ days after its due date)
    cand = pay["due"] + 90 * DAY
    hit = (pay["paid"] > cand) & (cand <= cal.truth_end)
    default_t = np.full(n, NEVER, dtype=np.int64)
    np.minimum.at(default_t, pay["user"][hit], cand[hit])
    fraud_t = np.where(fr["fraud_t"] <= cal.truth_end, fr["fraud_t"], NEVER)
    out = pd.DataFrame(
        {
            "user_id": users_s,
            "default_date": pd.Series(_times(np.where(default_t < NEVER, default_t, 0))).where(
                default_t < NEVER
            ),
            "fraud_date": pd.Series(_times(np.where(fraud_t < NEVER, fraud_t, 0))).where(
                fraud_t < NEVER
            ),
            "ring_id": ring_col,
        }
    )
    # summary figures: what happened before the extract (the summary describes the raw tables)
    D = cal.months
    is_fraud = fraud_t <= cal.extract
    credit_default = (default_t <= cal.extract) & ~is_fraud
    exposure_end = np.where(credit_default, default_t, cal.extract)
    exposure = np.clip(exposure_end - signup_t, 0, None) / (365.25 * DAY)
    due_data = (pay["due_m_raw"] < D) & (pay["due"] < cal.extract)
    due30 = due_data & (pay["due"] + 30 * DAY <= cal.extract)
    after_data = after[:, :D]
    stats = {
        "users": n,
        "defaults": int(credit_default.sum()),
        "default_exposure_years": float(exposure[~is_fraud].sum()),
        "fraud_users": int(is_fraud.sum()),
        "ring_users": int(fr["is_ring"].sum()),
        "takeovers": int(((fr["ato_ring"] >= 0) & (fr["fraud_t"] <= cal.extract)).sum()),
        "inst_due": int(due_data.sum()),
        "inst_late": int((due_data & (pay["paid"] - pay["due"] >= DAY)).sum()),
        "inst_due_30": int(due30.sum()),
        "inst_late_30": int((due30 & (pay["paid"] - pay["due"] >= 30 * DAY)).sum()),
        "bureau_user_months": int(after_data.sum()),
        "bureau_rows_reported": int(bur["rows_user_month"][:, :D][after_data].sum()),
        "inquiries": int(bur["inquiries"][:, :D].sum()),
        "user_months": int(after_data.sum()),
        "sync_delayed": int((pay["delayed"] & (pay["paid"] < cal.extract)).sum()),
    }
    return um, out, stats


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
