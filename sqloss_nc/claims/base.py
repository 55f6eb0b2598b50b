"""The registry's data types: the analysis tables, a claim, its evidence, a verdict, a result.

A claim reads only the CSVs of `OUT/analysis/` (through `Tables`), never run folders or the
training code, so it judges runs made anywhere. Its evidence is the rows of those tables whose
`experiment` is one of the claim's experiment names; its negative control is the rows of its
control experiments, judged by the same rule (`Claim.judge(ev, control=True)`).

Example:

```python
from pathlib import Path
from sqloss_nc.claims.base import Evidence, Tables
ev = Evidence(Tables.load(Path("outputs")), ("cpu_fig2",))
ev.settings(optim__weight_decay=0)
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

from ..analysis import ANALYSIS_DIR
from ..protocol import SCALES, Protocol

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NO_RUNS = "supported", "not supported", "inconclusive", "no runs"
NOT_DISCRIMINATING = "rule does not discriminate"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NO_RUNS, NOT_DISCRIMINATING)


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
    """One claim of the registry (one file under `sqloss_nc/claims/`).

    Args:
        number: 1..12 the issue's order, 13+ the claims added since.
        id: a short stable name (`rho_wd_init`).
        sentence: the claim in one sentence.
        source: where it is made (paper section/figure/equation, or the follow-up paper).
        statistic: what is computed, from which analysis table.
        rule: the decision rule with its thresholds.
        control: what the negative control is, and why the prediction must fail there.
        source_scale: the scale of the source's evidence.
        figures: the figure kinds (`sqnc figures`) that show it.
        judge: the rule, `judge(evidence, control)`: `control=True` selects the control's
            settings (e.g. WD 0 instead of WD > 0) and applies the same thresholds.
        protocols: scale (`cpu`, `paper`) -> its evidence and control `Protocol`s.
        legacy_configs: configs of this repository whose runs (`sqnc run <config>`) are evidence
            too; their experiment name is the file stem.
        legacy_controls: configs whose runs hold control settings (the rule's control selection
            picks them out, e.g. fig2's WD-0 runs).
        any_experiment: an instrument check: read every run that fits its selection, whatever
            its experiment (so `sqnc report` on any square-loss run judges it).

    Example: `CLAIMS[0].protocols["cpu"][0].rationale`
    """

    number: int
    id: str
    sentence: str
    source: str
    statistic: str
    rule: str
    control: str
    source_scale: Scale
    figures: tuple[str, ...]
    judge: Callable[["Evidence", bool], Verdict]
    protocols: dict[str, tuple[Protocol, ...]]
    legacy_configs: tuple[str, ...] = ()
    legacy_controls: tuple[str, ...] = ()
    any_experiment: bool = False

    def __hash__(self) -> int:  # the protocols are dicts: a claim is known by its id
        return hash(self.id)

    def __post_init__(self) -> None:
        if set(self.protocols) != set(SCALES):
            raise ValueError(f"claim {self.id}: protocols needs the scales {SCALES}, has {sorted(self.protocols)}")
        for scale, ps in self.protocols.items():
            roles = {p.role for p in ps}
            if roles != {"evidence", "control"}:
                raise ValueError(f"claim {self.id}: scale {scale} needs evidence and control protocols, has {sorted(roles)}")

    @property
    def configs(self) -> tuple[str, ...]:
        """Every config its evidence comes from (protocols' and legacy), without repeats."""
        ps = [p.config for s in SCALES for p in self.protocols[s] if p.role == "evidence"]
        return tuple(dict.fromkeys(ps + list(self.legacy_configs)))

    @property
    def experiments(self) -> tuple[str, ...]:
        """The experiment names its evidence is read from."""
        ps = [p.experiment for s in SCALES for p in self.protocols[s] if p.role == "evidence"]
        return tuple(dict.fromkeys(ps + [Path(c).stem for c in self.legacy_configs]))

    @property
    def control_experiments(self) -> tuple[str, ...]:
        """The experiment names its negative control is read from."""
        ps = [p.experiment for s in SCALES for p in self.protocols[s] if p.role == "control"]
        return tuple(dict.fromkeys(ps + [Path(c).stem for c in self.legacy_controls]))


@dataclass
class ClaimResult:
    """A claim judged on OUT's tables.

    Args:
        claim: the registry entry.
        verdict, why, numbers: as in `Verdict` (the verdict is `rule does not discriminate`
            when the control came out supported).
        runs: how many runs the settings used hold (their seeds summed).
        settings: the (experiment, setting) pairs used.
        scale: their epochs, N, seeds and number of settings.
        control_verdict: the same rule on the control's runs (a verdict, or `no runs`).
        control_why: its reason.
        decide: the command that would decide the claim (for a verdict other than supported /
            not supported), e.g. `sqnc reproduce OUT --claims rho_wd_init`.

    Example: `evaluate_claim(CLAIMS[0], tables).scale.text()` gives e.g. "epochs 100, N 2000, seeds 1, settings 2".
    """

    claim: Claim
    verdict: str
    why: str
    numbers: dict[str, Any]
    runs: int
    settings: list[tuple[str, str]]
    scale: Scale
    control_verdict: str = NO_RUNS
    control_why: str = ""
    decide: str = ""


class Evidence:
    """The rows of the analysis tables that belong to some experiments.

    Args:
        tables: the analysis tables.
        experiments: the experiment names to keep (None: every experiment).

    Example: `Evidence(load_tables(out), ("fig2_init_wd",)).summary`
    """

    def __init__(self, tables: Tables, experiments: tuple[str, ...] | None):
        self.tables = tables

        def keep(df: pd.DataFrame) -> pd.DataFrame:
            if df.empty or "experiment" not in df:
                return df.iloc[0:0] if not df.empty else df
            if experiments is None:
                return df.reset_index(drop=True)
            return df[df["experiment"].astype(str).isin(experiments)].reset_index(drop=True)

        self.summary = keep(tables.get("summary"))
        self.runs = keep(tables.get("runs"))
        self.epochs = keep(tables.get("epochs"))
        self.nc_epochs = keep(tables.get("nc_epochs"))
        self.theory = keep(tables.get("theory"))
        self.rank_final = keep(tables.get("rank_final"))
        self.rank_epochs = keep(tables.get("rank_epochs"))
        self.update_norms = keep(tables.get("update_norms"))

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
            mask = vals.map(cond) if callable(cond) else vals.map(lambda v, c=cond: same(v, c))
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

    def run_value(self, rows: pd.DataFrame, col: str) -> float:
        """The largest `col` of runs.csv over the runs of these settings (e.g. `n_train`)."""
        r = self.runs
        if r.empty or col not in r or rows.empty:
            return float("nan")
        keys = set(zip(rows["experiment"], rows["setting"]))
        sel = r[[(e, s) in keys for e, s in zip(r["experiment"], r["setting"])]]
        return float(pd.to_numeric(sel[col], errors="coerce").max()) if not sel.empty else float("nan")

    def n_train(self, rows: pd.DataFrame) -> float:
        return self.run_value(rows, "n_train")


# ----------------------------------------------------------------------------- small helpers


def same(v: Any, c: Any) -> bool:
    """Equal as numbers (1e-9 relative), else as lower-case strings."""
    try:
        return math.isclose(float(v), float(c), rel_tol=1e-9, abs_tol=1e-15)
    except (TypeError, ValueError):
        return str(v).lower() == str(c).lower()


def num(v: Any) -> float:
    """`float(v)`, NaN where it is not a number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _g(v: Any, spec: str = ".3g") -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "nan" if math.isnan(v) else format(float(v), spec)
    return str(v)


def mean(row: pd.Series, col: str) -> float:
    return num(row.get(f"{col}_mean"))


def std(row: pd.Series, col: str) -> float:
    s = num(row.get(f"{col}_std"))
    return 0.0 if math.isnan(s) else s


def classes(row: pd.Series) -> int:
    v = row.get("data.classes")
    try:
        return len(json.loads(v)) if isinstance(v, str) else len(v)
    except (TypeError, ValueError):
        return 0


def pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    """The (experiment, setting) pairs of summary rows."""
    return list(zip(df["experiment"].astype(str), df["setting"].astype(str))) if not df.empty else []


def label(r: pd.Series) -> str:
    """`experiment: setting`, or the experiment alone when it is its only setting's name."""
    return str(r["experiment"]) if str(r["setting"]) == str(r["experiment"]) else f"{r['experiment']}: {r['setting']}"


def positive(v: Any) -> bool:
    return num(v) > 0


def zero(v: Any) -> bool:
    return num(v) == 0


def is_true(v: Any) -> bool:
    return str(v).strip().lower() in ("true", "1", "1.0")


def square(v: Any) -> bool:
    return str(v) in ("square", "square_rescaled")


def no_noise(v: Any) -> bool:
    x = num(v)
    return math.isnan(x) or x == 0
