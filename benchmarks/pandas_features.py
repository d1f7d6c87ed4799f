"""A straightforward pandas implementation of the main feature families (benchmark baseline).

Covers the heavy part of the builder: the installment schedule with DPD and its window
aggregates (repayment), bureau latest-report and window aggregates plus inquiries, app-event
counts and the device-sharing graph. Column names match the builder's, so the benchmark can
check both give the same numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.bureau import DPD_WINDOWS as BUREAU_DPD_WINDOWS
from features.bureau import INQUIRY_MONTH_WINDOWS, OPEN_WINDOWS
from features.repayment import DPD_WINDOWS, PAY_WINDOWS


def _visible(df: pd.DataFrame, T: pd.Timestamp) -> pd.DataFrame:
    return df[(df["available_time"] <= T) & (df["event_time"] < T)]


def _months_before(T: pd.Timestamp, w: int) -> pd.Timestamp:
    return T.normalize() - pd.DateOffset(months=w)


def pandas_features(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> pd.DataFrame:
    T = pd.Timestamp(as_of)
    users = _visible(tables["users"], T)[["user_id"]].sort_values("user_id").set_index("user_id")
    out = [users]

    # repayment: schedule x visible payments
    loans = _visible(tables["loans"], T)
    pays = _visible(tables["installments"], T)[["loan_id", "seq", "event_time", "amount_paid_cny"]]
    sched = loans.loc[
        loans.index.repeat(loans["term_months"]),
        ["loan_id", "user_id", "installment_cny", "event_time"],
    ]
    sched["seq"] = sched.groupby(level=0).cumcount() + 1
    draw_day = sched["event_time"].dt.normalize()
    sched["due"] = draw_day
    for k in range(1, 13):
        m = sched["seq"] == k
        sched.loc[m, "due"] = draw_day[m] + pd.DateOffset(months=k)
    sched = sched.drop(columns="event_time").merge(
        pays.rename(columns={"event_time": "paid"}), on=["loan_id", "seq"], how="left"
    )
    paid_days = (sched["paid"].dt.normalize() - sched["due"]).dt.days.clip(lower=0)
    open_days = (T.normalize() - sched["due"]).dt.days
    sched["dpd"] = np.where(
        sched["paid"].notna(), paid_days, np.where(sched["due"] < T, open_days, np.nan)
    )
    sched["amount_paid_cny"] = sched["amount_paid_cny"].fillna(0.0)
    g = sched.groupby("user_id")
    rep = {}
    for w in DPD_WINDOWS:
        win = sched[(sched["due"] >= _months_before(T, w)) & (sched["due"] < T)]
        gw = win.groupby("user_id")
        rep[f"inst_dpd_max_{w}m"] = gw["dpd"].max()
        rep[f"inst_dpd_mean_{w}m"] = gw["dpd"].mean()
        rep[f"inst_late_cnt_{w}m"] = (win["dpd"] > 0).groupby(win["user_id"]).sum()
    for w in PAY_WINDOWS:
        win = sched[(sched["due"] >= _months_before(T, w)) & (sched["due"] < T)]
        gw = win.groupby("user_id")
        rep[f"inst_paid_due_ratio_{w}m"] = gw["amount_paid_cny"].sum() / gw[
            "installment_cny"
        ].sum().replace(0, np.nan)
        rep[f"inst_shortfall_cny_{w}m"] = (
            (win["installment_cny"] - win["amount_paid_cny"])
            .clip(lower=0)
            .groupby(win["user_id"])
            .sum()
        )
    over = sched[sched["paid"].isna() & (sched["due"] < T)]
    rep["inst_overdue_cnt_now"] = over.groupby("user_id").size()
    rep["inst_dpd_now"] = over.groupby("user_id")["dpd"].max()
    owed = (
        sched["installment_cny"] - np.where(sched["paid"].notna(), sched["amount_paid_cny"], 0.0)
    ).clip(lower=0)
    rep["balance_cny_now"] = owed.groupby(sched["user_id"]).sum()
    lines = _visible(tables["line_history"], T).sort_values(["event_time", "change_id"])
    line = lines.groupby("user_id")["new_line_cny"].last()
    line = line.reindex(users.index).fillna(
        tables["users"].set_index("user_id")["initial_line_cny"]
    )
    rep["util_ratio_now"] = rep["balance_cny_now"].reindex(users.index).fillna(0.0) / line.replace(
        0, np.nan
    )
    del g
    out.append(pd.DataFrame(rep))

    # bureau
    b = _visible(tables["bureau_accounts"], T)
    latest = b.sort_values("event_time").drop_duplicates(["user_id", "account_id"], keep="last")
    active = latest[latest["close_date"].isna() | (latest["close_date"] >= T)]
    bur = {
        "bureau_active_accounts_cnt": active.groupby("user_id").size(),
        "bureau_active_lenders_cnt": active.groupby("user_id")["lender_token"].nunique(),
        "bureau_balance_cny": active.groupby("user_id")["balance_cny"].sum(),
        "bureau_overdue_cny": latest.groupby("user_id")["overdue_cny"].sum(),
    }
    for w in OPEN_WINDOWS:
        opened = latest[latest["open_date"] >= _months_before(T, w)]
        bur[f"bureau_accounts_opened_cnt_{w}m"] = opened.groupby("user_id").size()
        bur[f"bureau_lenders_opened_cnt_{w}m"] = opened.groupby("user_id")["lender_token"].nunique()
    for w in BUREAU_DPD_WINDOWS:
        bur[f"bureau_dpd_bucket_max_{w}m"] = (
            b[b["event_time"] >= _months_before(T, w)].groupby("user_id")["dpd_bucket"].max()
        )
    q = _visible(tables["bureau_inquiries"], T)
    bur["bureau_inquiries_cnt_7d"] = (
        q[q["event_time"] >= T - pd.Timedelta(days=7)].groupby("user_id").size()
    )
    for w in INQUIRY_MONTH_WINDOWS:
        bur[f"bureau_inquiries_cnt_{w}m"] = (
            q[q["event_time"] >= _months_before(T, w)].groupby("user_id").size()
        )
    out.append(pd.DataFrame(bur))

    # behaviour: event counts by type and window, device-sharing graph
    ev = _visible(tables["app_events"], T)
    names = {
        "login": "logins",
        "device_change": "device_changes",
        "sim_change": "sim_changes",
        "password_reset": "password_resets",
        "geo_jump": "geo_jumps",
    }
    beh = {}
    for d in (1, 7, 30):
        recent = ev[ev["event_time"] >= T - pd.Timedelta(days=d)]
        counts = recent.groupby(["user_id", "event_type"]).size().unstack(fill_value=0)
        for t, name in names.items():
            beh[f"app_{name}_cnt_{d}d"] = counts[t] if t in counts else pd.Series(dtype=float)
    ud = ev[["user_id", "device_token"]].drop_duplicates()
    pairs = ud.merge(ud, on="device_token")
    pairs = pairs[pairs["user_id_x"] != pairs["user_id_y"]]
    beh["graph_device_shared_users_cnt"] = pairs.groupby("user_id_x")["user_id_y"].nunique()
    out.append(pd.DataFrame(beh))

    df = pd.concat(out, axis=1).reindex(users.index)
    counts = [c for c in df.columns if "_cnt" in c or "_cny" in c or c == "inst_dpd_now"]
    df[counts] = df[counts].fillna(0.0)
    return df.astype("float64").reset_index()
