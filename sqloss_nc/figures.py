"""Tables -> figures (the library behind `sqnc figures OUT`).

Reads only the tables `sqnc analyze OUT` wrote to `OUT/analysis/` and draws every figure of the
paper those tables support, as PNG and PDF under `OUT/figures/`, plus `OUT/figures/index.html`
showing all PNGs with one-line captions. Curves are means over seeds with ± 1 std bands (sample
std; no band with one seed). Epoch axes are `symlog` (linear between 0 and 1, logarithmic
beyond) so that epoch 0, the initialization, stays visible on a log axis, with integer labels at
any run length (`epoch_ticks`). Loss axes name the runs' own loss (`loss_name`), class-mean
figures the classes (runs.csv `class_names`).

Which runs a figure uses is decided from the config columns of `summary.csv` (one row per
setting): within one experiment, the config keys that vary between settings are the figure's
axes (e.g. Fig. 2 needs `model.init_scale` and `optim.weight_decay` to vary); when further keys
vary too, one figure is drawn per combination of their values (named with a suffix).

| figure | needs (within one experiment) | drawn from | made by |
|---|---|---|---|
| fig2 | ≥ 2 values of `model.init_scale` and of `optim.weight_decay` | epochs.csv | `configs/paper/fig2_init_wd.yaml` |
| fig3 | ≥ 2 settings differing in init and/or WD | margins_hist.csv (last margin epoch) | `configs/paper/fig3_margins.yaml` |
| fig4 | per-sample margins at ≥ 2 epochs | margins_hist.csv (one panel per setting, every margin epoch up to 30) | `configs/paper/fig4_margin_hist.yaml` |
| fig5 | per-step margins (`margins_steps.csv` in the runs) | margins_steps_hist.csv, steps.csv (one column per setting, ρ below) | `configs/paper/fig4_margin_hist.yaml` |
| fig6 | NC measured at ≥ 2 epochs | nc_epochs.csv | `configs/paper/fig6_nc_step.yaml` |
| fig10 | `OUT/simulations/logistic*.csv` with `t` and `rho*` columns | simulations.csv | `sqnc simulate --logistic --out OUT/simulations` |
| fig11, fig13 | ≥ 2 values of `data.label_noise` | summary.csv, epochs.csv | `configs/paper/fig11_random_labels.yaml` |
| fig12 | ≥ 2 values of `model.init_scale` | summary.csv | `configs/paper/fig3_margins.yaml` |
| fig14 / fig15 | runs with WD > 0 / WD = 0 | epochs.csv | `configs/paper/fig2_init_wd.yaml` |
| fig16 / fig17 | runs with WD > 0 / WD = 0 | epochs.csv | `configs/paper/fig2_init_wd.yaml` |
| ncpanel | NC at ≥ 2 epochs: NC1, NC2 equinorm, equiangularity (max-angle for C = 2), NC3 (centred rows), NC4; one colour per setting, train solid, test dashed, classifier rows dotted | nc_epochs.csv | `configs/nc/resnet18_cifar10_mse.yaml` (also `configs/claims/random_labels_nc.yaml`, `exp_loss_nc1_batch.yaml`) |
| decomp | `mse_*` columns at ≥ 2 NC epochs: stacked mse_nc1 / mse_nc23 / mse_perp (= mse_total, dashed), ls_distance below; one column per setting | nc_epochs.csv | `configs/nc/resnet18_cifar10_mse.yaml` |
| gram | runs' `class_gram.csv`: measured Gram of normalized centred class means (train, test) beside the simplex ETF's, one colour scale [−1, 1] | class_gram_final.csv | `configs/nc/resnet18_cifar10_mse.yaml` |
| spectra | `spectra.csv`: σ_i/σ_1 per layer, colour = epoch; one figure per setting | spectra_epochs.csv, rank_epochs.csv | `configs/claims/rank_batch_wd.yaml` |
| rank | spectra of settings differing in batch size (`full` last) and/or WD: rank and stable rank per layer | rank_final.csv | `configs/claims/rank_batch_wd.yaml` |
| updates | `update_norm_<layer>`: mean over layers per setting, per layer for 3 settings (log y) | epochs.csv, update_norms.csv | `configs/claims/sgd_noise.yaml` |
| layerwise | `ncc_accuracy` / `alignment` in nc_layers.csv: against depth at the last NC epoch | nc_layers_final.csv | `configs/claims/random_labels_nc.yaml` |

Example:

```python
from pathlib import Path
from sqloss_nc.figures import draw_figures
for fig in draw_figures(Path("outputs")):
    print(fig.name, fig.skipped or [str(p) for p in fig.files])
```
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.cm
import matplotlib.colors
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns

from .errors import UserError
from .rundir import atomic_write_text

INIT, WD, NOISE = "model.init_scale", "optim.weight_decay", "data.label_noise"
SHORT = {INIT: "init", WD: "wd", NOISE: "noise", "optim.lr": "lr", "model.normalization": "norm", "loss.kind": "loss"}
PAPER_CONFIGS = {
    "fig2": "configs/paper/fig2_init_wd.yaml",
    "fig3": "configs/paper/fig3_margins.yaml",
    "fig4": "configs/paper/fig4_margin_hist.yaml",
    "fig5": "configs/paper/fig4_margin_hist.yaml",
    "fig6": "configs/paper/fig6_nc_step.yaml",
    "fig11": "configs/paper/fig11_random_labels.yaml",
    "fig12": "configs/paper/fig3_margins.yaml",
    "fig13": "configs/paper/fig11_random_labels.yaml",
    "fig14": "configs/paper/fig2_init_wd.yaml (or binary_bn_wd.yaml)",
    "fig15": "configs/paper/fig2_init_wd.yaml",
    "fig16": "configs/paper/fig2_init_wd.yaml (or binary_bn_wd.yaml)",
    "fig17": "configs/paper/fig2_init_wd.yaml",
}
MAX_PER_KIND = 6  # figures of one kind per experiment at most (one per combination of other keys)
MEANS_COLOR, WEIGHTS_COLOR = "tab:red", "tab:blue"  # the paper's Fig. 6 colours
# Axis labels in matplotlib's mathtext, so that subscripts and norms render instead of showing
# raw underscores.
NC1_TEX = r"$\mathrm{Tr}(\Sigma_W \Sigma_B^{+})/C$"
GRAM_DIST_TEX = r"$\|G - G_\mathrm{ETF}\|_F\ /\ \|G_\mathrm{ETF}\|_F$"


class MissingAnalysisError(UserError):
    """The analysis tables are not there: `sqnc analyze OUT` has to run first (one line)."""


@dataclass
class FigureResult:
    """One figure drawn (files, caption) or skipped (reason).

    Attributes:
        name: file stem, e.g. `fig2_binary_bn_wd`, or the figure kind (`fig5`) when skipped.
        files: the PNG and PDF written.
        caption: one line saying what is shown.
        skipped: why the figure was not drawn (None when drawn).
    """

    name: str
    files: list[Path] = field(default_factory=list)
    caption: str = ""
    skipped: str | None = None


# ----------------------------------------------------------------------------- tables


@dataclass
class Tables:
    """The analysis tables figures need (empty DataFrames for optional ones not written)."""

    summary: pd.DataFrame
    epochs: pd.DataFrame
    nc_epochs: pd.DataFrame
    margins_hist: pd.DataFrame
    steps: pd.DataFrame
    margins_steps_hist: pd.DataFrame
    simulations: pd.DataFrame
    nc_layers_final: pd.DataFrame = field(default_factory=pd.DataFrame)
    spectra_epochs: pd.DataFrame = field(default_factory=pd.DataFrame)
    rank_epochs: pd.DataFrame = field(default_factory=pd.DataFrame)
    rank_final: pd.DataFrame = field(default_factory=pd.DataFrame)
    update_norms: pd.DataFrame = field(default_factory=pd.DataFrame)
    class_gram_final: pd.DataFrame = field(default_factory=pd.DataFrame)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)


def load_tables(out: Path) -> Tables:
    """Read `OUT/analysis/*.csv`.

    Args:
        out: the output root given to `sqnc analyze`.

    Raises:
        MissingAnalysisError: the analysis tables are missing.

    Example: `tables = load_tables(Path("outputs"))`
    """
    adir = Path(out) / "analysis"
    required = ("runs.csv", "summary.csv", "epochs.csv")
    missing = [n for n in required if not (adir / n).is_file()]
    if missing:
        raise MissingAnalysisError(f"no analysis tables in {adir} (missing {', '.join(missing)}); run `sqnc analyze {out}` first")

    def read(name: str) -> pd.DataFrame:
        p = adir / name
        if not p.is_file():
            return pd.DataFrame()
        try:
            # Names like "2024" must stay text to match; .copy() consolidates pandas 3's
            # one-block-per-column frames (slow, and warns on every insert).
            text = {"experiment": str, "setting": str, "run_id": str, "source": str, "layer": str, "batch": str}
            return pd.read_csv(p, dtype=text).copy()
        except pd.errors.EmptyDataError:
            return pd.DataFrame()

    return Tables(
        summary=read("summary.csv"),
        epochs=read("epochs.csv"),
        nc_epochs=read("nc_epochs.csv"),
        margins_hist=read("margins_hist.csv"),
        steps=read("steps.csv"),
        margins_steps_hist=read("margins_steps_hist.csv"),
        simulations=read("simulations.csv"),
        nc_layers_final=read("nc_layers_final.csv"),
        spectra_epochs=read("spectra_epochs.csv"),
        rank_epochs=read("rank_epochs.csv"),
        rank_final=read("rank_final.csv"),
        update_norms=read("update_norms.csv"),
        class_gram_final=read("class_gram_final.csv"),
        runs=read("runs.csv"),
    )


def _config_columns(summary: pd.DataFrame) -> list[str]:
    return [c for c in summary.columns if "." in c]


def _varying(settings: pd.DataFrame) -> list[str]:
    cols = _config_columns(settings)
    return [c for c in cols if settings[c].astype(str).nunique() > 1]


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def _label(fixed: dict) -> str:
    return ", ".join(f"{SHORT.get(k, k.split('.')[-1])}={_fmt(v)}" for k, v in fixed.items())


def _slug(text: str) -> str:
    text = text.replace(", ", "_").replace("=", "-")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def _name(kind: str, experiment: str, fixed: dict) -> str:
    return _slug("_".join([kind, experiment] + ([_label(fixed)] if fixed else [])))


def _slices(summary: pd.DataFrame, axes: list[str], require: list[str], min_settings: int = 1) -> Iterator[tuple[str, dict, pd.DataFrame]]:
    """(experiment, fixed values of the other varying keys, settings) for each figure to draw.

    `axes` are the keys a figure shows; every other key varying in the experiment is held fixed
    per figure. `require` keys must take at least two values within the slice.
    """
    if summary.empty:
        return
    for exp, g in summary.groupby("experiment", sort=False):
        varying = _varying(g)
        others = [k for k in varying if k not in axes]
        groups = list(g.groupby(others, sort=False, dropna=False)) if others else [((), g)]
        # A sweep over many other keys would give a flood of figures; the tables keep everything.
        for vals, sub in groups[:MAX_PER_KIND]:
            vals = vals if isinstance(vals, tuple) else (vals,)
            if any(k not in sub or sub[k].astype(str).nunique() < 2 for k in require):
                continue
            if len(sub) < min_settings:
                continue
            yield str(exp), dict(zip(others, vals)), sub


def _num(sub: pd.DataFrame, key: str) -> pd.Series:
    return pd.to_numeric(sub[key], errors="coerce") if key in sub else pd.Series(np.nan, index=sub.index)


def _paper_preference(sub: pd.DataFrame) -> pd.DataFrame:
    """Settings ordered by closeness to the paper's Fig. 4-6 run (WD 0.01, init 0.1, no noise)."""
    wd, init, noise = _num(sub, WD), _num(sub, INIT), _num(sub, NOISE)
    score = (
        (wd.fillna(0) <= 0).astype(float) * 100
        + (np.log10(wd.where(wd > 0, 1e-2).fillna(1e-2)) + 2).abs()
        + (np.log10(init.where(init > 0, 0.1).fillna(0.1)) + 1).abs()
        + noise.fillna(0) * 10
    )
    return sub.assign(_score=score.to_numpy()).sort_values("_score", kind="stable").drop(columns="_score")


def _spread(values: list, k: int) -> list:
    """At most k of the sorted values, evenly spread, keeping the first and last."""
    if len(values) <= k:
        return list(values)
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, k)).astype(int))
    return [values[i] for i in idx]


# ----------------------------------------------------------------------------- drawing helpers


def _series(table: pd.DataFrame, exp: str, setting: str, col: str, time: str = "epoch"):
    rows = table[(table["experiment"] == exp) & (table["setting"] == setting)]
    if rows.empty or f"{col}_mean" not in rows:
        return None
    rows = rows.sort_values(time)
    x = rows[time].to_numpy(dtype=float)
    m = rows[f"{col}_mean"].to_numpy(dtype=float)
    s = rows[f"{col}_std"].to_numpy(dtype=float) if f"{col}_std" in rows else np.full_like(m, np.nan)
    ok = np.isfinite(m)
    if not ok.any():
        return None
    return x[ok], m[ok], s[ok], int(rows["n_runs"].max()) if "n_runs" in rows else 1


def _band(ax, x, m, s, label=None, color=None, log_y=False, **kw):
    (line,) = ax.plot(x, m, label=label, color=color, lw=1.6, **kw)
    if np.isfinite(s).any():
        lo, hi = m - np.nan_to_num(s), m + np.nan_to_num(s)
        if log_y:
            # A band reaching below zero cannot be drawn on a log axis; clip it to the curve's scale.
            lo = np.where(lo > 0, lo, m * 0.5)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    return line


def epoch_ticks(max_epoch: float, min_epoch: float = 0.0) -> list[int]:
    """Labelled ticks of a symlog epoch axis (or colour bar) from `min_epoch` to `max_epoch`.

    Matplotlib's own symlog ticks are the powers of ten, so a run of 3 to 9 epochs gets the
    labels `0` and `10⁰` only. These are every integer up to 5 epochs, then 1, 2, 5 per decade
    up to ~20 epochs, 1, 3 per decade up to ~3,000 and 1 per decade beyond (where more would
    crowd the axis), and the last epoch.

    Args:
        max_epoch: the axis' upper end (at least 1 is assumed).
        min_epoch: the lower end (0 = the initialization).

    Returns:
        Increasing integer epochs within [min_epoch, max_epoch].

    Example: `epoch_ticks(3)` is `[0, 1, 2, 3]`; `epoch_ticks(8)` is `[0, 1, 2, 5, 8]`;
    `epoch_ticks(1000)` is `[0, 1, 3, 10, 30, 100, 300, 1000]`.
    """
    top = max(float(max_epoch), 1.0)
    if top <= 5:
        ticks = list(range(int(math.floor(top)) + 1))
    else:
        # As many labels as a 4-inch panel holds: 1-2-5 up to ~20 epochs, 1-3 up to ~3,000,
        # the powers of ten beyond.
        decades = math.log10(top)
        mults = (1, 2, 5) if decades <= 1.35 else (1, 3) if decades <= 3.5 else (1,)
        ticks = [0] + [m * 10**k for k in range(int(decades) + 1) for m in mults if m * 10**k <= top]
        end = int(math.floor(top))
        if math.log10(end / ticks[-1]) > 0.15:  # the last epoch, unless it would touch the last tick
            ticks.append(end)
    return [t for t in ticks if t >= min_epoch - 1e-9]


def _int_label(v, _pos=None) -> str:
    if abs(v - round(v)) > 1e-9:
        return f"{v:g}"
    return f"{v:,.0f}" if abs(v) >= 10_000 else f"{v:.0f}"


def _log_label(y, _pos=None) -> str:
    """A log-axis label: plain decimals where they are short, powers of ten elsewhere."""
    if y <= 0:
        return ""
    if 1e-3 <= y < 1e4:
        return f"{y:g}"
    exp = math.floor(math.log10(y) + 1e-9)
    mant = y / 10**exp
    return f"$10^{{{exp}}}$" if abs(mant - 1) < 1e-6 else f"${mant:.2g}\\times10^{{{exp}}}$"


class _ReadableLogLocator(matplotlib.ticker.LogLocator):
    """Major ticks of a log axis at 1, 2 and 5 per decade while the view spans less than 2.5
    decades (matplotlib labels one or two powers of ten there), at the powers of ten beyond."""

    def tick_values(self, vmin, vmax):
        lo, hi = sorted((vmin, vmax))
        narrow = lo > 0 and hi / lo < 10**2.5
        self.set_params(subs=(1.0, 2.0, 5.0) if narrow else (1.0,))
        return super().tick_values(vmin, vmax)


def _epoch_axis(ax, max_epoch: float, log: bool = True, label: str = "epoch", min_epoch: float = 0.0) -> None:
    """Epochs on x: symlog (linear on [0, 1], logarithmic beyond, so epoch 0 stays visible)
    with `epoch_ticks`, or linear with integer ticks; starting at `min_epoch`."""
    hi = max(max_epoch, min_epoch + 1, 1)
    if log:
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(min_epoch, hi)
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(epoch_ticks(hi, min_epoch)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_int_label))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        where = "0 = initialization" if min_epoch == 0 else f"from epoch {min_epoch:g}"
        ax.set_xlabel(f"{label} (log scale; {where})")
    else:
        ax.set_xlim(min_epoch, hi)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel(label)


def _maybe_log_y(ax, values: list[np.ndarray], ratio: float = 20.0, floor: float = 1e-10) -> bool:
    """Log y when the values are positive and span more than `ratio`; values at round-off level
    (below `floor`, e.g. the exactly symmetric NC2 of two class means) keep a linear axis, where
    a log axis would magnify floating-point noise into a curve."""
    v = np.concatenate([np.asarray(a, dtype=float).ravel() for a in values]) if values else np.array([])
    v = v[np.isfinite(v)]
    if v.size and (v > floor).all() and v.max() / v.min() > ratio:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(_ReadableLogLocator(base=10))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_log_label))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        return True
    return False


def _save(fig, figdir: Path, name: str) -> list[Path]:
    files = []
    for ext in ("png", "pdf"):
        path = figdir / f"{name}.{ext}"
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".{ext}", dir=figdir)
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        files.append(path)
    plt.close(fig)
    return files


def _seeds_note(sub: pd.DataFrame) -> str:
    n = pd.to_numeric(sub["n_seeds"], errors="coerce") if "n_seeds" in sub else pd.Series([1])
    lo, hi = int(n.min()), int(n.max())
    return f"{lo} seed{'s' if lo != 1 else ''}" if lo == hi else f"{lo}-{hi} seeds"


def _listing(settings: list[str]) -> str:
    """Setting names for a caption: a name that holds ", " itself (`wd=0, loss=square`) is
    bracketed, so the list reads unambiguously."""
    return ", ".join(f"[{s}]" if ", " in s else s for s in settings)


def _settings_text(fixed: dict) -> str:
    return f" ({_label(fixed)})" if fixed else ""


LOSS_NAMES = {
    "square": "square loss (MSE)",
    "square_rescaled": "rescaled square loss",
    "cross_entropy": "cross-entropy loss",
    "exponential": "exponential loss",
}


def loss_name(settings: pd.DataFrame) -> str:
    """What the `train_loss` column of these settings measures, for an axis label.

    Args:
        settings: rows of `summary.csv` (config columns `loss.kind`, `loss.k`, `loss.M`).

    Returns:
        e.g. "square loss (MSE)", "rescaled square loss (k=1, M=5)", "cross-entropy loss";
        "loss" when the rows mix kinds or do not say.

    Example: `loss_name(summary[summary["experiment"] == "fig2"])`
    """
    kinds = settings["loss.kind"].dropna().astype(str).unique() if "loss.kind" in settings else []
    if len(kinds) != 1:
        return "loss"
    name = LOSS_NAMES.get(kinds[0], f"{kinds[0]} loss")
    if kinds[0] == "square_rescaled":
        params = [(p, settings[f"loss.{p}"].dropna().unique()) for p in ("k", "M") if f"loss.{p}" in settings]
        shown = ", ".join(f"{p}={_fmt(v[0])}" for p, v in params if len(v) == 1)
        name += f" ({shown})" if shown else ""
    return name


# ----------------------------------------------------------------------------- the figures


def _fig2(t: Tables, figdir: Path, emit) -> None:
    for exp, fixed, sub in _slices(t.summary, [INIT, WD], [INIT, WD]):
        inits = sorted(_num(sub, INIT).dropna().unique())
        inits = [inits[0], inits[-1]]  # the paper's small vs large initialization
        wds = sorted(_num(sub, WD).dropna().unique(), reverse=True)
        fig, axes = plt.subplots(len(wds), 2, figsize=(11, 3.6 * len(wds)), squeeze=False, sharex=True)
        max_epoch = 1.0
        for i, wd in enumerate(wds):
            for j, init in enumerate(inits):
                ax = axes[i, j]
                row = sub[(_num(sub, INIT) == init) & (_num(sub, WD) == wd)]
                ax.set_title(f"init {init:g}, weight decay {wd:g}")
                if row.empty:
                    ax.text(0.5, 0.5, "no runs", ha="center", transform=ax.transAxes)
                    continue
                setting = row["setting"].iloc[0]
                handles = []
                rho = _series(t.epochs, exp, setting, "rho")
                if rho:
                    max_epoch = max(max_epoch, rho[0].max())
                    log = _maybe_log_y(ax, [rho[1]], ratio=10)
                    handles.append(_band(ax, *rho[:3], label=f"ρ ({rho[3]} seed{'s' if rho[3] != 1 else ''})", color="black", log_y=log))
                ax.set_ylabel("ρ (weight norm)")
                ax2 = ax.twinx()
                ax2.grid(False)
                series = [
                    (_series(t.epochs, exp, setting, col), lab, color)
                    for col, lab, color in (("train_loss", "train loss", "tab:orange"), ("test_error", "test error", "tab:green"))
                ]
                # A large init starts with a loss in the hundreds: a log axis keeps the test error
                # (0..1) readable beside it.
                log2 = _maybe_log_y(ax2, [s[1] for s, _, _ in series if s], ratio=100)
                for s, lab, color in series:
                    if s:
                        handles.append(_band(ax2, *s[:3], label=lab, color=color, log_y=log2))
                ax2.set_ylabel(f"train {loss_name(sub)} / test error")
                if not log2:
                    ax2.set_ylim(bottom=0)
                ax.legend(handles=handles, loc="best", fontsize="small")
        for ax in axes.ravel():
            _epoch_axis(ax, max_epoch)
        for ax in axes[:-1].ravel():
            ax.set_xlabel("")  # rows share the bottom row's epoch axis
        fig.suptitle(f"{exp}{_settings_text(fixed)}: ρ, training loss and test error (mean ± std over seeds)")
        fig.tight_layout()
        name = _name("fig2", exp, fixed)
        emit(
            name,
            fig,
            f"Fig. 2 — {exp}{_settings_text(fixed)}: ρ, train loss and test error vs epoch; columns init {inits[0]:g} / {inits[1]:g}, "
            f"rows weight decay {', '.join(f'{w:g}' for w in wds)}; {_seeds_note(sub)}.",
        )


def _hist(ax, h: pd.DataFrame, label: str, color, fill_alpha: float = 0.12) -> None:
    h = h.sort_values("bin")
    edges = np.r_[h["left"].to_numpy(float), h["right"].to_numpy(float)[-1]]
    m = h["density_mean"].to_numpy(float)
    s = h["density_std"].to_numpy(float)
    ax.stairs(m, edges, label=label, color=color, lw=1.5)
    ax.stairs(m, edges, color=color, fill=True, alpha=fill_alpha)
    if np.isfinite(s).any():
        lo, hi = np.clip(m - np.nan_to_num(s), 0, None), m + np.nan_to_num(s)
        ax.fill_between(edges, np.r_[lo, lo[-1]], np.r_[hi, hi[-1]], step="post", color=color, alpha=0.15, lw=0)


def _final_hist(t: Tables, exp: str, setting: str, quantity: str = "normalized") -> pd.DataFrame:
    h = t.margins_hist
    h = h[(h["experiment"] == exp) & (h["setting"] == setting) & (h["quantity"] == quantity)]
    if h.empty:
        return h
    return h[h["epoch"] == h["epoch"].max()]


def _fig3(t: Tables, figdir: Path, emit) -> None:
    if t.margins_hist.empty:
        return
    for exp, fixed, sub in _slices(t.summary, [INIT, WD], [], min_settings=2):
        if _num(sub, INIT).nunique() < 2 and _num(sub, WD).nunique() < 2:
            continue
        wds = sorted(_num(sub, WD).dropna().unique(), reverse=True) or [float("nan")]
        fig, axes = plt.subplots(1, len(wds), figsize=(5.5 * len(wds), 4), squeeze=False)
        drawn, epochs = False, set()
        for j, wd in enumerate(wds):
            ax = axes[0, j]
            rows = sub[_num(sub, WD) == wd].sort_values(INIT, key=lambda s: pd.to_numeric(s, errors="coerce"))
            colors = sns.color_palette("viridis", max(len(rows), 1))
            for color, (_, r) in zip(colors, rows.iterrows()):
                h = _final_hist(t, exp, r["setting"])
                if h.empty:
                    continue
                epochs.add(int(h["epoch"].iloc[0]))
                # Many overlaid fills turn into one blob: lighter fills when there are many.
                _hist(ax, h, f"init {float(r[INIT]):g} (n={int(r['n_seeds'])})", color, fill_alpha=0.12 if len(rows) <= 3 else 0.04)
                drawn = True
            ax.set_title(exp if math.isnan(wd) else f"weight decay {wd:g}")
            ax.set_xlabel("normalized train margin y·f/ρ")
            ax.set_ylabel("density")
            ax.legend(fontsize="small")
        if not drawn:
            plt.close(fig)
            continue
        ep = ", ".join(str(e) for e in sorted(epochs))
        fig.suptitle(f"{exp}{_settings_text(fixed)}: train margins at the final epoch ({ep}); mean ± std over seeds")
        fig.tight_layout()
        emit(
            _name("fig3", exp, fixed),
            fig,
            f"Fig. 3 — {exp}{_settings_text(fixed)}: histograms of the normalized train margins at the last epoch ({ep}) "
            f"for each init, with vs without weight decay; {_seeds_note(sub)}.",
        )


MAX_RIDGES = 30  # histograms stacked in one panel at most (evenly spread, the caption says so)
MAX_PANELS = 8  # settings in one margin-histogram figure; more make further figures


def _ridges(ax, h: pd.DataFrame, time: str, times: list) -> None:
    """The margin histogram of each time point in its own row of one panel (the first at the
    top), each scaled to its own peak: the early, wide histograms and the late, narrow ones
    differ in height by orders of magnitude, so one overlaid scale would hide one or the other.
    Colours run through viridis, the last in yellow as in the paper."""
    n = len(times)
    for k, (e, color) in enumerate(zip(times, plt.get_cmap("viridis")(np.linspace(0, 1, n)))):
        g = h[h[time] == e].sort_values("bin")
        edges = np.r_[g["left"].to_numpy(float), g["right"].to_numpy(float)[-1]]
        d = g["density"].to_numpy(float)  # all seeds' samples pooled into one histogram
        base = n - 1 - k
        y = base + 0.92 * d / (d.max() if d.max() > 0 else 1.0)
        ax.stairs(y, edges, baseline=base, fill=True, color=color, alpha=0.75, lw=0)
        ax.stairs(y, edges, baseline=base, color="0.15", lw=0.7)
    ax.set_yticks([n - 1 - k for k in range(n)], [f"{e:g}" for e in times])  # every row: 0.3 in each fits a label
    ax.set_ylim(-0.1, n)
    ax.grid(False, axis="y")


def _fig4(t: Tables, figdir: Path, emit, time: str = "epoch", hist: pd.DataFrame | None = None, kind: str = "fig4") -> None:
    hist = t.margins_hist if hist is None else hist
    if hist.empty:
        return
    hist = hist[hist["quantity"] == "normalized"]
    with_rho = kind == "fig5" and not t.steps.empty
    what = "epochs" if time == "epoch" else "SGD steps"
    for exp in dict.fromkeys(t.summary["experiment"]):
        rows = hist[hist["experiment"] == exp]
        # Every setting with margins is drawn (one panel each); the experiment qualifies when
        # one of them has histograms at two or more time points.
        settings = _settings_of(t, exp, rows, k=len(t.summary))
        if not settings or rows.groupby("setting")[time].nunique().max() < 2:
            continue
        chunks = [settings[i : i + MAX_PANELS] for i in range(0, len(settings), MAX_PANELS)]
        for part, chunk in enumerate(chunks, 1):
            ncol = len(chunk) if len(chunk) <= 4 else math.ceil(len(chunk) / 2)  # 6 settings: 2 rows of 3
            nrow = math.ceil(len(chunk) / ncol)
            n_times = max(min(rows[rows["setting"] == s][time].nunique(), MAX_RIDGES) for s in chunk)
            ridge_h = max(2.6, 0.3 * n_times + 0.9)
            width = max(4.4 * ncol + 0.4, 7.0)  # room for the title over a single panel
            fig = plt.figure(figsize=(width, (ridge_h + (2.4 if with_rho else 0)) * nrow + 0.6), layout="constrained")
            gs = fig.add_gridspec(nrow * (2 if with_rho else 1), ncol, height_ratios=[ridge_h, 2.4] * nrow if with_rho else None)
            notes = []
            for i, setting in enumerate(chunk):
                r, c = divmod(i, ncol)
                ax = fig.add_subplot(gs[r * (2 if with_rho else 1), c])
                h = rows[rows["setting"] == setting]
                recorded = sorted(h[time].unique())
                shown = _spread(recorded, MAX_RIDGES)
                if len(shown) < len(recorded):
                    notes.append(f"{setting}: {len(shown)} of {len(recorded)} {what} shown")
                _ridges(ax, h, time, shown)
                n_runs = int(h["n_runs"].max()) if "n_runs" in h else 1
                ax.set_title(f"{setting}\n({n_runs} seed{'s' if n_runs != 1 else ''} pooled)", fontsize="small")
                ax.set_xlabel("normalized train margin y·f/ρ")
                if c == 0:
                    ax.set_ylabel(f"{time}\n(each histogram scaled to its peak)")
                if with_rho:
                    rax = fig.add_subplot(gs[r * 2 + 1, c])
                    s = _series(t.steps, exp, setting, "rho", time="step")
                    if s:
                        _band(rax, *s[:3], color="black")
                        _epoch_axis(rax, s[0].max(), log=False, label="SGD step")
                    rax.set_ylabel("ρ")
                    rax.set_title("ρ over the same steps", fontsize="small")
            more = f" (part {part} of {len(chunks)})" if len(chunks) > 1 else ""
            fig.suptitle(f"{exp}{more}: histograms of the normalized train margins y·f/ρ across {what}")
            emit(
                _name(kind, exp, {}) + (f"_{part}" if part > 1 else ""),
                fig,
                f"Fig. {kind[3:]} — {exp}{more}: normalized train margins across {what} (first at the top, the last in yellow), "
                f"one panel per setting: {_listing(chunk)}" + (f"; {'; '.join(notes)}" if notes else "") + ".",
            )


def _fig5(t: Tables, figdir: Path, emit) -> None:
    if t.margins_steps_hist.empty:
        return
    _fig4(t, figdir, emit, time="step", hist=t.margins_steps_hist, kind="fig5")


def _fig6(t: Tables, figdir: Path, emit) -> None:
    nc = t.nc_epochs
    if nc.empty or "nc1_mean" not in nc:
        return
    for exp, g in t.summary.groupby("experiment", sort=False):
        settings = [
            s for s in _paper_preference(g)["setting"] if (nc[(nc["experiment"] == exp) & (nc["setting"] == s)]["epoch"].nunique() >= 2)
        ]
        if not settings:
            continue
        shown = settings[:4]
        fig, axes = plt.subplots(len(shown), 3, figsize=(15, 3.6 * len(shown)), squeeze=False)
        for i, setting in enumerate(shown):
            ax = axes[i, 0]
            vals, max_epoch = [], 1.0
            for col, style, lab in (("nc1", "-", "train"), ("test_nc1", "--", "test")):
                s = _series(nc, exp, setting, col)
                if s:
                    vals.append(s[1])
                    max_epoch = max(max_epoch, s[0].max())
            log = _maybe_log_y(ax, vals, ratio=1.0)  # the paper draws NC1 on a log axis
            for col, style, lab in (("nc1", "-", "train"), ("test_nc1", "--", "test")):
                s = _series(nc, exp, setting, col)
                if s:
                    _band(ax, *s[:3], label=lab, color="black", log_y=log, ls=style)
            ax.set_ylabel("NC1 = " + NC1_TEX)
            ax.set_title(f"{setting}: NC1 (variability collapse)")
            ax.legend(fontsize="small")
            # Equiangularity (std of cosines) is undefined for C = 2 (one pair): fall back to the
            # max-angle measure |cos + 1/(C-1)|, which is defined for any C.
            angle = "equiangular" if any(_series(nc, exp, setting, f"nc2_equiangular_{w}") for w in ("means", "weights")) else "maxangle"
            for ax, kind, ylabel in (
                (axes[i, 1], "equinorm", "std/mean of norms"),
                (axes[i, 2], angle, "std of cosines" if angle == "equiangular" else "mean |cos + 1/(C−1)|"),
            ):
                # C = 2 (max-angle): the class means' NC2 is 0 by construction; only the rows are drawn.
                series = [
                    (w, c, _series(nc, exp, setting, f"nc2_{kind}_{w}"))
                    for w, c in (("means", MEANS_COLOR), ("weights", WEIGHTS_COLOR))
                    if not (w == "means" and angle == "maxangle")
                ]
                log = _maybe_log_y(ax, [s[1] for _, _, s in series if s], ratio=100.0)
                for w, color, s in series:
                    if s:
                        # The caption's words: the classifier's rows are the "weights" columns.
                        _band(ax, *s[:3], label="class means" if w == "means" else "classifier rows", color=color, log_y=log)
                ax.set_ylabel(ylabel)
                ax.set_title(f"NC2 {kind}" + (" (rows only: the means' is 0 for C = 2)" if angle == "maxangle" else ""))
                ax.legend(fontsize="small")
            for ax in axes[i]:
                _epoch_axis(ax, max_epoch)
        more = f"; {len(settings) - len(shown)} more settings in nc_epochs.csv" if len(settings) > len(shown) else ""
        fig.suptitle(f"{exp}: neural collapse during training (mean ± std over seeds)")
        fig.tight_layout()
        emit(
            _name("fig6", exp, {}),
            fig,
            f"Fig. 6 — {exp}: NC1 and NC2 (equinorm, {'equiangularity' if angle == 'equiangular' else 'max-angle'}) of class means "
            f"(red) and classifier rows (blue) vs epoch, for {_listing(shown)}{more}"
            + ("; with C = 2 the class means' NC2 is 0 by construction and not drawn." if angle == "maxangle" else "."),
        )


def _fig10(t: Tables, figdir: Path, emit) -> None:
    sim = t.simulations
    if sim.empty or "t" not in sim:
        return
    # `sqnc simulate --logistic` writes logistic.csv (t, rho_numeric, rho_closed_form); other
    # simulations there (gd_flow, gd_map: Eq. 23) are not Figure 10.
    sim = sim[sim["source"].astype(str).str.startswith("logistic")]
    rcols = [c for c in sim.columns if c.startswith("rho") and sim[c].notna().any()]
    if sim.empty or not rcols:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    sources = list(dict.fromkeys(sim["source"]))
    _maybe_log_y(ax, [sim[c].to_numpy(float) for c in rcols], ratio=100)
    for source, color in zip(sources, sns.color_palette("colorblind", len(sources))):
        g = sim[sim["source"] == source].sort_values("t")
        for c, ls in zip(rcols, ("-", "--", ":", "-.")):
            name = c.removeprefix("rho_").replace("_", " ") if c != "rho" else "ρ"
            ax.plot(g["t"], g[c], ls=ls, color=color, label=f"{source}: {name}" if len(sources) > 1 else name)
    ax.set_xlabel("t (gradient-flow time)")
    ax.set_ylabel("ρ")
    ax.legend(fontsize="small")
    ax.set_title("ρ from the logistic equation (Eq. 51)")
    fig.tight_layout()
    emit("fig10_simulation", fig, f"Fig. 10 — ρ(t) of the logistic equation (Eq. 51) from OUT/simulations/{', '.join(sources)}.csv.")


def _fig11_13(t: Tables, figdir: Path, emit) -> None:
    for exp, fixed, sub in _slices(t.summary, [NOISE], [NOISE]):
        sub = sub.assign(_r=_num(sub, NOISE) * 100).sort_values("_r")
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        for ax, col, ylabel in (
            (axes[0], "inv_rho", "mean 1/ρ"),
            (axes[1], "test_error", "test error"),
            (axes[2], "margin_mean", "mean normalized train margin y·f/ρ"),
        ):
            if f"{col}_mean" in sub and sub[f"{col}_mean"].notna().any():
                ax.errorbar(sub["_r"], sub[f"{col}_mean"], yerr=sub[f"{col}_std"].fillna(0), marker="o", capsize=3, color="black")
            else:  # an empty panel would read as a plotting failure
                ax.text(0.5, 0.5, f"not recorded by these runs\n({col})", ha="center", va="center", transform=ax.transAxes, color="0.4")
            ax.set_xlabel("random labels r (% of training labels)")
            ax.set_ylabel(ylabel)
        fig.suptitle(f"{exp}{_settings_text(fixed)}: final values vs label noise (mean ± std over seeds)")
        fig.tight_layout()
        emit(
            _name("fig11", exp, fixed),
            fig,
            f"Fig. 11 — {exp}{_settings_text(fixed)}: mean 1/ρ, test error and mean train margin at the last epoch vs the "
            f"fraction of random labels; {_seeds_note(sub)}.",
        )

        fig, ax = plt.subplots(figsize=(7, 4.2))
        colors = sns.color_palette("viridis", len(sub))
        vals, max_epoch = [], 1.0
        series = []
        for color, (_, r) in zip(colors, sub.iterrows()):
            s = _series(t.epochs, exp, r["setting"], "rho")
            if s:
                series.append((color, r, s))
                vals.append(s[1])
                max_epoch = max(max_epoch, s[0].max())
        log = _maybe_log_y(ax, vals, ratio=10)
        for color, r, s in series:
            _band(ax, *s[:3], label=f"r = {r['_r']:g}% (n={s[3]})", color=color, log_y=log)
        _epoch_axis(ax, max_epoch)
        ax.set_ylabel("ρ")
        ax.legend(fontsize="small")
        ax.set_title(f"{exp}{_settings_text(fixed)}: dynamics of ρ with random labels")
        fig.tight_layout()
        emit(_name("fig13", exp, fixed), fig, f"Fig. 13 — {exp}{_settings_text(fixed)}: ρ vs epoch for each fraction of random labels.")


def _fig12(t: Tables, figdir: Path, emit) -> None:
    for exp, fixed, sub in _slices(t.summary, [INIT], [INIT]):
        if "inv_rho_mean" not in sub or "test_acc_mean" not in sub:
            continue
        sub = sub.assign(_i=_num(sub, INIT)).sort_values("_i")
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        colors = sns.color_palette("viridis", len(sub))
        for color, (_, r) in zip(colors, sub.iterrows()):
            ax.errorbar(
                r["inv_rho_mean"],
                r["test_acc_mean"],
                xerr=0 if pd.isna(r["inv_rho_std"]) else r["inv_rho_std"],
                yerr=0 if pd.isna(r["test_acc_std"]) else r["test_acc_std"],
                fmt="s",
                color=color,
                capsize=3,
                label=f"init {r['_i']:g}",
            )
        ax.set_xlabel("1/ρ at the last epoch")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize="small")
        ax.set_title(f"{exp}{_settings_text(fixed)}: 1/ρ vs test accuracy")
        fig.tight_layout()
        emit(
            _name("fig12", exp, fixed),
            fig,
            f"Fig. 12 — {exp}{_settings_text(fixed)}: 1/ρ against test accuracy per initialization (error bars: std over seeds; {_seeds_note(sub)}).",
        )


def _windows_text(windows: list[float]) -> str:
    """"the first 3 and 30 epochs and all 1000 epochs" for windows [3, 30, 1000]."""
    *firsts, last = [int(w) for w in windows]
    head = f"the first {' and '.join(str(w) for w in firsts)} epochs and " if firsts else ""
    return f"{head}all {last} epoch{'s' if last != 1 else ''}"


def _inits_text(rows: list) -> str:
    inits = [f"{r['_i']:g}" for r in rows]
    return f"init {inits[0]}" if len(inits) == 1 else f"one row per init ({', '.join(inits)})"


def _per_init(t: Tables, figdir: Path, emit, positive_wd: bool, kind_rho: str, kind_perf: str) -> None:
    figures = []  # (exp, fixed, settings, rows drawn, windows)
    for exp, fixed, sub in _slices(t.summary, [INIT], []):
        wd = _num(sub, WD)
        sub = sub[(wd > 0) if positive_wd else (wd == 0)]
        if sub.empty:
            continue
        sub = sub.assign(_i=_num(sub, INIT)).sort_values("_i")
        rows = [sub.iloc[k] for k in _spread(list(range(len(sub))), 4)]
        max_epoch = float(max(_num(sub, "epochs_max").max(), 1))
        windows = [w for w in (3, 30) if w < max_epoch] + [max_epoch]
        figures.append((exp, fixed, sub, rows, windows))

    # One y range per (experiment, init, window) across the figures of an experiment: a sweep
    # over another key (the loss, say) gets one figure per value, and only a shared scale lets
    # the figures be compared.
    ranges: dict[tuple, list[np.ndarray]] = {}
    for exp, _, _, rows, windows in figures:
        for r in rows:
            s = _series(t.epochs, exp, r["setting"], "rho")
            for w in windows if s else ():
                keep = s[0] <= w
                lo, hi = s[1][keep] - np.nan_to_num(s[2][keep]), s[1][keep] + np.nan_to_num(s[2][keep])
                ranges.setdefault((exp, r["_i"], w if w in (3, 30) else "all"), []).append(np.r_[s[1][keep], lo[lo > 0], hi])

    for exp, fixed, sub, rows, windows in figures:
        wd_text = f"weight decay {float(rows[0][WD]):g}" if positive_wd else "no weight decay"
        max_epoch = windows[-1]

        # ρ over 3, 30 and all epochs (Figs 14, 15).
        fig, axes = plt.subplots(len(rows), len(windows), figsize=(max(4.5 * len(windows), 8), 3 * len(rows)), squeeze=False)
        for i, r in enumerate(rows):
            s = _series(t.epochs, exp, r["setting"], "rho")
            for j, w in enumerate(windows):
                ax = axes[i, j]
                if s:
                    keep = s[0] <= w
                    shared = np.concatenate(ranges[(exp, r["_i"], w if w in (3, 30) else "all")])
                    log = _maybe_log_y(ax, [shared], ratio=10)
                    _band(ax, s[0][keep], s[1][keep], s[2][keep], color="black", log_y=log)
                    lo, hi = np.nanmin(shared), np.nanmax(shared)
                    pad = (hi / lo) ** 0.05 if log else 0.05 * (hi - lo or abs(hi) or 1.0)
                    ax.set_ylim(*((lo / pad, hi * pad) if log else (lo - pad, hi + pad)))
                _epoch_axis(ax, w, log=(j == len(windows) - 1 and w > 30))
                ax.set_ylabel("ρ")
                ax.set_title(f"init {r['_i']:g}: first {int(w)} epochs" if j < len(windows) - 1 else f"init {r['_i']:g}: all epochs")
        shared_note = "; y axes shared with the other figures of this experiment" if len([f for f in figures if f[0] == exp]) > 1 else ""
        fig.suptitle(f"{exp}{_settings_text(fixed)}: dynamics of ρ, {wd_text} (mean ± std over {_seeds_note(sub)})")
        fig.tight_layout()
        emit(
            _name(kind_rho, exp, fixed),
            fig,
            f"Fig. {kind_rho[3:]} — {exp}{_settings_text(fixed)}: ρ vs epoch over {_windows_text(windows)}, {wd_text}, "
            f"{_inits_text(rows)}{shared_note}.",
        )

        # Train/test loss and accuracy per init (Figs 16, 17).
        loss = loss_name(sub)
        fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3 * len(rows)), squeeze=False, sharex=True)
        for i, r in enumerate(rows):
            for ax, metric, ylabel in ((axes[i, 0], "loss", loss), (axes[i, 1], "acc", "accuracy")):
                for split, color in (("train", "tab:blue"), ("test", "tab:orange")):
                    s = _series(t.epochs, exp, r["setting"], f"{split}_{metric}")
                    if s:
                        _band(ax, *s[:3], label=split, color=color)
                ax.set_ylabel(ylabel)
                ax.set_title(f"init {r['_i']:g}: {'loss' if metric == 'loss' else 'accuracy'}")
                ax.legend(fontsize="small")
                _epoch_axis(ax, max_epoch)
                if i < len(rows) - 1:
                    ax.set_xlabel("")  # rows share the bottom row's epoch axis
        fig.suptitle(f"{exp}{_settings_text(fixed)}: performance, {wd_text} (mean ± std over {_seeds_note(sub)})")
        fig.tight_layout()
        emit(
            _name(kind_perf, exp, fixed),
            fig,
            f"Fig. {kind_perf[3:]} — {exp}{_settings_text(fixed)}: train/test {loss} and accuracy vs epoch, {wd_text}, "
            f"{_inits_text(rows)}.",
        )


def _fig14_17(t: Tables, figdir: Path, emit) -> None:
    _per_init(t, figdir, emit, True, "fig14", "fig16")
    _per_init(t, figdir, emit, False, "fig15", "fig17")


# ----------------------------------------------------------------------------- issues 13 and 14
# The multiclass NC figures and the follow-up claims' figures. They share the helpers below: the
# settings of an experiment as coloured lines, panels of mean ± std curves over epochs, and the
# legends saying which colour is which setting and which line style which split.

MAX_LINES = 8  # settings drawn as lines in one panel at most (evenly spread; the tables keep all)
SPLIT_STYLES = (("", "-", "train"), ("test_", "--", "test"))  # column prefix, line style, label
WEIGHTS_STYLE = ":"  # classifier rows: one curve, whatever the split
CLAIMS = {
    "ncpanel": "configs/nc/resnet18_cifar10_mse.yaml (or configs/claims/random_labels_nc.yaml, configs/claims/exp_loss_nc1_batch.yaml)",
    "decomp": "configs/nc/resnet18_cifar10_mse.yaml",
    "gram": "configs/nc/resnet18_cifar10_mse.yaml",
    "spectra": "configs/claims/rank_batch_wd.yaml",
    "rank": "configs/claims/rank_batch_wd.yaml",
    "updates": "configs/claims/sgd_noise.yaml",
    "layerwise": "configs/claims/random_labels_nc.yaml (or configs/nc/resnet18_cifar10_mse.yaml)",
}


def _settings_of(t: Tables, exp: str, table: pd.DataFrame, k: int = MAX_LINES) -> list[str]:
    """The experiment's settings that have rows in `table`, in summary order, at most k spread."""
    have = set(table.loc[table["experiment"] == exp, "setting"]) if not table.empty else set()
    ordered = [s for s in t.summary.loc[t.summary["experiment"] == exp, "setting"] if s in have]
    return _spread(ordered, k)


def _setting_name(kind: str, experiment: str, settings: list[str], setting: str) -> str:
    """The file stem of a one-setting figure: the setting is named when the experiment has more."""
    return _slug("_".join([kind, experiment] + ([setting] if len(settings) > 1 else [])))


def _palette(settings: list[str]) -> dict[str, tuple]:
    return dict(zip(settings, sns.color_palette("colorblind" if len(settings) <= 10 else "viridis", len(settings))))


def _curves(
    ax, table: pd.DataFrame, exp: str, colors: dict[str, tuple], lines: list[tuple[str, str]], ylabel: str, ratio: float = 20.0
) -> float:
    """Mean ± std over seeds of `table` columns against epoch, one colour per setting and one
    line style per (column, style) of `lines`; log y when the values span more than `ratio`.
    Returns the largest epoch drawn (0 when nothing was)."""
    drawn = [(setting, style, s) for setting in colors for col, style in lines if (s := _series(table, exp, setting, col))]
    log = _maybe_log_y(ax, [s[1] for _, _, s in drawn], ratio=ratio)
    for setting, style, s in drawn:
        _band(ax, *s[:3], color=colors[setting], log_y=log, ls=style)
    ax.set_ylabel(ylabel)
    return max((s[0].max() for _, _, s in drawn), default=0.0)


def _legend_handles(colors: dict[str, tuple], styles: list[tuple[str, str]] = ()) -> list:
    """One legend entry per setting (colour) and per line style (`(style, meaning)`)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=2, label=s) for s, c in colors.items()]
    return handles + [Line2D([], [], color="0.3", ls=ls, lw=1.6, label=what) for ls, what in styles]


def _legends(ax, colors: dict[str, tuple], styles: list[tuple[str, str]] = (), loc: str = "best", fontsize: str = "x-small") -> None:
    """A legend on `ax` with one entry per setting (colour) and per line style."""
    ax.legend(handles=_legend_handles(colors, styles), fontsize=fontsize, loc=loc)


def _finish(fig, emit, name: str, title: str, caption: str) -> None:
    fig.suptitle(title)
    if fig.get_layout_engine() is None:  # a constrained layout (legends outside) lays itself out
        fig.tight_layout()
    emit(name, fig, caption)


def _nc_experiments(t: Tables, required: str):
    """(experiment, settings) with `required` measured at 2 or more NC epochs."""
    nc = t.nc_epochs
    if nc.empty or f"{required}_mean" not in nc:
        return
    for exp in dict.fromkeys(t.summary["experiment"]):
        rows = nc[(nc["experiment"] == exp) & nc[f"{required}_mean"].notna()]
        settings = [s for s in _settings_of(t, exp, rows) if rows.loc[rows["setting"] == s, "epoch"].nunique() >= 2]
        if settings:
            yield exp, settings


def _ncpanel(t: Tables, figdir: Path, emit) -> None:
    nc = t.nc_epochs
    for exp, settings in _nc_experiments(t, "nc1"):
        colors = _palette(settings)
        rows = nc[nc["experiment"] == exp]
        # Equiangularity (std of cosines) is undefined for C = 2: the max-angle measure is not.
        angle = (
            "equiangular"
            if any(rows.get(f"nc2_equiangular_{w}_mean", pd.Series(dtype=float)).notna().any() for w in ("means", "weights"))
            else "maxangle"
        )
        nc3 = "nc3_centered" if "nc3_centered_mean" in rows and rows["nc3_centered_mean"].notna().any() else "nc3"
        # C = 2 (no equiangularity): the class-means NC2 lines are 0 by construction, not collapse.
        means = [] if angle == "maxangle" else [("{}_means", "-"), ("test_{}_means", "--")]
        panels = (
            ("NC1: variability collapse", [("nc1", "-"), ("test_nc1", "--")], NC1_TEX + " (log)", 1.0),
            (
                "NC2: equinorm" + ("" if means else " (classifier rows)"),
                [(f.format("nc2_equinorm"), ls) for f, ls in means] + [("nc2_equinorm_weights", WEIGHTS_STYLE)],
                r"std/mean of $\|\mu_c - \mu_G\|$ and $\|w_c\|$" if means else r"std/mean of $\|w_c\|$",
                20.0,
            ),
            (
                "NC2: equiangularity" if angle == "equiangular" else "NC2: max-angle (classifier rows)",
                [(f.format(f"nc2_{angle}"), ls) for f, ls in means] + [(f"nc2_{angle}_weights", WEIGHTS_STYLE)],
                "std of pairwise cosines" if angle == "equiangular" else "|cos + 1/(C−1)| of the rows",
                20.0,
            ),
            (
                "NC3: self-duality" + (" (centred rows)" if nc3 == "nc3_centered" else ""),
                [(nc3, "-"), (f"test_{nc3}", "--")],
                r"$\|W^\top/\|W\|_F - M/\|M\|_F\|_F^2$",
                20.0,
            ),
            ("NC4: nearest class mean ≠ argmax", [("nc4", "-"), ("test_nc4", "--")], "fraction of samples", 20.0),
        )
        # Two rows of three (the sixth place holds the legend): one row of five panels is a strip
        # whose text is unreadable at page width.
        fig, grid = plt.subplots(2, 3, figsize=(13, 7.8))
        axes, legend_ax = grid.ravel()[: len(panels)], grid.ravel()[-1]
        max_epoch = 1.0
        for ax, (title, lines, ylabel, ratio) in zip(axes, panels):
            max_epoch = max(max_epoch, _curves(ax, nc, exp, colors, lines, ylabel, ratio))
            ax.set_title(title)
        for ax in axes:
            _epoch_axis(ax, max_epoch)
        legend_ax.axis("off")
        _legends(
            legend_ax,
            colors,
            [("-", "train (class means)"), ("--", "test (class means)"), (WEIGHTS_STYLE, "classifier rows")],
            loc="center" if means else "upper center",
            fontsize="small",
        )
        if not means:  # in the free sixth place, where it covers no curve
            legend_ax.text(0.5, 0.12, TWO_CLASS_NOTE, transform=legend_ax.transAxes, ha="center", va="bottom", fontsize="small", color="0.25", wrap=True)
        n = rows["n_runs"].max()
        _finish(
            fig,
            emit,
            _name("ncpanel", exp, {}),
            f"{exp}: neural collapse during training (mean ± std over seeds, up to {int(n)} per setting)",
            f"NC panel — {exp}: NC1, NC2 equinorm and {'equiangularity' if angle == 'equiangular' else 'max-angle'}, "
            f"{'NC3 (centred classifier rows)' if nc3 == 'nc3_centered' else 'NC3'} and NC4 vs epoch for {_listing(settings)}; "
            "train solid, test dashed, classifier rows dotted"
            + ("; with C = 2 the class means' NC2 is 0 by construction (μ₁ − μ_G = −(μ₂ − μ_G)), so only the classifier rows' is drawn." if not means else "."),
        )


# Two centred class means are opposite vectors: equal norms and cosine −1 = −1/(C−1).
TWO_CLASS_NOTE = (
    "NC2 of the class means is not drawn:\nwith C = 2 it is 0 by construction\n(μ₁ − μ_G = −(μ₂ − μ_G)).\n"
    "A bias-free head's max-angle tends to\n2/(1 + |μ_G|²/|μ₁ − μ_G|²), not 0:\nits common row maps μ_G to 1/C (Eq. 35)"
)


DECOMP_TERMS = (
    ("mse_nc1", "within-class (NC1) term", "tab:blue"),
    ("mse_nc23", "class-means (NC2/3) term", "tab:orange"),
    ("mse_perp", "off-LS (perp) term", "tab:green"),
)


def _decomp(t: Tables, figdir: Path, emit) -> None:
    nc = t.nc_epochs
    for exp, settings in _nc_experiments(t, "mse_total"):
        shown = settings[:4]
        # At least 7.5 in wide: the title and the legend below are as wide as that, and a
        # narrower figure grew around them when saved (one column filled a third of the image).
        width = max(4.8 * len(shown) + 0.4, 7.5)
        fig, axes = plt.subplots(2, len(shown), figsize=(width, 7.2), squeeze=False, sharex="col", layout="constrained")
        for j, setting in enumerate(shown):
            top, bottom = axes[0, j], axes[1, j]
            cols = [f"{col}_mean" for col, _, _ in DECOMP_TERMS]
            g = nc[(nc["experiment"] == exp) & (nc["setting"] == setting)].dropna(subset=cols).sort_values("epoch")
            max_epoch = max(1.0, float(g["epoch"].max()) if not g.empty else 1.0)
            # Seed means add up: the stacked mean terms are the mean total exactly.
            top.stackplot(
                g["epoch"].to_numpy(float),
                *[g[c].to_numpy(float) for c in cols],
                labels=[lab for _, lab, _ in DECOMP_TERMS],
                colors=[c for _, _, c in DECOMP_TERMS],
                alpha=0.75,
            )
            total = _series(nc, exp, setting, "mse_total")
            if total:
                top.plot(total[0], total[1], color="black", ls="--", lw=1.6, label="total J(W) = mse_total")
            top.set_ylabel("J(W) and its terms (square-loss units)")
            top.set_ylim(bottom=0)
            top.set_title(setting)
            ls_label = r"$\|W - W_\mathrm{LS}\|_F\ /\ \|W\|_F$"
            max_epoch = max(max_epoch, _curves(bottom, nc, exp, {setting: "tab:purple"}, [("ls_distance", "-")], ls_label, ratio=20.0))
            bottom.set_title("distance from the least-squares classifier")
            for ax in (top, bottom):
                _epoch_axis(ax, max_epoch)
            top.set_xlabel("")  # shares the x axis of the panel below
        # One legend for all columns, below the panels: inside, it covered the curves.
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4 if len(shown) > 1 else 2, len(labels)), fontsize="small")
        more = f"; {len(settings) - len(shown)} more settings in nc_epochs.csv" if len(settings) > len(shown) else ""
        _finish(
            fig,
            emit,
            _name("decomp", exp, {}),
            textwrap.fill(f"{exp}: MSE decomposition of the classifier's objective (Han, Papyan & Donoho; train set, mean over seeds)", int(width * 9)),
            f"MSE decomposition — {exp}: mse_nc1 + mse_nc23 + mse_perp stacked (= J(W), dashed) and ls_distance vs epoch "
            f"for {_listing(shown)}{more}.",
        )


def simplex_etf_gram(n_classes: int) -> np.ndarray:
    """The Gram matrix of the C normalized centred class means of a simplex ETF.

    Args:
        n_classes: C >= 2.

    Returns:
        (C, C): 1 on the diagonal, −1/(C−1) off it (C/(C−1)·I − 1/(C−1)·11ᵀ).

    Example: `simplex_etf_gram(2)` is `[[1, -1], [-1, 1]]`.
    """
    c = int(n_classes)
    if c < 2:
        raise ValueError(f"a simplex ETF needs at least 2 classes, got {c}")
    return (c * np.eye(c) - np.ones((c, c))) / (c - 1)


def _gram_matrix(rows: pd.DataFrame) -> np.ndarray:
    c = int(max(rows["i"].max(), rows["j"].max())) + 1
    g = np.full((c, c), np.nan)
    g[rows["i"].astype(int), rows["j"].astype(int)] = rows["mean"].to_numpy(float)
    return g


def class_names(t: Tables, exp: str, setting: str, n_classes: int) -> list[str]:
    """The names of a setting's classes by label index (`runs.csv` class_names, which the runs'
    `status.json` give), or the indices "0".."C-1" when the runs do not say or disagree.

    Example: `class_names(tables, "quickstart", "quickstart", 2)` is `["automobile", "bird"]`.
    """
    runs = t.runs
    if runs.empty or "class_names" not in runs:
        return [str(i) for i in range(n_classes)]
    cell = runs.loc[(runs["experiment"] == exp) & (runs["setting"] == setting), "class_names"].dropna().unique()
    try:
        names = json.loads(cell[0]) if len(cell) == 1 else None
    except (json.JSONDecodeError, TypeError):
        names = None
    return [str(n) for n in names] if isinstance(names, list) and len(names) == n_classes else [str(i) for i in range(n_classes)]


def _gram(t: Tables, figdir: Path, emit) -> None:
    cg = t.class_gram_final
    if cg.empty:
        return
    for exp in dict.fromkeys(t.summary["experiment"]):
        settings = _settings_of(t, exp, cg, MAX_PER_KIND)
        for setting in settings:
            rows = cg[(cg["experiment"] == exp) & (cg["setting"] == setting)]
            splits = [s for s in ("train", "test") if (rows["split"] == s).any()]
            mats = [
                (
                    f"measured, {split} (epoch {int(rows.loc[rows['split'] == split, 'epoch'].max())})",
                    _gram_matrix(rows[rows["split"] == split]),
                )
                for split in splits
            ]
            etf = simplex_etf_gram(mats[0][1].shape[0])
            mats.append((f"simplex ETF (off-diagonal −1/(C−1) = {-1 / (etf.shape[0] - 1):.3g})", etf))
            fig, axes = plt.subplots(1, len(mats), figsize=(4.3 * len(mats) + 0.8, 4.4), squeeze=False, layout="constrained")
            c = etf.shape[0]
            names = class_names(t, exp, setting, c)
            for ax, (title, g) in zip(axes[0], mats):
                # One colour scale for every panel (cosines lie in [-1, 1]) so colours compare.
                im = ax.imshow(g, cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
                if c <= 12:
                    for (i, j), v in np.ndenumerate(g):
                        ax.text(
                            j,
                            i,
                            f"{v:.2f}",
                            ha="center",
                            va="center",
                            fontsize=6 if c > 6 else 8,
                            color="white" if abs(v) > 0.6 else "black",
                        )
                ticks = _spread(list(range(c)), 10)
                ax.set_xticks(ticks, [names[k] for k in ticks], rotation=45, ha="right", rotation_mode="anchor")
                ax.set_yticks(ticks, [names[k] for k in ticks])
                dist = np.linalg.norm(np.nan_to_num(g - etf)) / np.linalg.norm(etf)
                ax.set_title(title + ("" if g is etf else f"\n{GRAM_DIST_TEX} = {dist:.3g}"), fontsize="small")
                ax.set_xlabel("class j")
                ax.set_ylabel("class i")
                ax.grid(False)
            fig.colorbar(im, ax=list(axes[0]), shrink=0.85, label=r"$\cos(\mu_i - \mu_G,\ \mu_j - \mu_G)$")
            # A one-setting experiment's setting label is the experiment's name: say it once.
            where = exp if setting == exp else f"{exp}, {setting}"
            fig.suptitle(f"{where}: Gram matrix of the normalized centred class means (mean over seeds)", y=1.04)
            name = _setting_name("gram", exp, settings, setting)
            emit(
                name,
                fig,
                f"Gram — {where}: cosines between centred class means at the last epoch ({', '.join(splits)}), next to the simplex ETF's.",
            )


def _spectra(t: Tables, figdir: Path, emit) -> None:
    sp = t.spectra_epochs
    if sp.empty:
        return
    for exp in dict.fromkeys(t.summary["experiment"]):
        settings = _settings_of(t, exp, sp, MAX_PER_KIND)
        for setting in settings:
            rows = sp[(sp["experiment"] == exp) & (sp["setting"] == setting)]
            epochs = sorted(rows["epoch"].unique())
            layers = _spread(list(rows.sort_values("depth").drop_duplicates("layer")["layer"]), 8)
            ncol = min(4, len(layers))
            nrow = math.ceil(len(layers) / ncol)
            fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol + 1, 3.6 * nrow), squeeze=False, layout="constrained")
            cmap = plt.get_cmap("viridis")
            # NC epochs are usually log-spaced: a symlog colour scale gives them distinct colours.
            norm = matplotlib.colors.SymLogNorm(linthresh=1.0, vmin=min(epochs), vmax=max(max(epochs), min(epochs) + 1))
            ranks = t.rank_epochs
            for ax, layer in zip(axes.ravel(), layers):
                for e in epochs:
                    g = rows[(rows["layer"] == layer) & (rows["epoch"] == e)].sort_values("index")
                    ax.plot(g["index"] + 1, g["sv_normalized_mean"], color=cmap(norm(e)), lw=1.3)
                ax.set_yscale("log")
                ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
                ax.set_xlabel("singular value index i (1 = largest)")
                ax.set_ylabel(r"$\sigma_i\ /\ \sigma_1$")
                title = layer
                if not ranks.empty:
                    r = ranks[(ranks["experiment"] == exp) & (ranks["setting"] == setting) & (ranks["layer"] == layer)]
                    if not r.empty:
                        last = r.loc[r["epoch"].idxmax()]
                        title += f"\nrank {last['rank_mean']:.3g}, stable rank {last['stable_rank_mean']:.3g} (epoch {int(last['epoch'])})"
                ax.set_title(title, fontsize="small")
            for ax in axes.ravel()[len(layers) :]:
                ax.set_visible(False)
            sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
            cbar = fig.colorbar(sm, ax=list(axes.ravel()), shrink=0.8, label="epoch (log scale)")
            # The same readable epoch ticks as a log epoch axis (matplotlib's are 0 and 10⁰ on a short run).
            cbar.set_ticks(epoch_ticks(norm.vmax, norm.vmin), labels=[_int_label(e) for e in epoch_ticks(norm.vmax, norm.vmin)])
            cbar.ax.minorticks_off()
            where = exp if setting == exp else f"{exp}, {setting}"  # a one-setting experiment: named once
            fig.suptitle(f"{where}: normalized singular values of the weights over training (mean over seeds)")
            emit(
                _setting_name("spectra", exp, settings, setting),
                fig,
                f"Spectra — {where}: σ_i/σ_1 of layers {', '.join(layers)} at "
                + (
                    f"epochs {', '.join(str(int(e)) for e in epochs)}"
                    if len(epochs) <= 8
                    else f"{len(epochs)} epochs from {int(epochs[0])} to {int(epochs[-1])}"
                )
                + " (colour = epoch).",
            )


def _batch_order(sub: pd.DataFrame) -> list[str]:
    # Batch sizes in numeric order; full batch (N) after every minibatch.
    b = sub.drop_duplicates("batch").assign(
        _f=lambda d: d["batch"] == "full", _n=lambda d: pd.to_numeric(d["batch_size_numeric"], errors="coerce")
    )
    return list(b.sort_values(["_f", "_n"])["batch"])


def _rank(t: Tables, figdir: Path, emit) -> None:
    rf = t.rank_final
    if rf.empty:
        return
    rf = rf[rf["epoch"] == rf.groupby(["experiment", "setting"])["epoch"].transform("max")]  # a partial run's last epoch
    summary = t.summary[t.summary["setting"].isin(set(rf["setting"]))]
    for exp, fixed, sub in _slices(summary, ["optim.batch_size", "optim.full_batch", WD], [], min_settings=2):
        rows = rf[(rf["experiment"] == exp) & rf["setting"].isin(set(sub["setting"]))]
        batches = _batch_order(rows)
        wds = sorted(_num(rows, WD).dropna().unique())
        if len(batches) < 2 and len(wds) < 2:
            continue
        by_batch = len(batches) >= 2
        layers = _spread(list(rows.sort_values("depth").drop_duplicates("layer")["layer"]), 6)
        fig, axes = plt.subplots(len(layers), 2, figsize=(11, 2.9 * len(layers) + 0.6), squeeze=False, sharex=True)
        groups = wds if by_batch else batches
        colors = dict(zip(groups, sns.color_palette("viridis", len(groups))))
        for i, layer in enumerate(layers):
            lr = rows[rows["layer"] == layer]
            stable = r"stable rank $\|W\|_F^2/\|W\|_2^2$"
            for ax, measure, ylabel in ((axes[i, 0], "rank", "numerical rank"), (axes[i, 1], "stable_rank", stable)):
                for grp in groups:
                    g = lr[_num(lr, WD) == grp] if by_batch else lr[lr["batch"] == grp]
                    if by_batch:
                        pos = {b: k for k, b in enumerate(batches)}
                        g = g.assign(_x=g["batch"].map(pos)).sort_values("_x")
                        label = f"weight decay {grp:g}"
                    else:
                        g = g.assign(_x=_num(g, WD)).sort_values("_x")
                        label = f"batch {grp}"
                    if g.empty:
                        continue
                    ax.errorbar(
                        g["_x"],
                        g[f"{measure}_mean"],
                        yerr=g[f"{measure}_std"].fillna(0),
                        marker="o",
                        capsize=3,
                        color=colors[grp],
                        label=label,
                    )
                n_sv = int(lr["n_singular"].max()) if "n_singular" in lr else None
                if measure == "rank" and lr["rank_std"].fillna(0).eq(0).all():
                    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # whole ranks: no 1.5
                ax.set_ylabel(ylabel)
                ax.set_title(f"{layer}" + (f" (min(out, fan_in) = {n_sv})" if n_sv and measure == "rank" else ""), fontsize="small")
                ax.legend(fontsize="x-small")
        for ax in axes[-1]:
            if by_batch:
                ax.set_xticks(range(len(batches)), batches)
                ax.set_xlabel("batch size (full = gradient descent on all N samples)")
            else:
                ax.set_xscale("symlog", linthresh=max(min([w for w in wds if w > 0], default=1e-4), 1e-8))
                ax.set_xticks(wds, [f"{w:g}" for w in wds])  # the values swept, not powers of ten
                ax.set_xlabel("weight decay λ")
        epochs = ", ".join(str(int(e)) for e in sorted(rows["epoch"].unique()))
        _finish(
            fig,
            emit,
            _name("rank", exp, fixed),
            f"{exp}{_settings_text(fixed)}: final rank and stable rank per layer (epoch {epochs}; mean ± std over {_seeds_note(sub)})",
            f"Rank — {exp}{_settings_text(fixed)}: numerical rank (σ/‖W‖_F above track.rank_tol) and stable rank of layers "
            f"{', '.join(layers)} against {'batch size' if by_batch else 'weight decay'}"
            f"{', one line per weight decay' if by_batch and len(wds) > 1 else ''}.",
        )


def _compares_sgd_with_gd(t: Tables, exp: str) -> bool:
    """Whether the experiment has both minibatch (SGD) and full-batch (GD) settings."""
    sub = t.summary[t.summary["experiment"] == exp]
    if "optim.full_batch" not in sub:
        return False
    full = sub["optim.full_batch"].astype(str).str.lower().isin(["true", "1", "1.0"])
    return bool(full.any() and (~full).any())


def _updates(t: Tables, figdir: Path, emit) -> None:
    ep = t.epochs
    if ep.empty or "update_norm_layer_mean_mean" not in ep:
        return
    for exp in dict.fromkeys(t.summary["experiment"]):
        rows = ep[(ep["experiment"] == exp) & ep["update_norm_layer_mean_mean"].notna()]
        settings = _settings_of(t, exp, rows)
        if not settings:
            continue
        colors = _palette(settings)
        per_setting = settings[:3]
        fig, axes = plt.subplots(1, 1 + len(per_setting), figsize=(4.6 * (1 + len(per_setting)), 4.0), squeeze=False, sharey=True)
        axes = axes[0]
        ylabel = r"$\|W_e - W_{e-1}\|_F\ /\ \|W_{e-1}\|_F$ (log)"
        max_epoch = _curves(axes[0], ep, exp, colors, [("update_norm_layer_mean", "-")], ylabel, ratio=1.0)
        axes[0].set_yscale("log")
        axes[0].set_title("mean over layers")
        _legends(axes[0], colors)
        layers = [
            c.removeprefix("update_norm_").removesuffix("_mean")
            for c in ep.columns
            if c.startswith("update_norm_") and c.endswith("_mean") and c != "update_norm_layer_mean_mean"
        ]
        layers = [la for la in layers if rows[f"update_norm_{la}_mean"].notna().any()]
        lcolors = dict(zip(layers, plt.get_cmap("viridis")(np.linspace(0, 1, max(len(layers), 1)))))
        for ax, setting in zip(axes[1:], per_setting):
            for layer in layers:
                s = _series(ep, exp, setting, f"update_norm_{layer}")
                if s:
                    _band(ax, *s[:3], color=lcolors[layer], label=layer, log_y=True)
                    max_epoch = max(max_epoch, s[0].max())
            ax.set_yscale("log")
            ax.set_title(f"{setting}: per layer", fontsize="small")
            ax.legend(fontsize="x-small", ncol=2 if len(layers) > 6 else 1)
        for ax in axes:
            _epoch_axis(ax, max_epoch, min_epoch=1)  # epoch 0 has no update: the axis starts at 1
        tail = ""
        un = t.update_norms
        if not un.empty:
            u = un[(un["experiment"] == exp) & (un["layer"] == "all layers")]
            tail = "; end of training (mean over the last epochs): " + ", ".join(
                f"{_listing([r['setting']])} {r['tail_mean']:.2g}" for _, r in u.iterrows() if r["setting"] in colors
            )
        _finish(
            fig,
            emit,
            _name("updates", exp, {}),
            f"{exp}: relative weight update per epoch{' — SGD noise: SGD vs full-batch GD' if _compares_sgd_with_gd(t, exp) else ''}"
            " (mean ± std over seeds)",
            f"Update norms — {exp}: ‖W_e − W_(e−1)‖_F/‖W_(e−1)‖_F vs epoch, mean over layers for {_listing(settings)} and per layer for "
            f"{_listing(per_setting)}{tail}.",
        )


def _layerwise(t: Tables, figdir: Path, emit) -> None:
    lf = t.nc_layers_final
    if lf.empty:
        return
    lf = lf[lf["measure"].isin(["ncc_accuracy", "alignment"])]
    for exp in dict.fromkeys(t.summary["experiment"]):
        rows = lf[(lf["experiment"] == exp) & lf["mean"].notna()]
        settings = _settings_of(t, exp, rows)
        if not settings:
            continue
        colors = _palette(settings)
        fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.6), layout="constrained")
        for ax, measure, splits, ylabel in (
            (axes[0], "ncc_accuracy", SPLIT_STYLES, "NCC accuracy (fraction of samples)"),
            (axes[1], "alignment", SPLIT_STYLES[:1], "mean cos of principal angles"),
        ):
            for k, (setting, color) in enumerate(colors.items()):
                for _, style, split in splits:
                    g = rows[(rows["setting"] == setting) & (rows["measure"] == measure) & (rows["split"] == split)].sort_values("depth")
                    if len(g) >= 2:
                        x, m, sd = g["depth"].to_numpy(float), g["mean"].to_numpy(float), g["std"].to_numpy(float)
                        _band(ax, x, m, sd, color=color, ls=style, marker="o", ms=4)
                    elif len(g) == 1:
                        # One measured layer (alignment needs a next layer): a point with its std,
                        # set apart per setting so that the points do not hide each other.
                        x = float(g["depth"].iloc[0]) + 0.12 * (k - (len(colors) - 1) / 2) / max(len(colors), 1)
                        sd = float(g["std"].iloc[0]) if g["std"].notna().iloc[0] else 0.0
                        ax.errorbar([x], g["mean"], yerr=[sd], color=color, marker="o", ms=7, capsize=4, ls="none")
            # Both panels show every measured layer (tick labels are the layer names when every
            # setting names a depth alike); a layer without this measure says so instead of
            # silently missing from the axis.
            names = rows.drop_duplicates(["depth", "layer"]).groupby("depth")["layer"].agg(list)
            ax.set_xticks(names.index, [v[0] if len(v) == 1 else str(d) for d, v in names.items()], rotation=45, ha="right")
            measured = set(rows.loc[rows["measure"] == measure, "depth"])
            for d in names.index:
                if d not in measured:
                    ax.text(d, 0.5, "not\nmeasured", ha="center", va="center", fontsize="x-small", color="0.4")
            ax.set_xlabel("layer (input → output)")
            ax.set_ylabel(ylabel)
            ax.set_ylim(-0.02, 1.02)
        axes[0].set_title("nearest-class-mean accuracy of each layer")
        axes[1].set_title("alignment of class means with the\nnext layer's top-C singular vectors (train)")
        # One legend for both panels, outside them: the colours are the same settings in each.
        fig.legend(handles=_legend_handles(colors, [("-", "train"), ("--", "test")]), loc="outside right center", fontsize="small")
        ep = ", ".join(str(int(e)) for e in sorted(rows["epoch"].unique()))
        _finish(
            fig,
            emit,
            _name("layerwise", exp, {}),
            f"{exp}: layer-wise collapse at the last epoch ({ep}; mean ± std over seeds)",
            f"Layer-wise — {exp}: NCC accuracy (train solid, test dashed) and alignment against depth for {_listing(settings)}.",
        )


# What each figure kind needs, for the message when nothing could be drawn.
NEEDS = {
    "fig2": "runs differing in model.init_scale and optim.weight_decay within one experiment",
    "fig3": "per-sample margins (margins.csv) of runs differing in model.init_scale and/or optim.weight_decay",
    "fig4": "per-sample margins (margins.csv) at 2 or more epochs",
    "fig5": "per-step margins (margins_steps.csv in the run directories); the runs record margins per epoch only",
    "fig6": "neural-collapse measurements (nc.csv) at 2 or more epochs",
    "fig10": "OUT/simulations/logistic.csv (t, rho_*): run `sqnc simulate --logistic --out OUT/simulations`, then `sqnc analyze`",
    "fig11": "runs differing in data.label_noise within one experiment",
    "fig12": "runs differing in model.init_scale within one experiment",
    "fig13": "runs differing in data.label_noise within one experiment",
    "fig14": "runs with optim.weight_decay > 0",
    "fig15": "runs with optim.weight_decay = 0",
    "fig16": "runs with optim.weight_decay > 0",
    "fig17": "runs with optim.weight_decay = 0",
    "ncpanel": "neural-collapse measurements (nc.csv) at 2 or more epochs",
    "decomp": "the MSE decomposition (nc.csv mse_* columns, track.mse_decomposition) at 2 or more epochs",
    "gram": "class_gram.csv in the run directories (Gram matrix of the normalized centred class means)",
    "spectra": "weight spectra (spectra.csv, written on NC epochs)",
    "rank": "weight spectra (spectra.csv) of runs differing in optim.batch_size / optim.full_batch or optim.weight_decay within one experiment",
    "updates": "update norms (update_norm_<layer> in metrics.csv)",
    "layerwise": "NCC accuracy or alignment in nc_layers.csv",
}

DRAWERS: list[tuple[tuple[str, ...], Callable]] = [
    (("fig2",), _fig2),
    (("fig3",), _fig3),
    (("fig4",), _fig4),
    (("fig5",), _fig5),
    (("fig6",), _fig6),
    (("fig10",), _fig10),
    (("fig11", "fig13"), _fig11_13),
    (("fig12",), _fig12),
    (("fig14", "fig15", "fig16", "fig17"), _fig14_17),
    (("ncpanel",), _ncpanel),
    (("decomp",), _decomp),
    (("gram",), _gram),
    (("spectra",), _spectra),
    (("rank",), _rank),
    (("updates",), _updates),
    (("layerwise",), _layerwise),
]


def _kind(name: str) -> str:
    return name.split("_", 1)[0]


def _skip_reason(kind: str) -> str:
    cfg = PAPER_CONFIGS.get(kind) or CLAIMS.get(kind)
    return f"needs {NEEDS[kind]}" + (f" (run {cfg}, then `sqnc analyze`)" if cfg else "")


def figure_kinds() -> list[str]:
    """The figure kinds `draw_figures` knows (`fig2`, `fig3`, ...), in drawing order."""
    return [k for kinds, _ in DRAWERS for k in kinds]


def draw_figures(out: Path, only: list[str] | None = None) -> list[FigureResult]:
    """Draw every paper figure the analysis tables of `out` support.

    Args:
        out: the output root; reads `out/analysis/*.csv`, writes `out/figures/*.png|pdf` and
            `out/figures/index.html`.
        only: figure kinds to (re)draw, e.g. `["fig2", "fig6"]`; the others keep their files and
            their place in index.html. None draws all.

    Returns:
        One `FigureResult` per figure drawn, and one per figure kind skipped (with the reason and
        the config that produces its data).

    Raises:
        MissingAnalysisError: `sqnc analyze OUT` has not been run.
        ValueError: `only` names an unknown figure kind.

    Example:

    ```python
    results = draw_figures(Path("outputs"))
    [r.name for r in results if not r.skipped]
    ```
    """
    out = Path(out)
    known = figure_kinds()
    if only is not None:
        bad = [k for k in only if k not in known]
        if bad:
            raise ValueError(f"unknown figure kind {bad[0]!r}; known: {', '.join(known)}")
    wanted = set(known if only is None else only)
    tables = load_tables(out)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    results: list[FigureResult] = []
    names: set[str] = set()

    for kinds, drawer in DRAWERS:
        if not wanted & set(kinds):
            continue
        counts: dict[str, int] = {}

        def emit(name: str, fig, caption: str, counts: dict[str, int] = counts) -> None:
            kind = _kind(name)
            if kind not in wanted:  # a drawer making several kinds, only some asked for
                plt.close(fig)
                return
            counts[kind] = counts.get(kind, 0) + 1
            while name in names:  # two slices whose labels slug alike
                name += "_"
            names.add(name)
            results.append(FigureResult(name, _save(fig, figdir, name), caption))

        with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.15):
            try:
                drawer(tables, figdir, emit)
            except Exception as err:  # noqa: BLE001 - one bad figure must not cost the others
                plt.close("all")
                for kind in kinds:
                    if kind in wanted and not counts.get(kind):
                        results.append(FigureResult(kind, skipped=f"failed to draw: {type(err).__name__}: {err}"))
                continue
        for kind in kinds:
            if kind in wanted and not counts.get(kind):
                results.append(FigureResult(kind, skipped=_skip_reason(kind)))

    _remove_stale(figdir, names, wanted)
    entries = _update_manifest(figdir, results, wanted, known)
    _write_index(figdir, entries)
    return results


def figures_line(out: Path, results: list[FigureResult]) -> str:
    """The closing line of `sqnc figures`: how many figures this call drew, and how many the
    folder holds (`--only` redraws some and keeps the others; index.html shows them all).

    Example: `figures_line(out, draw_figures(out, only=["fig10"]))` is e.g.
    `"drew 1 figure; 11 in outputs/figures (open index.html)"`.
    """
    figdir = Path(out) / "figures"
    drawn = sum(1 for r in results if not r.skipped)
    try:
        held = sum(1 for e in json.loads((figdir / "manifest.json").read_text()) if not e.get("skipped"))
    except (FileNotFoundError, json.JSONDecodeError, TypeError, AttributeError):
        held = drawn
    return f"drew {drawn} figure{'' if drawn == 1 else 's'}; {held} in {figdir} (open index.html)"


def _remove_stale(figdir: Path, names: set[str], kinds: set[str]) -> None:
    """Figures of an earlier call that this call did not draw would be shown as current."""
    for p in figdir.iterdir():
        if p.suffix in (".png", ".pdf") and p.stem not in names and _kind(p.stem) in kinds:
            p.unlink()


def _update_manifest(figdir: Path, results: list[FigureResult], kinds: set[str], known: list[str]) -> list[FigureResult]:
    """Merge this call's figures into `manifest.json` (the figures of kinds not redrawn keep
    their captions) and return all entries in drawing order."""
    path = figdir / "manifest.json"
    old: list[FigureResult] = []
    try:
        for e in json.loads(path.read_text()):
            r = FigureResult(e["name"], [figdir / f for f in e.get("files", [])], e.get("caption", ""), e.get("skipped"))
            if _kind(r.name) not in kinds and (r.skipped or all(f.exists() for f in r.files)):
                old.append(r)
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        pass
    order = {k: i for i, k in enumerate(known)}
    entries = sorted(old + results, key=lambda r: order.get(_kind(r.name), len(order)))
    data = [{"name": r.name, "files": [f.name for f in r.files], "caption": r.caption, "skipped": r.skipped} for r in entries]
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return entries


def _write_index(figdir: Path, results: list[FigureResult]) -> None:
    drawn = [r for r in results if not r.skipped]
    skipped = [r for r in results if r.skipped]
    parts = [
        "<!doctype html>",
        '<html><head><meta charset="utf-8"><title>sqloss-nc figures</title>',
        (
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}figure{margin:2em 0}"
            "img{max-width:100%;border:1px solid #ddd}figcaption{color:#333}</style></head><body>"
        ),
        f"<h1>sqloss-nc figures</h1><p>{len(drawn)} figure(s) drawn from <code>../analysis/</code>.</p>",
    ]
    if (figdir.parent / "report" / "claims.html").exists():  # keep `sqnc report`'s link on a redraw
        parts.append('<p><a href="../report/claims.html">Claims report</a> (<code>sqnc report</code>): each claim\'s verdict from these runs.</p>')
    for r in drawn:
        png = f"{r.name}.png"
        parts.append(
            f'<figure id="{html.escape(r.name)}"><a href="{html.escape(r.name)}.pdf"><img src="{html.escape(png)}" alt="{html.escape(r.name)}"></a>'
            f"<figcaption><b>{html.escape(r.name)}</b>: {html.escape(r.caption)}</figcaption></figure>"
        )
    if skipped:
        parts.append("<h2>Not drawn</h2><ul>")
        parts += [f"<li><b>{html.escape(r.name)}</b>: {html.escape(r.skipped or '')}</li>" for r in skipped]
        parts.append("</ul>")
    parts.append("</body></html>\n")
    atomic_write_text(figdir / "index.html", "\n".join(parts))
