"""`sqnc figures` for issues 13 and 14 (NC panel, MSE decomposition, class-mean Gram matrix,
spectra, rank against batch size and weight decay, update norms, layer-wise collapse), drawn from
the analysis tables of synthetic run folders (no training): the files, what the panels hold
against the tables, the simplex ETF reference, and the messages when the data is missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fake_runs import HIDDEN, config, fake_run, write_run
from test_analysis import sqnc
from test_figures import assert_figure_files

from sqloss_nc import figures
from sqloss_nc.analysis import analyze
from sqloss_nc.figures import draw_figures, load_tables, simplex_etf_gram

BATCHES, WDS = (16, 128, "full"), (0.0, 0.01)
NEW_KINDS = ("ncpanel", "decomp", "gram", "spectra", "rank", "updates", "layerwise")


@pytest.fixture(scope="module")
def claims_out(tmp_path_factory):
    """Experiment `claims`: batch {16, 128, full} x weight decay {0, 0.01} x 2 seeds, 10 epochs,
    NC at 0, 1, 3, 10, every per-run file; analyzed."""
    out = tmp_path_factory.mktemp("figclaims") / "out"
    n = 0
    for batch in BATCHES:
        for wd in WDS:
            for seed in (0, 1):
                n += 1
                tables = fake_run(np.random.default_rng(n), epochs=10, nc_epochs=[0, 1, 3, 10])
                cfg = config("claims", seed, 10, batch_size=16 if batch == "full" else batch, full_batch=batch == "full", wd=wd)
                write_run(out / "claims" / f"b={batch}_wd={wd}_seed={seed}", cfg, tables)
    analyze(out)
    return out


def capture(drawer, out) -> dict:
    """name -> (figure, caption) of what a drawer emits (nothing saved)."""
    figs = {}
    drawer(load_tables(out), out / "figures", lambda name, fig, caption: figs.__setitem__(name, (fig, caption)))
    return figs


def one(figs: dict, prefix: str):
    (name,) = [n for n in figs if n.startswith(prefix)]
    return figs[name][0]


def setting_where(out, batch: str, wd: float) -> str:
    rf = load_tables(out).rank_final
    return rf[(rf["batch"] == batch) & (rf["optim.weight_decay"] == wd)]["setting"].iloc[0]


def test_every_new_figure_is_drawn_via_the_cli(claims_out):
    res = sqnc("figures", claims_out, "--only", ",".join(NEW_KINDS))
    assert res.exit_code == 0, res.output
    drawn = {p.stem for p in (claims_out / "figures").glob("*.png")}
    for kind in NEW_KINDS:
        assert any(d.startswith(f"{kind}_claims") for d in drawn), kind
    # One Gram and one spectra figure per setting (6 settings), one of each other kind.
    assert sum(d.startswith("gram_") for d in drawn) == 6 and sum(d.startswith("spectra_") for d in drawn) == 6
    assert_figure_files(claims_out / "figures", {d for d in drawn if d.split("_")[0] in NEW_KINDS})
    assert "failed to draw" not in res.output


def test_missing_data_names_the_config(tmp_path):
    tables = fake_run(np.random.default_rng(0), epochs=3, nc_epochs=[3])
    tables = {"metrics.csv": tables["metrics.csv"][["epoch", "train_loss", "train_acc", "test_acc", "rho"]]}
    write_run(tmp_path / "out" / "bare" / "seed=0", config("bare", 0, 3), tables)
    analyze(tmp_path / "out")
    results = {r.name: r for r in draw_figures(tmp_path / "out") if r.skipped}
    expect = {
        "ncpanel": "configs/nc/resnet18_cifar10_mse.yaml",
        "decomp": "configs/nc/resnet18_cifar10_mse.yaml",
        "gram": "class_gram.csv",
        "spectra": "configs/claims/rank_batch_wd.yaml",
        "rank": "configs/claims/rank_batch_wd.yaml",
        "updates": "configs/claims/sgd_noise.yaml",
        "layerwise": "configs/claims/random_labels_nc.yaml",
    }
    for kind, text in expect.items():
        assert text in results[kind].skipped and "then `sqnc analyze`" in results[kind].skipped, kind
    assert "configs/nc/resnet18_cifar10_mse.yaml" in results["gram"].skipped


def test_simplex_etf_gram_is_exact():
    for c in (2, 3, 10):
        g = simplex_etf_gram(c)
        # Independently: the normalized centred standard basis vectors e_c - 1/C are a simplex ETF.
        v = np.eye(c) - 1.0 / c
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        np.testing.assert_allclose(g, v @ v.T, rtol=0, atol=1e-15)
        assert (np.diag(g) == 1).all() and (g[~np.eye(c, dtype=bool)] == -1 / (c - 1)).all()
    assert simplex_etf_gram(2).tolist() == [[1, -1], [-1, 1]]
    with pytest.raises(ValueError):
        simplex_etf_gram(1)


def test_gram_panels_show_the_table_and_the_etf_on_one_scale(claims_out):
    figs = capture(figures._gram, claims_out)
    setting = setting_where(claims_out, "full", 0.01)
    fig = figs[figures._setting_name("gram", "claims", ["a", "b"], setting)][0]
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3  # train, test, ETF
    cg = load_tables(claims_out).class_gram_final
    for im, split in zip(images[:2], ("train", "test")):
        rows = cg[(cg["setting"] == setting) & (cg["split"] == split)]
        expected = np.zeros((3, 3))
        expected[rows["i"], rows["j"]] = rows["mean"]
        np.testing.assert_array_equal(np.asarray(im.get_array()), expected)
    np.testing.assert_array_equal(np.asarray(images[2].get_array()), simplex_etf_gram(3))
    assert all(im.get_clim() == (-1.0, 1.0) for im in images)  # one shared colour scale
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 1


def line_data(ax, color=None, ls="-"):
    return [
        (ln.get_xdata(), ln.get_ydata()) for ln in ax.get_lines() if ln.get_linestyle() == ls and (color is None or ln.get_color() == color)
    ]


def test_nc_panel_lines_are_the_seed_means(claims_out):
    fig = one(capture(figures._ncpanel, claims_out), "ncpanel_claims")
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split(":")[0] for ax in axes] == ["NC1", "NC2", "NC2", "NC3", "NC4"]
    assert axes[0].get_yscale() == "log" and all(ax.get_xscale() == "symlog" for ax in axes)
    nc = load_tables(claims_out).nc_epochs
    setting = setting_where(claims_out, "16", 0.0)
    rows = nc[nc["setting"] == setting].sort_values("epoch")
    for ls, col in (("-", "nc1_mean"), ("--", "test_nc1_mean")):
        ((x, _),) = [(x, y) for x, y in line_data(axes[0], ls=ls) if np.allclose(y, rows[col])]
        np.testing.assert_array_equal(x, rows["epoch"])
    assert len(line_data(axes[0], ls="-")) == 6  # one train line per setting
    assert len(line_data(axes[1], ls=":")) == 6  # classifier rows: one line per setting, whatever the split
    assert r"\Sigma_W" in axes[0].get_ylabel() and "epoch" in axes[0].get_xlabel()


def test_decomposition_stack_adds_up_to_the_total(claims_out):
    fig = one(capture(figures._decomp, claims_out), "decomp_claims")
    top = fig.axes[0]
    nc = load_tables(claims_out).nc_epochs
    rows = nc[nc["setting"] == top.get_title()].sort_values("epoch")
    ((_, y),) = line_data(top, ls="--")
    np.testing.assert_allclose(y, rows["mse_total_mean"], rtol=1e-12)
    # The upper edge of the last stacked area is the sum of the three mean terms.
    verts = top.collections[-1].get_paths()[0].vertices
    upper = [verts[verts[:, 0] == e, 1].max() for e in rows["epoch"]]
    np.testing.assert_allclose(upper, rows[["mse_nc1_mean", "mse_nc23_mean", "mse_perp_mean"]].sum(axis=1), rtol=1e-9)
    assert r"W_\mathrm{LS}" in fig.axes[len(fig.axes) // 2].get_ylabel()


def test_rank_against_batch_size_with_full_batch_last(claims_out):
    fig = one(capture(figures._rank, claims_out), "rank_claims")
    ax = fig.axes[0]
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels()] == ["16", "128", "full"]
    rf = load_tables(claims_out).rank_final
    layer = ax.get_title().split(" ")[0]
    for wd in WDS:
        g = rf[(rf["layer"] == layer) & (rf["optim.weight_decay"] == wd)].set_index("batch")
        expected = [g.loc[b, "rank_mean"] for b in ("16", "128", "full")]
        assert any(np.allclose(y, expected) and list(x) == [0, 1, 2] for x, y in line_data(ax)), wd
    assert "stable rank" in fig.axes[1].get_ylabel() and "batch size" in fig.axes[-1].get_xlabel()


def test_update_norms_and_layerwise(claims_out):
    fig = one(capture(figures._updates, claims_out), "updates_claims")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "W_{e-1}" in ax.get_ylabel()
    ep = load_tables(claims_out).epochs
    setting = setting_where(claims_out, "full", 0.0)
    rows = ep[(ep["setting"] == setting) & ep["update_norm_layer_mean_mean"].notna()].sort_values("epoch")
    assert any(np.allclose(y, rows["update_norm_layer_mean_mean"]) for _, y in line_data(ax))
    assert rows["epoch"].min() == 1  # epoch 0 has no update

    fig = one(capture(figures._layerwise, claims_out), "layerwise_claims")
    ncc, align = fig.axes[:2]
    assert [t.get_text() for t in ncc.get_xticklabels()] == HIDDEN
    assert [t.get_text() for t in align.get_xticklabels()] == HIDDEN  # the same layers on both panels
    assert [t.get_text() for t in align.texts] == ["not\nmeasured"]  # the run wrote no alignment for the classifier
    lf = load_tables(claims_out).nc_layers_final
    g = lf[(lf["setting"] == setting) & (lf["measure"] == "ncc_accuracy") & (lf["split"] == "test")].sort_values("depth")
    assert any(np.allclose(y, g["mean"]) for _, y in line_data(ncc, ls="--"))


def test_a_figure_whose_data_is_gone_is_removed(claims_out, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(claims_out, out)
    draw_figures(out, only=["gram", "rank"])
    assert list((out / "figures").glob("gram_*.png"))
    for p in out.glob("claims/*/class_gram.csv"):
        p.unlink()
    analyze(out)
    res = {r.name: r for r in draw_figures(out, only=["gram"])}
    assert res["gram"].skipped and not list((out / "figures").glob("gram_*"))
    assert (out / "figures" / "rank_claims.png").exists()  # another kind keeps its files
    assert pd.read_json(out / "figures" / "manifest.json")["name"].str.startswith("rank_claims").any()
