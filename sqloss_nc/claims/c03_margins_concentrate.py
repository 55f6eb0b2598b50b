"""Claim 3 (`margins_concentrate`): with weight decay the normalized margins concentrate (become
nearly equal); without it they do not (paper sections 4, 7, Figs. 3, 4).

Rule, over the settings with WD > 0 (one per init): (a) across inits, the final mean normalized
margin μ (summary.csv margin_mean) is the same: max/min over inits <= `ACROSS_INITS`; (b) over
time, each setting's spread std/mean of the normalized margins narrows: its final value is at most
`NARROWING` x its value at the first epoch the margins separate the training set (μ > 0, from
epochs.csv). Supported when both hold, with ρ past 5 τ; not supported when across inits the
margins differ by more than `ACROSS_NOT` beyond the seed spread, or some spread widened instead
(final > its early value); else inconclusive (too few inits, not separating, in between).

Control: the same rule on the WD-0 runs (without WD the margins keep the init's imprint).

Example: `from sqloss_nc.claims.c03_margins_concentrate import CLAIM; CLAIM.statistic`
"""

from __future__ import annotations


import numpy as np

from .base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, Evidence, Scale, Verdict, _g, mean, pairs, positive, std, zero
from .experiments import CPU_FIG2, FIG2, PAPER_FIG3, as_control
from .rules import rho_by_init, settledness

ACROSS_INITS = 1.5  # final mean normalized margin within 1.5x over inits
ACROSS_NOT = 2.0  # ... apart by > 2x: the margins remember the init
NARROWING = 0.5  # std/mean at the end <= half its value when the margins first separate


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rows = ev.settings(optim__weight_decay=zero if control else positive)
    used = pairs(rows)
    groups = rho_by_init(ev, rows)
    if len(groups) < 2:
        return Verdict(INCONCLUSIVE, f"too few settings: needs >= 2 inits with WD {'0' if control else '> 0'}, has {len(groups)}", used=used)
    mu, sd, nums, narrow, widen, early_missing, unsettled = {}, {}, {}, [], [], [], []
    for init, g in groups.items():
        mu[init] = float(np.mean([mean(r, "margin_mean") for _, r in g.iterrows()]))
        sd[init] = float(np.mean([std(r, "margin_mean") for _, r in g.iterrows()]))
        nums[f"final mean normalized margin (init {_g(init)})"] = mu[init]
        for _, r in g.iterrows():
            m, s = ev.curve("epochs", r, "margin_mean"), ev.curve("epochs", r, "margin_std")
            cv = (s / m.abs()).dropna()
            sep = cv[m.reindex(cv.index) > 0]
            if len(sep) < 2:
                early_missing.append(str(r["setting"]))
                continue
            ratio = float(sep.iloc[-1] / sep.iloc[0]) if sep.iloc[0] > 0 else float("nan")
            nums[f"margin std/mean final/first separating [{r['setting']}]"] = ratio
            if ratio <= NARROWING:
                narrow.append(str(r["setting"]))
            elif ratio > 1:
                widen.append(str(r["setting"]))
            if not control and not settledness(ev, r, "rho").ok:
                unsettled.append(str(r["setting"]))
    if min(mu.values()) <= 0:
        return Verdict(INCONCLUSIVE, "a setting's mean normalized margin is not positive: it does not separate the training set yet", nums, used)
    lo, hi = min(mu, key=mu.get), max(mu, key=mu.get)
    across = mu[hi] / mu[lo]
    nums["max/min over inits"] = across
    if across > ACROSS_NOT and mu[hi] - mu[lo] > sd[hi] + sd[lo]:
        return Verdict(NOT_SUPPORTED, f"the final margins differ {across:.3g}x between inits (> {ACROSS_NOT}) beyond the seed spread", nums, used)
    if widen:
        return Verdict(NOT_SUPPORTED, f"the margin spread widened over training in {', '.join(widen)}", nums, used)
    n_settings = len(rows)
    if across <= ACROSS_INITS and len(narrow) == n_settings and not unsettled:
        return Verdict(SUPPORTED, f"final margins within {across:.3g}x over inits and every spread narrowed >= {1 / NARROWING:g}x", nums, used)
    why = [f"across inits {across:.3g}x"]
    if early_missing:
        why.append(f"no separating epochs to compare in {', '.join(early_missing)}")
    if len(narrow) < n_settings:
        why.append(f"{len(narrow)} of {n_settings} spreads narrowed >= {1 / NARROWING:g}x")
    if unsettled:
        why.append(f"ρ not settled (< 5τ or moving) in {', '.join(unsettled)}")
    return Verdict(INCONCLUSIVE, "; ".join(why), nums, used)


CLAIM = Claim(
    number=3,
    id="margins_concentrate",
    sentence="With weight decay the normalized margins concentrate (become nearly equal); without it they do not.",
    source="paper sections 4, 7, Figs. 3, 4",
    statistic="final mean normalized margin (summary.csv margin_mean) per init, with WD > 0; each setting's margin std/mean at the end over its value at the first separating epoch (epochs.csv)",
    rule=f"supported: final margins within {ACROSS_INITS}x over inits, every spread narrowed to <= {NARROWING}x, ρ >= 5τ and settled; "
    f"not supported: margins apart > {ACROSS_NOT}x over inits beyond the seed spread, or a spread widened; else inconclusive",
    control="the same rule on the WD-0 runs",
    source_scale=Scale(1000, 10000, 10, "7 inits x WD {0.01, 0}"),
    figures=("fig3", "fig4"),
    judge=judge,
    protocols={"cpu": (CPU_FIG2, as_control(CPU_FIG2)), "paper": (PAPER_FIG3, as_control(PAPER_FIG3))},
    legacy_configs=(FIG2, "configs/paper/fig3_margins.yaml", "configs/paper/fig4_margin_hist.yaml"),
    legacy_controls=(FIG2, "configs/paper/fig3_margins.yaml"),
)
