"""Claim 1 (`rho_wd_init`): with BatchNorm and weight decay the final ρ is nearly independent of the
initialization (paper section 7, Fig. 2 top, Fig. 14).

Rule: over the BN settings with WD > 0 grouped by `model.init_scale` (every setting of an init is
kept; several are averaged), supported when max/min of the final ρ over inits <= `RATIO_SAME` and
every setting lived >= 5 τ with ρ settled (|d ln ρ/dτ| < 5% over the last 2 τ); not supported when
the ratio exceeds `RATIO_SAME` beyond the seed spread with every ρ settled; else inconclusive. The
product norm ρ_BN (what the paper's figures plot) is shown next to ρ_L.

Control: the same rule on the WD-0 runs (no τ there: settled over the last 10% of the steps), where
ρ depends on the init (claim 2), so "nearly independent" must fail.

Example: `from sqloss_nc.claims.c01_rho_wd_init import CLAIM; CLAIM.protocols["cpu"]`
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, Evidence, Scale, Verdict, _g, mean, pairs, positive, std, zero
from .experiments import CPU_FIG2, FIG2, PAPER_FIG2, as_control
from .rules import Settled, rho_by_init, settledness

RATIO_SAME = 1.5  # final ρ over inits within a factor 1.5 = "nearly independent"


def init_table(ev: Evidence, rows: pd.DataFrame) -> tuple[dict[float, float], dict[float, float], dict[str, Settled], dict[str, float]]:
    """Per init: mean final ρ over its settings, its seed std, each setting's settledness, and the numbers to show."""
    rho, spread, settled, nums = {}, {}, {}, {}
    for init, g in rho_by_init(ev, rows).items():
        rho[init] = float(np.mean([mean(r, "rho") for _, r in g.iterrows()]))
        spread[init] = float(np.mean([std(r, "rho") for _, r in g.iterrows()]))
        bn = [mean(r, "rho_bn") for _, r in g.iterrows()]
        nums[f"final ρ (init {_g(init)})"] = rho[init]
        if not all(np.isnan(bn)):
            nums[f"final ρ_BN (init {_g(init)})"] = float(np.nanmean(bn))
        for _, r in g.iterrows():
            settled[str(r["setting"])] = s = settledness(ev, r, "rho")
            nums[f"ρ settledness [{r['setting']}]"] = s.rate
    return rho, spread, settled, nums


def judge_init_independence(ev: Evidence, rows: pd.DataFrame, what: str) -> Verdict:
    """Claim 1's rule on the given settings (shared with claim 18 under Lagrange normalization)."""
    used = pairs(rows)
    rho, spread, settled, nums = init_table(ev, rows)
    if len(rho) < 2:
        return Verdict(INCONCLUSIVE, f"too few settings: needs >= 2 values of model.init_scale ({what}), has {len(rho)}", nums, used)
    lo, hi = min(rho, key=rho.get), max(rho, key=rho.get)
    ratio = rho[hi] / rho[lo] if rho[lo] > 0 else float("inf")
    nums["max/min over inits"] = ratio
    unsettled = {k: s for k, s in settled.items() if not s.ok}
    if unsettled:
        k, s = next(iter(unsettled.items()))
        return Verdict(INCONCLUSIVE, f"too few steps: ρ not settled in {len(unsettled)} of {len(settled)} settings, e.g. {k}: {s.text()} (needs >= 5τ and < 5%/τ); max/min over inits {ratio:.2f}", nums, used)
    if ratio <= RATIO_SAME:
        return Verdict(SUPPORTED, f"final ρ within {ratio:.2f}x over inits {', '.join(_g(i) for i in rho)}, settled", nums, used)
    if rho[hi] - rho[lo] > spread[hi] + spread[lo]:
        return Verdict(NOT_SUPPORTED, f"final ρ differs {ratio:.2f}x (> {RATIO_SAME}) between inits, settled, beyond the seed spread", nums, used)
    return Verdict(INCONCLUSIVE, f"final ρ differs {ratio:.2f}x but within the seed spread", nums, used)


def judge(ev: Evidence, control: bool = False) -> Verdict:
    wd = zero if control else positive
    rows = ev.settings(optim__weight_decay=wd, model__normalization="batchnorm")
    return judge_init_independence(ev, rows, "BN, WD 0" if control else "BN, WD > 0")


CLAIM = Claim(
    number=1,
    id="rho_wd_init",
    sentence="With BatchNorm and weight decay the final ρ is nearly independent of the initialization.",
    source="paper section 7, Fig. 2 (top), Fig. 14",
    statistic="final ρ (summary.csv rho_mean; rho_bn shown) per model.init_scale over BN settings with WD > 0; its settledness |d ln ρ/dτ| over the last 2τ (epochs.csv)",
    rule=f"supported: max/min of the final ρ over inits <= {RATIO_SAME}, every setting >= 5τ and settled (< 5%/τ); "
    f"not supported: ratio > {RATIO_SAME} beyond the seed spread, settled; inconclusive: a ρ not settled, < 5τ, or < 2 inits",
    control="the same rule on the WD-0 runs (ρ depends on the init there)",
    source_scale=Scale(1000, 10000, 10, "init {0.01, 1, 5} x WD {0.01, 0}"),
    figures=("fig2", "fig14"),
    judge=judge,
    protocols={"cpu": (CPU_FIG2, as_control(CPU_FIG2)), "paper": (PAPER_FIG2, as_control(PAPER_FIG2))},
    legacy_configs=(FIG2, "configs/paper/fig3_margins.yaml"),
    legacy_controls=(FIG2, "configs/paper/fig3_margins.yaml"),
)
