"""Claim 9 (`exp_nc1_batch`): with the exponential loss, NC1 is lower after small-batch SGD than
after full-batch GD (paper appendix J.2, a conjecture).

Rule: the minibatch and the full-batch (`optim.full_batch`) settings of the exponential loss,
compared at matched steps (their steps, steps per epoch x epochs, within `STEP_MATCH`): supported
when SGD's final NC1 is at least `FACTOR` x below GD's beyond the seed spread, with GD's train loss
within `LOSS_MATCH` x of SGD's (otherwise fit and NC1 are confounded); not supported when SGD's
NC1 is not below GD's; else inconclusive (or unmatched steps, or one seed).

Control: the same rule on the same comparison with the square loss, for which J.2 expects NC under
GD as well.

Example: `from sqloss_nc.claims.c09_exp_nc1_batch import CLAIM; CLAIM.control`
"""

from __future__ import annotations

from .base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, Evidence, Scale, Verdict, mean, pairs, square, std
from .experiments import CPU_EXP, CPU_EXP_SQUARE, EXP, PAPER_EXP, PAPER_EXP_SQUARE, as_control
from .rules import Clock, n_seeds, split_gd

FACTOR = 1.5  # SGD's final NC1 at least 1.5x below GD's
LOSS_MATCH = 2.0  # GD's final train loss within 2x of SGD's
STEP_MATCH = 0.1  # steps equal within 10%


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rows = ev.settings(loss__kind=square if control else "exponential")
    sgd, gd = split_gd(rows)
    used = pairs(rows)
    if sgd.empty or gd.empty:
        return Verdict(INCONCLUSIVE, f"too few settings: needs a minibatch and a full-batch run ({len(sgd)} and {len(gd)} here)", used=used)
    s, g = sgd.iloc[0], gd.iloc[0]  # one setting per arm (its seeds averaged)
    steps_s, steps_g = Clock.of(ev, s).steps, Clock.of(ev, g).steps
    nc1_s, nc1_g = mean(s, "nc1"), mean(g, "nc1")
    loss_s, loss_g = mean(s, "train_loss"), mean(g, "train_loss")
    nums = {"NC1 final, SGD": nc1_s, "NC1 final, GD": nc1_g, "train loss, SGD": loss_s, "train loss, GD": loss_g, "steps, SGD": steps_s, "steps, GD": steps_g}
    if not steps_s or abs(steps_g - steps_s) > STEP_MATCH * steps_s:
        return Verdict(INCONCLUSIVE, f"not at matched steps: SGD {steps_s}, GD {steps_g} (compare at equal steps)", nums, used)
    if nc1_s >= nc1_g:
        return Verdict(NOT_SUPPORTED, f"GD's NC1 ({nc1_g:.3g}) is not above SGD's ({nc1_s:.3g}) at {steps_s} steps", nums, used)
    beyond = nc1_g - nc1_s > std(s, "nc1") + std(g, "nc1")
    if nc1_s * FACTOR <= nc1_g and beyond and n_seeds(rows) >= 2:
        if loss_g > LOSS_MATCH * loss_s:
            return Verdict(INCONCLUSIVE, f"SGD's NC1 is {nc1_g / nc1_s:.3g}x lower, but GD has not reached SGD's loss ({loss_g:.3g} vs {loss_s:.3g}): fit and NC1 confounded", nums, used)
        return Verdict(SUPPORTED, f"NC1 {nc1_g / nc1_s:.3g}x lower with small batches at {steps_s} steps and a comparable loss", nums, used)
    return Verdict(INCONCLUSIVE, f"SGD's NC1 {nc1_g / nc1_s:.3g}x lower (needs {FACTOR}x beyond the seed spread, >= 2 seeds)", nums, used)


CLAIM = Claim(
    number=9,
    id="exp_nc1_batch",
    sentence="With the exponential loss, NC1 is lower after small-batch SGD than after full-batch GD.",
    source="paper appendix J.2 (conjecture)",
    statistic="final NC1 and train loss (summary.csv) of the minibatch and the full-batch runs, at matched steps",
    rule=f"supported: matched steps (within {STEP_MATCH:.0%}), SGD's NC1 >= {FACTOR}x below GD's beyond the seed spread, >= 2 seeds, GD's loss within {LOSS_MATCH:g}x of SGD's; "
    "not supported: SGD's NC1 not below GD's; inconclusive otherwise",
    control="the same comparison with the square loss",
    source_scale=Scale(None, None, None, "a conjecture, no experiment"),
    figures=("ncpanel",),
    judge=judge,
    protocols={"cpu": (CPU_EXP, as_control(CPU_EXP_SQUARE)), "paper": (PAPER_EXP, as_control(PAPER_EXP_SQUARE))},
    legacy_configs=(EXP,),
)
