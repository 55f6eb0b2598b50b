"""Claim 18 (`rho_lagrange_init`): claim 1 in the toy model the theory is about: under Lagrange
normalization (layers compute with V/||V||, ρ an explicit factor) with weight decay, the final ρ
is nearly independent of the initialization (paper sections 3, 5; Eq. 5).

Rule: claim 1's (`c01_rho_wd_init.judge_init_independence`) on the `model.normalization: lagrange`
settings with WD > 0.

Control: the same rule on the Lagrange runs with WD 0.

Example: `from sqloss_nc.claims.c18_rho_lagrange_init import CLAIM; CLAIM.protocols["cpu"]`
"""

from __future__ import annotations

from .base import Claim, Evidence, Scale, Verdict, positive, zero
from .c01_rho_wd_init import CLAIM as CLAIM1, judge_init_independence
from .experiments import CPU_LAGRANGE, PAPER_LAGRANGE, as_control


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rows = ev.settings(optim__weight_decay=zero if control else positive, model__normalization="lagrange")
    return judge_init_independence(ev, rows, "Lagrange, WD 0" if control else "Lagrange, WD > 0")


CLAIM = Claim(
    number=18,
    id="rho_lagrange_init",
    sentence="Under Lagrange normalization with weight decay the final ρ is nearly independent of the initialization.",
    source="paper sections 3, 5 (the normalized dynamics, Eq. 5)",
    statistic="claim 1's statistic on the Lagrange-normalized settings with WD > 0",
    rule="claim 1's rule: " + CLAIM1.rule,
    control="the same rule on the Lagrange runs with WD 0",
    source_scale=Scale(None, None, None, "the theory's model (no figure)"),
    figures=("fig2",),
    judge=judge,
    protocols={"cpu": (CPU_LAGRANGE, as_control(CPU_LAGRANGE)), "paper": (PAPER_LAGRANGE, as_control(PAPER_LAGRANGE))},
)
