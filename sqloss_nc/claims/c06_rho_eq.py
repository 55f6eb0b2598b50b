"""Claim 6 (`rho_eq`): at equilibrium ρ = μ/(M + λ) (Eq. 11), with μ, M the mean and mean square of
the normalized margins (paper section 3). An instrument check: Eq. 11 is equivalent to
d||W_L||/dt = 0, so it holds wherever ρ_L has stopped moving and checks the bookkeeping of ρ, μ, M
and λ' rather than the theory's dynamics.

Rule: over the square-loss runs with WD > 0 and true labels (any experiment) that lived >= 5τ with
ρ settled (|d ln ρ/dτ| < 5% over the last 2τ; the others are listed, not judged): theory.csv
`rho_eq` within `OK` in every one (the maximum, not the median) -> supported; some run beyond
`NOT` -> not supported; no settled run, or in between -> inconclusive.

Control: the same rule on runs stopped at 0.5τ (far from equilibrium): no run is settled, so it
must not pass.

Example: `from sqloss_nc.claims.c06_rho_eq import CLAIM; CLAIM.rule`
"""

from __future__ import annotations

from .base import INCONCLUSIVE, Claim, Evidence, Scale, Verdict, no_noise, pairs, positive
from .experiments import CPU_FIG2, CPU_FIG2_EARLY, FIG2, FIG6, PAPER_FIG2, PAPER_FIG2_EARLY, QUICKSTART, as_control
from .rules import instrument, rel_errors, settledness

OK, NOT = 0.1, 0.3


def settled_rows(ev: Evidence, rows):
    """(the settings >= 5τ with ρ settled, "setting: its settledness" of the others)."""
    states = [settledness(ev, r, "rho") for _, r in rows.iterrows()]
    keep = [s.ok for s in states]
    left = [f"{r['setting']}: {s.text()}" for (_, r), s in zip(rows.iterrows(), states) if not s.ok]
    return (rows[keep] if len(rows) else rows), left


def _settings(left: list[str]) -> str:
    """The unsettled settings in a few words (the first two, then a count)."""
    more = f" and {len(left) - 2} more" if len(left) > 2 else ""
    return "; ".join(left[:2]) + more


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rows = ev.settings(loss__kind="square", optim__weight_decay=positive, data__label_noise=no_noise)
    if rows.empty:
        return Verdict(INCONCLUSIVE, "too few settings: no square-loss run with WD > 0 (theory.csv row rho_eq)")
    ok_rows, left = settled_rows(ev, rows)
    if ok_rows.empty:
        return Verdict(INCONCLUSIVE, f"too few steps: ρ is not settled after >= 5τ in any run ({_settings(left)}), and Eq. 11 is an equilibrium", used=pairs(rows))
    errs = rel_errors(ev, "rho_eq", ok_rows)
    v, why, nums = instrument(errs, OK, NOT, "ρ_L against κμ/(κ²M + λ′)")
    if errs.empty:
        return Verdict(INCONCLUSIVE, "no theory.csv row rho_eq for the settled runs", used=pairs(ok_rows))
    if left:
        why += f" (not judged, unsettled: {_settings(left)})"
    return Verdict(v, why, nums, pairs(ok_rows))


CLAIM = Claim(
    number=6,
    id="rho_eq",
    sentence="At equilibrium ρ = μ/(M + λ) (Eq. 11), with μ, M the mean and mean square of the normalized margins.",
    source="paper section 3 (Eq. 11), the theory checks (an instrument check)",
    statistic="theory.csv rho_eq (final ρ_L against κμ/(κ²M + λ′)): maximum relative error over the square-loss runs with WD > 0 that lived >= 5τ with ρ settled (any experiment)",
    rule=f"supported: every settled run within {OK}; not supported: a settled run beyond {NOT}; inconclusive: no settled run, or in between",
    control="the same rule on runs stopped at 0.5τ",
    source_scale=Scale(1000, 10000, 10, "WD 0.01"),
    figures=("fig2", "fig14"),
    judge=judge,
    protocols={"cpu": (CPU_FIG2, as_control(CPU_FIG2_EARLY)), "paper": (PAPER_FIG2, as_control(PAPER_FIG2_EARLY))},
    legacy_configs=(FIG2, FIG6, "configs/paper/binary_bn_wd.yaml", QUICKSTART),
    any_experiment=True,
)
