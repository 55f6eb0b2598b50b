"""`sqnc analyze` on the per-run data of issues 13 and 14 (MSE decomposition, spectra, update norms,
layer-wise NCC accuracy and alignment, the class-mean Gram matrix), from synthetic run folders
whose CSVs are written directly: every aggregate is checked against a hand computation over the
seeds (mean, and the sample std written out as sqrt(Σ(x − x̄)²/(n − 1)))."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fake_runs import HIDDEN, WEIGHT_LAYERS, config, fake_run, write_run

from sqloss_nc.analysis import ALL_LAYERS, analyze, batch_axis, update_norm_tail


def mean_std(values) -> tuple[float, float]:
    x = np.asarray(values, dtype=float)
    m = x.sum() / len(x)
    return m, math.sqrt(((x - m) ** 2).sum() / (len(x) - 1))


def assert_agg(row: pd.Series, col: str, values, mean_col: str | None = None, std_col: str | None = None) -> None:
    m, s = mean_std(values)
    # The tables on disk hold 12 significant digits.
    assert row[mean_col or f"{col}_mean"] == pytest.approx(m, rel=1e-11), col
    assert row[std_col or f"{col}_std"] == pytest.approx(s, rel=1e-9), col


@pytest.fixture(scope="module")
def rank_tree(tmp_path_factory):
    """Experiment `rank`: batch {16, full} x weight decay {0, 0.01} x seeds {0, 1, 2}, 4 epochs,
    NC at 0, 2, 4; experiment `plain`: one setting without spectra or class_gram.csv."""
    out = tmp_path_factory.mktemp("claims") / "out"
    written, n = {}, 0
    for batch in (16, "full"):
        for wd in (0.0, 0.01):
            for seed in (0, 1, 2):
                n += 1
                rng = np.random.default_rng(n)
                tables = fake_run(rng, epochs=4, nc_epochs=[0, 2, 4])
                cfg = config("rank", seed, 4, batch_size=16, full_batch=batch == "full", wd=wd)
                write_run(out / "rank" / f"bs={batch}_wd={wd}_seed={seed}", cfg, tables, n_train=96)
                written[(str(batch), wd, seed)] = tables
    for seed in (0, 1):
        tables = fake_run(np.random.default_rng(seed), epochs=4, nc_epochs=[0, 4])
        for name in ("spectra.csv", "class_gram.csv"):
            del tables[name]
        write_run(out / "plain" / f"seed={seed}", config("plain", seed, 4), tables)
    res = analyze(out)
    assert res.problems == []
    return out, res, written


def setting_of(res, batch: str, wd: float) -> str:
    row = res.rank_final[(res.rank_final["batch"] == batch) & (res.rank_final["optim.weight_decay"] == wd)]
    return row["setting"].iloc[0]


def test_batch_axis():
    assert batch_axis({"optim.batch_size": 128, "optim.full_batch": False}, 640) == ("128", 128.0)
    assert batch_axis({"optim.batch_size": None, "optim.full_batch": True}, 640) == ("full", 640.0)
    assert batch_axis({"optim.batch_size": 32}) == ("32", 32.0)  # a run from before optim.full_batch
    label, n = batch_axis({"optim.full_batch": True})
    assert label == "full" and math.isnan(n)


def test_rank_final_has_the_batch_axis_and_the_seed_aggregates(rank_tree):
    out, res, written = rank_tree
    # One batch part in the labels, not `batch_size=None, full_batch=True`.
    assert set(res.summary.loc[res.summary["experiment"] == "rank", "setting"]) == {
        f"wd={wd:g}, batch={b}" for b in ("16", "full") for wd in (0.0, 0.01)
    }
    rf = pd.read_csv(out / "analysis" / "rank_final.csv", dtype={"batch": str})
    assert set(rf["experiment"]) == {"rank"}  # `plain` has no spectra
    assert len(rf) == 4 * len(WEIGHT_LAYERS) and (rf["n_runs"] == 3).all() and (rf["epoch"] == 4).all()
    assert set(rf["batch"]) == {"16", "full"}
    assert (rf.loc[rf["batch"] == "full", "batch_size_numeric"] == 96).all()  # N of the full batch
    assert (rf.loc[rf["batch"] == "16", "batch_size_numeric"] == 16).all()
    assert rf["full_batch"].tolist() == (rf["batch"] == "full").tolist()
    for (batch, wd), g in rf.groupby(["batch", "optim.weight_decay"]):
        # The run's layer order, not the alphabet (classifier < conv2 < dense1).
        assert g.sort_values("depth")["layer"].tolist() == list(WEIGHT_LAYERS)
        for _, row in g.iterrows():
            last = [written[(batch, wd, s)]["spectra.csv"] for s in (0, 1, 2)]
            last = [d[(d["epoch"] == 4) & (d["layer"] == row["layer"])] for d in last]
            assert row["n_singular"] == min(WEIGHT_LAYERS[row["layer"]])
            assert_agg(row, "rank", [d["rank"].iloc[0] for d in last])
            assert_agg(row, "stable_rank", [d["stable_rank"].iloc[0] for d in last])


def test_rank_and_spectra_over_epochs(rank_tree):
    out, res, written = rank_tree
    setting = setting_of(res, "full", 0.01)
    re_ = res.rank_epochs[res.rank_epochs["setting"] == setting]
    assert sorted(re_["epoch"].unique()) == [0, 2, 4]
    row = re_[(re_["epoch"] == 2) & (re_["layer"] == "dense1")].iloc[0]
    runs = [written[("full", 0.01, s)]["spectra.csv"] for s in (0, 1, 2)]
    at = [d[(d["epoch"] == 2) & (d["layer"] == "dense1")] for d in runs]
    assert_agg(row, "rank", [d["rank"].iloc[0] for d in at])

    sp = pd.read_csv(out / "analysis" / "spectra_epochs.csv")
    sp = sp[(sp["setting"] == setting) & (sp["epoch"] == 2) & (sp["layer"] == "dense1")].sort_values("index")
    assert sp["index"].tolist() == list(range(min(WEIGHT_LAYERS["dense1"])))
    for _, row in sp.iterrows():
        sv = [d["singular_value"].iloc[int(row["index"])] for d in at]
        ratio = [d["singular_value"].iloc[int(row["index"])] / d["singular_value"].iloc[0] for d in at]
        assert_agg(row, "singular_value", sv)
        assert_agg(row, "sv_normalized", ratio)  # σ_i/σ_1 of each run, then over seeds
    assert (sp.loc[sp["index"] == 0, "sv_normalized_mean"] == 1).all()


def test_update_norms_tail_window_and_key_number(tmp_path):
    # 20 epochs: the tail is the last 10% = epochs 19 and 20.
    out, runs = tmp_path / "out", []
    for seed in (0, 1):
        tables = fake_run(np.random.default_rng(10 + seed), epochs=20, nc_epochs=[0, 20])
        write_run(out / "noise" / f"seed={seed}", config("noise", seed, 20), tables)
        runs.append(tables["metrics.csv"])
    res = analyze(out)
    un = pd.read_csv(out / "analysis" / "update_norms.csv")
    assert un["layer"].tolist() == list(WEIGHT_LAYERS) + [ALL_LAYERS]
    assert (un["epoch_first"] == 19).all() and (un["epoch_last"] == 20).all() and (un["n_runs"] == 2).all()
    cols = [f"update_norm_{n}" for n in WEIGHT_LAYERS]
    for _, row in un.iterrows():
        if row["layer"] == ALL_LAYERS:
            per_run = [m[cols].to_numpy() for m in runs]
            tails = [u[19:21].mean() for u in per_run]  # mean over both epochs and all layers
            mins = [u[19:21].mean(axis=1).min() for u in per_run]
            firsts = [u[1].mean() for u in per_run]
        else:
            v = [m[f"update_norm_{row['layer']}"].to_numpy() for m in runs]
            tails, mins, firsts = [(x[19] + x[20]) / 2 for x in v], [min(x[19], x[20]) for x in v], [x[1] for x in v]
        assert_agg(row, "tail", tails)
        assert_agg(row, "tail_min", mins)
        assert_agg(row, "first", firsts)
    # The key number in summary.csv and the per-epoch mean over layers in epochs.csv.
    s = res.summary.iloc[0]
    assert_agg(s, "update_norm_tail", [m[cols].to_numpy()[19:21].mean() for m in runs])
    e = res.epochs.set_index("epoch")
    assert np.isnan(e.loc[0, "update_norm_layer_mean_mean"])  # no update at initialization
    assert_agg(e.loc[7], "update_norm_layer_mean", [m[cols].iloc[7].mean() for m in runs])


def test_update_norm_tail_of_a_short_run():
    m = pd.DataFrame({"epoch": [0, 1, 2, 3], "update_norm_a": [np.nan, 0.4, 0.2, 0.1]})
    t = update_norm_tail(m).iloc[0]
    assert (t["epoch_first"], t["epoch_last"], t["tail"], t["first"]) == (3, 3, 0.1, 0.4)
    assert update_norm_tail(m, fraction=0.5)["tail"].iloc[0] == pytest.approx(0.15)  # epochs 2, 3
    assert update_norm_tail(pd.DataFrame({"epoch": [0, 1], "rho": [1.0, 2.0]})).empty


def test_decomposition_is_aggregated_per_nc_epoch(rank_tree):
    out, res, written = rank_tree
    setting = setting_of(res, "16", 0.0)
    nc = pd.read_csv(out / "analysis" / "nc_epochs.csv")
    row = nc[(nc["setting"] == setting) & (nc["epoch"] == 2)].iloc[0]
    for col in ("mse_nc1", "mse_nc23", "mse_perp", "mse_total", "ls_distance", "test_nc4"):
        assert_agg(row, col, [written[("16", 0.0, s)]["nc.csv"].set_index("epoch").loc[2, col] for s in (0, 1, 2)])
    # Means of a sum are the sum of the means: the stacked terms add up to the mean total.
    assert row["mse_nc1_mean"] + row["mse_nc23_mean"] + row["mse_perp_mean"] == pytest.approx(row["mse_total_mean"], rel=1e-12)


def test_layerwise_final_and_depth(rank_tree):
    out, res, written = rank_tree
    lf = pd.read_csv(out / "analysis" / "nc_layers_final.csv")
    assert set(lf["epoch"]) == {4}
    plain = lf[lf["experiment"] == "plain"]
    assert plain.sort_values("depth").drop_duplicates("layer")["layer"].tolist() == HIDDEN
    setting = setting_of(res, "full", 0.0)
    g = lf[lf["setting"] == setting]
    for split, layer, measure in (
        ("train", "relu1", "ncc_accuracy"),
        ("test", "features", "ncc_accuracy"),
        ("train", "features", "alignment"),
    ):
        row = g[(g["split"] == split) & (g["layer"] == layer) & (g["measure"] == measure)].iloc[0]
        vals = []
        for s in (0, 1, 2):
            d = written[("full", 0.0, s)]["nc_layers.csv"]
            vals.append(d[(d["epoch"] == 4) & (d["split"] == split) & (d["layer"] == layer) & (d["measure"] == measure)]["value"].item())
        assert_agg(row, measure, vals, "mean", "std")
        assert row["depth"] == HIDDEN.index(layer) and row["n_runs"] == 3
    assert not g[(g["layer"] == "classifier") & (g["measure"] == "alignment")].shape[0]  # the run wrote none
    le = pd.read_csv(out / "analysis" / "nc_layers_epochs.csv")
    assert set(le["epoch"]) == {0, 2, 4} and {"depth", "mean", "std", "n_runs"} <= set(le.columns)


def test_class_gram_final(rank_tree):
    out, res, written = rank_tree
    cg = pd.read_csv(out / "analysis" / "class_gram_final.csv")
    assert set(cg["experiment"]) == {"rank"} and set(cg["epoch"]) == {4} and set(cg["split"]) == {"train", "test"}
    setting = setting_of(res, "16", 0.01)
    g = cg[(cg["setting"] == setting) & (cg["split"] == "test")]
    assert len(g) == 9 and (g["n_runs"] == 3).all()
    row = g[(g["i"] == 0) & (g["j"] == 2)].iloc[0]
    vals = []
    for s in (0, 1, 2):
        d = written[("16", 0.01, s)]["class_gram.csv"]
        vals.append(d[(d["epoch"] == 4) & (d["split"] == "test") & (d["i"] == 0) & (d["j"] == 2)]["value"].item())
    assert_agg(row, "gram", vals, "mean", "std")
    np.testing.assert_allclose(g[g["i"] == g["j"]]["mean"], 1.0, rtol=1e-12)


def test_tables_without_data_are_not_written(tmp_path):
    tables = fake_run(np.random.default_rng(0), epochs=2, nc_epochs=[2])
    for name in ("spectra.csv", "class_gram.csv", "nc_layers.csv"):
        del tables[name]
    tables["metrics.csv"] = tables["metrics.csv"][["epoch", "train_loss", "rho"]]
    write_run(tmp_path / "out" / "e" / "seed=0", config("e", 0, 2), tables)
    res = analyze(tmp_path / "out")
    adir = tmp_path / "out" / "analysis"
    for name in ("rank_final", "rank_epochs", "spectra_epochs", "update_norms", "class_gram_final", "nc_layers_final"):
        assert getattr(res, name).empty and not (adir / f"{name}.csv").exists(), name
    assert "update_norm_tail_mean" not in res.summary
