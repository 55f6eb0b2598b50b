"""Claim 11 (`sgd_noise`): SGD noise does not vanish at convergence: the relative update stays
bounded away from 0 under SGD, unlike GD (Xu, Rangamani, Liao, Galanti, Poggio 2023).

Rule, per step (update_norms.csv, layer `all layers`: the mean relative update ‖W_e − W_{e−1}‖/‖W_{e−1}‖
over the last 10% of the epochs): GD takes one step per epoch, so its value is per step; SGD's
epoch holds k = ceil(N/B) steps, and ‖Σ Δ_t‖ <= Σ ‖Δ_t‖ makes its epoch value / k a lower bound
of its mean per-step update. On a net without normalization only (with BN + WD the gradient is
orthogonal to W and GD does not stop either), with GD converged (its end update <= `GD_CONVERGED`
x its first) and the two at matched steps: supported when SGD's per-step bound >= `RATIO` x GD's;
not supported when < `RATIO_NONE` x; else inconclusive.

Control: the same rule where the "minibatch" run uses a batch of N (no sampling noise).

Example: `from sqloss_nc.claims.c11_sgd_noise import CLAIM; CLAIM.rule`
"""

from __future__ import annotations

import math

import numpy as np

from ..analysis import ALL_LAYERS
from .base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, Evidence, Scale, Verdict, num, pairs
from .experiments import CPU_NOISE, CPU_NOISE_CONTROL, NOISE, PAPER_NOISE, PAPER_NOISE_CONTROL, as_control
from .rules import Clock, split_gd

RATIO = 10.0  # SGD's per-step relative update >= 10x GD's at the end
RATIO_NONE = 2.0  # ... and < 2x is "vanishes like GD's"
GD_CONVERGED = 0.05  # GD's end update <= 5% of its first: converged
STEP_MATCH = 0.1


def judge(ev: Evidence, control: bool = False) -> Verdict:
    un = ev.update_norms
    rows = ev.settings(model__normalization="none")
    used = pairs(rows)
    if ev.summary.empty:
        return Verdict(INCONCLUSIVE, "no runs")
    if rows.empty:
        return Verdict(INCONCLUSIVE, "too few settings: needs runs without normalization (with BN + WD, GD does not stop either)", used=pairs(ev.summary))
    if un.empty or "tail_mean" not in un:
        return Verdict(INCONCLUSIVE, "no update norms (update_norm_<layer> in metrics.csv) in these runs", used=used)
    sgd, gd = split_gd(rows)
    if sgd.empty or gd.empty:
        return Verdict(INCONCLUSIVE, f"too few settings: needs a minibatch and a full-batch run ({len(sgd)} and {len(gd)} here)", used=used)
    al = un[un["layer"] == ALL_LAYERS].set_index(["experiment", "setting"])

    def get(r, col):
        return num(al[col].get((r["experiment"], r["setting"]))) if col in al else float("nan")

    per_step_sgd = float(np.nanmin([get(r, "tail_mean") / Clock.of(ev, r).spe for _, r in sgd.iterrows()]))
    t_gd = float(np.nanmax([get(r, "tail_mean") for _, r in gd.iterrows()]))
    first_gd = float(np.nanmin([get(r, "first_mean") for _, r in gd.iterrows()]))
    steps_s, steps_g = Clock.of(ev, sgd.iloc[0]).steps, Clock.of(ev, gd.iloc[0]).steps
    ratio = per_step_sgd / t_gd if t_gd > 0 else float("inf")
    conv = t_gd / first_gd if first_gd > 0 else float("nan")
    nums = {"SGD relative update per step (lower bound)": per_step_sgd, "GD relative update per step": t_gd, "SGD / GD": ratio,
            "GD end / first update": conv, "steps, SGD": steps_s, "steps, GD": steps_g}
    if not steps_s or abs(steps_g - steps_s) > STEP_MATCH * steps_s:
        return Verdict(INCONCLUSIVE, f"not at matched steps: SGD {steps_s}, GD {steps_g}", nums, used)
    if math.isnan(conv) or conv > GD_CONVERGED:
        return Verdict(INCONCLUSIVE, f"GD has not converged (end update {conv:.3g}x its first, needs <= {GD_CONVERGED}): SGD/GD {ratio:.3g}", nums, used)
    if ratio >= RATIO:
        return Verdict(SUPPORTED, f"SGD's relative update per step stays >= {ratio:.3g}x GD's at convergence", nums, used)
    if ratio < RATIO_NONE:
        return Verdict(NOT_SUPPORTED, f"SGD's relative update per step is within {ratio:.3g}x of converged GD's", nums, used)
    return Verdict(INCONCLUSIVE, f"SGD's relative update per step {ratio:.3g}x GD's (between {RATIO_NONE:g}x and {RATIO:g}x)", nums, used)


CLAIM = Claim(
    number=11,
    id="sgd_noise",
    sentence="SGD noise does not vanish at convergence: the relative update per step stays bounded away from 0 under SGD, unlike GD.",
    source="Xu, Rangamani, Liao, Galanti, Poggio 2023",
    statistic="update_norms.csv, layer 'all layers': mean relative update over the last 10% of the epochs, per step (SGD: epoch value / steps per epoch, a lower bound), smallest SGD over largest GD; nets without normalization",
    rule=f"supported: matched steps, GD converged (end <= {GD_CONVERGED} x first), SGD/GD >= {RATIO:g}; not supported: < {RATIO_NONE:g}; inconclusive: in between, GD not converged, BN nets, or no GD run",
    control="the same rule where the minibatch run uses a batch of N",
    source_scale=Scale(None, None, None, "SGD vs GD"),
    figures=("updates",),
    judge=judge,
    protocols={"cpu": (CPU_NOISE, as_control(CPU_NOISE_CONTROL)), "paper": (PAPER_NOISE, as_control(PAPER_NOISE_CONTROL))},
    legacy_configs=(NOISE,),
)
