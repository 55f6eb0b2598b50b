"""Claim 13 (`nc_needs_wd`): weight decay is necessary for neural collapse under the square loss
(paper section 6: NC is derived from the critical points of the loss *with* weight decay).

Rule: the square-loss, true-label settings at the largest WD ("with") against those at the
smallest WD ("without", which must be 0 for the evidence), at matched steps: supported when every
setting "with" passes claim 4's rule (`rules.nc_setting`) and every setting "without" fails it
(not supported) or ends with NC1 >= `GAP` x the "with" settings' largest final NC1, beyond the
seed spread; not supported when the "without" settings collapse too (claim 4's rule supported on
them); else inconclusive.

Control: the same rule with two positive weight decays (the largest against half of it): both collapse, so
"necessary" must fail.

Example: `from sqloss_nc.claims.c13_nc_needs_wd import CLAIM; CLAIM.control`
"""

from __future__ import annotations

import numpy as np

from .base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, Evidence, Scale, Verdict, label, mean, no_noise, num, pairs, positive, square, std
from .experiments import CPU_NC, FIG6, PAPER_FIG6, PAPER_FIG6_HALFWD, PAPER_FIG6_NOWD, as_control
from .rules import Clock, nc_setting

GAP = 10.0  # without WD, final NC1 >= 10x the largest with WD


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rows = ev.settings(loss__kind=square, data__label_noise=no_noise)
    if control:
        rows = ev.settings(loss__kind=square, data__label_noise=no_noise, optim__weight_decay=positive)
    used = pairs(rows)
    wds = sorted({num(v) for v in rows["optim.weight_decay"]}) if not rows.empty else []
    if len(wds) < 2 or (not control and wds[0] != 0):
        return Verdict(INCONCLUSIVE, f"too few settings: needs square-loss runs at WD 0 and WD > 0 ({'two positive WDs' if control else 'has ' + ', '.join(map(str, wds))})", used=used)
    hi = rows[rows["optim.weight_decay"].map(num) == wds[-1]]
    lo = rows[rows["optim.weight_decay"].map(num) == wds[0]]
    steps = {Clock.of(ev, r).steps for _, r in rows.iterrows()}
    nums = {"steps": ", ".join(str(s) for s in sorted(steps))}
    with_wd = [(label(r), *nc_setting(ev, r)) for _, r in hi.iterrows()]
    without = [(label(r), *nc_setting(ev, r)) for _, r in lo.iterrows()]
    for lab, v, _, n in with_wd + without:
        nums[f"NC1 final [{lab}]"] = n.get("NC1 final")
    nc1_hi = max(mean(r, "nc1") + std(r, "nc1") for _, r in hi.iterrows())
    nc1_lo = min(mean(r, "nc1") - std(r, "nc1") for _, r in lo.iterrows())
    gap = nc1_lo / nc1_hi if nc1_hi > 0 else float("nan")
    nums["smallest NC1 without / largest with (beyond the seed spread)"] = gap
    if max(steps) > 1.1 * min(steps):
        return Verdict(INCONCLUSIVE, f"not at matched steps ({nums['steps']})", nums, used)
    if all(v == SUPPORTED for _, v, _, _ in without):
        return Verdict(NOT_SUPPORTED, f"NC happens at WD {wds[0]:g} too: " + "; ".join(w for _, _, w, _ in without), nums, used)
    if not all(v == SUPPORTED for _, v, _, _ in with_wd):
        return Verdict(INCONCLUSIVE, f"no collapse established at WD {wds[-1]:g}: " + "; ".join(f"{lab}: {v} ({w})" for lab, v, w, _ in with_wd), nums, used)
    apart = not np.isnan(gap) and gap >= GAP
    if all(v == NOT_SUPPORTED for _, v, _, _ in without) or apart:
        return Verdict(SUPPORTED, f"NC at WD {wds[-1]:g}, none at WD {wds[0]:g} (NC1 apart {gap:.3g}x)", nums, used)
    return Verdict(INCONCLUSIVE, f"NC at WD {wds[-1]:g}; at WD {wds[0]:g}: " + "; ".join(f"{v} ({w})" for _, v, w, _ in without), nums, used)


CLAIM = Claim(
    number=13,
    id="nc_needs_wd",
    sentence="Weight decay is necessary for neural collapse under the square loss: without it NC1 does not collapse.",
    source="paper section 6 (NC from the critical points of the square loss with weight decay)",
    statistic="claim 4's per-setting NC rule at the largest and the smallest WD (0) of square-loss, true-label settings at matched steps; their final NC1 (summary.csv) against the seed spread",
    rule=f"supported: every WD > 0 setting collapses (claim 4's rule) and every WD-0 setting does not, or ends with NC1 >= {GAP:g}x beyond the seed spread; "
    "not supported: the WD-0 settings collapse too; else inconclusive",
    control="the same rule with the largest WD against half of it",
    source_scale=Scale(None, None, None, "derived (section 6), no WD-0 run in the paper"),
    figures=("fig6", "ncpanel"),
    judge=judge,
    protocols={"cpu": (CPU_NC, as_control(CPU_NC)), "paper": (PAPER_FIG6, PAPER_FIG6_NOWD, as_control(PAPER_FIG6), as_control(PAPER_FIG6_HALFWD))},
    legacy_configs=(FIG6,),
)
