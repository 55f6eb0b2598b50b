"""The claims registry (`sqloss_nc.claims`) on synthetic run folders: for every claim, a tree of
runs built so that the claim is supported, one where it is not, one where the runs cannot decide,
and one without its runs. The expected verdicts follow from the numbers written (e.g. a ρ of 0.6
and 3.0 at two inits, both flat, is a 5x difference: "not supported" for claim 1), never from
running the rule first. Each tree goes through the real `analyze`, so the claims read exactly
the tables a user's runs produce."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_runs import config, write_run

from sqloss_nc.analysis import analyze
from sqloss_nc.claims import (
    CLAIMS,
    INCONCLUSIVE,
    NO_RUNS,
    NOT_SUPPORTED,
    SUPPORTED,
    combine,
    evaluate_claims,
    load_tables,
    peak_fall,
    spearman,
    tail_change,
)

E = 50  # epochs of every synthetic run
NC_EPOCHS = [0, 1, 2, 5, 10, 20, 50]
BY_NUMBER = {c.number: c for c in CLAIMS}


def metrics(rho=None, train_acc=1.0, test_acc=0.8, margin_mean=0.5, margin_std=0.1, train_loss=0.01, updates=None) -> pd.DataFrame:
    """A metrics.csv: `rho` is a function of the epoch array (default flat 1); the others are the
    final values, reached from epoch 1 on (epoch 0 = init)."""
    ep = np.arange(E + 1)
    m = pd.DataFrame({"epoch": ep})
    m["train_loss"] = np.where(ep == 0, 0.5, train_loss)
    m["train_acc"] = np.where(ep == 0, 0.5, train_acc)
    m["test_acc"] = np.where(ep == 0, 0.5, test_acc)
    r = np.ones(len(ep)) if rho is None else np.asarray(rho(ep), dtype=float)
    m["rho"], m["rho_last"] = r, r
    m["margin_mean"] = margin_mean
    m["margin_std"] = margin_std
    m["margin_sq_mean"] = margin_std**2 + margin_mean**2
    for layer, u in (updates or {}).items():
        m[f"update_norm_{layer}"] = np.where(ep == 0, np.nan, u)
    return m


def nc(nc1: list[float], equinorm: float = 0.05, angle: float = 0.05, perp=None, total=None) -> pd.DataFrame:
    """An nc.csv on NC_EPOCHS with the given NC1 values and final NC2 values (earlier epochs 0.5)."""
    df = pd.DataFrame({"epoch": NC_EPOCHS, "nc1": nc1})
    k = len(NC_EPOCHS)
    for col, final in (("nc2_equinorm_means", equinorm), ("nc2_equiangular_means", angle), ("nc2_maxangle_means", angle)):
        df[col] = [0.5] * (k - 1) + [final]
    if perp is not None:
        df["mse_perp"] = perp
        df["mse_total"] = total
        df["mse_nc1"] = np.asarray(total) - np.asarray(perp)
        df["mse_nc23"] = 0.0
        df["ls_distance"] = 0.1
    return df


def theory(**rel_errors: float) -> pd.DataFrame:
    rows = [{"check": k, "measured": 1 + v, "predicted": 1.0, "rel_error": v, "note": ""} for k, v in rel_errors.items()]
    return pd.DataFrame(rows)


def spectra(rank: int, n: int = 8) -> pd.DataFrame:
    """spectra.csv at epochs 0 (full rank n) and E (`rank`) for two hidden layers and the classifier."""
    rows = []
    for epoch, r in ((0, n), (E, rank)):
        for layer in ("dense1", "dense2", "classifier"):
            rr = n if layer == "classifier" else r
            sv = np.linspace(1.0, 0.1, n)
            rows += [(epoch, layer, i, s, rr, 2.0) for i, s in enumerate(sv)]
    return pd.DataFrame(rows, columns=["epoch", "layer", "index", "singular_value", "rank", "stable_rank"])


class Tree:
    """Run folders under one OUT, written as finished runs."""

    def __init__(self, out: Path):
        self.out = out

    def run(self, experiment: str, run_id: str, tables: dict, seed: int = 0, **cfg) -> None:
        c = config(experiment, seed, E, **{k: v for k, v in cfg.items() if k in ("batch_size", "full_batch", "wd")}, **{k: v for k, v in cfg.items() if "__" in k})
        write_run(self.out / experiment / f"{run_id}_seed={seed}", c, tables)

    def verdict(self, number: int) -> tuple[str, str, dict]:
        res = analyze(self.out)
        assert not [p for p in res.problems if "left out" in p[1]], res.problems
        r = next(r for r in evaluate_claims(load_tables(self.out)) if r.claim.number == number)
        return r.verdict, r.why, r.numbers


@pytest.fixture
def tree(tmp_path) -> Tree:
    return Tree(tmp_path / "out")


def flat(v: float):
    return lambda ep: np.where(ep == 0, 0.01, v)


def falling(start: float, tau: float):
    # exp decay still strong at the end: over the last 5 of 50 epochs it moves by exp(5/tau) - 1.
    return lambda ep: start * np.exp(-ep / tau)


# ----------------------------------------------------------------------------- helpers


def test_helpers_against_hand_values():
    assert tail_change(pd.Series([1.0] * 10 + [1.1], index=range(0, 101, 10))) == pytest.approx(0.1 / 1.1)
    assert peak_fall(pd.Series([1.0, 4.0, 0.4, 0.2])) == (pytest.approx(20.0), True)
    assert peak_fall(pd.Series([1.0, 4.0, 2.0, 2.0])) == (pytest.approx(2.0), False)
    assert spearman([1, 2, 3], [10, 30, 20]) == pytest.approx(0.5)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert combine([("a", SUPPORTED, ""), ("b", INCONCLUSIVE, "")])[0] == SUPPORTED
    assert combine([("a", SUPPORTED, ""), ("b", NOT_SUPPORTED, "")])[0] == INCONCLUSIVE
    assert combine([("a", NOT_SUPPORTED, ""), ("b", INCONCLUSIVE, "")])[0] == NOT_SUPPORTED
    assert combine([("a", INCONCLUSIVE, "")])[0] == INCONCLUSIVE


def test_registry_is_complete_and_names_match_the_configs():
    assert [c.number for c in CLAIMS] == list(range(1, 13))
    assert len({c.id for c in CLAIMS}) == 12
    root = Path(__file__).resolve().parents[1]
    for c in CLAIMS:
        assert c.sentence and c.source and c.statistic and c.rule and c.figures
        names = set()
        for path in c.configs:
            p = root / path
            if p.exists():  # the published configs are checked in test_published_configs
                import yaml

                names.add(yaml.safe_load(p.read_text())["name"])
        assert names <= set(c.experiments), (c.id, names, c.experiments)


def test_no_runs_for_every_claim(tree):
    tree.run("unrelated", "a", {"metrics.csv": metrics()})
    analyze(tree.out)
    results = evaluate_claims(load_tables(tree.out))
    assert [r.verdict for r in results] == [NO_RUNS] * 12
    assert all("no runs of" in r.why for r in results)


# ----------------------------------------------------------------------------- claims 1 and 2 (fig2)

BN = {"model__normalization": "batchnorm"}


@pytest.mark.parametrize(
    "rho_small, rho_large, expected",
    [
        (flat(0.6), flat(0.62), SUPPORTED),  # 1.03x apart, both flat
        (flat(0.6), flat(3.0), NOT_SUPPORTED),  # 5x apart, both flat
        (flat(0.6), falling(30.0, 20.0), INCONCLUSIVE),  # the large init still falls 28% over the last 5 epochs
    ],
)
def test_claim1_rho_with_wd(tree, rho_small, rho_large, expected):
    for init, rho in ((0.01, rho_small), (5, rho_large)):
        tree.run("fig2_init_wd", f"init={init}", {"metrics.csv": metrics(rho=rho)}, wd=0.01, model__init_scale=init, **BN)
    verdict, why, nums = tree.verdict(1)
    assert verdict == expected, why
    if expected == INCONCLUSIVE:
        assert "too few epochs" in why


def test_claim1_one_init_is_inconclusive(tree):
    tree.run("fig2_init_wd", "init=1", {"metrics.csv": metrics(rho=flat(0.6))}, wd=0.01, model__init_scale=1, **BN)
    verdict, why, _ = tree.verdict(1)
    assert verdict == INCONCLUSIVE and "too few settings" in why


@pytest.mark.parametrize(
    "rho_large, acc_small, acc_large, expected",
    [
        (90.0, 0.85, 0.75, SUPPORTED),  # ρ 69x apart, large init 10 points worse
        (1.4, 0.85, 0.75, NOT_SUPPORTED),  # ρ 1.08x apart: does not depend on the init
        (90.0, 0.75, 0.85, NOT_SUPPORTED),  # large init generalizes better
        (90.0, 0.85, 0.845, INCONCLUSIVE),  # half a point: inside the 1-point floor
    ],
)
def test_claim2_rho_without_wd(tree, rho_large, acc_small, acc_large, expected):
    for seed in (0, 1):
        for init, rho, acc in ((0.01, 1.3, acc_small), (5, rho_large, acc_large)):
            tree.run("fig2_init_wd", f"init={init}", {"metrics.csv": metrics(rho=flat(rho), test_acc=acc)}, seed=seed, wd=0.0, model__init_scale=init)
    verdict, why, nums = tree.verdict(2)
    assert verdict == expected, why
    assert nums["max/min over inits"] == pytest.approx(rho_large / 1.3)


# ----------------------------------------------------------------------------- claim 3 (margins)


@pytest.mark.parametrize(
    "std_wd, std_0, mean_0, expected",
    [
        (0.05, 0.3, 0.5, SUPPORTED),  # std/mean 0.1 vs 0.6
        (0.3, 0.15, 0.5, NOT_SUPPORTED),  # 0.6 vs 0.3
        (0.15, 0.2, 0.5, INCONCLUSIVE),  # 0.3 vs 0.4: only 1.33x
        (0.05, 0.3, -0.1, INCONCLUSIVE),  # no-WD margins negative: not separating
    ],
)
def test_claim3_margins(tree, std_wd, std_0, mean_0, expected):
    tree.run("fig3_margins", "wd=0.01", {"metrics.csv": metrics(margin_mean=0.5, margin_std=std_wd)}, wd=0.01)
    tree.run("fig3_margins", "wd=0", {"metrics.csv": metrics(margin_mean=mean_0, margin_std=std_0)}, wd=0.0)
    verdict, why, nums = tree.verdict(3)
    assert verdict == expected, why


# ----------------------------------------------------------------------------- claims 4, 8 (NC)

COLLAPSE = [1, 4, 2, 1, 0.3, 0.1, 0.05]  # 80x from the peak
PLATEAU = [1, 4, 3.5, 3.2, 3.0, 3.0, 3.0]  # 1.33x, flat at the end
STILL = [1, 4, 3, 2.5, 2, 1.5, 1.0]  # 4x, still falling (1.0 < 0.9 x 1.5)


@pytest.mark.parametrize(
    "nc1, equinorm, acc, expected",
    [
        (COLLAPSE, 0.05, 1.0, SUPPORTED),
        (COLLAPSE, 0.4, 1.0, INCONCLUSIVE),  # NC2 equinorm above 0.2
        (PLATEAU, 0.05, 1.0, NOT_SUPPORTED),
        (PLATEAU, 0.05, 0.7, INCONCLUSIVE),  # not interpolating yet
        (STILL, 0.05, 1.0, INCONCLUSIVE),
    ],
)
def test_claim4_nc_square_wd(tree, nc1, equinorm, acc, expected):
    tree.run("fig6_nc_step", "a", {"metrics.csv": metrics(train_acc=acc), "nc.csv": nc(nc1, equinorm=equinorm)}, wd=0.01)
    verdict, why, _ = tree.verdict(4)
    assert verdict == expected, why


def test_claim4_leaves_out_noisy_labels_and_no_wd(tree):
    tree.run("random_labels_nc", "noise=1", {"metrics.csv": metrics(), "nc.csv": nc(PLATEAU)}, wd=0.01, data__label_noise=1.0)
    tree.run("random_labels_nc", "wd=0", {"metrics.csv": metrics(), "nc.csv": nc(PLATEAU)}, wd=0.0, data__label_noise=0.0)
    tree.run("random_labels_nc", "noise=0", {"metrics.csv": metrics(), "nc.csv": nc(COLLAPSE)}, wd=0.01, data__label_noise=0.0)
    verdict, why, _ = tree.verdict(4)
    assert verdict == SUPPORTED, why  # only the noise-0, WD > 0 setting counts


@pytest.mark.parametrize(
    "curves, expected",
    [
        ((COLLAPSE, COLLAPSE), SUPPORTED),
        ((PLATEAU, PLATEAU), NOT_SUPPORTED),
        ((COLLAPSE, STILL), SUPPORTED),  # one collapses, the other has not decided
        ((COLLAPSE, PLATEAU), INCONCLUSIVE),  # the settings disagree
        ((STILL, STILL), INCONCLUSIVE),
    ],
)
def test_claim8_nc_random_labels(tree, curves, expected):
    tree.run("random_labels_nc", "noise=0", {"metrics.csv": metrics(), "nc.csv": nc(PLATEAU)}, wd=0.01, data__label_noise=0.0)
    for noise, curve in zip((0.5, 1.0), curves):
        tree.run("random_labels_nc", f"noise={noise}", {"metrics.csv": metrics(), "nc.csv": nc(curve)}, wd=0.01, data__label_noise=noise)
    verdict, why, _ = tree.verdict(8)
    assert verdict == expected, why


def test_claim8_without_noisy_runs_is_inconclusive(tree):
    tree.run("random_labels_nc", "noise=0", {"metrics.csv": metrics(), "nc.csv": nc(COLLAPSE)}, wd=0.01, data__label_noise=0.0)
    assert tree.verdict(8)[0] == INCONCLUSIVE


# ----------------------------------------------------------------------------- claims 5, 6 (theory.csv)


@pytest.mark.parametrize(
    "eq35, eq34, acc, expected",
    [
        (0.01, 0.1, 1.0, SUPPORTED),
        (0.4, 0.1, 1.0, NOT_SUPPORTED),  # Eq. 35 off by 40%
        (0.01, 0.8, 1.0, NOT_SUPPORTED),  # Eq. 34 off by 80%
        (0.4, 0.1, 0.8, INCONCLUSIVE),  # off, but not at the collapsed state
        (0.1, 0.1, 1.0, INCONCLUSIVE),  # Eq. 35 between 5% and 25%
    ],
)
def test_claim5_classifier_equations(tree, eq35, eq34, acc, expected):
    tables = {"metrics.csv": metrics(train_acc=acc), "nc.csv": nc(COLLAPSE), "theory.csv": theory(w_dot_muG_eq35=eq35, w_norm_sq_eq34=eq34)}
    tree.run("fig6_nc_step", "a", tables, wd=0.01)
    verdict, why, nums = tree.verdict(5)
    assert verdict == expected, why


def test_claim5_ignores_biased_classifiers(tree):
    tables = {"metrics.csv": metrics(), "nc.csv": nc(COLLAPSE), "theory.csv": theory(w_dot_muG_eq35=0.9, w_norm_sq_eq34=0.9)}
    tree.run("fig6_nc_step", "a", tables, wd=0.01, model__bias=True)
    verdict, why, _ = tree.verdict(5)
    assert verdict == INCONCLUSIVE and "too few settings" in why


@pytest.mark.parametrize(
    "err, rho, expected",
    [
        (0.02, flat(0.6), SUPPORTED),
        (0.5, flat(0.6), NOT_SUPPORTED),
        (0.5, falling(30.0, 20.0), INCONCLUSIVE),  # off, but ρ is still moving
        (0.2, flat(0.6), INCONCLUSIVE),
    ],
)
def test_claim6_rho_eq(tree, err, rho, expected):
    tree.run("binary_bn_wd", "a", {"metrics.csv": metrics(rho=rho), "theory.csv": theory(rho_eq=err)}, wd=0.01)
    verdict, why, nums = tree.verdict(6)
    assert verdict == expected, why
    assert nums["median rel. error"] == pytest.approx(err)


# ----------------------------------------------------------------------------- claim 7 (random labels)


@pytest.mark.parametrize(
    "levels, rhos, accs, expected",
    [
        ((0.0, 0.5, 1.0), (1, 2, 3), (0.8, 0.6, 0.5), SUPPORTED),
        ((0.0, 0.5, 1.0), (3, 2, 1), (0.8, 0.6, 0.5), NOT_SUPPORTED),  # ρ falls with the noise
        ((0.0, 0.5, 1.0), (1, 3, 2), (0.8, 0.6, 0.5), INCONCLUSIVE),  # Spearman 0.5
        ((0.0, 1.0), (1, 3), (0.8, 0.5), INCONCLUSIVE),  # two levels
    ],
)
def test_claim7_random_labels_rho(tree, levels, rhos, accs, expected):
    for lvl, rho, acc in zip(levels, rhos, accs):
        tree.run("fig11_random_labels", f"noise={lvl}", {"metrics.csv": metrics(rho=flat(rho), test_acc=acc)}, wd=0.01, data__label_noise=lvl)
    verdict, why, nums = tree.verdict(7)
    assert verdict == expected, why


# ----------------------------------------------------------------------------- claim 9 (exponential loss)


@pytest.mark.parametrize(
    "nc1_sgd, nc1_gd, loss_gd, expected",
    [
        (0.3, 0.7, 0.015, SUPPORTED),
        (0.7, 0.3, 0.015, NOT_SUPPORTED),
        (0.3, 0.7, 0.11, INCONCLUSIVE),  # GD at 11x SGD's loss
        (0.3, 0.4, 0.015, INCONCLUSIVE),  # only 1.33x
    ],
)
def test_claim9_exponential_loss(tree, nc1_sgd, nc1_gd, loss_gd, expected):
    for full, nc1_final, loss in ((False, nc1_sgd, 0.01), (True, nc1_gd, loss_gd)):
        curve = [1.0, 2.0, 1.5, 1.2, 1.0, 0.9, nc1_final]
        tree.run("exp_loss_nc1_batch", f"full={full}", {"metrics.csv": metrics(train_loss=loss), "nc.csv": nc(curve)}, full_batch=full, batch_size=16, loss__kind="exponential")
    verdict, why, nums = tree.verdict(9)
    assert verdict == expected, why


# ----------------------------------------------------------------------------- claim 10 (rank)
# The full batch sits at N = 96 (write_run's n_train) on the batch axis, so the minibatches are 16, 32.


@pytest.mark.parametrize(
    "ranks_wd, rank_wd0, expected",
    [
        ({16: 3, 32: 5, "full": 8}, 8, SUPPORTED),
        ({16: 7, 32: 5, "full": 3}, 8, NOT_SUPPORTED),  # rank falls with the batch size
        ({16: 3, 32: 5, "full": 8}, 5, NOT_SUPPORTED),  # without WD the rank fell 37.5% too
        ({16: 6, 32: 3, "full": 8}, 8, NOT_SUPPORTED),  # batch 16's rank above batch 32's (an inversion)
        ({16: 3, 32: 5}, 8, SUPPORTED),  # two batch sizes, ordered
        ({16: 5, 32: 5, "full": 5}, 8, INCONCLUSIVE),  # WD lowers it, but equally for every batch
    ],
)
def test_claim10_rank(tree, ranks_wd, rank_wd0, expected):
    for batch, rank in ranks_wd.items():
        full = batch == "full"
        for wd, r in ((0.01, rank), (0.0, rank_wd0)):
            tree.run("rank_batch_wd", f"batch={batch}_wd={wd}", {"metrics.csv": metrics(), "spectra.csv": spectra(r)}, full_batch=full, batch_size=16 if full else batch, wd=wd)
    verdict, why, nums = tree.verdict(10)
    assert verdict == expected, why


# ----------------------------------------------------------------------------- claim 11 (SGD noise)


@pytest.mark.parametrize("u_sgd, u_gd, expected", [(0.1, 0.001, SUPPORTED), (0.01, 0.008, NOT_SUPPORTED), (0.05, 0.01, INCONCLUSIVE)])
def test_claim11_sgd_noise(tree, u_sgd, u_gd, expected):
    for full, u in ((False, u_sgd), (True, u_gd)):
        tree.run("sgd_noise", f"full={full}", {"metrics.csv": metrics(updates={"conv1": u, "classifier": u})}, full_batch=full, batch_size=32)
    verdict, why, nums = tree.verdict(11)
    assert verdict == expected, why
    assert nums["SGD / GD"] == pytest.approx(u_sgd / u_gd)


def test_claim11_without_gd_is_inconclusive(tree):
    tree.run("sgd_noise", "sgd", {"metrics.csv": metrics(updates={"conv1": 0.1})}, batch_size=32)
    assert tree.verdict(11)[0] == INCONCLUSIVE


# ----------------------------------------------------------------------------- claim 12 (MSE ResNet)

FALL_2000 = [1, 60, 5, 1, 0.3, 0.05, 0.03]


@pytest.mark.parametrize(
    "nc1, perp, total, expected",
    [
        (FALL_2000, [0.05, 0.02, 0.01, 0.005, 0.001, 0.0002, 0.0001], [0.1] * 6 + [0.002], SUPPORTED),  # 5% at the end
        (PLATEAU, [0.01] * 7, [0.1] * 7, NOT_SUPPORTED),  # NC1 1.3x and flat
        (FALL_2000, [0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0004], [0.1] * 6 + [0.0019], INCONCLUSIVE),  # L_perp 21%, still moving
        (FALL_2000, [0.08] * 7, [0.1] * 7, NOT_SUPPORTED),  # L_perp 80%, flat
    ],
)
def test_claim12_mse_resnet(tree, nc1, perp, total, expected):
    tree.run("resnet18_narrow_cifar10_cpu", "a", {"metrics.csv": metrics(), "nc.csv": nc(nc1, perp=perp, total=total)}, wd=0.0005)
    verdict, why, nums = tree.verdict(12)
    assert verdict == expected, why


def test_claim12_leaves_out_cross_entropy(tree):
    tree.run("resnet18_cifar10_mse", "ce", {"metrics.csv": metrics(), "nc.csv": nc(PLATEAU)}, loss__kind="cross_entropy")
    assert tree.verdict(12)[0] == INCONCLUSIVE


# ----------------------------------------------------------------------------- the evidence scale


def test_scale_counts_runs_seeds_and_n(tree):
    for seed in (0, 1, 2):
        for init in (0.01, 5):
            tree.run("fig2_init_wd", f"init={init}", {"metrics.csv": metrics(rho=flat(0.6))}, seed=seed, wd=0.01, model__init_scale=init, **BN)
    analyze(tree.out)
    r = evaluate_claims(load_tables(tree.out))[0]
    assert r.verdict == SUPPORTED
    assert r.runs == 6 and len(r.settings) == 2
    assert (r.scale.epochs, r.scale.n_train, r.scale.seeds, r.scale.settings) == (E, 96, "3", 2)
    assert "epochs 50" in r.scale.text() and "N 96" in r.scale.text()
    # claims.csv-style numbers are JSON-safe
    json.dumps({k: v for k, v in r.numbers.items()}, default=str)
