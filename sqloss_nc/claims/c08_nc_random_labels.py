"""Claim 8 (`nc_random_labels`): neural collapse also happens under random labels, once the net
interpolates them (paper section 6: NC follows from interpolation with WD, whatever the labels).

Rule: claim 4's (`rules.nc_setting`) on the settings with `data.label_noise` > 0 and WD > 0, the
terminal phase starting at the first NC epoch with train acc >= 0.99 on the labels trained on.
Judged from the terminal phase with an absolute NC1 level, it no longer reads a 30x fall from a
spike at initialization (random labels make Σ_B nearly 0 there) as collapse.

Control: the same rule on a net too small to interpolate random labels.

Example: `from sqloss_nc.claims.c08_nc_random_labels import CLAIM; CLAIM.rule`
"""

from __future__ import annotations

from .base import Claim, Evidence, Scale, Verdict, positive
from .c04_nc_square_wd import NC_RULE, nc_claim
from .experiments import CPU_RANDOM, CPU_RANDOM_SMALL, PAPER_FIG11_SMALL, PAPER_RANDOM_NC, RANDOM_NC, as_control


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rows = ev.settings(data__label_noise=positive, optim__weight_decay=positive)
    return nc_claim(ev, rows, "too few settings: no run with data.label_noise > 0 and WD > 0", noisy=True)


CLAIM = Claim(
    number=8,
    id="nc_random_labels",
    sentence="Neural collapse also happens under random labels, once the net interpolates them.",
    source="paper section 6 (NC follows from interpolation with WD, whatever the labels)",
    statistic="per setting with data.label_noise > 0 and WD > 0: claim 4's statistics, the terminal phase from train acc >= 0.99 on the noisy labels",
    rule="claim 4's rule on the noisy-label settings (NC on the labels trained on): " + NC_RULE,
    control="the same rule on a convnet too small to interpolate random labels",
    source_scale=Scale(None, None, None, "not measured in the paper (a prediction)"),
    figures=("ncpanel",),
    judge=judge,
    protocols={"cpu": (CPU_RANDOM, as_control(CPU_RANDOM_SMALL)), "paper": (PAPER_RANDOM_NC, as_control(PAPER_FIG11_SMALL))},
    legacy_configs=(RANDOM_NC,),
)
