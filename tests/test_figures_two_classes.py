"""Figures of a binary experiment (issue 28): with C = 2 the class means' NC2 (equinorm,
max-angle) is 0 by construction, so the NC panel and Fig. 6 draw the classifier rows' only and
say why; the MSE decomposition of one setting fills its image (it filled a third: the figure
was narrower than its title and legend, and the saved image grew around them); `sqnc figures
--only` counts the figures the folder holds, not only those just drawn."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from fake_runs import config, fake_run, write_run
from PIL import Image

from sqloss_nc import figures
from sqloss_nc.analysis import analyze
from sqloss_nc.figures import draw_figures, load_tables


@pytest.fixture(scope="module")
def binary_out(tmp_path_factory):
    """Experiment `binary`: C = 2 (equiangularity NaN, as the engine writes it), two seeds of one setting."""
    out = tmp_path_factory.mktemp("binary") / "out"
    for seed in (0, 1):
        tables = fake_run(np.random.default_rng(seed), epochs=6, nc_epochs=[0, 1, 3, 6], classes=2)
        nc = tables["nc.csv"]
        for col in [c for c in nc if "nc2_equiangular" in c]:
            nc[col] = np.nan
        cfg = config("binary", seed, 6)
        cfg["data"]["classes"] = [1, 2]
        write_run(out / "binary" / f"seed={seed}", cfg, tables)
    analyze(out)
    return out


def capture(drawer, out) -> dict:
    figs = {}
    drawer(load_tables(out), out / "figures", lambda name, fig, caption: figs.__setitem__(name, (fig, caption)))
    return figs


def styles(ax) -> list[str]:
    return [ln.get_linestyle() for ln in ax.get_lines() if len(ln.get_xdata()) > 1]


def test_ncpanel_draws_no_class_means_nc2_for_two_classes_and_says_why(binary_out):
    ((fig, caption),) = capture(figures._ncpanel, binary_out).values()
    axes = [ax for ax in fig.axes if ax.get_title()]
    nc2 = [ax for ax in axes if ax.get_title().startswith("NC2")]
    assert [ax.get_title() for ax in nc2] == ["NC2: equinorm (classifier rows)", "NC2: max-angle (classifier rows)"]
    for ax in nc2:
        assert styles(ax) and set(styles(ax)) == {":"}, styles(ax)  # the rows only: no train/test class-means line
    assert "-" in styles(axes[0]) and "--" in styles(axes[0])  # NC1 keeps its class-means lines
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "0 by construction" in texts and "0 by construction" in caption
    plt.close(fig)


def test_fig6_draws_no_class_means_nc2_for_two_classes(binary_out):
    ((fig, caption),) = capture(figures._fig6, binary_out).values()
    for ax in fig.axes[1:3]:
        labels = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]
        assert labels == ["classifier rows"], labels
        assert "0 for C = 2" in ax.get_title()
    assert "0 by construction" in caption
    plt.close(fig)


def test_decomp_of_one_setting_fills_its_image(binary_out):
    ((fig, _),) = capture(figures._decomp, binary_out).values()
    fig.canvas.draw()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50, bbox_inches="tight")  # as `_save` does
    width_px = Image.open(buf).size[0]
    panel = fig.axes[0].get_window_extent()
    share = panel.width * 50 / fig.dpi / width_px
    assert share > 0.6, share  # it was 0.42 with the legend and title wider than the figure
    plt.close(fig)


def test_figures_line_counts_every_figure_in_the_folder(binary_out):
    results = draw_figures(binary_out)
    held = len([r for r in results if not r.skipped])
    again = draw_figures(binary_out, only=["decomp"])
    assert figures.figures_line(binary_out, again) == f"drew 1 figure; {held} in {binary_out / 'figures'} (open index.html)"
