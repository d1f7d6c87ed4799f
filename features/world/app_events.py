"""App events: logins, new phones and SIM changes, password resets, geo jumps; the devices and
IP prefixes fraud rings share, and the takeover gangs' sequences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.world.calendar import DAY, HOUR, MINUTE, NEVER, Calendar, times
from features.world.ids import Pools, as_str, join_ids, tokens
from features.world.months import History
from features.world.parameters import BAIT_HAZARD, IP_POOL
from features.world.users import Users


def app_events(
    *, users: Users, history: History, pools: Pools, cal: Calendar, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """The `app_events` table as the extract holds it, and per user x world month whether the
    user's own fraud signals changed (a new phone or SIM, a password reset, a geo jump)."""
    uid, n, signup_m, signup_t = users.uid, users.n, users.signup_m, users.signup_t
    is_ring, ring_of, bust_m = users.is_ring, users.ring_of, users.bust_m
    drew, ato_ring, fraud_t = history.drew, history.ato_ring, history.fraud_t
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
    dev_tok = tokens(rng, n_dev, "d")
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
            "event_id": as_str(join_ids(ev_uid, np.flatnonzero(ok), "-E")),
            "user_id": as_str(ev_uid),
            "event_type": as_str(
                pc.take(
                    pa.array(
                        ["login", "device_change", "sim_change", "password_reset", "geo_jump"]
                    ),
                    pa.array(typ[ok]),
                )
            ),
            "device_token": as_str(pc.take(dev_tok, pa.array(dev[ok]))),
            "ip_prefix_token": as_str(pc.take(pools.ip_token, pa.array(ip[ok]))),
            "event_time": times(t[ok]),
            "available_time": times(av[ok]),
        }
    ), signals
