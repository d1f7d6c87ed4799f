"""A chunk's users: who they are, when they sign up, their latent risk, and the fraud rings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from features.world.calendar import DAY, HOUR, MINUTE, NEVER, Calendar, times
from features.world.ids import as_str, pseudonymise_many
from features.world.parameters import RING_SHARE, RING_SIZE, Z_HIDDEN_SD, Z_MEAN, round100


@dataclass(frozen=True)
class Users:
    """Per-user arrays of one chunk (position i is the chunk's i-th user)."""

    chunk: int
    uid: pa.Array  # pseudonymous user ids
    age: np.ndarray  # bands 1-5
    income: np.ndarray  # bands 1-5
    city: np.ndarray  # tiers 1-4
    z_obs: np.ndarray  # latent log-odds the observables explain
    z_base: np.ndarray  # ... plus the hidden part: where the user's risk starts
    signup_m: np.ndarray  # month index
    signup_t: np.ndarray  # ns
    line0: np.ndarray  # initial line, CNY
    kyc_expiry: np.ndarray  # ns, midnight
    macro_sens: np.ndarray  # how hard the macro shock hits (more for low income)
    propensity: np.ndarray  # appetite to draw
    acct_util_user: np.ndarray  # utilisation of accounts at other lenders
    sync_u: np.ndarray  # uniform draw: is the user hit by a sync incident
    ring_of: np.ndarray  # ring index within the chunk, -1 if none
    is_ring: np.ndarray
    bust_m: np.ndarray  # month of the ring's bust-out, NEVER if not in a ring

    @property
    def n(self) -> int:
        return len(self.signup_m)


def draw_users(
    rng: np.random.Generator, cal: Calendar, *, chunk: int, first: int, n: int, seed: int
) -> Users:
    """Draw `n` users (global numbers `first`...), all signing up before the extract."""
    data_months = cal.months  # users sign up, and rings form, before the extract
    uid_list = pseudonymise_many([f"sim-{seed}-{i}" for i in range(first, first + n)])
    uid = pa.array(uid_list, pa.string())
    age = rng.choice(5, n, p=[0.22, 0.32, 0.25, 0.14, 0.07]) + 1
    income = rng.choice(5, n, p=[0.25, 0.30, 0.25, 0.13, 0.07]) + 1
    city = rng.choice(4, n, p=[0.15, 0.30, 0.35, 0.20]) + 1
    hidden = rng.normal(0.0, Z_HIDDEN_SD, n)
    age_eff = np.array([0.35, 0.10, -0.10, -0.15, 0.05])[age - 1]
    z_obs = Z_MEAN - 0.4 * (income - 2.5) + age_eff + 0.08 * (city - 2.5)
    z_base = z_obs + hidden
    signup_m = np.where(rng.random(n) < 0.5, 0, rng.integers(0, max(1, data_months - 3), n))
    # organised rings: members sign up together and bust out together
    ring_of = np.full(n, -1)
    n_ring_target = int(round(RING_SHARE * n))
    perm = rng.permutation(n)
    sizes = []
    while sum(sizes) < n_ring_target:
        sizes.append(int(rng.integers(RING_SIZE[0], RING_SIZE[1] + 1)))
    if sizes and sum(sizes) > n:
        sizes = []
    pos = 0
    ring_start = rng.integers(0, max(1, data_months - 7), len(sizes))
    ring_bust = ring_start + rng.integers(6, 10, len(sizes))
    for k, s in enumerate(sizes):  # a loop over rings (tens per chunk), not users
        members = perm[pos : pos + s]
        ring_of[members] = k
        signup_m[members] = np.minimum(ring_start[k] + rng.integers(0, 2, s), data_months - 1)
        pos += s
    is_ring = ring_of >= 0
    bust_m = np.where(is_ring, ring_bust[np.maximum(ring_of, 0)] + (rng.random(n) < 0.3), NEVER)
    z_base = np.where(is_ring, np.minimum(z_base, Z_MEAN), z_base)  # rings look like good customers
    signup_t = cal.month_start(signup_m) + (rng.random(n) * cal.days_in(signup_m) * DAY).astype(
        np.int64
    )
    signup_t = np.minimum(signup_t, cal.extract - HOUR)
    line0 = round100(
        np.clip(
            np.exp(rng.normal(np.log(2500 + 2500 * income), 0.35) - 0.3 * (z_obs - Z_MEAN)),
            1000,
            50000,
        )
    )
    kyc_expiry = signup_t + (rng.uniform(6, 72, n) * 30.4 * DAY).astype(np.int64)
    kyc_expiry = (kyc_expiry // DAY) * DAY
    propensity = rng.normal(-1.0, 1.0, n)
    acct_util_user = np.clip(rng.beta(2, 3, n) + 0.08 * (z_base - Z_MEAN), 0.02, 0.98)
    sync_u = rng.random(n)  # drawn always, so scenarios do not shift the random streams
    return Users(
        chunk=chunk,
        uid=uid,
        age=age,
        income=income,
        city=city,
        z_obs=z_obs,
        z_base=z_base,
        signup_m=signup_m,
        signup_t=signup_t,
        line0=line0,
        kyc_expiry=kyc_expiry,
        macro_sens=1.0 + 0.2 * (3 - income),
        propensity=propensity,
        acct_util_user=acct_util_user,
        sync_u=sync_u,
        ring_of=ring_of,
        is_ring=is_ring,
        bust_m=bust_m,
    )


def users_table(users: Users, cal: Calendar, rng: np.random.Generator) -> pd.DataFrame:
    """The `users` table: every user signed up before the extract, and is in it (one whose row
    reached the warehouse after it is available at the extract)."""
    u = users
    return pd.DataFrame(
        {
            "user_id": as_str(u.uid),
            "age_band": u.age.astype(np.int64),
            "income_band": u.income.astype(np.int64),
            "city_tier": u.city.astype(np.int64),
            "kyc_expiry_date": times(u.kyc_expiry),
            "initial_line_cny": u.line0.astype(np.float64),
            "event_time": times(u.signup_t),
            "available_time": times(
                np.minimum(
                    u.signup_t + (rng.exponential(10.0, u.n) * MINUTE).astype(np.int64),
                    cal.extract,
                )
            ),
        }
    )
