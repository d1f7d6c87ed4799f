"""Ground truth: per user-month the true PD and the causes planted, per user the outcomes.

Every flag is defined by what is visible in the raw data that month (the README's "Ground
truth" section); the tests check each against the raw tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.world.bureau import BureauSignals
from features.world.calendar import DAY, NEVER, Calendar, times
from features.world.ids import as_str
from features.world.lending import Payments
from features.world.months import History
from features.world.parameters import sigmoid
from features.world.scenarios import ScenarioMonths
from features.world.users import Users

# Primary-cause priority. Data not current comes first (a decision taken on stale data is a
# system fault whatever else happened), then fraud, an expired identity document (a regulation
# freeze), a change of the user's own fraud signals (device, SIM), own behaviour, the bureau,
# the macro shock.
TRUTH_CAUSES = (
    "sync_delay", "fraud", "kyc_expiry", "device_change", "behaviour", "bureau", "macro",
)  # fmt: skip


def truth_tables(
    *,
    users: Users,
    history: History,
    scenarios: ScenarioMonths,
    cal: Calendar,
    payments: Payments,
    bureau: BureauSignals,
    device_signals: np.ndarray,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The chunk's `user_month` rows (to the truth horizon), `outcomes` rows, and its summary
    figures (those describe the months before the extract, as the raw tables do)."""
    c, uid, n = users.chunk, users.uid, users.n
    signup_m, signup_t, kyc_expiry = users.signup_m, users.signup_t, users.kyc_expiry
    Z, util_jump, sched, drew = history.Z, history.util_jump, history.sched, history.drew
    fraud_month = history.fraud_month
    # Every flag is computed over the whole world; rows are written up to the truth horizon.
    M = cal.world_months
    pay, bur = payments, bureau
    # behaviour: an installment due this month paid >= 1 day late or not paid (and due before the end)
    due_in = (pay.due_m_raw < M) & (pay.due < cal.end)
    late1 = due_in & (pay.paid - pay.due >= DAY)
    behaviour = util_jump.copy()
    np.logical_or.at(behaviour, (pay.user[late1], pay.due_m_raw[late1]), True)
    # after a user stopped paying, missed installments are no news: flag up to 90+ DPD only
    stop_month = np.where(
        history.stop_t < NEVER, cal.month_of(np.minimum(history.stop_t, cal.end - 1)), NEVER
    )
    behaviour &= np.arange(M)[None, :] <= stop_month[:, None] + 3
    # bureau: any new record the lender's bureau extract shows that month (the month it becomes
    # available, when a decision can first see it): an account newly or further overdue, a new
    # account, an inquiry. Each is drawn from a rate that rises with risk (and jumps under
    # distress and income shocks), so each is risk evidence the simulator planted.
    bureau = bur.new_record_visible.copy()
    # sync delay: a payment made before this month's decision that the decision cannot see yet.
    # Decisions are taken at month-end as-of dates (T = the start of the month's last day), so a
    # month runs from the last day of the month before to the start of its own last day; a
    # payment made on the last day counts in the next month (the decision was already taken).
    sync = np.zeros((n, M), dtype=bool)
    d = pay.delayed
    if d.any():
        pm = np.searchsorted(cal.edges, pay.paid[d] + DAY, side="right") - 1
        inside = (pm >= 0) & (pm < M)
        decision_t = cal.edges[np.clip(pm, 0, M - 1) + 1] - DAY
        crosses = inside & (pay.avail[d] > decision_t)
        np.logical_or.at(sync, (pay.user[d][crosses], pm[crosses]), True)
    macro = np.zeros((n, M), dtype=bool)
    if (s := scenarios.by_name.get("macro_shock")) is not None:
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
        "bureau_debt": bur.debt_up_visible & after,
        "own_balance": (bal_end > bal_prev + 0.5) & after,
    }
    stopped = history.stop_t[:, None] < cal.edges[None, 1 : M + 1]
    repaid = ((bal_prev > 0) | drew) & (bal_end <= 1e-6) & ~stopped & after
    # a ring pays everything off (还清) days before its bust-out draw in the same month
    repaid |= fraud_month & users.is_ring[:, None] & (bal_prev > 0)
    uu, mm = np.nonzero(after[:, : cal.truth_months])
    # a ring member is one from signup; a takeover victim is named only if taken over in time
    victim = (history.ato_ring >= 0) & (history.fraud_t <= cal.truth_end)
    ring_name = np.where(
        users.is_ring, np.char.add(f"ring-{seed}-{c}-", users.ring_of.astype(str)),
        np.where(victim, np.char.add(f"gang-{seed}-{c}-", history.ato_ring.astype(str)), ""),
    )  # fmt: skip
    ring_col = pd.Series(ring_name, dtype="str").replace("", np.nan)
    users_s = as_str(uid)
    um = pd.DataFrame(
        {
            "user_id": users_s.iloc[uu].reset_index(drop=True),
            "month": times(cal.edges[mm]),
            "latent_pd": sigmoid(Z[uu, mm].astype(np.float64)),
            "ring_id": ring_col.iloc[uu].reset_index(drop=True),
            "is_fraudster": users.is_ring[uu],
            **{f"cause_{k}": causes[k][uu, mm] for k in TRUTH_CAUSES},
            **{f"drift_{k}": v[uu, mm] for k, v in drifts.items()},
            "primary_cause": as_str(
                pc.take(pa.array([*TRUTH_CAUSES, "none"]), pa.array(primary[uu, mm]))
            ),
            "repaid_in_full": repaid[uu, mm],
        }
    )
    # outcomes: first 90+ DPD (an installment unpaid, or paid, 90+ days after its due date)
    cand = pay.due + 90 * DAY
    hit = (pay.paid > cand) & (cand <= cal.truth_end)
    default_t = np.full(n, NEVER, dtype=np.int64)
    np.minimum.at(default_t, pay.user[hit], cand[hit])
    fraud_t = np.where(history.fraud_t <= cal.truth_end, history.fraud_t, NEVER)
    out = pd.DataFrame(
        {
            "user_id": users_s,
            "default_date": pd.Series(times(np.where(default_t < NEVER, default_t, 0))).where(
                default_t < NEVER
            ),
            "fraud_date": pd.Series(times(np.where(fraud_t < NEVER, fraud_t, 0))).where(
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
    due_data = (pay.due_m_raw < D) & (pay.due < cal.extract)
    due30 = due_data & (pay.due + 30 * DAY <= cal.extract)
    after_data = after[:, :D]
    stats = {
        "users": n,
        "defaults": int(credit_default.sum()),
        "default_exposure_years": float(exposure[~is_fraud].sum()),
        "fraud_users": int(is_fraud.sum()),
        "ring_users": int(users.is_ring.sum()),
        "takeovers": int(((history.ato_ring >= 0) & (history.fraud_t <= cal.extract)).sum()),
        "inst_due": int(due_data.sum()),
        "inst_late": int((due_data & (pay.paid - pay.due >= DAY)).sum()),
        "inst_due_30": int(due30.sum()),
        "inst_late_30": int((due30 & (pay.paid - pay.due >= 30 * DAY)).sum()),
        "bureau_user_months": int(after_data.sum()),
        "bureau_rows_reported": int(bur.rows_user_month[:, :D][after_data].sum()),
        "inquiries": int(bur.inquiries[:, :D].sum()),
        "user_months": int(after_data.sum()),
        "sync_delayed": int((pay.delayed & (pay.paid < cal.extract)).sum()),
        "balance_sum": history.balance_sum,
        "line_sum": history.line_sum,
    }
    return um, out, stats
