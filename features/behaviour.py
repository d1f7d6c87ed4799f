"""Behaviour and fraud features: app events, the device/IP sharing graph, draw velocity.

- Event counts by type over the last 1/7/30 days (event_time in [T - d days, T)).
- Sharing graph: `graph_device_shared_users_cnt` = distinct other users who used any device this
  user used (all visible history: rings reuse handsets); `graph_ip_shared_users_max` = the most
  other users seen on one of this user's IP prefixes in the last 30 days (a max over prefixes
  rather than a distinct count, so a busy carrier prefix costs one group-by, not a pairwise join).
- Draw velocity after a payoff (the bust-out shape: repay, then draw the whole line at once):
  draws within 7 days after a loan payoff, for payoffs in the last 90 days.
Counts are 0 for a user with no events.
"""

from __future__ import annotations

EVENT_TYPES = {
    "login": "logins",
    "device_change": "device_changes",
    "sim_change": "sim_changes",
    "password_reset": "password_resets",
    "geo_jump": "geo_jumps",
}
DAY_WINDOWS = (1, 7, 30)
GRAPH_IP_DAYS = 30
PAYOFF_LOOKBACK_DAYS = 90
PAYOFF_DRAW_DAYS = 7


def _events_sql() -> str:
    exprs = [
        f"SUM(CASE WHEN e.event_type = '{t}' AND e.event_time >= {{T}} - INTERVAL '{d}' DAY THEN 1 ELSE 0 END)"
        f" AS app_{name}_cnt_{d}d"
        for t, name in EVENT_TYPES.items()
        for d in DAY_WINDOWS
    ]
    names = ", ".join(f"ev.{e.rsplit(' AS ', 1)[1]}" for e in exprs)
    return f"""
CREATE OR REPLACE TEMP TABLE f_behaviour AS
WITH ev AS (
    SELECT e.user_id,
           {("," + chr(10) + "           ").join(exprs)}
    FROM v_events e WHERE e.event_time >= {{T}} - INTERVAL '{max(DAY_WINDOWS)}' DAY GROUP BY e.user_id
),
user_device AS (SELECT DISTINCT user_id, device_token FROM v_events),
device_shared AS (
    SELECT a.user_id, COUNT(DISTINCT b.user_id) AS graph_device_shared_users_cnt
    FROM user_device a JOIN user_device b ON a.device_token = b.device_token AND a.user_id <> b.user_id
    GROUP BY a.user_id
),
user_ip AS (
    SELECT DISTINCT user_id, ip_prefix_token FROM v_events
    WHERE event_time >= {{T}} - INTERVAL '{GRAPH_IP_DAYS}' DAY
),
ip_size AS (SELECT ip_prefix_token, COUNT(*) AS users_cnt FROM user_ip GROUP BY ip_prefix_token),
ip_shared AS (
    SELECT a.user_id, MAX(s.users_cnt - 1) AS graph_ip_shared_users_max
    FROM user_ip a JOIN ip_size s ON s.ip_prefix_token = a.ip_prefix_token
    GROUP BY a.user_id
),
payoff AS (
    SELECT user_id, payoff_time FROM loan_status
    WHERE payoff_time IS NOT NULL AND payoff_time >= {{T}} - INTERVAL '{PAYOFF_LOOKBACK_DAYS}' DAY
),
draws_after AS (
    SELECT user_id, COUNT(*) AS behav_draws_after_payoff_cnt_7d, SUM(amount_cny) AS behav_draw_after_payoff_cny_7d
    FROM (SELECT DISTINCT d.user_id, d.loan_id, d.amount_cny
          FROM payoff p JOIN v_loans d ON d.user_id = p.user_id
           AND d.event_time > p.payoff_time
           AND d.event_time <= p.payoff_time + INTERVAL '{PAYOFF_DRAW_DAYS}' DAY) t
    GROUP BY user_id
)
SELECT u.user_id, {names},
       COALESCE(ds.graph_device_shared_users_cnt, 0) AS graph_device_shared_users_cnt,
       ips.graph_ip_shared_users_max,
       da.behav_draws_after_payoff_cnt_7d, da.behav_draw_after_payoff_cny_7d
FROM v_users u
LEFT JOIN ev ON ev.user_id = u.user_id
LEFT JOIN device_shared ds ON ds.user_id = u.user_id
LEFT JOIN ip_shared ips ON ips.user_id = u.user_id
LEFT JOIN draws_after da ON da.user_id = u.user_id
"""


BEHAVIOUR_SQL = _events_sql()

COLUMNS: dict[str, float | None] = {
    **{f"app_{name}_cnt_{d}d": 0.0 for name in EVENT_TYPES.values() for d in DAY_WINDOWS},
    "graph_device_shared_users_cnt": 0.0,
    "graph_ip_shared_users_max": 0.0,
    "behav_draws_after_payoff_cnt_7d": 0.0,
    "behav_draw_after_payoff_cny_7d": 0.0,
}

STEPS = (("f_behaviour", BEHAVIOUR_SQL),)
