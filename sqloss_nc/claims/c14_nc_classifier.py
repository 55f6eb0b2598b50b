"""Claim 14 (`nc_classifier`): with the square loss and weight decay the classifier aligns with the
class means (NC3), its rows form a simplex (the classifier-side NC2) and the net decides as the
nearest class mean (NC4) (paper section 6, Eqs. 33, 36).

Rule per square-loss, true-label setting with WD > 0, in the terminal phase: supported when the
final NC3 (`nc3_centered`: the classifier rows centred, the bias-free head's common component
removed; `nc3` where absent) <= `NC3_MAX`, NC4 <= `NC4_MAX` and every classifier-side NC2 <=
`rules.NC2_MAX`; not supported when, >= 5τ into the phase, one of them stays >= 2x its bound;
else inconclusive. Combined with `rules.combine`.

Control: the same rule on the WD-0 runs.

Example: `from sqloss_nc.claims.c14_nc_classifier import CLAIM; CLAIM.statistic`
"""

from __future__ import annotations

import math

from .base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, Evidence, Scale, Verdict, mean, no_noise, positive, square, zero
from .experiments import CPU_NC, FIG6, PAPER_FIG6, PAPER_FIG6_NOWD, QUICKSTART, as_control
from .rules import NC2_MAX, judge_each, long_in_terminal_phase, nc2_columns, terminal_phase

NC3_MAX = 0.2
NC4_MAX = 0.01


def _setting(ev: Evidence, r) -> tuple[str, str, dict]:
    nc3 = mean(r, "nc3_centered")
    nc3 = mean(r, "nc3") if math.isnan(nc3) else nc3
    nc4 = mean(r, "nc4")
    nc2_cols = [k for k in nc2_columns(r) if k.endswith("_weights")]
    nc2 = max((mean(r, k) for k in nc2_cols if not math.isnan(mean(r, k))), default=float("nan"))
    tag = f"[{r['setting']}]"
    nums = {f"NC3 {tag}": nc3, f"NC4 {tag}": nc4, f"classifier NC2 {tag}": nc2}
    vals = {"NC3": (nc3, NC3_MAX), "NC4": (nc4, NC4_MAX), "classifier NC2": (nc2, NC2_MAX)}
    if any(math.isnan(v) for v, _ in vals.values()):
        return INCONCLUSIVE, "NC3, NC4 or the classifier NC2 not measured", nums
    start = terminal_phase(ev, r)
    if start is None:
        return INCONCLUSIVE, f"the net does not interpolate (train acc {mean(r, 'train_acc'):.3f})", nums
    text = ", ".join(f"{k} {v:.3g}" for k, (v, _) in vals.items())
    if all(v <= b for v, b in vals.values()):
        return SUPPORTED, text, nums
    long_enough, lived = long_in_terminal_phase(ev, r, start)
    if long_enough and any(v >= 2 * b for v, b in vals.values()):
        return NOT_SUPPORTED, f"{text}, {lived}", nums
    return INCONCLUSIVE, f"{text} (bounds NC3 {NC3_MAX}, NC4 {NC4_MAX}, NC2 {NC2_MAX}), {lived}", nums


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rows = ev.settings(loss__kind=square, optim__weight_decay=zero if control else positive, data__label_noise=no_noise)
    if rows.empty:
        return Verdict(INCONCLUSIVE, f"too few settings: no square-loss run with WD {'0' if control else '> 0'} and true labels")
    return judge_each(ev, rows, _setting)


CLAIM = Claim(
    number=14,
    id="nc_classifier",
    sentence="With the square loss and weight decay the classifier aligns with the class means (NC3), its rows become equinorm and equiangular (classifier-side NC2), and the net decides as the nearest class mean (NC4).",
    source="paper section 6, Eqs. 33, 36",
    statistic="final nc3_centered (nc3 where absent), nc4, the classifier-side NC2 of `rules.nc2_columns` (nc2_equinorm_weights; for C = 2 nc2_maxangle_weights only with a bias, for C > 2 nc2_equiangular_weights) (summary.csv), in the terminal phase",
    rule=f"per setting: supported if NC3 <= {NC3_MAX}, NC4 <= {NC4_MAX} and classifier NC2 <= {NC2_MAX}; not supported if >= 5τ into the terminal phase one stays >= 2x its bound; else inconclusive; combined as claim 4",
    control="the same rule on the WD-0 runs",
    source_scale=Scale(None, None, None, "derived (section 6)"),
    figures=("ncpanel",),
    judge=judge,
    protocols={"cpu": (CPU_NC, as_control(CPU_NC)), "paper": (PAPER_FIG6, as_control(PAPER_FIG6_NOWD))},
    legacy_configs=(FIG6, QUICKSTART),
    legacy_controls=(FIG6,),
)
