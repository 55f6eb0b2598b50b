"""Claim 4 (`nc_square_wd`): with the square loss and weight decay, NC1 and the NC2 measures fall
towards 0 (paper section 6, Fig. 6).

Rule (`rules.nc_setting`, per square-loss setting with WD > 0 and true labels, combined with
`rules.combine`): judged in the terminal phase (from the first NC epoch with train error 0), never
from a peak that includes epoch 0. Supported: final NC1 <= 0.1 having fallen >= 2x since the
terminal phase began, every classifier-side NC2 <= 0.2 (equinorm of ||w_c||; equiangularity for
C > 2; for C = 2 the max-angle only with a classifier bias: a bias-free head keeps the common row
that Eq. 35 needs, `rules.nc2_columns`; the class-means NC2 too for C > 2: with C = 2 it is 0 by
construction), and Tr(Σ_W)/Tr(Σ_B) <= 0.1. Not supported: in the terminal phase >= 5τ, final
NC1 >= 1 and no longer falling. The claim is supported only when every setting is.

Control: the same rule on the WD-0 runs of the same protocol (large init 3), where the theory
derives no collapse.

Example: `from sqloss_nc.claims.c04_nc_square_wd import CLAIM; CLAIM.control`
"""

from __future__ import annotations

import pandas as pd

from .base import INCONCLUSIVE, Claim, Evidence, Scale, Verdict, no_noise, positive, square, zero
from .experiments import CPU_NC, FIG6, PAPER_FIG6, PAPER_FIG6_NOWD, QUICKSTART, RANDOM_NC, as_control
from .rules import NC1_HIGH, NC1_LEVEL, NC1_TPT_FALL, NC2_MAX, TRACE_RATIO_MAX, judge_each, nc_setting


def nc_claim(ev: Evidence, rows: pd.DataFrame, empty_why: str, noisy: bool = False) -> Verdict:
    """`nc_setting` on every row, combined (shared by the NC claims)."""
    if rows.empty:
        return Verdict(INCONCLUSIVE, empty_why)

    def setting(ev: Evidence, r: pd.Series):
        v, why, n = nc_setting(ev, r, noisy)
        return v, why, {f"{k} [{r['setting']}]": x for k, x in n.items()}

    return judge_each(ev, rows, setting)


NC_RULE = (
    f"per setting, in the terminal phase (from the first NC epoch with train error 0): supported if the final NC1 <= {NC1_LEVEL} having fallen >= {NC1_TPT_FALL:g}x "
    f"since, every classifier-side NC2 <= {NC2_MAX} and Tr(Σ_W)/Tr(Σ_B) <= {TRACE_RATIO_MAX}; not supported if >= 5τ in the terminal phase, NC1 >= {NC1_HIGH:g} and no "
    "longer falling; inconclusive otherwise or without interpolation. Claim: supported only if every setting is, not supported if some is and none supported"
)


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rows = ev.settings(loss__kind=square, optim__weight_decay=zero if control else positive, data__label_noise=no_noise)
    return nc_claim(ev, rows, f"too few settings: no square-loss run with WD {'0' if control else '> 0'} and true labels")


CLAIM = Claim(
    number=4,
    id="nc_square_wd",
    sentence="With the square loss and weight decay, NC1 and the NC2 measures fall towards 0.",
    source="paper section 6, Fig. 6",
    statistic="per square-loss setting with WD > 0 and true labels: NC1 over the terminal phase (nc_epochs.csv nc1_mean, train acc from epochs.csv); final classifier-side NC2 and trace_ratio (summary.csv)",
    rule=NC_RULE,
    control="the same rule on the WD-0 runs (init 3)",
    source_scale=Scale(350, 10000, 1, "binary CIFAR-10, WD 0.01"),
    figures=("fig6", "ncpanel"),
    judge=judge,
    protocols={"cpu": (CPU_NC, as_control(CPU_NC)), "paper": (PAPER_FIG6, as_control(PAPER_FIG6_NOWD))},
    legacy_configs=(FIG6, "configs/paper/binary_bn_wd.yaml", RANDOM_NC, QUICKSTART),
    legacy_controls=(FIG6, RANDOM_NC),
)
