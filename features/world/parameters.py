"""The world's parameters (the README's "What the world models" table gives the reasons), and
the two small formulas every part of the world shares."""

from __future__ import annotations

import numpy as np

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


def sigmoid(x):
    """Latent log-odds -> probability (`sigmoid(z)` is the true 12-month PD)."""
    return 1.0 / (1.0 + np.exp(-x))


def round100(x):
    """Down to whole hundreds of CNY (lines and draws are set in hundreds)."""
    return np.floor(np.asarray(x) / 100.0) * 100.0
