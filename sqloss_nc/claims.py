"""The claims this tool exists to test, each judged from the analysis tables (`sqnc report`).

A claim (SPEC §12) has an id, one sentence, its source (a section, figure or equation of the
paper, `reference/paper.md`, or a follow-up paper), the configs whose runs are its evidence (the
runs are found by experiment name, i.e. the config's `name`, under OUT), the statistic computed
from the tables `sqnc analyze` wrote, and a documented rule with its thresholds that gives one of

- `supported`: the statistic is on the claim's side of the threshold;
- `not supported`: it is on the other side, on runs that are past the phase the claim is about;
- `inconclusive`: the runs cannot decide, and `why` says what is missing: a setting (an init, a
  weight decay, a batch size the comparison needs), epochs (a quantity still moving), seeds (a
  difference inside the seed-to-seed spread), or interpolation (a claim about the interpolating
  regime on runs that do not interpolate);
- `no runs`: no run of the evidence configs is under OUT.

Each verdict carries its numbers and the scale of the evidence (epochs, N, seeds, settings of the
runs used) next to the source's. This module reads only the CSVs of `OUT/analysis/` (through
`load_tables`), never run folders or the training code, so it judges runs made anywhere.

The thresholds are module constants (named in each claim's `rule`): they say how far a number
must be from the claim's boundary to count, not what the paper measured. Where a setting is
judged by a fall of a measure "from its peak", the peak is the largest value over the measured
epochs (NC1 typically rises in the first epochs before it falls).

Example:

```python
from pathlib import Path
from sqloss_nc.claims import CLAIMS, evaluate_claims, load_tables
for res in evaluate_claims(load_tables(Path("outputs"))):
    print(res.claim.number, res.claim.id, res.verdict, res.why)
```
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .analysis import ALL_LAYERS, ANALYSIS_DIR

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NO_RUNS = "supported", "not supported", "inconclusive", "no runs"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NO_RUNS)

# ----------------------------------------------------------------------------- thresholds
SETTLED_CHANGE = 0.05  # a quantity has settled when it moved < 5% over the last 10% of the epochs
TAIL_FRACTION = 0.1  # that window
RHO_INIT_RATIO_SAME = 1.5  # claim 1: final ρ over inits within a factor 1.5 = "nearly independent"
RHO_INIT_RATIO_DIFFERENT = 2.0  # claim 2: final ρ over inits apart by 2x or more = "depends"
TEST_ERROR_FLOOR = 0.01  # claims 2, 7: a test-error difference must exceed 1 point (and the seed spread)
MARGIN_CV_FACTOR = 1.5  # claim 3: the WD runs' margin std/mean at least 1.5x below the no-WD runs'
INTERPOLATING_ACC = 0.99  # train accuracy at which a run counts as interpolating
NC1_FALL = 10.0  # claims 4, 8: NC1 falls >= 10x from its peak
NC1_FALL_NONE = 2.0  # ... and < 2x from its peak on a run no longer falling is "does not fall"
NC2_MAX = 0.2  # claims 4, 8: the final NC2 measures (equinorm, equiangularity or max-angle) <= 0.2
STILL_FALLING = 0.9  # a measure is still falling when its last value is < 0.9x the previous one
EQ35_SUPPORTED, EQ35_NOT = 0.05, 0.25  # claim 5: relative error of <w_c, mu_G> against M/C
EQ34_SUPPORTED, EQ34_NOT = 0.2, 0.5  # claim 5: relative error of mean ||w_c||^2 against Eq. 34
RHO_EQ_SUPPORTED, RHO_EQ_NOT = 0.1, 0.3  # claim 6: relative error of rho against Eq. 11
TREND_SUPPORTED, TREND_NOT = 0.8, 0.0  # claims 7, 10: Spearman correlation of a trend
NC1_EXP_FACTOR = 1.5  # claim 9: SGD's final NC1 at least 1.5x below GD's
EXP_LOSS_MATCH = 2.0  # claim 9: GD's final train loss within 2x of SGD's, or GD has not caught up
RANK_DROP = 0.05  # claim 10: a rank "falls" when it is >= 5% below the comparison
RANK_NO_WD_DROP = 0.2  # claim 10: without WD a fall of >= 20% from init contradicts "not without WD"
NOISE_RATIO = 10.0  # claim 11: SGD's end-of-training relative update >= 10x GD's
NOISE_RATIO_NONE = 2.0  # ... and < 2x is "vanishes like GD's"
NC1_ORDERS = 100.0  # claim 12: NC1 falls by >= 2 orders of magnitude from its peak
PERP_NEGLIGIBLE = 0.1  # claim 12: L_perp / total <= 10% at the end
PERP_LARGE = 0.5  # ... and > 50% on a run no longer changing is "not negligible"


# ----------------------------------------------------------------------------- tables


@dataclass
class Tables:
    """The analysis tables a claim may read (empty DataFrames for tables not written).

    Args:
        out: the output root (`OUT`, holding `analysis/`).
        frames: table name (`summary`, `runs`, `epochs`, `nc_epochs`, `theory`, `rank_final`,
            `rank_epochs`, `update_norms`) -> DataFrame.

    Example: `Tables.load(Path("outputs")).get("summary")`
    """

    out: Path
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)

    NAMES = ("runs", "summary", "epochs", "nc_epochs", "theory", "rank_final", "rank_epochs", "update_norms")

    @classmethod
    def load(cls, out: Path) -> "Tables":
        adir = Path(out) / ANALYSIS_DIR
        frames = {}
        for name in cls.NAMES:
            p = adir / f"{name}.csv"
            try:
                frames[name] = pd.read_csv(p, dtype={"batch": str}) if p.exists() else pd.DataFrame()
            except pd.errors.EmptyDataError:
                frames[name] = pd.DataFrame()
        return cls(Path(out), frames)

    def get(self, name: str) -> pd.DataFrame:
        return self.frames.get(name, pd.DataFrame())


def load_tables(out: Path) -> Tables:
    """The analysis tables of `out` (see `Tables`). Example: `load_tables(Path("outputs"))`."""
    return Tables.load(out)


# ----------------------------------------------------------------------------- claims and verdicts


@dataclass(frozen=True)
class Scale:
    """How much evidence: epochs, training samples N, seeds per setting, settings.

    Example: `Scale(1000, 10000, 10, "3 inits x 2 WD").text()`
    """

    epochs: Any = None
    n_train: Any = None
    seeds: Any = None
    settings: Any = None

    def text(self) -> str:
        parts = []
        for label, v in (("epochs", self.epochs), ("N", self.n_train), ("seeds", self.seeds), ("settings", self.settings)):
            if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
                continue
            # a described grid ("init {0.01, 1, 5} x WD {0.01, 0}") reads without its label
            parts.append(v if label == "settings" and isinstance(v, str) else f"{label} {_g(v)}")
        return ", ".join(parts) or "—"


@dataclass
class Verdict:
    """What a claim's rule returned.

    Args:
        verdict: one of VERDICTS.
        why: one line: the statistic against its threshold, or what is missing.
        numbers: name -> value of the numbers the rule used.
        used: the (experiment, setting) pairs it read.

    Example: `Verdict(INCONCLUSIVE, "too few settings: needs WD 0", used=[("fig2_init_wd", "init=5")])`
    """

    verdict: str
    why: str
    numbers: dict[str, Any] = field(default_factory=dict)
    used: list[tuple[str, str]] = field(default_factory=list)  # (experiment, setting)


@dataclass(frozen=True)
class Claim:
    """One claim of the registry.

    Args:
        number: 1..12, the issue's order.
        id: a short stable name (`rho_wd_init`).
        sentence: the claim in one sentence.
        source: where it is made (paper section/figure/equation, or the follow-up paper).
        configs: the configs whose runs are its evidence (paths in this repository).
        experiments: their experiment names (the configs' `name`), the folders under OUT.
        statistic: what is computed, from which analysis table.
        rule: the decision rule with its thresholds.
        source_scale: the scale of the source's evidence.
        figures: the figure kinds (`sqnc figures`) that show it.
        judge: the rule, as a function of the claim's `Evidence`.

    Example: `CLAIMS[0].sentence`
    """

    number: int
    id: str
    sentence: str
    source: str
    configs: tuple[str, ...]
    experiments: tuple[str, ...]
    statistic: str
    rule: str
    source_scale: Scale
    figures: tuple[str, ...]
    judge: Callable[["Evidence"], Verdict]


@dataclass
class ClaimResult:
    """A claim judged on OUT's tables.

    Args:
        claim: the registry entry.
        verdict, why, numbers: as in `Verdict`.
        runs: how many runs the settings used hold (their seeds summed).
        settings: the (experiment, setting) pairs used.
        scale: their epochs, N, seeds and number of settings.

    Example: `evaluate_claim(CLAIMS[0], tables).scale.text()` gives e.g. "epochs 100, N 2000, seeds 1, settings 2".
    """

    claim: Claim
    verdict: str
    why: str
    numbers: dict[str, Any]
    runs: int
    settings: list[tuple[str, str]]
    scale: Scale


class Evidence:
    """The rows of the analysis tables that belong to one claim's experiments.

    Args:
        tables: the analysis tables.
        experiments: the experiment names to keep.

    Example: `Evidence(load_tables(out), ("fig2_init_wd",)).summary`
    """

    def __init__(self, tables: Tables, experiments: tuple[str, ...]):
        self.tables = tables

        def keep(df: pd.DataFrame) -> pd.DataFrame:
            if df.empty or "experiment" not in df:
                return df.iloc[0:0] if not df.empty else df
            return df[df["experiment"].astype(str).isin(experiments)].reset_index(drop=True)

        self.summary = keep(tables.get("summary"))
        self.runs = keep(tables.get("runs"))
        self.epochs = keep(tables.get("epochs"))
        self.nc_epochs = keep(tables.get("nc_epochs"))
        self.theory = keep(tables.get("theory"))
        self.rank_final = keep(tables.get("rank_final"))
        self.rank_epochs = keep(tables.get("rank_epochs"))
        self.update_norms = keep(tables.get("update_norms"))

    # -- settings and their values
    def settings(self, **where: Any) -> pd.DataFrame:
        """Summary rows whose config values satisfy `where` (`key=value`, or a callable on the
        value); dotted keys are written with `__` (`optim__weight_decay=0`)."""
        s = self.summary
        for key, cond in where.items():
            col = key.replace("__", ".")
            if s.empty:
                break
            # A key older runs lack reads as NaN (e.g. model.bias: not biased; label_noise: none).
            vals = s[col] if col in s else pd.Series(np.nan, index=s.index)
            mask = vals.map(cond) if callable(cond) else vals.map(lambda v, c=cond: _same(v, c))
            s = s[mask.astype(bool)]
        return s

    def curve(self, table: str, row: pd.Series, col: str) -> pd.Series:
        """A setting's `<col>_mean` against epoch in `epochs` or `nc_epochs` (NaN rows dropped)."""
        df = getattr(self, table)
        if df.empty or f"{col}_mean" not in df:
            return pd.Series(dtype=float)
        sub = df[(df["experiment"] == row["experiment"]) & (df["setting"] == row["setting"])]
        s = pd.Series(pd.to_numeric(sub[f"{col}_mean"], errors="coerce").to_numpy(), index=pd.to_numeric(sub["epoch"]).to_numpy())
        return s.dropna().sort_index()

    def n_train(self, rows: pd.DataFrame) -> float:
        r = self.runs
        if r.empty or "n_train" not in r or rows.empty:
            return float("nan")
        keys = set(zip(rows["experiment"], rows["setting"]))
        sel = r[[(e, s) in keys for e, s in zip(r["experiment"], r["setting"])]]
        return float(pd.to_numeric(sel["n_train"], errors="coerce").max()) if not sel.empty else float("nan")


def _same(v: Any, c: Any) -> bool:
    try:
        return math.isclose(float(v), float(c), rel_tol=1e-9, abs_tol=1e-15)
    except (TypeError, ValueError):
        return str(v).lower() == str(c).lower()


def _num(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return x


def _g(v: Any, spec: str = ".3g") -> str:
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "nan" if math.isnan(v) else format(float(v), spec)
    return str(v)


def _mean(row: pd.Series, col: str) -> float:
    return _num(row.get(f"{col}_mean"))


def _std(row: pd.Series, col: str) -> float:
    s = _num(row.get(f"{col}_std"))
    return 0.0 if math.isnan(s) else s


def _classes(row: pd.Series) -> int:
    v = row.get("data.classes")
    try:
        return len(json.loads(v)) if isinstance(v, str) else len(v)
    except (TypeError, ValueError):
        return 0


def _rows(df: pd.DataFrame) -> list[tuple[str, str]]:
    return list(zip(df["experiment"].astype(str), df["setting"].astype(str))) if not df.empty else []


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


def peak_fall(curve: pd.Series) -> tuple[float, bool]:
    """(peak / final, still falling) of a measure over its recorded epochs; still falling when
    the final value is below STILL_FALLING x the previous one.

    Example: `peak_fall(pd.Series([1.0, 4.0, 0.4, 0.2]))` is (20.0, True).
    """
    c = curve.dropna()
    if len(c) < 2:
        return float("nan"), False
    final = float(c.iloc[-1])
    peak = float(c.max())
    fall = peak / final if final > 0 else float("inf")
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
    """Per-setting (label, verdict, why) -> the claim's verdict: all supported or supported with
    some inconclusive -> supported; not supported with none supported -> not supported; both ->
    inconclusive (the settings disagree); else inconclusive.

    Example: `combine([("a", "supported", "x"), ("b", "inconclusive", "y")])[0] == "supported"`.
    """
    verdicts = [v for _, v, _ in outcomes]
    why = "; ".join(f"{label}: {v} ({w})" for label, v, w in outcomes)
    if SUPPORTED in verdicts and NOT_SUPPORTED in verdicts:
        return INCONCLUSIVE, "the settings disagree — " + why
    if SUPPORTED in verdicts:
        return SUPPORTED, why
    if NOT_SUPPORTED in verdicts:
        return NOT_SUPPORTED, why
    return INCONCLUSIVE, why


def _label(r: pd.Series) -> str:
    """`experiment: setting`, or the experiment alone when it is its only setting's name."""
    return str(r["experiment"]) if str(r["setting"]) == str(r["experiment"]) else f"{r['experiment']}: {r['setting']}"


def _positive(v: Any) -> bool:
    return _num(v) > 0


def _zero(v: Any) -> bool:
    return _num(v) == 0


def _is_true(v: Any) -> bool:
    return str(v).strip().lower() in ("true", "1", "1.0")


def _square(v: Any) -> bool:
    return str(v) in ("square", "square_rescaled")


def _no_noise(v: Any) -> bool:
    x = _num(v)
    return math.isnan(x) or x == 0


# ----------------------------------------------------------------------------- the rules


def _rho_by_init(ev: Evidence, rows: pd.DataFrame) -> tuple[dict[float, pd.Series], dict[str, float]]:
    by_init: dict[float, pd.Series] = {}
    changes: dict[str, float] = {}
    for _, r in rows.iterrows():
        init = _num(r.get("model.init_scale"))
        if math.isnan(init):
            continue
        by_init[init] = r
        changes[f"init={_g(init)}"] = tail_change(ev.curve("epochs", r, "rho"))
    return by_init, changes


def judge_rho_wd_init(ev: Evidence) -> Verdict:
    rows = ev.settings(optim__weight_decay=_positive, model__normalization="batchnorm")
    by_init, changes = _rho_by_init(ev, rows)
    used = _rows(rows)
    if len(by_init) < 2:
        return Verdict(INCONCLUSIVE, f"too few settings: needs >= 2 values of model.init_scale with BN and WD > 0, has {len(by_init)}", used=used)
    rhos = {i: _mean(r, "rho") for i, r in sorted(by_init.items())}
    ratio = max(rhos.values()) / min(rhos.values())
    moving = {k: c for k, c in changes.items() if not c < SETTLED_CHANGE}
    nums = {f"final ρ (init {_g(i)})": v for i, v in rhos.items()}
    nums["max/min over inits"] = ratio
    nums.update({f"ρ change over last 10% ({k})": v for k, v in changes.items()})
    if ratio <= RHO_INIT_RATIO_SAME and not moving:
        return Verdict(SUPPORTED, f"final ρ within {ratio:.2f}x over inits {', '.join(_g(i) for i in rhos)} and settled", nums, used)
    if moving:
        return Verdict(
            INCONCLUSIVE,
            f"too few epochs: ρ still moving ({', '.join(f'{k}: {v:.0%}' for k, v in moving.items())} over the last 10% of the epochs); max/min over inits {ratio:.2f}",
            nums,
            used,
        )
    return Verdict(NOT_SUPPORTED, f"final ρ differs {ratio:.2f}x (> {RHO_INIT_RATIO_SAME}) between inits, settled", nums, used)


def judge_rho_nowd_init(ev: Evidence) -> Verdict:
    rows = ev.settings(optim__weight_decay=_zero)
    by_init, changes = _rho_by_init(ev, rows)
    used = _rows(rows)
    if len(by_init) < 2:
        return Verdict(INCONCLUSIVE, f"too few settings: needs >= 2 values of model.init_scale with WD 0, has {len(by_init)}", used=used)
    inits = sorted(by_init)
    small, large = by_init[inits[0]], by_init[inits[-1]]
    rhos = {i: _mean(by_init[i], "rho") for i in inits}
    ratio = max(rhos.values()) / min(rhos.values())
    d_err = _mean(large, "test_error") - _mean(small, "test_error")
    spread = _std(large, "test_error") + _std(small, "test_error")
    floor = max(TEST_ERROR_FLOOR, spread)
    nums = {f"final ρ (init {_g(i)})": v for i, v in rhos.items()}
    nums["max/min over inits"] = ratio
    nums[f"test error init {_g(inits[-1])} − init {_g(inits[0])}"] = d_err
    nums["noise floor (1 point or the seed std sum)"] = floor
    seeds = int(min(_num(by_init[i].get("n_seeds")) for i in inits))
    if ratio < RHO_INIT_RATIO_DIFFERENT:
        return Verdict(NOT_SUPPORTED, f"final ρ within {ratio:.2f}x (< {RHO_INIT_RATIO_DIFFERENT}) over inits: it does not depend on the init here", nums, used)
    if d_err > floor:
        return Verdict(SUPPORTED, f"ρ differs {ratio:.3g}x between inits and the largest init's test error is higher by {d_err:.3f} (> {floor:.3f})", nums, used)
    if d_err < -floor:
        return Verdict(NOT_SUPPORTED, f"ρ differs {ratio:.3g}x but the largest init generalizes better (test error {d_err:+.3f})", nums, used)
    why = f"ρ differs {ratio:.3g}x, but the test-error difference {d_err:+.3f} is within the noise floor {floor:.3f}"
    if seeds < 2:
        why += " (one seed: the seed spread is unknown)"
    return Verdict(INCONCLUSIVE, why, nums, used)


def judge_margins(ev: Evidence) -> Verdict:
    wd = ev.settings(optim__weight_decay=_positive)
    nowd = ev.settings(optim__weight_decay=_zero)
    used = _rows(wd) + _rows(nowd)
    if wd.empty or nowd.empty:
        return Verdict(INCONCLUSIVE, f"too few settings: needs runs with WD > 0 and with WD 0 ({len(wd)} and {len(nowd)} here)", used=used)

    def cv(rows: pd.DataFrame) -> tuple[float, float]:
        mean = np.array([_mean(r, "margin_mean") for _, r in rows.iterrows()])
        std = np.array([_mean(r, "margin_std") for _, r in rows.iterrows()])
        return float(np.nanmean(std / np.abs(mean))), float(np.nanmin(mean))

    cv_wd, min_wd = cv(wd)
    cv_0, min_0 = cv(nowd)
    nums = {"margin std/mean, WD > 0": cv_wd, "margin std/mean, WD 0": cv_0, "ratio (WD 0 / WD)": cv_0 / cv_wd if cv_wd > 0 else float("inf")}
    if not (min_wd > 0 and min_0 > 0):
        return Verdict(INCONCLUSIVE, "a setting's mean normalized margin is not positive: it does not separate the training set yet (too few epochs)", nums, used)
    if cv_wd * MARGIN_CV_FACTOR <= cv_0:
        return Verdict(SUPPORTED, f"normalized margins {cv_0 / cv_wd:.3g}x more concentrated (std/mean) with WD than without", nums, used)
    if cv_wd >= cv_0:
        return Verdict(NOT_SUPPORTED, f"margins are not more concentrated with WD (std/mean {cv_wd:.3g} vs {cv_0:.3g} without)", nums, used)
    return Verdict(INCONCLUSIVE, f"with WD the margins are only {cv_0 / cv_wd:.3g}x more concentrated (< {MARGIN_CV_FACTOR}x)", nums, used)


def _nc_setting(ev: Evidence, r: pd.Series) -> tuple[str, str, dict[str, float]]:
    """The NC rule of claims 4 and 8 on one setting: (verdict, why, numbers)."""
    fall, falling = peak_fall(ev.curve("nc_epochs", r, "nc1"))
    c = _classes(r)
    nc2_cols = ["nc2_equinorm_means", "nc2_equiangular_means" if c > 2 else "nc2_maxangle_means"]
    nc2 = {col: _mean(r, col) for col in nc2_cols}
    acc = _mean(r, "train_acc")
    nums = {"NC1 peak/final": fall, "NC1 final": _mean(r, "nc1"), **{f"{k} final": v for k, v in nc2.items()}, "train acc": acc}
    if math.isnan(fall):
        return INCONCLUSIVE, "NC measured at < 2 epochs", nums
    nc2_ok = all(v <= NC2_MAX for v in nc2.values() if not math.isnan(v))
    worst = max((v for v in nc2.values() if not math.isnan(v)), default=float("nan"))
    if fall >= NC1_FALL and nc2_ok:
        return SUPPORTED, f"NC1 fell {fall:.3g}x from its peak, NC2 <= {worst:.2g}", nums
    if fall < NC1_FALL_NONE and not falling:
        if acc < INTERPOLATING_ACC:
            return INCONCLUSIVE, f"NC1 fell only {fall:.3g}x but the net does not interpolate yet (train acc {acc:.3f})", nums
        return NOT_SUPPORTED, f"NC1 fell only {fall:.3g}x from its peak and is no longer falling", nums
    parts = []
    if fall < NC1_FALL:
        parts.append(f"NC1 fell {fall:.3g}x (< {NC1_FALL:g}x){', still falling' if falling else ''}")
    if not nc2_ok:
        parts.append(f"NC2 at {worst:.2g} (> {NC2_MAX})")
    return INCONCLUSIVE, "too few epochs? " + "; ".join(parts), nums


def _nc_claim(ev: Evidence, rows: pd.DataFrame, empty_why: str) -> Verdict:
    if rows.empty:
        return Verdict(INCONCLUSIVE, empty_why)
    outcomes, nums = [], {}
    for _, r in rows.iterrows():
        v, why, n = _nc_setting(ev, r)
        outcomes.append((_label(r), v, why))
        nums.update({f"{k} [{r['setting']}]": x for k, x in n.items()})
    verdict, why = combine(outcomes)
    return Verdict(verdict, why, nums, _rows(rows))


def judge_nc_square_wd(ev: Evidence) -> Verdict:
    rows = ev.settings(loss__kind=_square, optim__weight_decay=_positive, data__label_noise=_no_noise)
    return _nc_claim(ev, rows, "too few settings: no square-loss run with WD > 0 and true labels")


def judge_nc_random_labels(ev: Evidence) -> Verdict:
    rows = ev.settings(data__label_noise=_positive)
    return _nc_claim(ev, rows, "too few settings: no run with data.label_noise > 0")


def _theory_rows(ev: Evidence, check: str, rows: pd.DataFrame) -> pd.DataFrame:
    t = ev.theory
    if t.empty or "check" not in t:
        return t
    keys = set(_rows(rows))
    sel = t[(t["check"] == check).to_numpy() & np.array([(e, s) in keys for e, s in zip(t["experiment"], t["setting"])], dtype=bool)]
    if "state" in sel:
        sel = sel[sel["state"] == "done"]
    return sel


def _rel_verdict(errs: pd.Series, good: float, bad: float, name: str) -> tuple[str, str]:
    med = float(errs.median())
    if med <= good:
        return SUPPORTED, f"{name}: median relative error {med:.3g} <= {good}"
    if med > bad:
        return NOT_SUPPORTED, f"{name}: median relative error {med:.3g} > {bad}"
    return INCONCLUSIVE, f"{name}: median relative error {med:.3g} between {good} and {bad}"


def judge_classifier_eqs(ev: Evidence) -> Verdict:
    rows = ev.settings(loss__kind=_square, optim__weight_decay=_positive, data__label_noise=_no_noise, model__bias=lambda v: not _is_true(v))
    used = _rows(rows)
    e35 = pd.to_numeric(_theory_rows(ev, "w_dot_muG_eq35", rows).get("rel_error", pd.Series(dtype=float)), errors="coerce").dropna()
    e34 = pd.to_numeric(_theory_rows(ev, "w_norm_sq_eq34", rows).get("rel_error", pd.Series(dtype=float)), errors="coerce").dropna()
    if e35.empty and e34.empty:
        return Verdict(INCONCLUSIVE, "too few settings: no bias-free square-loss run with WD > 0 and NC measured (theory.csv rows w_dot_muG_eq35, w_norm_sq_eq34)", used=used)
    nums: dict[str, Any] = {}
    outcomes = []
    for name, errs, good, bad in (("Eq. 35 <w_c, μ_G> = M/C", e35, EQ35_SUPPORTED, EQ35_NOT), ("Eq. 34 ||w_c||²", e34, EQ34_SUPPORTED, EQ34_NOT)):
        if errs.empty:
            outcomes.append((name, INCONCLUSIVE, "not measured"))
            continue
        nums[f"{name}: median rel. error"] = float(errs.median())
        nums[f"{name}: range"] = f"{errs.min():.3g}–{errs.max():.3g} over {len(errs)} runs"
        v, why = _rel_verdict(errs, good, bad, name)
        outcomes.append((name, v, why))
    acc = min((_mean(r, "train_acc") for _, r in rows.iterrows()), default=float("nan"))
    nums["lowest train acc"] = acc
    verdicts = [v for _, v, _ in outcomes]
    why = "; ".join(w for _, _, w in outcomes)
    if all(v == SUPPORTED for v in verdicts):
        return Verdict(SUPPORTED, why, nums, used)
    if NOT_SUPPORTED in verdicts:
        if acc < INTERPOLATING_ACC:
            return Verdict(INCONCLUSIVE, f"{why}; but not every run interpolates (train acc {acc:.3f}): the equations describe the collapsed state", nums, used)
        return Verdict(NOT_SUPPORTED, why, nums, used)
    return Verdict(INCONCLUSIVE, why, nums, used)


def judge_rho_eq(ev: Evidence) -> Verdict:
    rows = ev.settings(loss__kind="square", optim__weight_decay=_positive, data__label_noise=_no_noise)
    used = _rows(rows)
    errs = pd.to_numeric(_theory_rows(ev, "rho_eq", rows).get("rel_error", pd.Series(dtype=float)), errors="coerce").dropna()
    if errs.empty:
        return Verdict(INCONCLUSIVE, "too few settings: no square-loss run with WD > 0 (theory.csv row rho_eq)", used=used)
    changes = {r["setting"]: tail_change(ev.curve("epochs", r, "rho")) for _, r in rows.iterrows()}
    moving = {k: v for k, v in changes.items() if not v < SETTLED_CHANGE}
    nums = {"median rel. error": float(errs.median()), "range": f"{errs.min():.3g}–{errs.max():.3g} over {len(errs)} runs"}
    nums.update({f"ρ change over last 10% [{k}]": v for k, v in changes.items()})
    v, why = _rel_verdict(errs, RHO_EQ_SUPPORTED, RHO_EQ_NOT, "ρ against μ/(M+λ)")
    if v == NOT_SUPPORTED and moving:
        return Verdict(INCONCLUSIVE, f"{why}; too few epochs: ρ still moving in {len(moving)} setting(s), and Eq. 11 is an equilibrium", nums, used)
    return Verdict(v, why, nums, used)


def judge_random_labels_rho(ev: Evidence) -> Verdict:
    rows = ev.settings(optim__weight_decay=_positive)
    rows = rows[pd.to_numeric(rows.get("data.label_noise", pd.Series(dtype=float)), errors="coerce").notna()] if not rows.empty else rows
    used = _rows(rows)
    levels = sorted({_num(v) for v in rows["data.label_noise"]}) if not rows.empty else []
    if len(levels) < 3:
        return Verdict(INCONCLUSIVE, f"too few settings: needs >= 3 label-noise levels with WD > 0, has {len(levels)}", used=used)
    by = {lvl: rows[rows["data.label_noise"].map(lambda v, lvl=lvl: _same(v, lvl))] for lvl in levels}
    rho = [float(np.mean([_mean(r, "rho") for _, r in g.iterrows()])) for g in by.values()]
    err = [float(np.mean([_mean(r, "test_error") for _, r in g.iterrows()])) for g in by.values()]
    acc = min(_mean(r, "train_acc") for _, r in rows.iterrows())
    s_rho, s_err = spearman(levels, rho), spearman(levels, err)
    nums = {f"final ρ (noise {_g(lvl)})": v for lvl, v in zip(levels, rho)}
    nums.update({f"test error (noise {_g(lvl)})": v for lvl, v in zip(levels, err)})
    nums.update({"Spearman(noise, ρ)": s_rho, "Spearman(noise, test error)": s_err, "lowest train acc": acc})
    if s_rho >= TREND_SUPPORTED and s_err >= TREND_SUPPORTED:
        return Verdict(SUPPORTED, f"ρ and test error rise with the label noise (Spearman {s_rho:.2f}, {s_err:.2f})", nums, used)
    if s_rho <= TREND_NOT or s_err <= TREND_NOT:
        if acc < INTERPOLATING_ACC:
            return Verdict(INCONCLUSIVE, f"no rising trend (Spearman ρ {s_rho:.2f}, error {s_err:.2f}), but not every run interpolates its labels (train acc {acc:.3f})", nums, used)
        return Verdict(NOT_SUPPORTED, f"no rising trend (Spearman ρ {s_rho:.2f}, error {s_err:.2f})", nums, used)
    return Verdict(INCONCLUSIVE, f"weak trend (Spearman ρ {s_rho:.2f}, error {s_err:.2f}; needs >= {TREND_SUPPORTED})", nums, used)


def _split_gd(ev: Evidence, rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    if rows.empty:
        return rows, rows
    full = rows.get("optim.full_batch", pd.Series(False, index=rows.index)).map(_is_true)
    return rows[~full], rows[full]


def judge_exp_nc1_batch(ev: Evidence) -> Verdict:
    rows = ev.settings(loss__kind="exponential")
    sgd, gd = _split_gd(ev, rows)
    used = _rows(rows)
    if sgd.empty or gd.empty:
        return Verdict(INCONCLUSIVE, f"too few settings: needs a minibatch and a full-batch run ({len(sgd)} and {len(gd)} here)", used=used)
    nc1_sgd = min(_mean(r, "nc1") for _, r in sgd.iterrows())
    nc1_gd = min(_mean(r, "nc1") for _, r in gd.iterrows())
    loss_sgd = min(_mean(r, "train_loss") for _, r in sgd.iterrows())
    loss_gd = min(_mean(r, "train_loss") for _, r in gd.iterrows())
    nums = {"NC1 final, SGD": nc1_sgd, "NC1 final, GD": nc1_gd, "train loss, SGD": loss_sgd, "train loss, GD": loss_gd}
    if nc1_sgd * NC1_EXP_FACTOR <= nc1_gd:
        if loss_gd > EXP_LOSS_MATCH * loss_sgd:
            return Verdict(
                INCONCLUSIVE,
                f"SGD's NC1 is {nc1_gd / nc1_sgd:.3g}x lower, but GD has not reached SGD's loss ({loss_gd:.3g} vs {loss_sgd:.3g}): too few GD epochs to tell NC1 from fit",
                nums,
                used,
            )
        return Verdict(SUPPORTED, f"NC1 {nc1_gd / nc1_sgd:.3g}x lower with small batches at a comparable loss", nums, used)
    if nc1_sgd >= nc1_gd:
        return Verdict(NOT_SUPPORTED, f"GD's NC1 ({nc1_gd:.3g}) is not above SGD's ({nc1_sgd:.3g})", nums, used)
    return Verdict(INCONCLUSIVE, f"SGD's NC1 only {nc1_gd / nc1_sgd:.3g}x lower (< {NC1_EXP_FACTOR}x)", nums, used)


def judge_rank(ev: Evidence) -> Verdict:
    rf = ev.rank_final
    used = _rows(ev.summary)
    if rf.empty or "rank_mean" not in rf:
        return Verdict(INCONCLUSIVE, "no spectra (spectra.csv) in these runs", used=used)
    rf = rf[rf["layer"] != "classifier"].copy()  # the classifier's rank is bounded by C
    rf["rel"] = pd.to_numeric(rf["rank_mean"], errors="coerce") / pd.to_numeric(rf["n_singular"], errors="coerce")
    per = rf.groupby(["setting", "batch", "batch_size_numeric", "optim.weight_decay"], dropna=False)["rel"].mean().reset_index()
    wds = sorted(per["optim.weight_decay"].astype(float).unique())
    if len(wds) < 2 or wds[0] != 0:
        return Verdict(INCONCLUSIVE, f"too few settings: needs WD 0 and WD > 0, has WD {', '.join(_g(w) for w in wds)}", used=used)
    top = wds[-1]
    at_top = per[per["optim.weight_decay"].astype(float) == top].sort_values("batch_size_numeric")
    at_zero = per[per["optim.weight_decay"].astype(float) == 0].set_index("batch")["rel"]
    nums: dict[str, Any] = {}
    for _, r in per.sort_values(["optim.weight_decay", "batch_size_numeric"]).iterrows():
        nums[f"rank/max, WD {_g(r['optim.weight_decay'])}, batch {r['batch']}"] = r["rel"]
    # (i) WD lowers the rank of the minibatch runs.
    mini = at_top[at_top["batch"] != "full"]
    drops = [1 - r["rel"] / at_zero[r["batch"]] for _, r in mini.iterrows() if r["batch"] in at_zero.index]
    wd_lowers = bool(drops) and min(drops) >= RANK_DROP
    nums[f"rank drop WD {_g(top)} vs 0 (minibatch, smallest)"] = min(drops) if drops else float("nan")
    # (ii) more with smaller batches: at the largest WD, the rank must not fall as the batch grows.
    ordered = at_top[["batch", "rel"]].to_numpy().tolist()
    inversions = [(a, b) for (a, ra), (b, rb) in zip(ordered, ordered[1:]) if ra > rb * (1 + RANK_DROP)]
    rises = [(a, b) for (a, ra), (b, rb) in zip(ordered, ordered[1:]) if rb > ra * (1 + RANK_DROP)]
    s_batch = spearman(at_top["batch_size_numeric"].astype(float).tolist(), at_top["rel"].tolist()) if len(at_top) >= 2 else float("nan")
    nums[f"Spearman(batch, rank) at WD {_g(top)}"] = s_batch
    # (iii) not without WD: the WD-0 ranks stay near their initial value.
    re = ev.rank_epochs
    zero_drop = float("nan")
    if not re.empty and "rank_mean" in re:
        zs = set(per.loc[per["optim.weight_decay"].astype(float) == 0, "setting"])
        z = re[re["setting"].isin(zs) & (re["layer"] != "classifier")]
        if not z.empty:
            e0 = z[z["epoch"] == z["epoch"].min()].groupby("setting")["rank_mean"].mean()
            e1 = z[z["epoch"] == z["epoch"].max()].groupby("setting")["rank_mean"].mean()
            zero_drop = float((1 - e1 / e0).max())
    nums["largest rank drop from init at WD 0"] = zero_drop
    parts = []
    verdicts = []
    verdicts.append(SUPPORTED if wd_lowers else NOT_SUPPORTED)
    parts.append(f"WD {_g(top)} {'lowers' if wd_lowers else 'does not lower'} the minibatch rank (smallest drop {min(drops) if drops else float('nan'):.0%})")
    rel = dict(ordered)
    if len(ordered) < 2:
        verdicts.append(INCONCLUSIVE)
        parts.append("too few batch sizes (needs >= 2 at the largest WD)")
    elif inversions:
        verdicts.append(NOT_SUPPORTED)
        parts.append(
            "smaller batches do not give a lower rank: "
            + ", ".join(f"batch {a} {rel[a]:.2f} > batch {b} {rel[b]:.2f}" for a, b in inversions)
            + f" (rank/max at WD {_g(top)})"
        )
    elif rises:
        verdicts.append(SUPPORTED)
        parts.append(f"rank rises with batch size (Spearman {s_batch:.2f})")
    else:
        verdicts.append(INCONCLUSIVE)
        parts.append(f"rank within {RANK_DROP:.0%} across batch sizes: no batch-size effect to read")
    if math.isnan(zero_drop):
        verdicts.append(INCONCLUSIVE)
        parts.append("no initial rank of the WD-0 runs")
    elif zero_drop >= RANK_NO_WD_DROP:
        verdicts.append(NOT_SUPPORTED)
        parts.append(f"without WD the rank still fell {zero_drop:.0%} from init")
    else:
        verdicts.append(SUPPORTED)
        parts.append(f"without WD the rank stays within {zero_drop:.0%} of init")
    why = "; ".join(parts)
    if all(v == SUPPORTED for v in verdicts):
        return Verdict(SUPPORTED, why, nums, used)
    if NOT_SUPPORTED in verdicts:
        return Verdict(NOT_SUPPORTED, why, nums, used)
    return Verdict(INCONCLUSIVE, why, nums, used)


def judge_sgd_noise(ev: Evidence) -> Verdict:
    un = ev.update_norms
    sgd, gd = _split_gd(ev, ev.summary)
    used = _rows(ev.summary)
    if un.empty or "tail_mean" not in un:
        return Verdict(INCONCLUSIVE, "no update norms (update_norm_<layer> in metrics.csv) in these runs", used=used)
    if sgd.empty or gd.empty:
        return Verdict(INCONCLUSIVE, f"too few settings: needs a minibatch and a full-batch run ({len(sgd)} and {len(gd)} here)", used=used)
    allrows = un[un["layer"] == ALL_LAYERS].set_index("setting")
    t_sgd = float(np.nanmin([_num(allrows["tail_mean"].get(s)) for s in sgd["setting"]]))
    t_gd = float(np.nanmax([_num(allrows["tail_mean"].get(s)) for s in gd["setting"]]))
    ratio = t_sgd / t_gd if t_gd > 0 else float("inf")
    nums = {"relative update at the end, SGD": t_sgd, "relative update at the end, GD": t_gd, "SGD / GD": ratio}
    if ratio >= NOISE_RATIO:
        return Verdict(SUPPORTED, f"SGD's relative update per epoch stays {ratio:.3g}x above GD's at the end", nums, used)
    if ratio < NOISE_RATIO_NONE:
        return Verdict(NOT_SUPPORTED, f"SGD's relative update is within {ratio:.3g}x of GD's at the end", nums, used)
    return Verdict(INCONCLUSIVE, f"SGD's relative update {ratio:.3g}x GD's (between {NOISE_RATIO_NONE:g}x and {NOISE_RATIO:g}x)", nums, used)


def judge_mse_resnet(ev: Evidence) -> Verdict:
    rows = ev.settings(loss__kind=_square)
    if rows.empty:
        return Verdict(INCONCLUSIVE, "too few settings: no square-loss run")
    outcomes, nums = [], {}
    for _, r in rows.iterrows():
        fall, falling = peak_fall(ev.curve("nc_epochs", r, "nc1"))
        perp, total = _mean(r, "mse_perp"), _mean(r, "mse_total")
        share = perp / total if total > 0 else float("nan")
        perp_moving = tail_change(ev.curve("nc_epochs", r, "mse_perp"))
        tag = f"[{r['setting']}]" if len(rows) > 1 else ""
        nums.update({f"NC1 peak/final {tag}": fall, f"L_perp / total at the end {tag}": share, f"ls_distance {tag}": _mean(r, "ls_distance")})
        label = _label(r)
        if math.isnan(fall) or math.isnan(share):
            outcomes.append((label, INCONCLUSIVE, "NC1 or the MSE decomposition not measured at >= 2 epochs"))
        elif fall >= NC1_ORDERS and share <= PERP_NEGLIGIBLE:
            outcomes.append((label, SUPPORTED, f"NC1 fell {fall:.3g}x, L_perp {share:.1%} of the total"))
        elif (fall < NC1_FALL and not falling) or (share > PERP_LARGE and perp_moving < SETTLED_CHANGE):
            outcomes.append((label, NOT_SUPPORTED, f"NC1 fell {fall:.3g}x, L_perp {share:.1%} of the total, no longer changing"))
        else:
            short = [f"NC1 fell {fall:.3g}x" + (f" (needs {NC1_ORDERS:g}x)" if fall < NC1_ORDERS else ""), f"L_perp {share:.1%} of the total" + (f" (needs <= {PERP_NEGLIGIBLE:.0%})" if share > PERP_NEGLIGIBLE else "")]
            outcomes.append((label, INCONCLUSIVE, ", ".join(short) + ": too few epochs?"))
    verdict, why = combine(outcomes)
    return Verdict(verdict, why, nums, _rows(rows))


# ----------------------------------------------------------------------------- the registry

_FIG2 = ("configs/paper/fig2_init_wd.yaml", "configs/paper/fig3_margins.yaml")
_NC = ("configs/paper/fig6_nc_step.yaml", "configs/paper/binary_bn_wd.yaml", "configs/claims/random_labels_nc.yaml")
_RESNET_MSE = (
    "configs/nc/resnet18_cifar10_mse.yaml",
    "configs/nc/resnet18_mnist_mse.yaml",
    "configs/nc/resnet18_fashion_mnist_mse.yaml",
    "configs/nc/resnet18_narrow_cifar10_cpu.yaml",
    "configs/published/rangamani2023_resnet18_mnist_mse.yaml",
)


def _names(configs: tuple[str, ...]) -> tuple[str, ...]:
    # The experiment name is the config's file stem in this repository (each config's `name`).
    return tuple(Path(c).stem for c in configs)


CLAIMS: tuple[Claim, ...] = (
    Claim(
        1,
        "rho_wd_init",
        "With BatchNorm and weight decay the final ρ is nearly independent of the initialization.",
        "paper section 7, Fig. 2 (top), Fig. 14",
        _FIG2,
        _names(_FIG2),
        "final ρ (summary.csv rho_mean) per model.init_scale over BN runs with WD > 0; ρ's change over the last 10% of the epochs (epochs.csv)",
        f"supported: max/min of the final ρ over inits <= {RHO_INIT_RATIO_SAME} and every ρ settled (< {SETTLED_CHANGE:.0%} change); "
        f"inconclusive: a ρ still moving, or < 2 inits; not supported: ratio > {RHO_INIT_RATIO_SAME} with every ρ settled",
        Scale(1000, 10000, 10, "init {0.01, 1, 5} x WD {0.01, 0}"),
        ("fig2", "fig14"),
        judge_rho_wd_init,
    ),
    Claim(
        2,
        "rho_nowd_init",
        "Without weight decay ρ depends on the initialization, and large initializations generalize worse.",
        "paper section 7, Fig. 2 (bottom), Figs. 15, 17",
        _FIG2,
        _names(_FIG2),
        "final ρ per model.init_scale over runs with WD 0; test error (summary.csv test_error_mean/std) of the largest init minus the smallest's",
        f"not supported: max/min of ρ over inits < {RHO_INIT_RATIO_DIFFERENT}, or the largest init's test error lower by more than the floor; "
        f"supported: ratio >= {RHO_INIT_RATIO_DIFFERENT} and the largest init's test error higher by more than the floor "
        f"(max({TEST_ERROR_FLOOR}, sum of the two seed stds)); inconclusive: the difference within the floor, or < 2 inits",
        Scale(1000, 10000, 10, "init {0.01, 1, 5} x WD {0.01, 0}"),
        ("fig2", "fig15", "fig17"),
        judge_rho_nowd_init,
    ),
    Claim(
        3,
        "margins_concentrate",
        "With weight decay the normalized margins concentrate (become nearly equal); without it they do not.",
        "paper sections 4, 7, Figs. 3, 4",
        _FIG2 + ("configs/paper/fig4_margin_hist.yaml",),
        _names(_FIG2 + ("configs/paper/fig4_margin_hist.yaml",)),
        "std/mean of the final normalized training margins (summary.csv margin_std_mean / margin_mean_mean), averaged over the settings with WD > 0 and with WD 0",
        f"supported: WD's std/mean at least {MARGIN_CV_FACTOR}x below the no-WD one; not supported: not below it at all; "
        "inconclusive: in between, a mean margin not positive (not separating yet), or a WD group missing",
        Scale(1000, 10000, 10, "7 inits x WD {0.01, 0}"),
        ("fig3", "fig4"),
        judge_margins,
    ),
    Claim(
        4,
        "nc_square_wd",
        "With the square loss and weight decay, NC1 and the NC2 measures fall towards 0.",
        "paper section 6, Fig. 6",
        _NC,
        _names(_NC),
        "per square-loss setting with WD > 0 and true labels: NC1's peak over its final value (nc_epochs.csv nc1_mean); final NC2 equinorm of the means and equiangularity (max-angle for C = 2) (summary.csv)",
        f"per setting: supported if NC1 fell >= {NC1_FALL:g}x and every final NC2 <= {NC2_MAX}; not supported if NC1 fell < {NC1_FALL_NONE:g}x and is no longer falling "
        f"(last NC epoch not below {STILL_FALLING}x the previous) on an interpolating run; else inconclusive. Claim: supported if some setting is and none is not; "
        "not supported if some is not and none is; inconclusive if they disagree or none decides",
        Scale(350, 10000, 1, "binary CIFAR-10, WD 0.01"),
        ("fig6", "ncpanel"),
        judge_nc_square_wd,
    ),
    Claim(
        5,
        "classifier_eqs",
        "At the collapsed state ⟨w_c, μ_G⟩ → M/C (Eq. 35) and ‖w_c‖² → its Eq. 34 value.",
        "paper section 6, Eqs. 34, 35",
        _NC + _FIG2,
        _names(_NC + _FIG2),
        "theory.csv rows w_dot_muG_eq35 and w_norm_sq_eq34 (relative error of the last NC epoch's value) over bias-free square-loss runs with WD > 0 and true labels: median over runs",
        f"Eq. 35: supported at median relative error <= {EQ35_SUPPORTED}, not supported > {EQ35_NOT}; Eq. 34: <= {EQ34_SUPPORTED} / > {EQ34_NOT}; "
        f"the claim is supported when both are, not supported when either is (on runs that interpolate, train acc >= {INTERPOLATING_ACC}), else inconclusive",
        Scale(350, 10000, 1, "binary CIFAR-10, WD 0.01"),
        ("ncpanel",),
        judge_classifier_eqs,
    ),
    Claim(
        6,
        "rho_eq",
        "At equilibrium ρ = μ/(M + λ) (Eq. 11), with μ, M the mean and mean square of the normalized margins.",
        "paper section 3 (Eq. 11), the theory checks",
        _FIG2 + _NC,
        _names(_FIG2 + _NC),
        "theory.csv row rho_eq (final ρ_L against κμ/(κ²M + λ′)) over square-loss runs with WD > 0: median relative error; ρ's change over the last 10% of the epochs",
        f"supported: median relative error <= {RHO_EQ_SUPPORTED}; not supported: > {RHO_EQ_NOT} with every ρ settled (< {SETTLED_CHANGE:.0%}); else inconclusive",
        Scale(1000, 10000, 10, "WD 0.01"),
        ("fig2",),
        judge_rho_eq,
    ),
    Claim(
        7,
        "random_labels_rho",
        "More random labels give a larger ρ and a larger test error.",
        "paper appendix (Figs. 11, 13)",
        ("configs/paper/fig11_random_labels.yaml", "configs/claims/random_labels_nc.yaml"),
        _names(("configs/paper/fig11_random_labels.yaml", "configs/claims/random_labels_nc.yaml")),
        "final ρ and test error (summary.csv, mean over settings of a level) against data.label_noise, WD > 0: Spearman correlations",
        f"supported: both Spearman >= {TREND_SUPPORTED}; not supported: either <= {TREND_NOT} on interpolating runs (train acc >= {INTERPOLATING_ACC}); "
        "inconclusive: in between, or < 3 noise levels",
        Scale(1000, 10000, 10, "noise {0.2, ..., 1.0}"),
        ("fig11", "fig13"),
        judge_random_labels_rho,
    ),
    Claim(
        8,
        "nc_random_labels",
        "Neural collapse also happens under random labels, once the net interpolates them.",
        "paper section 6 (NC follows from interpolation with WD, whatever the labels)",
        ("configs/claims/random_labels_nc.yaml",),
        _names(("configs/claims/random_labels_nc.yaml",)),
        "per setting with data.label_noise > 0: NC1 peak/final and final NC2, as claim 4",
        "claim 4's rule on the noisy-label settings (NC on the labels trained on)",
        Scale(None, None, None, "not measured in the paper (a prediction)"),
        ("ncpanel",),
        judge_nc_random_labels,
    ),
    Claim(
        9,
        "exp_nc1_batch",
        "With the exponential loss, NC1 is lower after small-batch SGD than after full-batch GD.",
        "paper appendix J.2 (conjecture)",
        ("configs/claims/exp_loss_nc1_batch.yaml",),
        _names(("configs/claims/exp_loss_nc1_batch.yaml",)),
        "final NC1 and train loss (summary.csv) of the minibatch and the full-batch (optim.full_batch) runs",
        f"supported: SGD's NC1 at least {NC1_EXP_FACTOR}x below GD's with GD's train loss within {EXP_LOSS_MATCH:g}x of SGD's; "
        "not supported: SGD's NC1 not below GD's; inconclusive: in between, or GD not at SGD's loss (fit and NC1 confounded)",
        Scale(None, None, None, "a conjecture, no experiment"),
        ("ncpanel",),
        judge_exp_nc1_batch,
    ),
    Claim(
        10,
        "rank_sgd_wd",
        "SGD with weight decay lowers the rank of the weight matrices, more with smaller batches and larger WD, and not without WD.",
        "Xu, Rangamani, Liao, Galanti, Poggio 2023 (the journal version); Galanti et al. 2022",
        ("configs/claims/rank_batch_wd.yaml", "configs/claims/rank_full_batch.yaml"),
        ("rank_batch_wd",),
        "rank_final.csv: rank/min(out, fan_in) per hidden layer, averaged over layers, per batch size and WD; rank_epochs.csv for the WD-0 runs' initial rank",
        f"three parts: (i) at the largest WD every minibatch rank >= {RANK_DROP:.0%} below WD 0's; (ii) at the largest WD, in batch-size order (full batch = N), "
        f"no rank more than {RANK_DROP:.0%} above the next larger batch's (an inversion contradicts) and at least one rise of >= {RANK_DROP:.0%}; "
        f"(iii) at WD 0 the rank falls < {RANK_NO_WD_DROP:.0%} from init. "
        "Supported when all three hold, not supported when any is contradicted, else inconclusive",
        Scale(None, None, None, "batch sizes x WD (journal version)"),
        ("rank", "spectra"),
        judge_rank,
    ),
    Claim(
        11,
        "sgd_noise",
        "SGD noise does not vanish at convergence: the relative update per epoch stays bounded away from 0 under SGD, unlike GD.",
        "Xu, Rangamani, Liao, Galanti, Poggio 2023",
        ("configs/claims/sgd_noise.yaml",),
        _names(("configs/claims/sgd_noise.yaml",)),
        "update_norms.csv, layer 'all layers': mean relative update ‖W_e − W_{e−1}‖/‖W_{e−1}‖ over the last 10% of the epochs, SGD (smallest) over GD (largest)",
        f"supported: SGD/GD >= {NOISE_RATIO:g}; not supported: < {NOISE_RATIO_NONE:g}; inconclusive: in between, or no GD run",
        Scale(None, None, None, "SGD vs GD"),
        ("updates",),
        judge_sgd_noise,
    ),
    Claim(
        12,
        "mse_resnet",
        "Training a ResNet with the MSE loss, NC1 falls by orders of magnitude and the least-squares term L_⊥ becomes negligible against the total.",
        "Han, Papyan & Donoho 2022 (MSE decomposition)",
        _RESNET_MSE,
        _names(_RESNET_MSE),
        "per square-loss setting: NC1 peak/final (nc_epochs.csv) and mse_perp / mse_total at the last NC epoch (summary.csv)",
        f"per setting: supported if NC1 fell >= {NC1_ORDERS:g}x and L_⊥ <= {PERP_NEGLIGIBLE:.0%} of the total; not supported if NC1 fell < {NC1_FALL:g}x and is no longer falling, "
        f"or L_⊥ > {PERP_LARGE:.0%} and settled; else inconclusive; combined as claim 4",
        Scale(350, 50000, 1, "ResNet-18 on MNIST, Fashion-MNIST, CIFAR-10"),
        ("ncpanel", "decomp"),
        judge_mse_resnet,
    ),
)


def evaluate_claim(claim: Claim, tables: Tables) -> ClaimResult:
    """Judge one claim on the tables (see the module docstring for the verdicts).

    Example: `evaluate_claim(CLAIMS[0], load_tables(Path("outputs"))).verdict`
    """
    ev = Evidence(tables, claim.experiments)
    if ev.summary.empty:
        found = not ev.runs.empty
        why = (
            f"runs of {', '.join(sorted(set(ev.runs['experiment'].astype(str))))} exist but none finished (see analysis/problems.csv)"
            if found
            else f"no runs of {', '.join(claim.experiments)} under {tables.out}"
        )
        return ClaimResult(claim, NO_RUNS, why, {}, 0, [], Scale())
    v = claim.judge(ev)
    used = list(dict.fromkeys(v.used))
    rows = ev.summary[[(e, s) in set(used) for e, s in zip(ev.summary["experiment"], ev.summary["setting"])]]
    n_runs = int(pd.to_numeric(rows["n_seeds"], errors="coerce").sum()) if not rows.empty else 0
    seeds = pd.to_numeric(rows.get("n_seeds", pd.Series(dtype=float)), errors="coerce")
    epochs = pd.to_numeric(rows.get("epochs_max", pd.Series(dtype=float)), errors="coerce")
    scale = Scale(
        int(epochs.max()) if epochs.notna().any() else None,
        int(ev.n_train(rows)) if not math.isnan(ev.n_train(rows)) else None,
        (f"{int(seeds.min())}" if seeds.min() == seeds.max() else f"{int(seeds.min())}–{int(seeds.max())}") if seeds.notna().any() else None,
        len(rows) if len(rows) else None,
    )
    return ClaimResult(claim, v.verdict, v.why, v.numbers, n_runs, used, scale)


def evaluate_claims(tables: Tables, claims: tuple[Claim, ...] = CLAIMS) -> list[ClaimResult]:
    """Judge every claim of the registry on the tables, in order.

    Example: `[r.verdict for r in evaluate_claims(load_tables(Path("outputs")))]`
    """
    return [evaluate_claim(c, tables) for c in claims]
