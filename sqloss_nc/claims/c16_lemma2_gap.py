"""Claim 16 (`lemma2_gap`): with weight decay the net quasi-interpolates with Lemma 2's gap: the
margins fall short of 1 by ε = λ'ρ₀²/(1 + λ'ρ₀²) (ρ₀ = μ/M; ε ≈ λρ₀ in the paper's normalization
for small λρ₀) (paper section 3, Lemma 2).

Rule (an instrument check on theory.csv `margin_gap_lemma2`: 1 − ρμ against the prediction), over
square-loss runs with WD > 0 and true labels (any experiment) that lived >= 5τ with ρ settled:
every run within `OK` (the maximum) -> supported; some run beyond `NOT` (off by 2x) -> not
supported; else inconclusive. Lemma 2 assumes equal margins; the spread σ² = M − μ² is in the note.

Control: the same rule on runs stopped at 0.5τ.

Example: `from sqloss_nc.claims.c16_lemma2_gap import CLAIM; CLAIM.any_experiment`
"""

from __future__ import annotations

from .base import INCONCLUSIVE, Claim, Evidence, Scale, Verdict, no_noise, pairs, positive
from .c06_rho_eq import _settings, settled_rows
from .experiments import CPU_FIG2, CPU_FIG2_EARLY, CPU_NC, FIG2, PAPER_FIG2, PAPER_FIG2_EARLY, QUICKSTART, as_control
from .rules import instrument, rel_errors

OK, NOT = 0.3, 1.0


def judge(ev: Evidence, control: bool = False) -> Verdict:
    rows = ev.settings(loss__kind="square", optim__weight_decay=positive, data__label_noise=no_noise)
    if rows.empty:
        return Verdict(INCONCLUSIVE, "too few settings: no square-loss run with WD > 0")
    ok_rows, left = settled_rows(ev, rows)
    if ok_rows.empty:
        return Verdict(INCONCLUSIVE, f"too few steps: ρ is not settled after >= 5τ in any run ({_settings(left)}); Lemma 2 describes the equilibrium", used=pairs(rows))
    errs = rel_errors(ev, "margin_gap_lemma2", ok_rows)
    if errs.empty:
        return Verdict(INCONCLUSIVE, "no theory.csv row margin_gap_lemma2 for the settled runs", used=pairs(ok_rows))
    v, why, nums = instrument(errs, OK, NOT, "1 − ρμ against λ′ρ₀²/(1+λ′ρ₀²)")
    return Verdict(v, why + (f" (not judged, unsettled: {_settings(left)})" if left else ""), nums, pairs(ok_rows))


CLAIM = Claim(
    number=16,
    id="lemma2_gap",
    sentence="With weight decay the margins fall short of interpolation by Lemma 2's gap ε = λ′ρ₀²/(1 + λ′ρ₀²) (ε ≈ λρ₀ for small λρ₀).",
    source="paper section 3, Lemma 2 (an instrument check)",
    statistic="theory.csv margin_gap_lemma2 (1 − ρμ against λ′ρ₀²/(1+λ′ρ₀²), ρ₀ = μ/M): maximum relative error over square-loss runs with WD > 0 that lived >= 5τ with ρ settled",
    rule=f"supported: every settled run within {OK}; not supported: a settled run beyond {NOT}; else inconclusive",
    control="the same rule on runs stopped at 0.5τ",
    source_scale=Scale(None, None, None, "derived (Lemma 2)"),
    figures=("fig2", "fig14"),
    judge=judge,
    protocols={"cpu": (CPU_FIG2, CPU_NC, as_control(CPU_FIG2_EARLY)), "paper": (PAPER_FIG2, as_control(PAPER_FIG2_EARLY))},
    legacy_configs=(FIG2, QUICKSTART),
    any_experiment=True,
)
