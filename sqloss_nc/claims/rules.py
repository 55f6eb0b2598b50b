"""Shared rule helpers of the claims: the time scale of a setting, settledness per τ, the terminal
phase, the seed spread (plus the binomial error of an error rate), the interpolation gate, the NC
rule of one setting, and `combine` of per-setting verdicts (SPEC §12, §13).

The thresholds are module constants named in each claim's `rule`: they say how far a number must
be from the claim's boundary to count, not what the paper measured.

- Time: a setting's elapsed τ = Σ_t η_t λ/(1 − β) over its steps (`sqloss_nc.timescale`), with
  steps = (steps per epoch) × (last epoch). An equilibrium verdict needs >= `MIN_TAU` τ.
- Settled: |d ln X/dτ| over the last 2 τ below `SETTLED_PER_TAU` (with weight decay); without
  weight decay there is no τ, and X is settled when it moved < `SETTLED_CHANGE` over the last
  `TAIL_FRACTION` of the epochs (settings without WD are compared at matched steps instead).
- Terminal phase (Papyan et al.): from the first NC epoch whose train error is 0 (train acc >=
  `INTERPOLATING_ACC` where the labels are noisy by design). NC is judged there, never from a
  peak that includes epoch 0.
- A difference of means counts when it exceeds the seed spread (the two seed stds summed) plus,
  for an error rate, the binomial standard error √(p(1−p)/n_test) of each side, added in quadrature.

Example:

```python
from sqloss_nc.claims.rules import combine
combine([("a", "supported", ""), ("b", "inconclusive", "")])[0]   # "inconclusive"
```
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..timescale import MIN_TAU, SETTLE_WINDOW_TAU, log_slope_per_tau, lr_factors, steps_per_epoch, tau_steps
from .base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Evidence, Verdict, _g, classes, is_true, label, mean, num, pairs, std

SETTLED_PER_TAU = 0.05  # |d ln X / dτ| over the last 2τ below 5% per τ: settled
SETTLED_CHANGE = 0.05  # without WD: moved < 5% over the last 10% of the epochs
TAIL_FRACTION = 0.1
INTERPOLATING_ACC = 0.99  # train acc of an interpolating run where labels are noisy by design
CLEAN_ACC = 1.0 - 1e-6  # train error 0 (to float32 rounding): the terminal phase of true labels
STILL_FALLING = 0.9  # the last NC value below 0.9x the previous one: still falling
NC1_LEVEL = 0.1  # NC claims: final NC1 <= 0.1 is collapsed ...
NC1_TPT_FALL = 2.0  # ... having fallen >= 2x since the terminal phase began
NC1_HIGH = 1.0  # final NC1 >= 1 (within-class spread like the between-class one), not falling: no collapse
NC2_MAX = 0.2  # classifier-side NC2 (equinorm, equiangularity or max-angle of w_c) <= 0.2
TRACE_RATIO_MAX = 0.1  # Tr(Σ_W)/Tr(Σ_B) <= 0.1
MIN_TPT_STEPS_FRACTION = 0.5  # without WD, a "no collapse" needs the terminal phase over >= half the steps


# ----------------------------------------------------------------------------- generic statistics


def tail_change(curve: pd.Series, fraction: float = TAIL_FRACTION) -> float:
    """|x(E) − x(E − k)| / |x(E)| with k = ceil(fraction·E) epochs (the value at the last
    recorded epoch at or before E − k): how much a quantity still moved at the end.

    Example: a curve 1, 1, ..., 1.1 over 100 epochs with the 1.1 at epoch 100 gives 0.0909.
    """
    if len(curve) < 2:
        return float("nan")
    last_epoch = float(curve.index[-1])
    k = max(1.0, math.ceil(fraction * last_epoch))
    before = curve[curve.index <= last_epoch - k]
    if before.empty:
        return float("nan")
    x1, x0 = float(curve.iloc[-1]), float(before.iloc[-1])
    return abs(x1 - x0) / abs(x1) if x1 != 0 else float("inf")


def fall_from_start(curve: pd.Series) -> tuple[float, bool]:
    """(first / final, still falling) of a measure over its recorded epochs: how far it fell from
    where the curve starts (give it the terminal phase's stretch); still falling when the final
    value is below STILL_FALLING x the previous one.

    Example: `fall_from_start(pd.Series([4.0, 0.4, 0.2]))` is (20.0, True).
    """
    c = curve.dropna()
    if len(c) < 2:
        return float("nan"), False
    final = float(c.iloc[-1])
    fall = float(c.iloc[0]) / final if final > 0 else float("inf")
    return fall, bool(final < STILL_FALLING * float(c.iloc[-2]))


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with < 2 points or a constant axis.

    Example: `spearman([1, 2, 3], [10, 30, 20])` is 0.5.
    """
    if len(x) < 2:
        return float("nan")
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if np.std(rx) == 0 or np.std(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def combine(outcomes: list[tuple[str, str, str]]) -> tuple[str, str]:
    """Per-setting (label, verdict, why) -> the claim's verdict: supported only when every setting
    is; not supported when some setting is and none is supported; otherwise inconclusive (the
    settings disagree, or some cannot decide: one supported setting among undecided ones is not
    enough).

    Example: `combine([("a", "supported", "x"), ("b", "inconclusive", "y")])[0] == "inconclusive"`.
    """
    verdicts = [v for _, v, _ in outcomes]
    why = "; ".join(f"{lab}: {v} ({w})" for lab, v, w in outcomes)
    if not outcomes:
        return INCONCLUSIVE, "no setting"
    if SUPPORTED in verdicts and NOT_SUPPORTED in verdicts:
        return INCONCLUSIVE, "the settings disagree — " + why
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED, why
    if NOT_SUPPORTED in verdicts:
        return NOT_SUPPORTED, why
    if SUPPORTED in verdicts:
        return INCONCLUSIVE, f"only {verdicts.count(SUPPORTED)} of {len(verdicts)} settings decide — " + why
    return INCONCLUSIVE, why


def judge_each(ev: Evidence, rows: pd.DataFrame, setting) -> Verdict:
    """`setting(ev, row) -> (verdict, why, numbers)` on every summary row, combined (`combine`).

    Example: `judge_each(ev, ev.settings(loss__kind=square), my_setting_rule).verdict`.
    """
    outcomes, nums = [], {}
    for _, r in rows.iterrows():
        v, why, n = setting(ev, r)
        outcomes.append((label(r), v, why))
        nums.update(n)
    verdict, why = combine(outcomes)
    return Verdict(verdict, why, nums, pairs(rows))


def binomial_se(p: float, n: float) -> float:
    """√(p(1−p)/n): the standard error of an error rate p measured on n samples (NaN without n)."""
    if not (n and n > 0) or math.isnan(p) or math.isnan(n):
        return float("nan")
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def difference_floor(ev: Evidence, a: pd.Series, b: pd.Series, col: str, error_rate: bool = False) -> float:
    """The noise floor of mean(a) − mean(b) of `col`: the two seed stds summed, plus for an error
    rate the binomial standard errors in quadrature (n = the runs' `n_test`)."""
    floor = std(a, col) + std(b, col)
    if error_rate:
        ses = [binomial_se(mean(r, col), ev.run_value(r.to_frame().T, "n_test")) for r in (a, b)]
        ses = [s for s in ses if not math.isnan(s)]
        floor += math.sqrt(sum(s * s for s in ses))
    return floor


def n_seeds(rows: pd.DataFrame) -> int:
    """The fewest seeds of these settings (0 without rows)."""
    s = pd.to_numeric(rows.get("n_seeds", pd.Series(dtype=float)), errors="coerce")
    return int(s.min()) if s.notna().any() else 0


# ----------------------------------------------------------------------------- time scale of a setting


def _milestones(v: Any) -> list[int]:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return []
    try:
        return [int(x) for x in v]
    except TypeError:
        return []


@dataclass
class Clock:
    """The time scale of one setting (summary row): τ in steps, steps per epoch, and the elapsed τ
    at each epoch (0 everywhere without weight decay).

    Example: `Clock.of(ev, row).elapsed(250)`
    """

    tau: float
    spe: int
    per_epoch_tau: np.ndarray  # elapsed τ in each epoch 1..E
    last_epoch: int

    @classmethod
    def of(cls, ev: Evidence, row: pd.Series) -> "Clock":
        lr, lam, beta = num(row.get("optim.lr")), num(row.get("optim.weight_decay")), num(row.get("optim.momentum"))
        beta = 0.0 if math.isnan(beta) else beta
        n = ev.n_train(row.to_frame().T)
        bs = num(row.get("optim.batch_size"))
        full = is_true(row.get("optim.full_batch"))
        spe = steps_per_epoch(int(n), None if math.isnan(bs) else int(bs), full) if not math.isnan(n) else 1
        last = int(num(row.get("epochs_max"))) if not math.isnan(num(row.get("epochs_max"))) else 0
        tau = tau_steps(lr, lam, beta) if not (math.isnan(lr) or math.isnan(lam)) else math.inf
        if not math.isfinite(tau) or last <= 0:
            return cls(tau, spe, np.zeros(max(last, 0)), last)
        sched = str(row.get("optim.schedule", "constant"))
        gamma = num(row.get("optim.gamma"))
        f = lr_factors(last, sched, _milestones(row.get("optim.milestones")), 0.1 if math.isnan(gamma) else gamma)
        return cls(tau, spe, f * spe / tau, last)

    def elapsed(self, epoch: float | None = None) -> float:
        """Elapsed τ at the end of `epoch` (default: the last)."""
        e = self.last_epoch if epoch is None else int(epoch)
        return float(self.per_epoch_tau[: max(0, e)].sum())

    @property
    def steps(self) -> int:
        return self.spe * self.last_epoch

    @property
    def has_tau(self) -> bool:
        return math.isfinite(self.tau)


@dataclass
class Settled:
    """Is a quantity of a setting at its equilibrium? (see the module docstring)

    Args:
        elapsed: elapsed τ of the setting (0 without WD).
        rate: |d ln X/dτ| over the last 2τ (with WD) or the relative change over the last 10% of
            the epochs (without).
        settled: rate below its tolerance (None: not measurable).
        long_enough: >= MIN_TAU τ elapsed (always True without WD: no τ to wait for).
    """

    elapsed: float
    rate: float
    settled: bool | None
    long_enough: bool

    def text(self) -> str:
        if self.settled is None:
            return "settledness not measurable"
        if math.isfinite(self.elapsed) and self.elapsed > 0:
            return f"{self.elapsed:.3g}τ elapsed, |d ln X/dτ| = {self.rate:.2g}"
        return f"moved {self.rate:.1%} over the last 10% of the epochs"

    @property
    def ok(self) -> bool:
        return bool(self.settled) and self.long_enough


def settledness(ev: Evidence, row: pd.Series, col: str, table: str = "epochs") -> Settled:
    """Settledness of `col` of one setting (SPEC §13)."""
    clock = Clock.of(ev, row)
    curve = ev.curve(table, row, col)
    if not clock.has_tau:
        ch = tail_change(curve)
        return Settled(0.0, ch, None if math.isnan(ch) else bool(ch < SETTLED_CHANGE), True)
    taus = [clock.elapsed(e) for e in curve.index]
    rate = log_slope_per_tau(taus, curve.to_numpy(float), SETTLE_WINDOW_TAU)
    elapsed = clock.elapsed()
    return Settled(elapsed, rate, None if math.isnan(rate) else bool(rate < SETTLED_PER_TAU), elapsed >= MIN_TAU)


# ----------------------------------------------------------------------------- interpolation and the terminal phase


def interpolates(row: pd.Series, threshold: float = INTERPOLATING_ACC) -> bool:
    """Final train accuracy (seed mean) >= threshold."""
    return mean(row, "train_acc") >= threshold


def terminal_phase(ev: Evidence, row: pd.Series, noisy: bool = False) -> float | None:
    """The first NC epoch at which the train error is 0 (train acc >= INTERPOLATING_ACC for noisy
    labels), or None when the run never gets there (its train acc read from `epochs.csv`)."""
    nc1 = ev.curve("nc_epochs", row, "nc1")
    acc = ev.curve("epochs", row, "train_acc")
    thr = INTERPOLATING_ACC if noisy else CLEAN_ACC
    for e in nc1.index:
        a = acc.get(e)
        if a is not None and not math.isnan(a) and a >= thr:
            return float(e)
    return None


def long_in_terminal_phase(ev: Evidence, row: pd.Series, start: float) -> tuple[bool, str]:
    """Has the setting spent long enough in its terminal phase for a "no collapse"? >= MIN_TAU τ
    with WD, >= half the steps without."""
    clock = Clock.of(ev, row)
    if clock.has_tau:
        lived = clock.elapsed() - clock.elapsed(start)
        return lived >= MIN_TAU, f"{lived:.3g}τ in the terminal phase"
    frac = 1 - start / clock.last_epoch if clock.last_epoch else 0.0
    return frac >= MIN_TPT_STEPS_FRACTION, f"{frac:.0%} of the steps in the terminal phase"


# ----------------------------------------------------------------------------- neural collapse of one setting


def nc2_columns(row: pd.Series) -> list[str]:
    """The NC2 columns that can measure collapse here: the classifier side always (`_weights`);
    the class-means side only for C > 2 (with C = 2 the two centred means are ±v: equinorm and
    antipodal by construction, so their NC2 is 0 whatever the features do).

    With C = 2 the classifier's max-angle |cos(w_1, w_2) + 1| counts only for a head with a bias.
    A bias-free head on one-hot targets carries a common row w̄ that maps μ_G to 1/C (Eq. 35, SPEC
    §7's note on `nc3`): at exact collapse w_c = w̄ ± d with |w̄| = 1/(2|μ_G|), |d| = 1/(2|Δ|),
    Δ = μ_1 − μ_G, so the max-angle tends to 2/(1 + |μ_G|²/|Δ|²), not 0 (0.4 for the quick start's
    ReLU features), while the centred rows ±d are antipodal by construction. Its equinorm
    ||w̄ + d|| = ||w̄ − d|| (w̄ ⊥ d) still measures collapse. For C > 2 the spread of the pair cosines
    is the same with or without w̄ once the d_c form a simplex."""
    c = classes(row)
    cols = ["nc2_equinorm_weights"]
    if c > 2:
        cols += ["nc2_equiangular_weights", "nc2_equinorm_means", "nc2_equiangular_means"]
    elif is_true(row.get("model.bias")):
        cols.append("nc2_maxangle_weights")
    return cols


def nc_setting(ev: Evidence, r: pd.Series, noisy: bool = False) -> tuple[str, str, dict[str, float]]:
    """The NC rule of claims 4, 8, 13, 15 on one setting: (verdict, why, numbers).

    supported: in the terminal phase, the final NC1 <= NC1_LEVEL having fallen >= NC1_TPT_FALL
    since the phase began, every classifier-side NC2 <= NC2_MAX and Tr(Σ_W)/Tr(Σ_B) <=
    TRACE_RATIO_MAX; not supported: in the terminal phase long enough (>= 5τ, or half the steps
    without WD), final NC1 >= NC1_HIGH and no longer falling; inconclusive otherwise, or when the
    net never interpolates (no terminal phase).
    """
    nc1 = ev.curve("nc_epochs", r, "nc1")
    nc2 = {col: mean(r, col) for col in nc2_columns(r)}
    trace = mean(r, "trace_ratio")
    final = float(nc1.iloc[-1]) if len(nc1) else float("nan")
    nums: dict[str, float] = {"NC1 final": final, **{f"{k} final": v for k, v in nc2.items()}, "Tr(Σ_W)/Tr(Σ_B) final": trace, "train acc": mean(r, "train_acc")}
    if len(nc1) < 2:
        return INCONCLUSIVE, "NC measured at < 2 epochs", nums
    start = terminal_phase(ev, r, noisy)
    if start is None:
        return INCONCLUSIVE, f"the net does not interpolate (train acc {mean(r, 'train_acc'):.3f}): NC is judged in the terminal phase", nums
    fall, falling = fall_from_start(nc1[nc1.index >= start])
    nums.update({"terminal phase from epoch": start, "NC1 at its start": float(nc1[nc1.index >= start].iloc[0]), "NC1 fall since": fall})
    known = [v for v in nc2.values() if not math.isnan(v)]
    worst = max(known, default=float("nan"))
    nc2_ok = bool(known) and worst <= NC2_MAX
    trace_ok = math.isnan(trace) or trace <= TRACE_RATIO_MAX
    if final <= NC1_LEVEL and (fall >= NC1_TPT_FALL) and nc2_ok and trace_ok:
        return SUPPORTED, f"NC1 {final:.3g} (fell {fall:.3g}x since epoch {_g(start)}), classifier NC2 <= {worst:.2g}", nums
    long_enough, lived = long_in_terminal_phase(ev, r, start)
    if final >= NC1_HIGH and not falling and long_enough:
        return NOT_SUPPORTED, f"NC1 stays at {final:.3g} (>= {NC1_HIGH:g}) and no longer falls, {lived}", nums
    parts = []
    if final > NC1_LEVEL:
        parts.append(f"NC1 {final:.3g} (> {NC1_LEVEL:g}){', still falling' if falling else ''}")
    elif fall < NC1_TPT_FALL:
        parts.append(f"NC1 fell only {fall:.3g}x since the terminal phase began (needs {NC1_TPT_FALL:g}x)")
    if not nc2_ok:
        parts.append(f"classifier NC2 {worst:.2g} (> {NC2_MAX})" if known else "classifier NC2 not measured")
    if not trace_ok:
        parts.append(f"Tr(Σ_W)/Tr(Σ_B) {trace:.2g} (> {TRACE_RATIO_MAX})")
    if final >= NC1_HIGH and not long_enough:
        parts.append(f"only {lived}")
    return INCONCLUSIVE, "; ".join(parts) or "between the thresholds", nums


# ----------------------------------------------------------------------------- instrument checks (theory.csv)


def theory_rows(ev: Evidence, check: str, rows: pd.DataFrame) -> pd.DataFrame:
    """theory.csv rows of one check for the runs of these settings (finished runs only)."""
    t = ev.theory
    if t.empty or "check" not in t:
        return t
    keys = set(zip(rows["experiment"].astype(str), rows["setting"].astype(str))) if not rows.empty else set()
    sel = t[(t["check"] == check).to_numpy() & np.array([(str(e), str(s)) in keys for e, s in zip(t["experiment"], t["setting"])], dtype=bool)]
    if "state" in sel:
        sel = sel[sel["state"] == "done"]
    return sel


def rel_errors(ev: Evidence, check: str, rows: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(theory_rows(ev, check, rows).get("rel_error", pd.Series(dtype=float)), errors="coerce").dropna()


def instrument(errs: pd.Series, good: float, bad: float, name: str) -> tuple[str, str, dict[str, Any]]:
    """An instrument check: every run within `good` (the maximum, not the median) -> supported;
    some run beyond `bad` -> not supported; else inconclusive."""
    if errs.empty:
        return INCONCLUSIVE, f"{name}: not measured", {}
    worst = float(errs.max())
    nums = {f"{name}: max rel. error": worst, f"{name}: runs": int(len(errs))}
    if worst <= good:
        return SUPPORTED, f"{name}: every run within {worst:.3g} (<= {good})", nums
    if worst > bad:
        return NOT_SUPPORTED, f"{name}: a run off by {worst:.3g} (> {bad})", nums
    return INCONCLUSIVE, f"{name}: worst run off by {worst:.3g} (between {good} and {bad})", nums


# ----------------------------------------------------------------------------- ρ per initialization


def rho_by_init(ev: Evidence, rows: pd.DataFrame) -> dict[float, pd.DataFrame]:
    """Settings grouped by `model.init_scale` (every setting of an init kept: several settings of
    one init are averaged by the caller, never silently dropped)."""
    out: dict[float, pd.DataFrame] = {}
    for init, g in rows.groupby(pd.to_numeric(rows.get("model.init_scale"), errors="coerce")) if not rows.empty else []:
        if not math.isnan(init):
            out[float(init)] = g
    return dict(sorted(out.items()))


def rho_text(r: pd.Series) -> dict[str, float]:
    """ρ_L (the rule's ρ) and the product norm ρ_BN (what the paper's figures plot) of a setting."""
    return {"ρ": mean(r, "rho"), "ρ_BN": mean(r, "rho_bn")}


def split_gd(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(minibatch settings, full-batch `optim.full_batch` settings)."""
    if rows.empty:
        return rows, rows
    full = rows.get("optim.full_batch", pd.Series(False, index=rows.index)).map(is_true)
    return rows[~full], rows[full]
