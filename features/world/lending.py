"""The lender's own book: draws (loans), repayments (installments) and the line history."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.schedule import due_dates
from features.world.calendar import DAY, HOUR, MINUTE, NEVER, Calendar, times
from features.world.ids import as_str, join_ids
from features.world.months import SCHEDULE_TAIL, History
from features.world.parameters import FEE_PER_MONTH, sigmoid
from features.world.scenarios import ScenarioMonths
from features.world.users import Users


@dataclass(frozen=True)
class Payments:
    """Every installment of the world, for the truth: what was due and when it was really paid."""

    user: np.ndarray  # user position
    due: np.ndarray  # ns
    due_m_raw: np.ndarray  # month index of the due date (may be past the world's last month)
    paid: np.ndarray  # ns, NEVER if never paid
    delayed: np.ndarray  # reached the warehouse late because of a sync incident
    avail: np.ndarray  # ns it reached the warehouse


def loans_and_payments(
    *,
    users: Users,
    history: History,
    scenarios: ScenarioMonths,
    cal: Calendar,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame, Payments]:
    """The `loans` and `installments` tables as the extract holds them, and every payment."""
    lo, uid, n, Z = history.draws, users.uid, users.n, history.Z
    cure_m, stop_t, is_ring, sync_u = history.cure_m, history.stop_t, users.is_ring, users.sync_u
    sync_on, sc = scenarios.sync_on, scenarios.by_name
    M = cal.world_months
    L = len(lo["user"])
    amount = lo["amount"]
    term = lo["term"].astype(np.int64)
    inst = np.round(amount * (1.0 + FEE_PER_MONTH * term) / term, 2)
    t_draw = lo["t"].astype(np.int64)
    loan_uid = pc.take(uid, pa.array(lo["user"]))
    loan_id = join_ids(loan_uid, lo["m"] * 10 + lo["slot"], "-L")
    # draws before the extract, as it holds them (one that reached the warehouse after it is
    # in it, available at the extract: the rule the simulator always had for its last draws)
    av = np.minimum(t_draw + (rng.exponential(5.0, L) * MINUTE).astype(np.int64), cal.extract)
    drawn = t_draw < cal.extract
    loans = pd.DataFrame(
        {
            "loan_id": as_str(loan_id.filter(pa.array(drawn))),
            "user_id": as_str(loan_uid.filter(pa.array(drawn))),
            "amount_cny": amount[drawn].astype(np.float64),
            "term_months": term[drawn],
            "installment_cny": inst[drawn],
            "event_time": times(t_draw[drawn]),
            "available_time": times(av[drawn]),
        }
    )
    # payoff time: a day in the payoff month, after the draw
    payoff_t = np.where(
        lo["payoff_m"] < NEVER,
        cal.month_start(np.minimum(lo["payoff_m"], M + SCHEDULE_TAIL - 1))
        + (lo["payoff_u"] * 27 * DAY).astype(np.int64)
        + 9 * HOUR,
        NEVER,
    )
    pos, seq, due = due_dates(times(t_draw), term)
    due = due.view(np.int64)
    R = len(pos)
    user = lo["user"][pos]
    due_m = np.clip(lo["m"][pos] + seq, 0, M - 1)
    z_due = Z[user, due_m] if R else np.zeros(0)
    u_late, u_days, u_part, u_partamt, u_tod, u_avail, u_sync = rng.random((7, R))
    p_late = np.where(is_ring[user], 0.0, 0.6 * sigmoid(z_due + 1.0))  # rings build trust
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
            "loan_id": as_str(inst_uid),
            "user_id": as_str(pc.take(loan_uid, pa.array(pos[kept]))),
            "seq": seq[kept],
            "due_date": times(due[kept]),
            "amount_due_cny": amount_due[kept],
            "amount_paid_cny": amount_paid[kept],
            "event_time": times(paid[kept]),
            "available_time": times(avail[kept]),
        }
    )
    payments = Payments(
        user=user, due=due, due_m_raw=lo["m"][pos] + seq, paid=paid, delayed=delayed, avail=avail
    )
    return loans, installments, payments


def line_history(
    *, users: Users, changes: list[tuple], cal: Calendar, rng: np.random.Generator
) -> pd.DataFrame:
    """The `line_history` table: each user's opening line, then every change of the legacy line
    rule, up to the extract as it holds them (a change made before it that reached the warehouse
    later is in it, available at the extract)."""
    uid, signup_t, line0, extract = users.uid, users.signup_t, users.line0, cal.extract
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
            "change_id": as_str(join_ids(ch_uid, np.flatnonzero(ok), "-C")),
            "user_id": as_str(ch_uid),
            "old_line_cny": np.concatenate(old)[ok].astype(np.float64),
            "new_line_cny": np.concatenate(new)[ok].astype(np.float64),
            "action": as_str(
                pc.take(pa.array(["open", "lower", "close", "raise"]), pa.array(a[ok]))
            ),
            "event_time": times(t[ok]),
            "available_time": times(av[ok]),
        }
    )
