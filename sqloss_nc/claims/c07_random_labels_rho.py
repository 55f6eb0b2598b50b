"""Claim 7 (`random_labels_rho`): more random labels give a larger ρ and a larger test error
(paper appendix, Figs. 11, 13).

Rule, within one experiment (levels of different experiments are not mixed): over its settings
with WD > 0 and >= `MIN_LEVELS` values of `data.label_noise`, the Spearman correlations of the
noise level with the final ρ (mean over a level's settings) and with the test error. Supported:
both >= `TREND_SUPPORTED` and every run interpolates its (noisy) labels (train acc >= 0.99); not
supported: either <= `TREND_NOT` with every run interpolating; else inconclusive. The product norm
ρ_BN (what Figs. 11, 13 plot) is shown next to ρ_L.

Control: the same rule on a net too small to interpolate random labels.

Example: `from sqloss_nc.claims.c07_random_labels_rho import CLAIM; CLAIM.control`
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, Evidence, Scale, Verdict, _g, mean, num, pairs, positive, same
from .experiments import CPU_RANDOM, CPU_RANDOM_SMALL, FIG11, PAPER_FIG11, PAPER_FIG11_SMALL, RANDOM_NC, as_control
from .rules import INTERPOLATING_ACC, interpolates, spearman

MIN_LEVELS = 5
TREND_SUPPORTED, TREND_NOT = 0.8, 0.0


def _one(ev: Evidence, rows: pd.DataFrame) -> Verdict:
    used = pairs(rows)
    levels = sorted({num(v) for v in rows["data.label_noise"]})
    if len(levels) < MIN_LEVELS:
        return Verdict(INCONCLUSIVE, f"too few settings: needs >= {MIN_LEVELS} label-noise levels with WD > 0 in one experiment, has {len(levels)}", used=used)
    by = {lvl: rows[rows["data.label_noise"].map(lambda v, lvl=lvl: same(v, lvl))] for lvl in levels}
    rho = [float(np.mean([mean(r, "rho") for _, r in g.iterrows()])) for g in by.values()]
    rho_bn = [float(np.mean([mean(r, "rho_bn") for _, r in g.iterrows()])) for g in by.values()]
    err = [float(np.mean([mean(r, "test_error") for _, r in g.iterrows()])) for g in by.values()]
    acc = min(mean(r, "train_acc") for _, r in rows.iterrows())
    s_rho, s_err = spearman(levels, rho), spearman(levels, err)
    nums = {f"final ρ (noise {_g(lvl)})": v for lvl, v in zip(levels, rho)}
    nums.update({f"final ρ_BN (noise {_g(lvl)})": v for lvl, v in zip(levels, rho_bn) if not np.isnan(v)})
    nums.update({f"test error (noise {_g(lvl)})": v for lvl, v in zip(levels, err)})
    nums.update({"Spearman(noise, ρ)": s_rho, "Spearman(noise, test error)": s_err, "lowest train acc": acc})
    if not all(interpolates(r) for _, r in rows.iterrows()):
        return Verdict(INCONCLUSIVE, f"not every run interpolates its labels (lowest train acc {acc:.3f} < {INTERPOLATING_ACC}); Spearman ρ {s_rho:.2f}, error {s_err:.2f}", nums, used)
    if s_rho >= TREND_SUPPORTED and s_err >= TREND_SUPPORTED:
        return Verdict(SUPPORTED, f"ρ and test error rise with the label noise (Spearman {s_rho:.2f}, {s_err:.2f})", nums, used)
    if s_rho <= TREND_NOT or s_err <= TREND_NOT:
        return Verdict(NOT_SUPPORTED, f"no rising trend (Spearman ρ {s_rho:.2f}, error {s_err:.2f})", nums, used)
    return Verdict(INCONCLUSIVE, f"weak trend (Spearman ρ {s_rho:.2f}, error {s_err:.2f}; needs >= {TREND_SUPPORTED})", nums, used)


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rows = ev.settings(optim__weight_decay=positive, data__label_noise=lambda v: not np.isnan(num(v)))
    if rows.empty:
        return Verdict(INCONCLUSIVE, "too few settings: no run with WD > 0 and data.label_noise")
    results = [_one(ev, g) for _, g in rows.groupby("experiment")]
    decided = [r for r in results if r.verdict != INCONCLUSIVE]
    best = decided[0] if len(decided) == 1 else None
    if len(decided) > 1:
        kinds = {r.verdict for r in decided}
        best = decided[0] if len(kinds) == 1 else Verdict(INCONCLUSIVE, "the experiments disagree: " + "; ".join(r.why for r in decided), {}, [u for r in decided for u in r.used])
    return best or max(results, key=lambda r: len(r.numbers))


CLAIM = Claim(
    number=7,
    id="random_labels_rho",
    sentence="More random labels give a larger ρ and a larger test error.",
    source="paper appendix (Figs. 11, 13)",
    statistic="final ρ (rho_bn shown) and test error (summary.csv, mean over a level's settings) against data.label_noise, WD > 0, within one experiment: Spearman correlations",
    rule=f"supported: >= {MIN_LEVELS} levels, every run interpolating (train acc >= {INTERPOLATING_ACC}), both Spearman >= {TREND_SUPPORTED}; "
    f"not supported: either <= {TREND_NOT} with every run interpolating; inconclusive: in between, a run not interpolating, or < {MIN_LEVELS} levels",
    control="the same rule on a convnet too small to interpolate random labels",
    source_scale=Scale(1000, 10000, 10, "noise {0.2, ..., 1.0}"),
    figures=("fig11", "fig13"),
    judge=judge,
    protocols={"cpu": (CPU_RANDOM, as_control(CPU_RANDOM_SMALL)), "paper": (PAPER_FIG11, as_control(PAPER_FIG11_SMALL))},
    legacy_configs=(FIG11, RANDOM_NC),
)
