"""Claim 2 (`rho_nowd_init`): without weight decay ρ depends on the initialization, and large
initializations generalize worse (paper section 7, Fig. 2 bottom, Figs. 15, 17).

Rule: over the settings with WD 0 grouped by `model.init_scale`, compared at matched steps:
supported when max/min of the final ρ over inits >= `RATIO_DIFFERENT`, ρ settled (it moved < 5%
over the last 10% of the epochs: no τ without WD), every run interpolates (train acc >= 0.99),
and the largest init's test error exceeds the smallest's by more than the noise floor (the two
seed stds plus the binomial errors √(p(1−p)/n_test) in quadrature), with >= 2 seeds; not
supported when the ρ ratio is < `RATIO_DIFFERENT` with ρ settled, or the largest init's test error
is lower by more than the floor; else inconclusive.

Control: the same rule on the WD > 0 runs, where ρ forgets the init (claim 1).

Example: `from sqloss_nc.claims.c02_rho_nowd_init import CLAIM; CLAIM.rule`
"""

from __future__ import annotations

from .base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, Evidence, Scale, Verdict, _g, mean, pairs, positive, zero
from .c01_rho_wd_init import init_table
from .experiments import CPU_FIG2, FIG2, PAPER_FIG2, as_control
from .rules import INTERPOLATING_ACC, difference_floor, interpolates, n_seeds, rho_by_init

RATIO_DIFFERENT = 2.0  # final ρ over inits apart by 2x or more = "depends"


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rows = ev.settings(optim__weight_decay=positive if control else zero)
    used = pairs(rows)
    groups = rho_by_init(ev, rows)
    rho, _, settled, nums = init_table(ev, rows)
    if len(groups) < 2:
        return Verdict(INCONCLUSIVE, f"too few settings: needs >= 2 values of model.init_scale with WD {'> 0' if control else '0'}, has {len(groups)}", nums, used)
    inits = sorted(groups)
    ratio = max(rho.values()) / min(rho.values()) if min(rho.values()) > 0 else float("inf")
    small, large = groups[inits[0]].iloc[0], groups[inits[-1]].iloc[0]
    d_err = mean(large, "test_error") - mean(small, "test_error")
    floor = difference_floor(ev, large, small, "test_error", error_rate=True)
    nums.update({"max/min over inits": ratio, f"test error init {_g(inits[-1])} − init {_g(inits[0])}": d_err, "noise floor (seed stds + binomial)": floor})
    still = [k for k, s in settled.items() if not s.ok]
    seeds = n_seeds(rows)
    if ratio < RATIO_DIFFERENT:
        if still:
            return Verdict(INCONCLUSIVE, f"final ρ within {ratio:.2f}x over inits but ρ still moving ({', '.join(still)})", nums, used)
        return Verdict(NOT_SUPPORTED, f"final ρ within {ratio:.2f}x (< {RATIO_DIFFERENT}) over inits, settled: it does not depend on the init here", nums, used)
    if not all(interpolates(r) for _, r in rows.iterrows()):
        return Verdict(INCONCLUSIVE, f"ρ differs {ratio:.3g}x, but not every run interpolates (train acc < {INTERPOLATING_ACC}): generalization is compared at interpolation", nums, used)
    if d_err < -floor:
        return Verdict(NOT_SUPPORTED, f"ρ differs {ratio:.3g}x but the largest init generalizes better (test error {d_err:+.3f}, floor {floor:.3f})", nums, used)
    if d_err > floor and seeds >= 2:
        return Verdict(SUPPORTED, f"ρ differs {ratio:.3g}x between inits and the largest init's test error is higher by {d_err:.3f} (> {floor:.3f})", nums, used)
    why = f"ρ differs {ratio:.3g}x, test-error difference {d_err:+.3f} against the floor {floor:.3f}"
    return Verdict(INCONCLUSIVE, why + (" (one seed: the seed spread is unknown)" if seeds < 2 else ""), nums, used)


CLAIM = Claim(
    number=2,
    id="rho_nowd_init",
    sentence="Without weight decay ρ depends on the initialization, and large initializations generalize worse.",
    source="paper section 7, Fig. 2 (bottom), Figs. 15, 17",
    statistic="final ρ per model.init_scale over runs with WD 0 (rho_bn shown); test error of the largest init minus the smallest's against the seed spread plus the binomial error",
    rule=f"supported: ρ ratio >= {RATIO_DIFFERENT}, interpolating runs, >= 2 seeds, and the largest init's test error higher by more than the floor; "
    f"not supported: ρ ratio < {RATIO_DIFFERENT} settled, or the largest init's test error lower by more than the floor; else inconclusive",
    control="the same rule on the WD > 0 runs (ρ forgets the init there)",
    source_scale=Scale(1000, 10000, 10, "init {0.01, 1, 5} x WD {0.01, 0}"),
    figures=("fig2", "fig15", "fig17"),
    judge=judge,
    protocols={"cpu": (CPU_FIG2, as_control(CPU_FIG2)), "paper": (PAPER_FIG2, as_control(PAPER_FIG2))},
    legacy_configs=(FIG2, "configs/paper/fig3_margins.yaml"),
    legacy_controls=(FIG2, "configs/paper/fig3_margins.yaml"),
)
