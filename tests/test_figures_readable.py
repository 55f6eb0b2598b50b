"""Every figure kind rendered from a short synthetic sweep (no training), checked for what a
reader needs and code can see: each loss named on its own axis, every setting present, readable
tick labels on a 4-epoch run (log epoch axes and the spectra colour bar included), math that
renders instead of raw underscores, legends that do not cover the panels, class names on the
Gram matrix, and captions that match the panels.

Expected values come from the sweep's own definition (the settings in `summary.csv`, the loss of
each setting, the class names written into `status.json`), not from the figure code.
"""

from __future__ import annotations

import json
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
from fake_runs import config, fake_run, write_run

from sqloss_nc import figures
from sqloss_nc.analysis import analyze
from sqloss_nc.figures import draw_figures, figure_kinds, load_tables

EPOCHS = 4  # a short run: matplotlib's own symlog ticks label it `0` and `10⁰` only
LOSSES = {"square": "square loss (MSE)", "square_rescaled": "rescaled square loss", "cross_entropy": "cross-entropy loss"}
CLASS_NAMES = ["cat", "dog", "frog"]


def margins(rng, epochs) -> pd.DataFrame:
    rows = []
    for e in epochs:
        m = rng.normal(0.1 * e, 0.2 + 0.05 * e, 48)
        rows += [(e, i, i % 3, v * 2.0, v) for i, v in enumerate(m)]
    return pd.DataFrame(rows, columns=["epoch", "index", "label", "margin", "margin_normalized"])


def add_class_names(run, names=CLASS_NAMES):
    status = json.loads((run / "status.json").read_text())
    status["data"]["class_names"] = names
    (run / "status.json").write_text(json.dumps(status))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Four short experiments, analyzed:
    - `losses`: square / rescaled square / cross-entropy x 2 seeds, weight decay 0.01, every
      per-run file (NC, spectra, Gram, layers, margins at every epoch);
    - `grid`: init {0.1, 5} x weight decay {0.01, 0} (Figs 2, 3, 12), one run with per-step margins (Fig. 5);
    - `noise`: label noise {0, 0.5} (Figs 11, 13);
    - `sgd`: minibatch vs full batch (the SGD-noise title of `updates`; rank against batch size);
    plus the logistic simulation (Fig. 10)."""
    out = tmp_path_factory.mktemp("readable") / "out"
    n = 0
    every = list(range(EPOCHS + 1))
    for kind in LOSSES:
        for wd in (0.01,):
            for seed in (0, 1):
                n += 1
                rng = np.random.default_rng(n)
                tables = fake_run(rng, epochs=EPOCHS, nc_epochs=every)
                tables["margins.csv"] = margins(rng, every)
                cfg = config("losses", seed, EPOCHS, wd=wd, loss__kind=kind)
                add_class_names(write_run(out / "losses" / f"loss={kind}_wd={wd}_seed={seed}", cfg, tables))
    plain = ["metrics.csv"]
    for init in (0.1, 5.0):
        for wd in (0.01, 0.0):
            n += 1
            rng = np.random.default_rng(n)
            tables = {k: v for k, v in fake_run(rng, epochs=EPOCHS, nc_epochs=every).items() if k in plain}
            tables["margins.csv"] = margins(rng, every)
            run = write_run(out / "grid" / f"init={init}_wd={wd}", config("grid", 0, EPOCHS, wd=wd, model__init_scale=init), tables)
            if init == 0.1 and wd == 0.01:
                steps = np.arange(0, 50, 10)
                pd.DataFrame({"step": steps, "rho": 0.1 * np.exp(steps / 40)}).to_csv(run / "steps.csv", index=False)
                margins(rng, steps).rename(columns={"epoch": "step"}).to_csv(run / "margins_steps.csv", index=False)
    for noise in (0.0, 0.5):
        n += 1
        tables = {k: v for k, v in fake_run(np.random.default_rng(n), epochs=EPOCHS, nc_epochs=every).items() if k in plain}
        write_run(out / "noise" / f"noise={noise}", config("noise", 0, EPOCHS, data__label_noise=noise), tables)
    for full in (False, True):
        n += 1
        # With spectra (the rank figure against batch size) and the alignment of one layer only,
        # as a network with one hidden layer before the classifier has.
        tables = fake_run(np.random.default_rng(n), epochs=EPOCHS, nc_epochs=every)
        tables = {k: v for k, v in tables.items() if k in plain + ["spectra.csv", "nc_layers.csv"]}
        layers = tables["nc_layers.csv"]
        tables["nc_layers.csv"] = layers[~((layers["measure"] == "alignment") & (layers["layer"] != "features"))]
        write_run(out / "sgd" / f"full={full}", config("sgd", 0, EPOCHS, full_batch=full), tables)
    (out / "simulations").mkdir()
    t = np.linspace(0, 10, 51)
    rho = 100 / (1 + 999 * np.exp(-t))
    pd.DataFrame({"t": t, "rho_numeric": rho, "rho_closed_form": rho}).to_csv(out / "simulations" / "logistic.csv", index=False)
    analyze(out)
    return out


@pytest.fixture(scope="module")
def drawn(sweep):
    """name -> (figure, caption) for every figure of every kind, drawn as `draw_figures` does
    (same style) and rendered once, so that tick labels exist."""
    tables = load_tables(sweep)
    figs = {}
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.15):
        for _, drawer in figures.DRAWERS:
            drawer(tables, sweep / "figures", lambda name, fig, caption: figs.__setitem__(name, (fig, caption)))
    for fig, _ in figs.values():
        fig.canvas.draw()
    yield figs
    matplotlib.pyplot.close("all")


def settings_of(sweep, exp) -> list[str]:
    s = pd.read_csv(sweep / "analysis" / "summary.csv", dtype={"setting": str})
    return list(s.loc[s["experiment"] == exp, "setting"])


def loss_in(name: str) -> str:
    """The loss kind in a setting name (`loss=square`) or a file name (`loss-square_wd-0`)."""
    (kind,) = re.findall(r"loss[=-](square_rescaled|square|cross_entropy)", name)
    return kind


def visible_labels(axis) -> list[str] | None:
    """The texts of the tick labels that a reader sees on this axis (inside its view); None when
    the axis shows no tick labels by design (an x axis shared with the panel below)."""
    params = axis.get_tick_params()
    if not (params.get("labelbottom", params.get("labelleft", True)) or params.get("labeltop") or params.get("labelright")):
        return None
    lo, hi = sorted(axis.get_view_interval())
    labels = [(loc, lab) for loc, lab in zip(axis.get_majorticklocs(), axis.get_majorticklabels())]
    labels += [(loc, lab) for loc, lab in zip(axis.get_minorticklocs(), axis.get_minorticklabels())]
    if labels and not any(lab.get_visible() for _, lab in labels):
        return None
    eps = 1e-9 * max(abs(lo), abs(hi), 1)
    return [lab.get_text() for loc, lab in labels if lo - eps <= loc <= hi + eps and lab.get_visible() and lab.get_text().strip()]


@pytest.mark.slow  # ~1.5 min: every figure as PNG and PDF; the tests below check the same figures in memory
def test_every_figure_kind_is_drawn_into_files(sweep, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(sweep, out)
    results = draw_figures(out)
    skipped = {r.name: r.skipped for r in results if r.skipped}
    assert not skipped, skipped
    kinds = {figures._kind(r.name) for r in results}
    assert kinds == set(figure_kinds())
    for r in results:
        png = out / "figures" / f"{r.name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", r.name


def test_every_figure_kind_is_drawn(drawn):
    assert {figures._kind(n) for n in drawn} == set(figure_kinds())


def test_the_loss_axis_names_each_runs_own_loss(drawn):
    for prefix, loss_label_panel in (("fig16_losses_", 0),):
        names = [n for n in drawn if n.startswith(prefix)]
        assert {loss_in(n) for n in names} == set(LOSSES)
        for name in names:
            fig, caption = drawn[name]
            want = LOSSES[loss_in(name)]
            ylabel = fig.axes[loss_label_panel].get_ylabel()
            assert ylabel.startswith(want), (name, ylabel)
            assert want in caption
            others = [v for v in LOSSES.values() if v != want and not want.endswith(v) and not v.endswith(want)]
            assert not any(o in ylabel for o in others), (name, ylabel)


def test_fig4_has_one_panel_per_setting_and_every_epoch(sweep, drawn):
    fig, caption = drawn["fig4_losses"]
    settings = settings_of(sweep, "losses")
    assert len(settings) == 3
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    for s in settings:
        assert sum(t.split("\n")[0] == s for t in titles) == 1, s  # square-loss settings included
        assert s in caption
    for ax in fig.axes:
        top_down = sorted(zip(ax.get_yticks(), [lab.get_text() for lab in ax.get_yticklabels()]), reverse=True)
        assert [text for _, text in top_down] == [str(e) for e in range(EPOCHS + 1)]  # every epoch, the first on top


def test_every_setting_is_in_the_legends(sweep, drawn):
    settings = set(settings_of(sweep, "losses"))

    def legend_texts(fig):
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
        return {t.get_text() for lg in legends for t in lg.get_texts()}

    for name in ("ncpanel_losses", "updates_losses", "layerwise_losses"):
        assert settings <= legend_texts(drawn[name][0]), name
    assert {n for n in drawn if n.startswith("gram_losses")} == {figures._setting_name("gram", "losses", ["a", "b"], s) for s in settings}
    assert {n for n in drawn if n.startswith("spectra_losses")} == {
        figures._setting_name("spectra", "losses", ["a", "b"], s) for s in settings
    }


def test_log_axes_and_colour_bars_have_readable_ticks_on_a_short_run(drawn):
    checked = 0
    for name, (fig, _) in drawn.items():
        for ax in fig.axes:
            if not ax.get_visible() or not ax.axison:
                continue
            for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
                if scale not in ("log", "symlog") or not axis.get_visible():  # a twin's hidden x axis
                    continue
                labels = visible_labels(axis)
                if labels is None:
                    continue
                if ax.get_label() == "<colorbar>" or "epoch" in axis.get_label_text():
                    checked += 1
                    # An epoch axis of a 4-epoch run: plain integers, at least 3 of them.
                    assert len(labels) >= 3 and all(re.fullmatch(r"\d+", t) for t in labels), (name, axis.get_label_text(), labels)
                else:
                    assert len(labels) >= 2, (name, axis.get_label_text(), labels)
    assert checked > 50
    spectra = [n for n in drawn if n.startswith("spectra_losses")][0]
    (cbar,) = [ax for ax in drawn[spectra][0].axes if ax.get_label() == "<colorbar>"]
    assert visible_labels(cbar.yaxis) == ["0", "1", "2", "3", "4"]


def test_linear_epoch_axes_have_integer_ticks(drawn):
    for name in [n for n in drawn if n.startswith(("fig14", "fig15"))]:
        fig, _ = drawn[name]
        for ax in fig.axes:
            for text in visible_labels(ax.xaxis):
                assert re.fullmatch(r"\d+", text), (name, ax.get_title(), text)


def test_labels_render_math_instead_of_raw_underscores(drawn):
    for name, (fig, _) in drawn.items():
        for ax in fig.axes:
            for label in (ax.get_xlabel(), ax.get_ylabel()):
                outside_math = re.sub(r"\$[^$]*\$", "", label)
                assert "_" not in outside_math, (name, label)


def test_fig14_caption_and_a_y_scale_shared_across_losses(drawn):
    names = sorted(n for n in drawn if n.startswith("fig14_losses_"))
    assert len(names) == 3  # one per loss, weight decay 0.01
    limits = set()
    for name in names:
        fig, caption = drawn[name]
        assert f"the first 3 epochs and all {EPOCHS} epochs" in caption and "init 0.1" in caption and "rows" not in caption
        limits.add(tuple(tuple(np.round(ax.get_ylim(), 12)) for ax in fig.axes))
    assert len(limits) == 1


def test_fig6_legend_uses_the_captions_words(drawn):
    fig, caption = drawn["fig6_losses"]
    texts = {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()}
    assert {"class means", "classifier rows"} <= texts and "class weights" not in texts
    assert "classifier rows" in caption


def test_ncpanel_is_two_rows_and_decomp_legend_is_outside_the_panels(drawn):
    fig, _ = drawn["ncpanel_losses"]
    w, h = fig.get_size_inches()
    assert w / h < 2
    rows = {round(ax.get_position().y0, 3) for ax in fig.axes if ax.get_title()}
    assert len(rows) == 2
    fig, _ = drawn["decomp_losses"]
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()
    assert all(ax.get_legend() is None for ax in fig.axes)


def test_gram_names_the_classes(drawn):
    for name in [n for n in drawn if n.startswith("gram_losses")]:
        fig, _ = drawn[name]
        for ax in [ax for ax in fig.axes if ax.images]:
            assert [t.get_text() for t in ax.get_xticklabels()] == CLASS_NAMES
            assert [t.get_text() for t in ax.get_yticklabels()] == CLASS_NAMES


def test_updates_start_at_epoch_1_and_say_sgd_noise_only_when_sgd_meets_gd(drawn):
    fig, _ = drawn["updates_losses"]
    assert all(ax.get_xlim()[0] == 1 for ax in fig.axes)
    assert "SGD" not in fig.get_suptitle()
    assert "SGD noise" in drawn["updates_sgd"][0].get_suptitle()


def test_layerwise_alignment_panel_draws_lines(sweep, drawn):
    fig, _ = drawn["layerwise_losses"]
    align = fig.axes[1]
    lines = [ln for ln in align.get_lines() if len(ln.get_xdata()) >= 2 and ln.get_linestyle() == "-"]
    assert len(lines) == len(settings_of(sweep, "losses"))


def test_layerwise_alignment_of_one_layer_shows_every_setting_apart(sweep, drawn):
    fig, _ = drawn["layerwise_sgd"]
    align = fig.axes[1]
    settings = settings_of(sweep, "sgd")
    points = [ln for ln in align.get_lines() if len(ln.get_xdata()) == 1 and ln.get_marker() == "o"]
    assert len(points) == len(settings) == 2
    assert len({float(ln.get_xdata()[0]) for ln in points}) == 2  # side by side, not on top of each other
    assert all(ln.get_markersize() >= 6 for ln in points)
    legend_texts = {t.get_text() for lg in fig.legends for t in lg.get_texts()}
    assert set(settings) <= legend_texts


def test_epoch_ticks_at_any_run_length():
    from sqloss_nc.figures import epoch_ticks

    assert epoch_ticks(1) == [0, 1]
    assert epoch_ticks(3) == [0, 1, 2, 3]  # a short run: every epoch
    assert epoch_ticks(8) == [0, 1, 2, 5, 8]  # 1, 2, 5 per decade and the last epoch
    assert epoch_ticks(20) == [0, 1, 2, 5, 10, 20]
    assert epoch_ticks(60) == [0, 1, 3, 10, 30, 60]  # 1, 3 per decade
    assert epoch_ticks(1000) == [0, 1, 3, 10, 30, 100, 300, 1000]
    assert epoch_ticks(1100) == [0, 1, 3, 10, 30, 100, 300, 1000]  # 1100 would touch 1000 on a log axis
    assert epoch_ticks(100_000) == [0, 1, 10, 100, 1000, 10_000, 100_000]  # 5 decades: powers of ten
    assert epoch_ticks(30, min_epoch=1) == [1, 3, 10, 30]
