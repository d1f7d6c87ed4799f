"""The world month by month for one chunk: latent risk, distress, draws, fraud, the line rule.

One vectorised pass over all users per month (a loop over months, not users). Random numbers
are taken month by month, so what happens in a month never depends on how many months follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.world.calendar import DAY, HOUR, NEVER, Calendar
from features.world.parameters import (
    EXTERNAL_OVERDUE_HAZARD,
    INCOME_SHOCK_HAZARD,
    LIFE_EVENT_HAZARD,
    P_DEFAULT_GIVEN_DISTRESS,
    WALK_SD,
    Z_MEAN,
    round100,
    sigmoid,
)
from features.world.scenarios import ScenarioMonths
from features.world.users import Users

# Months of schedule kept past the world's last month (a draw in its last month runs up to 12
# more); payoff months are clipped to the schedule's last month.
SCHEDULE_TAIL = 14


@dataclass(frozen=True)
class History:
    """What happened to a chunk's users. Arrays per user, or user x world month (n x M)."""

    Z: np.ndarray  # n x M latent log-odds at month end (float32)
    burst: np.ndarray  # n x M: distress shows at the bureau
    shock_ev: np.ndarray  # n x M: an income shock hit
    util_jump: np.ndarray  # n x M: a draw took utilisation from < 50 % to >= 80 %
    drew: np.ndarray  # n x M: an ordinary draw
    fraud_month: np.ndarray  # n x M: the bust-out or takeover draw
    distress_m: np.ndarray  # month distress started, -1 if never
    cures: np.ndarray  # the distress resolves by a cure (else the user stops paying)
    cure_m: np.ndarray  # month of the cure, -1 if none
    stop_m: np.ndarray  # month the user stopped paying (credit default path or fraud), NEVER
    stop_t: np.ndarray  # ns of that, NEVER
    ext_m: np.ndarray  # month of an external overdue episode, -1 if none
    ext_len: np.ndarray  # its length in months
    fraud_t: np.ndarray  # ns of the bust-out or takeover draw, NEVER
    ato_ring: np.ndarray  # takeover gang within the chunk, -1 if not taken over
    sched: np.ndarray  # n x (M + SCHEDULE_TAIL) remaining principal at each month end
    draws: dict[str, np.ndarray]  # every draw: user, m, slot, t, amount, term, payoff_m, payoff_u
    line_changes: list[tuple]  # (users, time, old line, new line, action) per month and action
    balance_sum: float  # over open lines and months before the extract (utilisation)
    line_sum: float


def simulate_months(
    users: Users,
    scenarios: ScenarioMonths,
    cal: Calendar,
    *,
    rng_lat: np.random.Generator,
    rng_loan: np.random.Generator,
    rng_fraud: np.random.Generator,
) -> History:
    """Run the chunk's users through every month of the world.

    One function on purpose: a month's steps (latent risk, distress, draws, fraud, the line
    rule) share a dozen state arrays that evolve month to month, and each step reads what the
    one before it wrote that month; split up, they would hand all of that state back and forth.
    """
    n, M, data_months = users.n, cal.world_months, cal.months
    users_ix = np.arange(n)
    signup_m, signup_t, line0, income = users.signup_m, users.signup_t, users.line0, users.income
    z_base, macro_sens, propensity = users.z_base, users.macro_sens, users.propensity
    is_ring, bust_m = users.is_ring, users.bust_m
    sc, macro_on, wave_on = scenarios.by_name, scenarios.macro_on, scenarios.wave_on
    macro_p = scenarios.macro_params

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
    ext_m = np.full(n, -1)
    ext_len = np.zeros(n, dtype=np.int64)
    fraud_t = np.full(n, NEVER, dtype=np.int64)
    ato_ring = np.full(n, -1)
    line = np.zeros(n)
    clean = np.zeros(n, dtype=np.int64)
    drew_recent = np.zeros(n, dtype=np.int64)
    owed_at_stop = np.zeros(n, dtype=bool)  # a user who stops owing nothing is merely inactive
    W = M + SCHEDULE_TAIL
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
        pd12 = sigmoid(z)
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
        p_draw = sigmoid(propensity + 0.5 * (z - Z_MEAN) + 1.0 * in_burst)
        p_draw = np.where(is_ring, 0.85, p_draw)
        amount = np.where(
            is_ring, 0.15 + 0.15 * u_frac, np.clip(frac + 0.1 * (z - Z_MEAN), 0.05, 1.0)
        )
        amount = round100(avail * amount)
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
            stop_m[bust], stop_t[bust] = m, tb + HOUR
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
                stop_m[victims], stop_t[victims] = m, tv
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
                newl = np.minimum(round100(old * factor), np.where(factor > 1, cap[mask], np.inf))
                changes.append(
                    (users_ix[mask], np.full(int(mask.sum()), review_t), old, newl, action)
                )
                line[mask] = newl
        clean[raise_ | lower] = 0

    return History(
        Z=Z,
        burst=burst,
        shock_ev=shock_ev,
        util_jump=util_jump,
        drew=drew,
        fraud_month=fraud_month,
        distress_m=distress_m,
        cures=cures,
        cure_m=cure_m,
        stop_m=stop_m,
        stop_t=stop_t,
        ext_m=ext_m,
        ext_len=ext_len,
        fraud_t=fraud_t,
        ato_ring=ato_ring,
        sched=sched.reshape(n, W),
        draws=_concat(loans),
        line_changes=changes,
        balance_sum=bal_sum,
        line_sum=line_sum,
    )


def _fraud_draws(users, m, t, amount):
    amount = round100(amount)
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
