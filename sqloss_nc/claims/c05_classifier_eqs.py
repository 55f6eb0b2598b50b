"""Claim 5 (`classifier_eqs`): at the collapsed state ⟨w_c, μ_G⟩ → M/C (Eq. 35) and ||w_c||² → its
Eq. 34 value (paper section 6, Eqs. 34, 35). An instrument check: both are near-identities of a
bias-free square-loss classifier (Eq. 35 holds to 1% on ridge-fitted heads far from collapse), so
they check the measurement, not the theory's dynamics.

Rule: over the interpolating (train acc >= 0.99) bias-free square-loss runs with WD > 0 and true labels
(any experiment): Eq. 35
(theory.csv `w_dot_muG_eq35`) within `EQ35_OK` in *every* run (the maximum, not the median); Eq. 34
split in two: its exact stationarity identity λ'||w_c||² = Σ_n (y − f) f (theory.csv
`w_norm_sq_identity`, within `IDENTITY_OK`; `theory_checks` writes it for bias-free one-hot heads,
runs made before it existed lack it and are judged on the rest) and the Assumption-1 residual
(`w_norm_sq_eq34`: the identity evaluated with symmetric
quasi-interpolation, within `EQ34_OK`). Supported when every measured part passes in every run;
not supported when a part fails beyond its `_NOT` bound; else inconclusive.

Control: the same checks on a classifier with a bias, for which Eq. 35 is not derived.

Example: `from sqloss_nc.claims.c05_classifier_eqs import CLAIM; CLAIM.any_experiment`
"""

from __future__ import annotations

from .base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, Evidence, Scale, Verdict, is_true, no_noise, pairs, positive, square
from .experiments import CPU_NC, CPU_NC_BIAS, FIG2, FIG6, PAPER_FIG6, PAPER_FIG6_BIAS, QUICKSTART, as_control
from .rules import INTERPOLATING_ACC, instrument, interpolates, rel_errors

EQ35_OK, EQ35_NOT = 0.05, 0.25
IDENTITY_OK, IDENTITY_NOT = 0.05, 0.25
EQ34_OK, EQ34_NOT = 0.2, 0.5


def judge(ev: Evidence, control: bool = False) -> Verdict:
    bias = is_true if control else (lambda v: not is_true(v))
    rows = ev.settings(loss__kind=square, optim__weight_decay=positive, data__label_noise=no_noise, model__bias=bias)
    all_rows = rows
    rows = rows[[interpolates(r) for _, r in rows.iterrows()]] if not rows.empty else rows
    used = pairs(rows)
    if rows.empty and not all_rows.empty:
        return Verdict(INCONCLUSIVE, f"no run interpolates (train acc < {INTERPOLATING_ACC}): the equations describe the collapsed state", used=pairs(all_rows))
    parts = [
        ("Eq. 35 <w_c, μ_G> = M/C", rel_errors(ev, "w_dot_muG_eq35", rows), EQ35_OK, EQ35_NOT),
        ("Eq. 34 stationarity identity", rel_errors(ev, "w_norm_sq_identity", rows), IDENTITY_OK, IDENTITY_NOT),
        ("Eq. 34 Assumption-1 residual", rel_errors(ev, "w_norm_sq_eq34", rows), EQ34_OK, EQ34_NOT),
    ]
    measured = [p for p in parts if not p[1].empty]
    if not measured:
        what = "with" if control else "without"
        return Verdict(INCONCLUSIVE, f"too few settings: no square-loss run {what} a classifier bias, WD > 0 and NC measured (theory.csv w_dot_muG_eq35, w_norm_sq_eq34)", used=used)
    nums, outcomes = {}, []
    for name, errs, good, bad in measured:
        v, why, n = instrument(errs, good, bad, name)
        nums.update(n)
        outcomes.append((v, why))
    why = "; ".join(w for _, w in outcomes) + ("" if not parts[1][1].empty else "; the stationarity identity is not in these runs' theory.csv (made before it was written)")
    verdicts = [v for v, _ in outcomes]
    if all(v == SUPPORTED for v in verdicts):
        return Verdict(SUPPORTED, why, nums, used)
    if NOT_SUPPORTED in verdicts:
        return Verdict(NOT_SUPPORTED, why, nums, used)
    return Verdict(INCONCLUSIVE, why, nums, used)


CLAIM = Claim(
    number=5,
    id="classifier_eqs",
    sentence="At the collapsed state ⟨w_c, μ_G⟩ → M/C (Eq. 35) and ‖w_c‖² → its Eq. 34 value.",
    source="paper section 6, Eqs. 34, 35 (an instrument check)",
    statistic="theory.csv w_dot_muG_eq35, w_norm_sq_identity (when written) and w_norm_sq_eq34: relative error at the last NC epoch, maximum over bias-free square-loss runs with WD > 0 and true labels (any experiment)",
    rule=f"every run: Eq. 35 <= {EQ35_OK}, the stationarity identity <= {IDENTITY_OK}, the Assumption-1 residual <= {EQ34_OK} -> supported; "
    f"a run beyond {EQ35_NOT} / {IDENTITY_NOT} / {EQ34_NOT} on interpolating runs -> not supported; else inconclusive",
    control="the same checks on a classifier with a bias (Eq. 35 is derived bias-free)",
    source_scale=Scale(350, 10000, 1, "binary CIFAR-10, WD 0.01"),
    figures=("ncpanel",),
    judge=judge,
    protocols={"cpu": (CPU_NC, as_control(CPU_NC_BIAS)), "paper": (PAPER_FIG6, as_control(PAPER_FIG6_BIAS))},
    legacy_configs=(FIG6, "configs/paper/binary_bn_wd.yaml", FIG2, QUICKSTART),
    any_experiment=True,
)
