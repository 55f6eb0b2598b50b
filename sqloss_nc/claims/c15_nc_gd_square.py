"""Claim 15 (`nc_gd_square`): with the square loss, neural collapse appears under full-batch GD as
well as under SGD (paper appendix J.2: unlike the exponential loss, the square loss needs no SGD
noise for NC).

Rule: claim 4's (`rules.nc_setting`, combined by `rules.combine`) on the full-batch
(`optim.full_batch`) square-loss settings with WD > 0 and true labels.

Control: the same rule on the full-batch runs without weight decay.

Example: `from sqloss_nc.claims.c15_nc_gd_square import CLAIM; CLAIM.protocols["cpu"][0].steps`
"""

from __future__ import annotations

from .base import Claim, Evidence, Scale, Verdict, is_true, no_noise, positive, square, zero
from .c04_nc_square_wd import NC_RULE, nc_claim
from .experiments import CPU_NC_GD, PAPER_NC_GD, as_control


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rows = ev.settings(loss__kind=square, optim__full_batch=is_true, optim__weight_decay=zero if control else positive, data__label_noise=no_noise)
    return nc_claim(ev, rows, f"too few settings: no full-batch square-loss run with WD {'0' if control else '> 0'}")


CLAIM = Claim(
    number=15,
    id="nc_gd_square",
    sentence="With the square loss and weight decay, neural collapse appears under full-batch gradient descent as well as under SGD.",
    source="paper appendix J.2",
    statistic="claim 4's statistics on the full-batch square-loss settings with WD > 0",
    rule="claim 4's rule on the full-batch settings: " + NC_RULE,
    control="the same rule on the full-batch runs with WD 0",
    source_scale=Scale(None, None, None, "stated in J.2, no experiment"),
    figures=("ncpanel",),
    judge=judge,
    protocols={"cpu": (CPU_NC_GD, as_control(CPU_NC_GD)), "paper": (PAPER_NC_GD, as_control(PAPER_NC_GD))},
)
