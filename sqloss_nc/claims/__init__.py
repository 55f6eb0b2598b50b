"""The claims this tool exists to test, each judged from the analysis tables (`sqnc report`), each
with its protocols (`sqnc reproduce`) and its negative control.

One small file per claim (`c01_rho_wd_init.py` ... `c18_rho_lagrange_init.py`): its sentence, its
source (a section, figure or equation of the paper, `reference/paper.md`, or a follow-up paper),
its protocols per scale (`cpu`: reduced for a budget on one machine; `paper`: the source's own;
each scale holds evidence and control `Protocol`s, shared experiments in `experiments.py`), the
statistic computed from the tables `sqnc analyze` wrote, a documented rule with its thresholds,
and its control. Shared rule helpers (time scale, settledness per τ, terminal phase, seed spread,
interpolation gate, the NC rule, `combine`) are in `rules.py`; the data types in `base.py`.

Verdicts (SPEC §12, §13):

- `supported`: the statistic is on the claim's side of the threshold, on runs past the phase the
  claim is about (>= 5τ and settled for an equilibrium; the terminal phase for NC);
- `not supported`: it is on the other side, on such runs;
- `inconclusive`: the runs cannot decide; `why` says what is missing (a setting, steps, seeds,
  interpolation);
- `no runs`: no run of the claim's experiments under OUT;
- `rule does not discriminate`: the claim's negative control (a setting where its prediction must
  fail, judged by the same rule on the control's runs) came out supported, so the rule's
  "supported" says nothing; such a claim is never "supported".

Every result carries the control's verdict (`control_verdict`: a verdict, or `no runs`) and, when
the claim is not decided, the command that would decide it (`decide`: `sqnc reproduce OUT
--claims <id>`). Claims read runs by experiment name: the protocols' experiments, plus the
configs of this repository run with `sqnc run` (their `name`). Instrument checks (claims 5, 6, 16)
read every run that fits their selection, whatever its experiment.

Example:

```python
from pathlib import Path
from sqloss_nc.claims import CLAIMS, evaluate_claims, load_tables
for res in evaluate_claims(load_tables(Path("outputs"))):
    print(res.claim.number, res.claim.id, res.verdict, res.control_verdict, res.why)
```
"""

from __future__ import annotations

import math

import pandas as pd

from . import (
    c01_rho_wd_init,
    c02_rho_nowd_init,
    c03_margins_concentrate,
    c04_nc_square_wd,
    c05_classifier_eqs,
    c06_rho_eq,
    c07_random_labels_rho,
    c08_nc_random_labels,
    c09_exp_nc1_batch,
    c10_rank_sgd_wd,
    c11_sgd_noise,
    c12_mse_resnet,
    c13_nc_needs_wd,
    c14_nc_classifier,
    c15_nc_gd_square,
    c16_lemma2_gap,
    c17_rho_nowd_direction,
    c18_rho_lagrange_init,
)
from .base import (
    INCONCLUSIVE,
    NO_RUNS,
    NOT_DISCRIMINATING,
    NOT_SUPPORTED,
    SUPPORTED,
    VERDICTS,
    Claim,
    ClaimResult,
    Evidence,
    Scale,
    Tables,
    Verdict,
    _g,
    load_tables,
)
from .rules import combine, fall_from_start, spearman, tail_change

CLAIMS: tuple[Claim, ...] = tuple(
    m.CLAIM
    for m in (
        c01_rho_wd_init,
        c02_rho_nowd_init,
        c03_margins_concentrate,
        c04_nc_square_wd,
        c05_classifier_eqs,
        c06_rho_eq,
        c07_random_labels_rho,
        c08_nc_random_labels,
        c09_exp_nc1_batch,
        c10_rank_sgd_wd,
        c11_sgd_noise,
        c12_mse_resnet,
        c13_nc_needs_wd,
        c14_nc_classifier,
        c15_nc_gd_square,
        c16_lemma2_gap,
        c17_rho_nowd_direction,
        c18_rho_lagrange_init,
    )
)

__all__ = [
    "CLAIMS", "VERDICTS", "SUPPORTED", "NOT_SUPPORTED", "INCONCLUSIVE", "NO_RUNS", "NOT_DISCRIMINATING",
    "Claim", "ClaimResult", "Evidence", "Scale", "Tables", "Verdict",
    "load_tables", "evaluate_claim", "evaluate_claims", "claim_by_id", "decide_command",
    "combine", "fall_from_start", "spearman", "tail_change",
]


def claim_by_id(claim_id: str) -> Claim:
    """The registry entry of an id (KeyError naming the known ids otherwise).

    Example: `claim_by_id("rho_wd_init").number` is 1.
    """
    for c in CLAIMS:
        if c.id == claim_id:
            return c
    raise KeyError(f"unknown claim {claim_id!r}; known: {', '.join(c.id for c in CLAIMS)}")


def decide_command(claim: Claim, out) -> str:
    """The command that runs a claim's cpu protocols (evidence and control) and judges them."""
    return f"sqnc reproduce {out} --claims {claim.id}"


def _evidence_experiments(claim: Claim, tables: Tables) -> tuple[str, ...] | None:
    if not claim.any_experiment:
        return claim.experiments
    summary = tables.get("summary")
    if summary.empty or "experiment" not in summary:
        return claim.experiments
    control_only = set(claim.control_experiments) - set(claim.experiments)
    return tuple(e for e in dict.fromkeys(summary["experiment"].astype(str)) if e not in control_only)


def _scale(ev: Evidence, used: list[tuple[str, str]]) -> tuple[int, Scale]:
    rows = ev.summary[[(e, s) in set(used) for e, s in zip(ev.summary["experiment"], ev.summary["setting"])]]
    n_runs = int(pd.to_numeric(rows["n_seeds"], errors="coerce").sum()) if not rows.empty else 0
    seeds = pd.to_numeric(rows.get("n_seeds", pd.Series(dtype=float)), errors="coerce")
    epochs = pd.to_numeric(rows.get("epochs_max", pd.Series(dtype=float)), errors="coerce")
    n = ev.n_train(rows)
    scale = Scale(
        int(epochs.max()) if epochs.notna().any() else None,
        int(n) if not math.isnan(n) else None,
        (f"{int(seeds.min())}" if seeds.min() == seeds.max() else f"{int(seeds.min())}–{int(seeds.max())}") if seeds.notna().any() else None,
        len(rows) if len(rows) else None,
    )
    return n_runs, scale


def evaluate_claim(claim: Claim, tables: Tables) -> ClaimResult:
    """Judge one claim and its control on the tables (see the module docstring for the verdicts).

    Example: `evaluate_claim(CLAIMS[0], load_tables(Path("outputs"))).verdict`
    """
    decide = decide_command(claim, tables.out)
    cev = Evidence(tables, claim.control_experiments)
    if cev.summary.empty:
        control_verdict, control_why = NO_RUNS, f"no runs of {', '.join(claim.control_experiments) or 'its control'}"
    else:
        cv = claim.judge(cev, True)
        control_verdict, control_why = cv.verdict, cv.why
    ev = Evidence(tables, _evidence_experiments(claim, tables))
    if ev.summary.empty:
        found = not ev.runs.empty
        why = (
            f"runs of {', '.join(sorted(set(ev.runs['experiment'].astype(str))))} exist but none finished (see analysis/problems.csv)"
            if found
            else f"no runs of {', '.join(claim.experiments)} under {tables.out}"
        )
        return ClaimResult(claim, NO_RUNS, why, {}, 0, [], Scale(), control_verdict, control_why, decide)
    v = claim.judge(ev, False)
    used = list(dict.fromkeys(v.used))
    n_runs, scale = _scale(ev, used)
    verdict, why = v.verdict, v.why
    if control_verdict == SUPPORTED:
        verdict = NOT_DISCRIMINATING
        why = f"its control ({claim.control}) comes out supported too: {control_why}. Evidence: {v.verdict} ({v.why})"
    return ClaimResult(claim, verdict, why, v.numbers, n_runs, used, scale, control_verdict, control_why, "" if verdict in (SUPPORTED, NOT_SUPPORTED) else decide)


def evaluate_claims(tables: Tables, claims: tuple[Claim, ...] = CLAIMS) -> list[ClaimResult]:
    """Judge every claim of the registry (and its control) on the tables, in order.

    Example: `[r.verdict for r in evaluate_claims(load_tables(Path("outputs")))]`
    """
    return [evaluate_claim(c, tables) for c in claims]
