"""Claim 17 (`rho_nowd_direction`): without weight decay ρ grows from small initializations and
decays from large ones (paper section 7, Fig. 2 bottom).

Rule, over the settings with WD 0 (compared at matched steps): the smallest init's final ρ over
its ρ at epoch 0 (epochs.csv) and the largest init's. Supported when the smallest grew >= `FACTOR`x
and the largest fell >= `FACTOR`x, each beyond its seed spread; not supported when the smallest
fell or the largest grew by `FACTOR`x; else inconclusive (also with < 2 inits).

Control: the same rule on runs stopped after 100 steps (0.5% of the evidence's).

Example: `from sqloss_nc.claims.c17_rho_nowd_direction import CLAIM; CLAIM.rule`
"""

from __future__ import annotations

from .base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, Evidence, Scale, Verdict, _g, pairs, std, zero
from .experiments import CPU_FIG2, CPU_FIG2_EARLY, FIG2, PAPER_FIG2, PAPER_FIG2_EARLY, as_control
from .rules import rho_by_init

FACTOR = 1.2


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rows = ev.settings(optim__weight_decay=zero)
    groups = rho_by_init(ev, rows)
    used = pairs(rows)
    if len(groups) < 2:
        return Verdict(INCONCLUSIVE, f"too few settings: needs >= 2 inits with WD 0, has {len(groups)}", used=used)
    nums, moves = {}, {}
    for init in (min(groups), max(groups)):
        r = groups[init].iloc[0]
        c = ev.curve("epochs", r, "rho")
        if len(c) < 2 or c.iloc[0] <= 0:
            return Verdict(INCONCLUSIVE, f"no ρ curve from epoch 0 for init {_g(init)}", nums, used)
        moves[init] = float(c.iloc[-1] / c.iloc[0])
        beyond = abs(c.iloc[-1] - c.iloc[0]) > std(r, "rho")
        nums[f"final ρ / initial ρ (init {_g(init)})"] = moves[init]
        nums[f"beyond the seed spread (init {_g(init)})"] = bool(beyond)
    small, large = moves[min(groups)], moves[max(groups)]
    if small <= 1 / FACTOR or large >= FACTOR:
        return Verdict(NOT_SUPPORTED, f"ρ moved x{small:.3g} from the smallest init and x{large:.3g} from the largest", nums, used)
    ok = all(nums[k] for k in nums if k.startswith("beyond"))
    if small >= FACTOR and large <= 1 / FACTOR and ok:
        return Verdict(SUPPORTED, f"ρ grew {small:.3g}x from init {_g(min(groups))} and fell {1 / large:.3g}x from init {_g(max(groups))}", nums, used)
    return Verdict(INCONCLUSIVE, f"ρ moved x{small:.3g} (smallest init) and x{large:.3g} (largest): needs {FACTOR}x each way beyond the seed spread", nums, used)


CLAIM = Claim(
    number=17,
    id="rho_nowd_direction",
    sentence="Without weight decay ρ grows from small initializations and decays from large ones.",
    source="paper section 7, Fig. 2 (bottom)",
    statistic="final ρ over ρ at epoch 0 (epochs.csv) of the smallest and the largest init with WD 0",
    rule=f"supported: the smallest init's ρ grew >= {FACTOR}x and the largest's fell >= {FACTOR}x, beyond the seed spread; not supported: the smallest fell or the largest grew {FACTOR}x; else inconclusive",
    control="the same rule on runs stopped after 100 steps",
    source_scale=Scale(1000, 10000, 10, "init {0.01, 1, 5}, WD 0"),
    figures=("fig2", "fig15"),
    judge=judge,
    protocols={"cpu": (CPU_FIG2, as_control(CPU_FIG2_EARLY)), "paper": (PAPER_FIG2, as_control(PAPER_FIG2_EARLY))},
    legacy_configs=(FIG2,),
)
