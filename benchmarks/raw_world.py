"""A vectorised generator of raw tables in the contract's schema, for tests and benchmarks.

Not the simulator (that is `features/world/`, with planted causes and ground truth): this
only produces plausible volumes and shapes fast (100k users x 24 months in seconds), with late
payments, shortfalls, early payoffs, a payment sync incident, bureau accounts with delinquency,
inquiries, app events with shared devices (rings), and line changes including closes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contracts import COLUMNS

MINUTE = np.timedelta64(60, "s").astype("timedelta64[ns]")
DAY = np.timedelta64(1, "D").astype("timedelta64[ns]")


def _ids(prefix: str, n: int, offset: int = 0) -> np.ndarray:
    return _tokens(prefix, np.arange(offset, offset + n))


def _tokens(prefix: str, codes: np.ndarray) -> np.ndarray:
    # Strings for integer codes, built once per distinct code (fast for millions of rows).
    uniq, inv = np.unique(codes, return_inverse=True)
    names = np.array([f"{prefix}{c:08d}" for c in uniq], dtype=object)
    return names[inv]


def _ranks(counts: np.ndarray, start: int = 0) -> np.ndarray:
    # For repeat(arange(len(counts)), counts): the position of each row within its group.
    ends = np.cumsum(counts)
    return np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - counts, counts) + start


def _times(base: np.ndarray, days: np.ndarray) -> np.ndarray:
    return base.astype("datetime64[ns]") + (days * 86400e9).astype("timedelta64[ns]")


def make_world(
    users: int = 1000,
    months: int = 24,
    seed: int = 0,
    start: str = "2024-01-01",
    incident_days: tuple[int, int] | None = (-20, -12),
) -> tuple[dict[str, pd.DataFrame], pd.Timestamp]:
    """Return (tables, extracted_at). `incident_days` (relative to the end) delays payments 3-6 days."""
    rng = np.random.default_rng(seed)
    t0 = np.datetime64(pd.Timestamp(start).to_datetime64(), "ns")
    end = pd.Timestamp(start) + pd.DateOffset(months=months)
    span_days = (end - pd.Timestamp(start)).days
    end64 = np.datetime64(end.to_datetime64(), "ns")

    # users: signups over the first two thirds of the period
    uid = _ids("u_", users)
    signup = _times(np.full(users, t0), rng.uniform(0, span_days * 0.66, users))
    risk = rng.beta(1.2, 12, users)  # per-user lateness propensity
    line0 = rng.choice([5_000.0, 10_000.0, 20_000.0, 50_000.0], users)
    users_df = pd.DataFrame(
        {
            "user_id": uid,
            "age_band": rng.integers(1, 6, users),
            "income_band": rng.integers(1, 6, users),
            "city_tier": rng.integers(1, 5, users),
            "kyc_expiry_date": _times(np.full(users, t0), rng.uniform(200, 2000, users)).astype(
                "datetime64[ns]"
            ),
            "initial_line_cny": line0,
            "event_time": signup,
            "available_time": signup + 5 * MINUTE,
        }
    )
    users_df["kyc_expiry_date"] = users_df["kyc_expiry_date"].dt.normalize()

    # loans: ~0.4 draws a month after signup
    life_days = (end64 - signup) / DAY
    n_loans = rng.poisson(life_days / 30.4 * 0.4)
    lu = np.repeat(np.arange(users), n_loans)
    nl = len(lu)
    draw = _times(signup[lu], rng.uniform(0, 1, nl) * life_days[lu])
    term = rng.choice([3, 6, 12], nl)
    amount = np.round(np.minimum(rng.lognormal(7.5, 0.8, nl), line0[lu]), 2) + 100.0
    inst = np.round(amount * (1 + 0.01 * term) / term, 2)
    loans_df = pd.DataFrame(
        {
            "loan_id": _ids("l_", nl),
            "user_id": uid[lu],
            "amount_cny": amount,
            "term_months": term,
            "installment_cny": inst,
            "event_time": draw,
            "available_time": draw + rng.integers(1, 30, nl) * MINUTE,
        }
    )

    # payments: one row per paid installment
    li = np.repeat(np.arange(nl), term)
    seq = _ranks(term, 1)
    draw_day = pd.DatetimeIndex(draw[li]).normalize()
    due = np.asarray(_add_months(draw_day, seq), dtype="datetime64[ns]")
    r = risk[lu[li]]
    never = rng.uniform(0, 1, len(li)) < r * 0.15
    late = rng.uniform(0, 1, len(li)) < r * 2
    delay = np.where(late, rng.geometric(0.08, len(li)), -rng.uniform(0, 5, len(li)))
    paid = _times(due, delay + rng.uniform(0, 0.9, len(li)))
    early = rng.uniform(0, 1, nl) < 0.1  # loans paid off in one go, early
    payoff = _times(draw, rng.uniform(5, 25, nl))
    paid = np.where(early[li], payoff[li], paid)
    paid = np.maximum(paid, draw[li] + MINUTE)
    short = rng.uniform(0, 1, len(li)) < r * 0.5
    amount_paid = np.round(np.where(short, inst[li] * rng.uniform(0.3, 0.95, len(li)), inst[li]), 2)
    avail = paid + rng.integers(1, 240, len(li)) * MINUTE
    if incident_days is not None:
        lo, hi = end64 + incident_days[0] * DAY, end64 + incident_days[1] * DAY
        hit = (paid >= lo) & (paid < hi)
        avail = np.where(
            hit, paid + (rng.uniform(3, 6, len(li)) * 86400e9).astype("timedelta64[ns]"), avail
        )
    keep = ~never & (avail <= end64)
    pay_df = pd.DataFrame(
        {
            "loan_id": loans_df["loan_id"].to_numpy()[li],
            "user_id": uid[lu[li]],
            "seq": seq,
            "due_date": due,
            "amount_due_cny": inst[li],
            "amount_paid_cny": amount_paid,
            "event_time": paid,
            "available_time": avail,
        }
    )[keep].reset_index(drop=True)

    # bureau accounts: monthly reports from opening (or the start) to the end
    n_acc = rng.poisson(2.0, users)
    au = np.repeat(np.arange(users), n_acc)
    na = len(au)
    open_date = (
        _times(np.full(na, t0), rng.uniform(-720, span_days, na))
        .astype("datetime64[D]")
        .astype("datetime64[ns]")
    )
    first_m = np.maximum(
        ((open_date.astype("datetime64[M]") - np.datetime64(t0, "M")).astype(int)), 0
    )
    n_rep = np.maximum(months - first_m, 0)
    ra = np.repeat(np.arange(na), n_rep)
    rm = _ranks(n_rep) + np.repeat(first_m, n_rep)
    month_end = (np.datetime64(t0, "M") + rm + 1).astype("datetime64[ns]") - DAY
    limit = np.round(rng.choice([3_000.0, 10_000.0, 30_000.0, 80_000.0], na), 2)
    util = rng.beta(2, 3, len(ra))
    bucket = np.where(
        rng.uniform(0, 1, len(ra)) < risk[au[ra]] * 0.5, rng.integers(1, 7, len(ra)), 0
    )
    close = np.where(
        rng.uniform(0, 1, na) < 0.2,
        open_date + (rng.uniform(60, 900, na) * 86400e9).astype("timedelta64[ns]"),
        np.datetime64("NaT"),
    )
    bureau_df = pd.DataFrame(
        {
            "account_id": _ids("a_", na)[ra],
            "user_id": uid[au[ra]],
            "lender_token": _tokens("lt_", rng.integers(0, 400, na))[ra],
            "lender_type": rng.choice(["bank", "consumer_finance", "microloan", "credit_card"], na)[
                ra
            ].astype(object),
            "open_date": open_date[ra],
            "close_date": close.astype("datetime64[ns]")[ra],
            "limit_cny": limit[ra],
            "balance_cny": np.round(limit[ra] * util, 2),
            "overdue_cny": np.round(np.where(bucket > 0, limit[ra] * util * 0.1, 0.0), 2),
            "dpd_bucket": bucket,
            "event_time": month_end,
            "available_time": month_end + rng.integers(2, 6, len(ra)) * DAY,
        }
    )
    bureau_df = bureau_df[
        (bureau_df["available_time"] <= end) & (bureau_df["event_time"] >= bureau_df["open_date"])
    ].reset_index(drop=True)

    # inquiries
    n_inq = rng.poisson(months * 0.25, users)
    qu = np.repeat(np.arange(users), n_inq)
    qt = _times(np.full(len(qu), t0), rng.uniform(0, span_days, len(qu)))
    inq_df = pd.DataFrame(
        {
            "inquiry_id": _ids("q_", len(qu)),
            "user_id": uid[qu],
            "lender_type": rng.choice(
                ["bank", "consumer_finance", "microloan", "credit_card"], len(qu)
            ).astype(object),
            "event_time": qt,
            "available_time": qt + rng.integers(1, 600, len(qu)) * MINUTE,
        }
    )

    # app events: own devices; 3% of users sit in rings of 5 sharing one device
    n_ev = rng.poisson(life_days / 30.4 * 3.0)
    eu = np.repeat(np.arange(users), n_ev)
    et = _times(signup[eu], rng.uniform(0, 1, len(eu)) * life_days[eu])
    ring = np.where(
        rng.uniform(0, 1, users) < 0.03, rng.integers(0, max(users // 150, 1), users), -1
    )
    dev_own = _tokens("d_", eu * 2 + rng.integers(0, 2, len(eu)))
    dev_ring = _tokens("dr_", ring[eu])
    use_ring = (ring[eu] >= 0) & (rng.uniform(0, 1, len(eu)) < 0.5)
    etype = rng.choice(
        list(("login", "device_change", "sim_change", "password_reset", "geo_jump")),
        len(eu),
        p=[0.86, 0.04, 0.03, 0.04, 0.03],
    )
    ev_df = pd.DataFrame(
        {
            "event_id": _ids("e_", len(eu)),
            "user_id": uid[eu],
            "event_type": etype.astype(object),
            "device_token": np.where(use_ring, dev_ring, dev_own),
            "ip_prefix_token": _tokens("ip_", rng.integers(0, max(users // 40, 2), len(eu))),
            "event_time": et,
            "available_time": et + rng.integers(1, 30, len(eu)) * MINUTE,
        }
    )

    # line history: open at signup, then a review each quarter; 2% closed at a review
    reviews = np.maximum((life_days // 91).astype(int), 0)
    hu = np.repeat(np.arange(users), reviews)
    hk = _ranks(reviews, 1)
    ht = signup[hu] + (hk * 91) * DAY
    action = rng.choice(
        ["keep", "raise", "lower", "freeze", "close"], len(hu), p=[0.7, 0.15, 0.08, 0.05, 0.02]
    )
    factor = np.select(
        [action == "raise", action == "lower", action == "freeze", action == "close"],
        [1.2, 0.8, 0.0, 0.0],
        1.0,
    )
    new_line = np.round(line0[hu] * factor, 2)
    opens = pd.DataFrame(
        {
            "change_id": _ids("c_", users),
            "user_id": uid,
            "old_line_cny": 0.0,
            "new_line_cny": line0,
            "action": "open",
            "event_time": signup + MINUTE,
            "available_time": signup + 2 * MINUTE,
        }
    )
    changes = pd.DataFrame(
        {
            "change_id": _ids("c_", len(hu), offset=users),
            "user_id": uid[hu],
            "old_line_cny": line0[hu],
            "new_line_cny": new_line,
            "action": action.astype(object),
            "event_time": ht,
            "available_time": ht + MINUTE,
        }
    )
    lines_df = pd.concat([opens, changes], ignore_index=True)
    lines_df["action"] = lines_df["action"].astype(object)

    tables = {
        "users": users_df,
        "loans": loans_df,
        "installments": pay_df,
        "bureau_accounts": bureau_df,
        "bureau_inquiries": inq_df,
        "app_events": ev_df,
        "line_history": lines_df,
    }
    out = {}
    for t, df in tables.items():
        df = df[df["available_time"] <= end].reset_index(drop=True)
        out[t] = df[COLUMNS[t]]
    return out, end


def _add_months(days: pd.DatetimeIndex, k: np.ndarray) -> np.ndarray:
    # Vectorised date + k calendar months, clamped to month end (pandas DateOffset(months=k)).
    y = days.year.to_numpy() * 12 + days.month.to_numpy() - 1 + k
    first = (y // 12 - 1970) * 12 + y % 12
    month_start = first.astype("datetime64[M]")
    month_len = (
        (month_start + 1).astype("datetime64[D]") - month_start.astype("datetime64[D]")
    ).astype(int)
    day = np.minimum(days.day.to_numpy(), month_len) - 1
    return (month_start.astype("datetime64[D]") + day).astype("datetime64[ns]")
