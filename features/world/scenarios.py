"""Named scenarios for the simulated lending world, each switched on from a start month.

A scenario is written `NAME` or `NAME@YYYY-MM` (start month); `all` turns every scenario on at
its default start. Default starts are fractions of the simulated period, so a 24-month world
gets the macro shock at month 14, the fraud wave at 16, the sync incident at 18, the
regulation at 19 and the risk-appetite tightening at 20 (months counted from 0).

- `macro_shock`: an economy-wide downturn. Every user's latent risk rises (ramping in over
  `ramp_months`, more for lower income bands), income shocks become more frequent, and the
  bureau shifts: more inquiries, more overdue accounts at other lenders.
- `fraud_wave`: a new pattern, SIM-swap-led account takeovers. Attacker rings take over
  innocent accounts (SIM change, password reset, new shared device, geo jump) and draw the
  whole available line within hours; the draw is never repaid.
- `sync_incident`: for a subset of users (`user_share`), repayments reach the warehouse days
  late (available_time = event_time + 5..20 days) during the incident months. Their true
  risk does not change; a decision made at month end sees an unpaid installment.
- `regulation`: a rule change, written to the scenario calendar for the line policy: cap the
  line of users with >= `max_active_lenders` active lenders, a debt-to-income cap, and a
  freeze for users whose KYC documents expired. The simulated lender does not apply it.
- `risk_appetite`: the risk owner tightens the PD cut-off from the start month (calendar only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# name -> (default start as a fraction of the period, params)
SCENARIOS: dict[str, tuple[float, dict]] = {
    "macro_shock": (
        14 / 24,
        {
            "z_shift": 0.7,  # log-odds added to latent risk at full strength (income band 3)
            "ramp_months": 3,
            "income_shock_multiplier": 2.0,
            "inquiry_multiplier": 1.7,
            "external_overdue_multiplier": 3.0,
        },
    ),
    "fraud_wave": (
        16 / 24,
        {
            "pattern": "sim_swap_takeover",
            "monthly_takeover_rate": 0.0015,  # share of active users taken over each month
            "months": 4,
            "ring_size": [3, 15],
        },
    ),
    "sync_incident": (
        18 / 24,
        {"user_share": 0.035, "months": 2, "delay_days": [5, 20], "source": "installments"},
    ),
    "regulation": (
        19 / 24,
        {
            "max_active_lenders": 5,
            "line_cap_cny": 5000.0,  # line cap for users at or above max_active_lenders
            "dti_cap": 0.5,  # monthly debt service / monthly income proxy
            "kyc_expiry_freeze": True,
        },
    ),
    "risk_appetite": (20 / 24, {"pd_cutoff_shift": -0.02, "line_multiplier": 0.9}),
}
PRESETS = {"all": tuple(SCENARIOS)}
_SPEC = re.compile(r"^(?P<name>[a-z_]+)(?:@(?P<start>\d{4}-\d{2}))?$")


@dataclass(frozen=True)
class Scenario:
    name: str
    start_month: int  # index into the simulated months, 0 = first month
    start: str  # YYYY-MM-DD, first day of that month
    params: dict = field(default_factory=dict)

    def calendar_entry(self) -> dict:
        return {"name": self.name, "start": self.start, "params": dict(self.params)}


def month_index(start: pd.Timestamp, when: str) -> int:
    """Months from `start` to `when` (YYYY-MM)."""
    t = pd.Timestamp(when + "-01")
    return (t.year - start.year) * 12 + (t.month - start.month)


def parse_scenarios(
    specs: list[str] | tuple[str, ...], start: str | pd.Timestamp, months: int
) -> list[Scenario]:
    """Turn `NAME[@YYYY-MM]` strings (and presets) into scenarios sorted by start then name.

    >>> [(s.name, s.start) for s in parse_scenarios(["macro_shock@2024-06"], "2024-01-01", 12)]
    [('macro_shock', '2024-06-01')]
    >>> [s.start_month for s in parse_scenarios(["all"], "2024-01-01", 24)]
    [14, 16, 18, 19, 20]
    """
    start = pd.Timestamp(start).normalize().replace(day=1)
    chosen: dict[str, int] = {}
    for spec in specs:
        m = _SPEC.match(spec.strip())
        if not m:
            raise ValueError(
                f"scenario {spec!r}: expected NAME or NAME@YYYY-MM, e.g. macro_shock@2025-03"
            )
        name, when = m["name"], m["start"]
        names = PRESETS.get(name, (name,))
        for n in names:
            if n not in SCENARIOS:
                known = ", ".join([*SCENARIOS, *PRESETS])
                raise ValueError(f"scenario {name!r} is unknown; known scenarios: {known}")
            idx = (
                month_index(start, when)
                if when
                else min(int(round(SCENARIOS[n][0] * months)), months - 1)
            )
            if not 0 <= idx < months:
                raise ValueError(
                    f"scenario {n}: start {when or idx} is outside the simulated period "
                    f"{start:%Y-%m} .. {(start + pd.DateOffset(months=months - 1)):%Y-%m}"
                )
            chosen[n] = idx
    out = []
    for n, idx in chosen.items():
        when = start + pd.DateOffset(months=idx)
        out.append(Scenario(n, idx, f"{when:%Y-%m-%d}", dict(SCENARIOS[n][1])))
    return sorted(out, key=lambda s: (s.start_month, s.name))


def month_flags(scenarios: list[Scenario], months: int) -> dict[str, np.ndarray]:
    """Per scenario name, a bool array over months: active from its start (for `months` if given)."""
    flags = {}
    for s in scenarios:
        on = np.zeros(months, dtype=bool)
        length = s.params.get("months")
        on[s.start_month : (s.start_month + length) if length else months] = True
        flags[s.name] = on
    return flags


@dataclass(frozen=True)
class ScenarioMonths:
    """The scenarios as the simulated world reads them: by name, and which months each is on."""

    by_name: dict[str, Scenario]
    macro_on: np.ndarray  # bool per world month
    wave_on: np.ndarray
    sync_on: np.ndarray

    @property
    def macro_params(self) -> dict:
        return self.by_name["macro_shock"].params if "macro_shock" in self.by_name else {}


def scenario_months(scenarios: list[Scenario], months: int) -> ScenarioMonths:
    """The scenarios over a world of `months` months (past the extract too: a scenario that is
    still on at the extract stays on for as long as it runs)."""
    flags = month_flags(scenarios, months)
    off = np.zeros(months, bool)
    return ScenarioMonths(
        by_name={s.name: s for s in scenarios},
        macro_on=flags.get("macro_shock", off),
        wave_on=flags.get("fraud_wave", off),
        sync_on=flags.get("sync_incident", off),
    )
