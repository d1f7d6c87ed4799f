"""The credit bureau: accounts at other lenders (多头) with monthly report rows, and inquiries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.contracts import LENDER_TYPES
from features.world.calendar import DAY, NEVER, Calendar, times
from features.world.ids import Pools, as_str, join_ids
from features.world.months import History
from features.world.parameters import Z_MEAN, round100
from features.world.scenarios import ScenarioMonths
from features.world.users import Users


@dataclass(frozen=True)
class BureauSignals:
    """What the truth needs from the bureau, per user x world month."""

    inquiries: np.ndarray  # inquiries made that month
    new_record_visible: np.ndarray  # a new record becomes available to the lender that month
    debt_up_visible: np.ndarray  # the report available that month shows more debt elsewhere
    rows_user_month: np.ndarray  # report rows of that month (available or not)


def bureau_tables(
    *,
    users: Users,
    history: History,
    scenarios: ScenarioMonths,
    pools: Pools,
    cal: Calendar,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame, BureauSignals]:
    """The `bureau_accounts` and `bureau_inquiries` tables as the extract holds them (a month's
    report arrives 3-6 days after it), and what the truth needs from the whole world."""
    uid, n, z_base, income = users.uid, users.n, users.z_base, users.income
    signup_m, acct_util_user = users.signup_m, users.acct_util_user
    h = history
    Z, burst, shock_ev, cures, cure_m, stop_m = (
        h.Z,
        h.burst,
        h.shock_ev,
        h.cures,
        h.cure_m,
        h.stop_m,
    )
    distress_m, ext_m, ext_len = h.distress_m, h.ext_m, h.ext_len
    macro_on, macro_p = scenarios.macro_on, scenarios.macro_params
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
    for k, pool in enumerate(pools.lenders_by_type):  # four lender types
        sel = ltype == k
        lender[sel] = pool[(u_l[sel] * len(pool)).astype(np.int64)]
    base_limit = np.array([40000.0, 8000.0, 3000.0, 15000.0])[ltype]  # bank, cf, micro, card
    limit = round100(base_limit * (0.6 + 0.25 * income[acct_user]) * np.exp(rng.normal(0, 0.4, A)))
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
    acct_id = join_ids(acct_uid, np.arange(A), "-A")
    sel = pa.array(rpos[ok])
    accounts = pd.DataFrame(
        {
            "account_id": as_str(pc.take(acct_id, sel)),
            "user_id": as_str(pc.take(acct_uid, sel)),
            "lender_token": as_str(pc.take(pools.lender_token, pa.array(lender[rpos[ok]]))),
            "lender_type": as_str(pc.take(pa.array(LENDER_TYPES), pa.array(ltype[rpos[ok]]))),
            "open_date": times(open_t[rpos[ok]]),
            "close_date": times(np.where(closing[ok], close_t[rpos[ok]], 0)),
            "limit_cny": limit[rpos[ok]],
            "balance_cny": bal[ok],
            "overdue_cny": overdue[ok],
            "dpd_bucket": bucket[ok].astype(np.int64),
            "event_time": times(ev[ok]),
            "available_time": times(av[ok]),
        }
    )
    accounts["close_date"] = accounts["close_date"].where(closing[ok])

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
            "inquiry_id": as_str(join_ids(inq_uid, np.flatnonzero(ok_i), "-Q")),
            "user_id": as_str(inq_uid),
            "lender_type": as_str(pc.take(pa.array(LENDER_TYPES), pa.array(itype[ok_i]))),
            "event_time": times(it[ok_i]),
            "available_time": times(iav[ok_i]),
        }
    )
    # what the truth needs: per user-month inquiries
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
    signals = BureauSignals(
        inquiries=inq_cnt,
        new_record_visible=fresh,
        debt_up_visible=debt_up,
        rows_user_month=np.bincount(ru * M + rm, minlength=n * M).reshape(n, M),
    )
    return accounts, inquiries, signals


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
