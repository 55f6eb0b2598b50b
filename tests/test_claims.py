"""The claims registry (`sqloss_nc.claims`) on synthetic run folders: for every rule, a tree of runs
built so that the claim is supported, one where it is not, one where the runs cannot decide, and
its negative control, which must not come out supported (and, where it does, the claim becomes
"rule does not discriminate"). The expected verdicts follow from the numbers written (e.g. a ρ of
0.6 and 3.0 at two inits, both flat after 15 τ, is a 5x difference: "not supported" for claim 1),
never from running the rule first. Each tree goes through the real `analyze`, so the claims read
exactly the tables a user's runs produce.

Time scale of the synthetic runs: 96 training samples, batch 32 (3 steps per epoch), 50 epochs =
150 steps; with `FAST` (η = 1, λ = 0.1, no momentum) τ = 10 steps, so a run lives 15 τ; with the
default η = λ = 0.01 it lives 0.015 τ.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fake_runs import config, write_run

from sqloss_nc.analysis import analyze
from sqloss_nc.claims import (
    CLAIMS,
    INCONCLUSIVE,
    NO_RUNS,
    NOT_DISCRIMINATING,
    NOT_SUPPORTED,
    SUPPORTED,
    VERDICTS,
    claim_by_id,
    combine,
    evaluate_claims,
    fall_from_start,
    load_tables,
    spearman,
    tail_change,
)
from sqloss_nc.claims.base import Evidence
from sqloss_nc.claims.rules import Clock
from sqloss_nc.protocol import SCALES
from sqloss_nc.timescale import MIN_TAU, steps_per_epoch, tau_steps

E = 50  # epochs of every synthetic run (unless a test says otherwise)
NC_EPOCHS = [0, 1, 2, 5, 10, 20, 50]
BY_NUMBER = {c.number: c for c in CLAIMS}
FAST = {"optim__lr": 1.0}  # with wd=0.1: τ = 10 steps, 150 steps = 15 τ
WD = 0.1
ROOT = Path(__file__).resolve().parents[1]
STABLE_IDS = ["rho_wd_init", "rho_nowd_init", "margins_concentrate", "nc_square_wd", "classifier_eqs", "rho_eq",
              "random_labels_rho", "nc_random_labels", "exp_nc1_batch", "rank_sgd_wd", "sgd_noise", "mse_resnet"]


def metrics(rho=None, train_acc=1.0, test_acc=0.8, margin_mean=0.5, margin_std=0.1, train_loss=0.01, updates=None, epochs=E, rho_bn=None) -> pd.DataFrame:
    """A metrics.csv: `rho` and `margin_std` may be functions of the epoch array (default flat);
    the others are the final values, reached from epoch 1 on (epoch 0 = init). `updates`: layer ->
    u or (first, tail): the relative update at epoch 1 and from epoch 2 on."""
    ep = np.arange(epochs + 1)
    m = pd.DataFrame({"epoch": ep})
    m["train_loss"] = np.where(ep == 0, 0.5, train_loss)
    m["train_acc"] = np.where(ep == 0, 0.5, train_acc)
    m["test_acc"] = np.where(ep == 0, 0.5, test_acc)
    r = np.ones(len(ep)) if rho is None else np.asarray(rho(ep), dtype=float)
    m["rho"], m["rho_last"] = r, r
    if rho_bn is not None:
        m["rho_bn"] = rho_bn
    sd = np.asarray(margin_std(ep), dtype=float) if callable(margin_std) else np.full(len(ep), margin_std)
    m["margin_mean"] = margin_mean
    m["margin_std"] = sd
    m["margin_sq_mean"] = sd**2 + margin_mean**2
    for layer, u in (updates or {}).items():
        first, tail = u if isinstance(u, tuple) else (u, u)
        m[f"update_norm_{layer}"] = np.where(ep == 0, np.nan, np.where(ep == 1, first, tail))
    return m


def nc(nc1: list[float], nc2: float = 0.05, nc2_means: float | None = None, trace: float = 0.01, nc3: float = 0.05, nc4: float = 0.0, perp=None, total=None, epochs=NC_EPOCHS) -> pd.DataFrame:
    """An nc.csv on `epochs` with the given NC1 values and final NC2 (classifier side `nc2`; the
    class-means side `nc2_means`, default the same), trace ratio, NC3, NC4 (earlier epochs 0.5)."""
    df = pd.DataFrame({"epoch": epochs, "nc1": nc1})
    k = len(epochs)
    means = nc2 if nc2_means is None else nc2_means
    finals = {"nc2_equinorm_weights": nc2, "nc2_equiangular_weights": nc2, "nc2_maxangle_weights": nc2,
              "nc2_equinorm_means": means, "nc2_equiangular_means": means, "nc2_maxangle_means": means,
              "trace_ratio": trace, "nc3_centered": nc3, "nc3": nc3, "nc4": nc4}
    for col, final in finals.items():
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


def spectra(rank: int, n: int = 8, epochs: int = E) -> pd.DataFrame:
    """spectra.csv at epochs 0 (full rank n) and the last (`rank`; stable rank rank/2) for two hidden layers and the classifier."""
    rows = []
    for epoch, r in ((0, n), (epochs, rank)):
        for layer in ("dense1", "dense2", "classifier"):
            rr = n if layer == "classifier" else r
            sv = np.linspace(1.0, 0.1, n)
            rows += [(epoch, layer, i, s, rr, rr / 2) for i, s in enumerate(sv)]
    return pd.DataFrame(rows, columns=["epoch", "layer", "index", "singular_value", "rank", "stable_rank"])


class Tree:
    """Run folders under one OUT, written as finished runs."""

    def __init__(self, out: Path):
        self.out = out
        self._results = None

    def run(self, experiment: str, run_id: str, tables: dict, seed: int = 0, epochs: int = E, **cfg) -> None:
        keys = {k: v for k, v in cfg.items() if k in ("batch_size", "full_batch", "wd")}
        c = config(experiment, seed, epochs, **keys, **{k: v for k, v in cfg.items() if "__" in k})
        write_run(self.out / experiment / f"{run_id}_seed={seed}", c, tables)
        self._results = None

    def results(self):
        if self._results is None:  # one analysis per tree
            res = analyze(self.out)
            assert not [p for p in res.problems if "left out" in p[1]], res.problems
            self._results = {r.claim.number: r for r in evaluate_claims(load_tables(self.out))}
        return self._results

    def verdict(self, number: int) -> tuple[str, str, dict]:
        r = self.results()[number]
        return r.verdict, r.why, r.numbers

    def control(self, number: int) -> str:
        return self.results()[number].control_verdict


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
    assert fall_from_start(pd.Series([4.0, 0.4, 0.2])) == (pytest.approx(20.0), True)
    assert fall_from_start(pd.Series([4.0, 2.0, 2.0])) == (pytest.approx(2.0), False)
    assert spearman([1, 2, 3], [10, 30, 20]) == pytest.approx(0.5)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "verdicts, expected",
    [
        ((SUPPORTED, SUPPORTED), SUPPORTED),
        ((SUPPORTED, INCONCLUSIVE), INCONCLUSIVE),  # one supported setting among undecided ones is not enough
        ((SUPPORTED, NOT_SUPPORTED), INCONCLUSIVE),
        ((NOT_SUPPORTED, INCONCLUSIVE), NOT_SUPPORTED),
        ((INCONCLUSIVE,), INCONCLUSIVE),
    ],
)
def test_combine(verdicts, expected):
    assert combine([(str(i), v, "") for i, v in enumerate(verdicts)])[0] == expected


def test_clock_counts_tau_with_a_step_schedule(tree):
    # 96 samples at batch 32: 3 steps per epoch; η = 1, λ = 0.1: τ = 10 steps; lr / 10 after epoch 20:
    # epochs 1..20 give 60 steps = 6 τ, epochs 21..50 give 90 steps at a tenth = 0.9 τ.
    tree.run("x", "a", {"metrics.csv": metrics()}, wd=WD, optim__schedule="step", optim__milestones=[20], optim__gamma=0.1, **FAST)
    analyze(tree.out)
    ev = Evidence(load_tables(tree.out), ("x",))
    clock = Clock.of(ev, ev.summary.iloc[0])
    assert clock.spe == steps_per_epoch(96, 32) == 3 and clock.tau == tau_steps(1.0, WD, 0.0) == pytest.approx(10.0)
    assert clock.elapsed() == pytest.approx(6.9) and clock.elapsed(20) == pytest.approx(6.0) and clock.steps == 150


# ----------------------------------------------------------------------------- the registry


def test_registry_ids_protocols_and_configs():
    assert [c.number for c in CLAIMS] == list(range(1, len(CLAIMS) + 1)) and len(CLAIMS) >= 18
    assert [c.id for c in CLAIMS[:12]] == STABLE_IDS  # stable ids
    assert len({c.id for c in CLAIMS}) == len(CLAIMS)
    assert claim_by_id("rho_eq").number == 6
    assert NOT_DISCRIMINATING in VERDICTS
    seen = {}
    for c in CLAIMS:
        assert c.sentence and c.source and c.statistic and c.rule and c.figures and c.control
        for scale in SCALES:
            roles = {p.role for p in c.protocols[scale]}
            assert roles == {"evidence", "control"}, (c.id, scale)
            for p in c.protocols[scale]:
                assert (ROOT / p.config).exists(), p.config
                assert p.rationale
                assert seen.setdefault(p.experiment, p.key()) == p.key(), f"{p.experiment}: two different protocols"
        names = {yaml.safe_load((ROOT / path).read_text())["name"] for path in c.legacy_configs if (ROOT / path).exists()}
        assert names <= set(c.experiments), (c.id, names, c.experiments)


def _cfg(p):
    cfg = yaml.safe_load((ROOT / p.config).read_text())
    for k, v in p.overrides.items():
        section, key = k.split(".")
        cfg.setdefault(section, {})[key] = v
    return cfg


@pytest.mark.parametrize("claim_id", ["rho_wd_init", "rho_eq", "nc_square_wd", "random_labels_rho", "rho_lagrange_init", "nc_gd_square"])
def test_cpu_protocols_of_equilibrium_claims_live_five_tau(claim_id):
    for p in claim_by_id(claim_id).protocols["cpu"]:
        if p.role != "evidence":
            continue
        cfg = _cfg(p)
        o = cfg["optim"]
        wds = [w for w in p.sweep.get("optim.weight_decay", [o.get("weight_decay", 0)]) if w > 0]
        for wd in wds:
            assert p.steps / tau_steps(o["lr"], wd, o["momentum"]) >= MIN_TAU, (p.experiment, wd)


def test_cpu_plan_fits_two_hours_on_two_cores():
    # Budget model (measured: the BN convnet, 8k steps of batch 128 on 1,000 images in ~4.5 min):
    # a step costs ~ its images / (128 x 30 per second), with a floor of 1/60 s per step (small
    # batches); the narrow ResNet-18 taken 3x the convnet, the 256-wide MLP a tenth (assumptions).
    plan = {p.key(): p for c in CLAIMS for p in c.protocols["cpu"]}
    seconds = 0.0
    for p in plan.values():
        cfg = _cfg(p)
        n = cfg["data"]["train_per_class"] * len(cfg["data"]["classes"])
        fulls = p.sweep.get("optim.full_batch", [cfg["optim"].get("full_batch", False)])
        per_run = []
        for full in fulls:
            batch = n if full else min(n, cfg["optim"].get("batch_size") or n)
            arch = {"resnet18": 3.0, "mlp": 0.1}.get(cfg["model"]["arch"], 1.0)
            per_run.append(p.steps * max(arch * batch / (128 * 30), 1 / 60))
        seconds += np.mean(per_run) * p.n_runs
    assert seconds / 2 < 2 * 3600, f"{seconds / 120:.0f} min on 2 jobs"


def test_no_runs_for_every_claim_and_the_command_that_decides_it(tree):
    tree.run("unrelated", "a", {"metrics.csv": metrics()})
    analyze(tree.out)
    results = evaluate_claims(load_tables(tree.out))
    for r in results:
        if r.claim.any_experiment:  # instrument checks judge any run that fits them
            assert r.verdict == INCONCLUSIVE, (r.claim.id, r.why)
        else:
            assert r.verdict == NO_RUNS and "no runs of" in r.why
        assert r.decide == f"sqnc reproduce {tree.out} --claims {r.claim.id}"
        assert r.control_verdict == NO_RUNS


# ----------------------------------------------------------------------------- claims 1, 2, 17, 18 (ρ and the init)

BN = {"model__normalization": "batchnorm"}


@pytest.mark.parametrize(
    "rho_small, rho_large, fast, expected",
    [
        (flat(0.6), flat(0.62), True, SUPPORTED),  # 1.03x apart, both flat after 15 τ
        (flat(0.6), flat(3.0), True, NOT_SUPPORTED),  # 5x apart, both flat
        (flat(0.6), falling(30.0, 20.0), True, INCONCLUSIVE),  # the large init still falls
        (flat(0.6), flat(0.62), False, INCONCLUSIVE),  # flat, but 0.015 τ: too few steps
    ],
)
def test_claim1_rho_with_wd(tree, rho_small, rho_large, fast, expected):
    for init, rho in ((0.01, rho_small), (5, rho_large)):
        tree.run("cpu_fig2", f"init={init}", {"metrics.csv": metrics(rho=rho, rho_bn=7.0)}, wd=WD if fast else 0.01, model__init_scale=init, **BN, **(FAST if fast else {}))
    verdict, why, nums = tree.verdict(1)
    assert verdict == expected, why
    assert nums["final ρ_BN (init 5)"] == pytest.approx(7.0)  # the product norm is shown
    if expected == INCONCLUSIVE:
        assert "too few steps" in why


def test_claim1_keeps_every_setting_of_an_init(tree):
    for width in ("[8]", "[16]"):
        for init, rho in ((0.01, 0.6), (5, 3.0 if width == "[8]" else 0.6)):
            tree.run("cpu_fig2", f"init={init}_w={width}", {"metrics.csv": metrics(rho=flat(rho))}, wd=WD, model__init_scale=init, model__widths=json.loads(width), **BN, **FAST)
    verdict, why, nums = tree.verdict(1)
    assert nums["final ρ (init 5)"] == pytest.approx(1.8)  # (3.0 + 0.6)/2: both settings of init 5
    assert tree.results()[1].runs == 4


@pytest.mark.parametrize("nowd_apart, expected_control, expected", [(True, NOT_SUPPORTED, SUPPORTED), (False, SUPPORTED, NOT_DISCRIMINATING)])
def test_claim1_control_on_the_wd0_runs(tree, nowd_apart, expected_control, expected):
    for init in (0.01, 5):
        tree.run("cpu_fig2", f"init={init}_wd", {"metrics.csv": metrics(rho=flat(0.6))}, wd=WD, model__init_scale=init, **BN, **FAST)
        rho0 = (0.6 if init == 0.01 else 6.0) if nowd_apart else 0.6
        tree.run("cpu_fig2", f"init={init}_nowd", {"metrics.csv": metrics(rho=flat(rho0))}, wd=0.0, model__init_scale=init, **BN, **FAST)
    r = tree.results()[1]
    assert r.control_verdict == expected_control, r.control_why
    assert r.verdict == expected, r.why


def two_inits_nowd(tree, rho_large, acc_small, acc_large, seeds=(0, 1), train_acc=1.0, experiment="cpu_fig2"):
    for seed in seeds:
        for init, rho, acc in ((0.01, 1.3, acc_small), (5, rho_large, acc_large)):
            tree.run(experiment, f"init={init}", {"metrics.csv": metrics(rho=flat(rho), test_acc=acc, train_acc=train_acc)}, seed=seed, wd=0.0, model__init_scale=init)


@pytest.mark.parametrize(
    "rho_large, acc_small, acc_large, seeds, train_acc, expected",
    [
        (90.0, 0.85, 0.65, (0, 1), 1.0, SUPPORTED),  # ρ 69x apart, large init 20 points worse (> binomial floor at n_test 24)
        (1.4, 0.85, 0.75, (0, 1), 1.0, NOT_SUPPORTED),  # ρ 1.08x apart: does not depend on the init
        (90.0, 0.65, 0.85, (0, 1), 1.0, NOT_SUPPORTED),  # large init generalizes better
        (90.0, 0.85, 0.80, (0, 1), 1.0, INCONCLUSIVE),  # 5 points: inside the binomial floor of 24 test samples (~0.15)
        (90.0, 0.85, 0.65, (0,), 1.0, INCONCLUSIVE),  # one seed
        (90.0, 0.85, 0.65, (0, 1), 0.9, INCONCLUSIVE),  # not interpolating
    ],
)
def test_claim2_rho_without_wd(tree, rho_large, acc_small, acc_large, seeds, train_acc, expected):
    two_inits_nowd(tree, rho_large, acc_small, acc_large, seeds, train_acc)
    verdict, why, nums = tree.verdict(2)
    assert verdict == expected, why
    assert nums["max/min over inits"] == pytest.approx(rho_large / 1.3)


def test_claim2_floor_is_seed_spread_plus_binomial(tree):
    two_inits_nowd(tree, 90.0, 0.85, 0.80)
    _, _, nums = tree.verdict(2)
    se = math.sqrt(math.sqrt(0.15 * 0.85 / 24) ** 2 + math.sqrt(0.2 * 0.8 / 24) ** 2)  # both seeds equal: std 0
    assert nums["noise floor (seed stds + binomial)"] == pytest.approx(se)


def test_claim2_control_wd_runs_must_not_pass(tree):
    two_inits_nowd(tree, 90.0, 0.85, 0.65)
    for init in (0.01, 5):  # with WD ρ forgets the init: 1.03x
        tree.run("cpu_fig2", f"init={init}_wd", {"metrics.csv": metrics(rho=flat(0.6 if init == 5 else 0.62))}, wd=WD, model__init_scale=init, **FAST)
    r = tree.results()[2]
    assert r.control_verdict == NOT_SUPPORTED and r.verdict == SUPPORTED


@pytest.mark.parametrize(
    "end_small, end_large, expected",
    [(1.0, 0.5, SUPPORTED), (0.005, 0.5, NOT_SUPPORTED), (1.0, 20.0, NOT_SUPPORTED), (0.011, 0.5, INCONCLUSIVE)],
)
def test_claim17_rho_direction_without_wd(tree, end_small, end_large, expected):
    for init, start, end in ((0.01, 0.01, end_small), (5, 5.0, end_large)):
        rho = lambda ep, s=start, e=end: np.where(ep == 0, s, e)  # noqa: E731
        tree.run("cpu_fig2", f"init={init}", {"metrics.csv": metrics(rho=rho)}, wd=0.0, model__init_scale=init)
    verdict, why, _ = tree.verdict(17)
    assert verdict == expected, why
    assert tree.control(17) == NO_RUNS


def test_claim17_control_early_runs_must_not_pass(tree):
    for init, start in ((0.01, 0.01), (5, 5.0)):
        rho = lambda ep, s=start: np.where(ep == 0, s, s * 1.01)  # noqa: E731 - barely moved after 100 steps
        tree.run("cpu_fig2_early", f"init={init}", {"metrics.csv": metrics(rho=rho, epochs=5)}, epochs=5, wd=0.0, model__init_scale=init)
    assert tree.control(17) in (INCONCLUSIVE, NOT_SUPPORTED)


@pytest.mark.parametrize("rho_large, fast, expected", [(0.62, True, SUPPORTED), (3.0, True, NOT_SUPPORTED), (0.62, False, INCONCLUSIVE)])
def test_claim18_lagrange(tree, rho_large, fast, expected):
    for init, rho in ((0.5, 0.6), (1.5, rho_large)):
        tree.run("cpu_lagrange", f"init={init}", {"metrics.csv": metrics(rho=flat(rho))}, wd=WD if fast else 0.01, model__init_scale=init, model__normalization="lagrange", **(FAST if fast else {}))
        tree.run("cpu_lagrange", f"init={init}_nowd", {"metrics.csv": metrics(rho=flat(rho * (1 if init == 0.5 else 10)))}, wd=0.0, model__init_scale=init, model__normalization="lagrange", **FAST)
    r = tree.results()[18]
    assert r.verdict == expected, r.why
    assert r.control_verdict == NOT_SUPPORTED  # WD 0: ρ 10x+ apart
    assert tree.results()[1].verdict == NO_RUNS or tree.results()[1].verdict == INCONCLUSIVE  # claim 1 reads BN runs only


# ----------------------------------------------------------------------------- claim 3 (margins)


def narrowing(start: float, end: float):
    return lambda ep: np.where(ep <= 1, start, end)


@pytest.mark.parametrize(
    "mean_large, std_end, expected",
    [
        (0.5, 0.05, SUPPORTED),  # same margins over inits, spread narrowed 0.3 -> 0.05
        (0.1, 0.05, NOT_SUPPORTED),  # 5x apart over inits
        (0.5, 0.5, NOT_SUPPORTED),  # the spread widened 0.3 -> 0.5
        (0.5, 0.2, INCONCLUSIVE),  # narrowed only 1.5x
    ],
)
def test_claim3_margins(tree, mean_large, std_end, expected):
    for init, mu in ((0.01, 0.5), (5, mean_large)):
        for seed in (0, 1):
            tree.run("cpu_fig2", f"init={init}", {"metrics.csv": metrics(margin_mean=mu, margin_std=narrowing(0.3 * mu / 0.5, std_end * mu / 0.5))}, seed=seed, wd=WD, model__init_scale=init, **FAST)
    verdict, why, nums = tree.verdict(3)
    assert verdict == expected, why


def test_claim3_control_wd0_must_not_pass(tree):
    for init, mu in ((0.01, 0.5), (5, 0.5)):
        tree.run("cpu_fig2", f"init={init}", {"metrics.csv": metrics(margin_mean=mu, margin_std=narrowing(0.3, 0.05))}, wd=WD, model__init_scale=init, **FAST)
    for init, mu in ((0.01, 0.5), (5, 0.05)):  # without WD the margins remember the init
        tree.run("cpu_fig2", f"init={init}_nowd", {"metrics.csv": metrics(margin_mean=mu, margin_std=narrowing(0.3 * mu, 0.3 * mu))}, wd=0.0, model__init_scale=init)
    r = tree.results()[3]
    assert r.control_verdict == NOT_SUPPORTED and r.verdict == SUPPORTED, (r.control_why, r.why)


# ----------------------------------------------------------------------------- NC claims 4, 8, 13, 14, 15

COLLAPSE = [1, 4, 2, 1, 0.3, 0.1, 0.05]  # 40x since epoch 1 (the terminal phase's start), final 0.05
PLATEAU = [1, 4, 3.5, 3.2, 3.0, 3.0, 3.0]  # final 3.0, flat
STILL = [1, 4, 3, 2.5, 2, 1.5, 1.0]  # still falling
SPIKE = [118, 60, 30, 10, 5, 4.2, 4.12]  # claim 8's published false positive: 30x from an init spike to 4.12


@pytest.mark.parametrize(
    "nc1, nc2, acc, fast, expected",
    [
        (COLLAPSE, 0.05, 1.0, True, SUPPORTED),
        (COLLAPSE, 0.4, 1.0, True, INCONCLUSIVE),  # classifier NC2 above 0.2
        (PLATEAU, 0.05, 1.0, True, NOT_SUPPORTED),
        (PLATEAU, 0.05, 0.7, True, INCONCLUSIVE),  # not interpolating: no terminal phase
        (PLATEAU, 0.05, 1.0, False, INCONCLUSIVE),  # 0.015 τ in the terminal phase: too short to say "no"
        (STILL, 0.05, 1.0, True, INCONCLUSIVE),
        (SPIKE, 0.05, 1.0, True, NOT_SUPPORTED),  # 30x from the init spike is not collapse
    ],
)
def test_claim4_nc_square_wd(tree, nc1, nc2, acc, fast, expected):
    tree.run("cpu_nc", "a", {"metrics.csv": metrics(train_acc=acc), "nc.csv": nc(nc1, nc2=nc2)}, wd=WD if fast else 0.01, **(FAST if fast else {}))
    verdict, why, _ = tree.verdict(4)
    assert verdict == expected, why


def test_claim4_binary_means_nc2_is_no_evidence(tree):
    # C = 2: the class-means NC2 is 0 by construction; NC1 stays high, the classifier side is off.
    tree.run("cpu_nc", "a", {"metrics.csv": metrics(), "nc.csv": nc(PLATEAU, nc2=0.6, nc2_means=0.0, trace=0.8)}, wd=WD, data__classes=[1, 2], **FAST)
    tree.run("cpu_nc", "nowd", {"metrics.csv": metrics(), "nc.csv": nc(PLATEAU, nc2=0.6, nc2_means=0.0, trace=0.8)}, wd=0.0, data__classes=[1, 2], **FAST)
    r = tree.results()[4]
    assert r.verdict == NOT_SUPPORTED and r.control_verdict != SUPPORTED, r.why
    assert not any(k.startswith("nc2_equinorm_means") for k in r.numbers) and any(k.startswith("nc2_equinorm_weights") for k in r.numbers)


def binary_collapse(maxangle: float) -> pd.DataFrame:
    """A C = 2 collapse on every measure but the classifier's raw max-angle."""
    df = nc(COLLAPSE)
    df.loc[df.index[-1], "nc2_maxangle_weights"] = maxangle
    return df


def test_binary_bias_free_heads_max_angle_is_not_evidence_against_collapse(tree):
    """A bias-free head at exact collapse keeps the common row w̄ that maps μ_G to 1/C (Eq. 35), so
    |cos(w_1, w_2) + 1| tends to 2/(1 + |μ_G|²/|Δ|²), not 0 (checked against float64 below): with
    no bias it must not block "supported"; with a bias it still counts; the WD-0 plateau control
    must not come out supported either way."""
    # the closed form, from the minimum-norm bias-free head on exactly collapsed features
    rng = np.random.default_rng(0)
    mu_g = np.abs(rng.normal(size=16)) + 0.5  # ReLU features: a large common mean
    delta = rng.normal(size=16)
    delta -= (delta @ mu_g) / (mu_g @ mu_g) * mu_g  # Δ ⊥ μ_G
    delta *= np.linalg.norm(mu_g) / 2 / np.linalg.norm(delta)  # |μ_G|²/|Δ|² = 4
    h = np.stack([mu_g + delta, mu_g - delta])  # the two class means = every feature vector
    w = np.linalg.lstsq(h, np.eye(2), rcond=None)[0].T  # rows w_c: the min-norm head with f(h_c) = e_c
    cos = w[0] @ w[1] / np.linalg.norm(w[0]) / np.linalg.norm(w[1])
    assert abs((cos + 1) - 2 / (1 + 4)) < 1e-12  # 0.4, not 0
    assert abs(w.mean(axis=0) @ mu_g - 0.5) < 1e-12  # Eq. 35: <w̄, μ_G> = 1/C needs w̄ != 0

    tree.run("cpu_nc", "free", {"metrics.csv": metrics(), "nc.csv": binary_collapse(0.4)}, wd=WD, data__classes=[1, 2], **FAST)
    tree.run("cpu_nc", "nowd", {"metrics.csv": metrics(), "nc.csv": nc(PLATEAU, nc2=0.05)}, wd=0.0, data__classes=[1, 2], **FAST)
    r = tree.results()[4]
    assert r.verdict == SUPPORTED and r.control_verdict == NOT_SUPPORTED, (r.why, r.control_why)
    assert not any(k.startswith("nc2_maxangle_weights") for k in r.numbers), r.numbers


def test_claim14_binary_bias_free_head_is_judged_without_its_max_angle(tree):
    """Claim 14 takes its classifier NC2 from `rules.nc2_columns` too: a bias-free binary head at
    collapse (max-angle 0.4, everything else collapsed) is supported; the WD-0 control, whose
    equinorm stays at 0.6, must not be."""
    tree.run("cpu_nc", "free", {"metrics.csv": metrics(), "nc.csv": binary_collapse(0.4)}, wd=WD, data__classes=[1, 2], **FAST)
    tree.run("cpu_nc", "nowd", {"metrics.csv": metrics(), "nc.csv": nc(PLATEAU, nc2=0.6, nc3=0.7)}, wd=0.0, data__classes=[1, 2], **FAST)
    r = tree.results()[14]
    assert r.verdict == SUPPORTED and r.control_verdict == NOT_SUPPORTED, (r.why, r.control_why)


def test_binary_biased_heads_max_angle_still_counts(tree):
    tree.run("cpu_nc", "biased", {"metrics.csv": metrics(), "nc.csv": binary_collapse(0.4)}, wd=WD, data__classes=[1, 2], model__bias=True, **FAST)
    verdict, why, numbers = tree.verdict(4)
    assert verdict == INCONCLUSIVE and "NC2" in why, why
    assert any(k.startswith("nc2_maxangle_weights") for k in numbers), numbers


@pytest.mark.parametrize("nowd_curve, expected_control, expected", [(PLATEAU, NOT_SUPPORTED, SUPPORTED), (COLLAPSE, SUPPORTED, NOT_DISCRIMINATING)])
def test_claim4_control_wd0(tree, nowd_curve, expected_control, expected):
    tree.run("cpu_nc", "wd", {"metrics.csv": metrics(), "nc.csv": nc(COLLAPSE)}, wd=WD, **FAST)
    tree.run("cpu_nc", "nowd", {"metrics.csv": metrics(), "nc.csv": nc(nowd_curve)}, wd=0.0, **FAST)
    r = tree.results()[4]
    assert (r.control_verdict, r.verdict) == (expected_control, expected), (r.control_why, r.why)


def test_claim4_one_supported_setting_among_undecided_is_not_supported(tree):
    tree.run("cpu_nc", "a", {"metrics.csv": metrics(), "nc.csv": nc(COLLAPSE)}, wd=WD, **FAST)
    tree.run("cpu_nc", "b", {"metrics.csv": metrics(), "nc.csv": nc(STILL)}, wd=WD / 2, **FAST)
    assert tree.verdict(4)[0] == INCONCLUSIVE


@pytest.mark.parametrize(
    "curves, expected",
    [
        ((COLLAPSE, COLLAPSE), SUPPORTED),
        ((PLATEAU, PLATEAU), NOT_SUPPORTED),
        ((SPIKE, SPIKE), NOT_SUPPORTED),
        ((COLLAPSE, STILL), INCONCLUSIVE),
        ((COLLAPSE, PLATEAU), INCONCLUSIVE),
    ],
)
def test_claim8_nc_random_labels(tree, curves, expected):
    tree.run("cpu_random_labels", "noise=0", {"metrics.csv": metrics(), "nc.csv": nc(PLATEAU)}, wd=WD, data__label_noise=0.0, **FAST)
    for noise, curve in zip((0.5, 1.0), curves):
        tree.run("cpu_random_labels", f"noise={noise}", {"metrics.csv": metrics(train_acc=0.995), "nc.csv": nc(curve)}, wd=WD, data__label_noise=noise, **FAST)
    verdict, why, _ = tree.verdict(8)
    assert verdict == expected, why


def test_claim8_control_small_net_must_not_pass(tree):
    tree.run("cpu_random_labels", "noise=1", {"metrics.csv": metrics(train_acc=0.995), "nc.csv": nc(COLLAPSE)}, wd=WD, data__label_noise=1.0, **FAST)
    tree.run("cpu_random_labels_small", "noise=1", {"metrics.csv": metrics(train_acc=0.6), "nc.csv": nc(STILL)}, wd=WD, data__label_noise=1.0, **FAST)
    r = tree.results()[8]
    assert r.control_verdict == INCONCLUSIVE and "does not interpolate" in r.control_why and r.verdict == SUPPORTED


@pytest.mark.parametrize(
    "wd_curve, nowd_curve, expected",
    [(COLLAPSE, PLATEAU, SUPPORTED), (COLLAPSE, COLLAPSE, NOT_SUPPORTED), (STILL, PLATEAU, INCONCLUSIVE)],
)
def test_claim13_nc_needs_wd(tree, wd_curve, nowd_curve, expected):
    tree.run("cpu_nc", "wd", {"metrics.csv": metrics(), "nc.csv": nc(wd_curve)}, wd=WD, **FAST)
    tree.run("cpu_nc", "nowd", {"metrics.csv": metrics(), "nc.csv": nc(nowd_curve)}, wd=0.0, **FAST)
    tree.run("cpu_nc", "halfwd", {"metrics.csv": metrics(), "nc.csv": nc(COLLAPSE)}, wd=WD / 2, **FAST)
    r = tree.results()[13]
    assert r.verdict == expected, r.why
    assert r.control_verdict == NOT_SUPPORTED  # WD 0.1 vs 0.05: both collapse, "necessary" fails


@pytest.mark.parametrize(
    "nc3, nc4, nc2, expected",
    [(0.05, 0.0, 0.05, SUPPORTED), (0.6, 0.0, 0.05, NOT_SUPPORTED), (0.3, 0.0, 0.05, INCONCLUSIVE), (0.05, 0.2, 0.05, NOT_SUPPORTED)],
)
def test_claim14_nc_classifier(tree, nc3, nc4, nc2, expected):
    tree.run("cpu_nc", "wd", {"metrics.csv": metrics(), "nc.csv": nc(COLLAPSE, nc2=nc2, nc3=nc3, nc4=nc4)}, wd=WD, **FAST)
    tree.run("cpu_nc", "nowd", {"metrics.csv": metrics(), "nc.csv": nc(PLATEAU, nc2=0.6, nc3=0.7)}, wd=0.0, **FAST)
    r = tree.results()[14]
    assert r.verdict == expected, r.why
    assert r.control_verdict == NOT_SUPPORTED


@pytest.mark.parametrize("curve, expected", [(COLLAPSE, SUPPORTED), (PLATEAU, NOT_SUPPORTED), (STILL, INCONCLUSIVE)])
def test_claim15_nc_under_gd(tree, curve, expected):
    gd = {"epochs": 150}  # one step per epoch: 150 steps = 15 τ
    nce = [0, 1, 2, 5, 10, 20, 150]
    tree.run("cpu_nc_gd", "wd", {"metrics.csv": metrics(epochs=150), "nc.csv": nc(curve, epochs=nce)}, wd=WD, full_batch=True, **gd, **FAST)
    tree.run("cpu_nc_gd", "nowd", {"metrics.csv": metrics(epochs=150), "nc.csv": nc(PLATEAU, epochs=nce)}, wd=0.0, full_batch=True, **gd, **FAST)
    tree.run("cpu_nc_gd", "sgd", {"metrics.csv": metrics(), "nc.csv": nc(PLATEAU)}, wd=WD, **FAST)  # not full batch: not read
    r = tree.results()[15]
    assert r.verdict == expected, r.why
    assert r.control_verdict == NOT_SUPPORTED


# ----------------------------------------------------------------------------- instrument checks 5, 6, 16 (theory.csv)


@pytest.mark.parametrize(
    "eq35s, eq34, acc, expected",
    [
        ((0.01, 0.01, 0.01), 0.1, 1.0, SUPPORTED),
        ((0.01, 0.01, 0.4), 0.1, 1.0, NOT_SUPPORTED),  # the median passes; the maximum does not
        ((0.01, 0.01, 0.01), 0.8, 1.0, NOT_SUPPORTED),  # the Assumption-1 residual off by 80%
        ((0.4, 0.4, 0.4), 0.1, 0.8, INCONCLUSIVE),  # no run interpolates
        ((0.1, 0.1, 0.1), 0.1, 1.0, INCONCLUSIVE),  # between 5% and 25%
    ],
)
def test_claim5_classifier_equations(tree, eq35s, eq34, acc, expected):
    for i, e35 in enumerate(eq35s):
        tables = {"metrics.csv": metrics(train_acc=acc), "nc.csv": nc(COLLAPSE), "theory.csv": theory(w_dot_muG_eq35=e35, w_norm_sq_eq34=eq34)}
        tree.run("cpu_nc", f"s{i}", tables, wd=WD * (i + 1))
    verdict, why, nums = tree.verdict(5)
    assert verdict == expected, why


@pytest.mark.parametrize("bias_err, expected_control, expected", [(0.4, NOT_SUPPORTED, SUPPORTED), (0.01, SUPPORTED, NOT_DISCRIMINATING)])
def test_claim5_control_biased_classifier(tree, bias_err, expected_control, expected):
    tree.run("cpu_nc", "a", {"metrics.csv": metrics(), "nc.csv": nc(COLLAPSE), "theory.csv": theory(w_dot_muG_eq35=0.01, w_norm_sq_eq34=0.1)}, wd=WD)
    tree.run("cpu_nc_bias", "a", {"metrics.csv": metrics(), "nc.csv": nc(COLLAPSE), "theory.csv": theory(w_dot_muG_eq35=bias_err, w_norm_sq_eq34=0.1)}, wd=WD, model__bias=True)
    r = tree.results()[5]
    assert (r.control_verdict, r.verdict) == (expected_control, expected), (r.control_why, r.why)


def test_claim5_reads_any_experiment(tree):
    tree.run("quickstart", "a", {"metrics.csv": metrics(), "nc.csv": nc(COLLAPSE), "theory.csv": theory(w_dot_muG_eq35=0.01, w_norm_sq_eq34=0.1)}, wd=WD)
    assert tree.verdict(5)[0] == SUPPORTED


@pytest.mark.parametrize(
    "errs, rho, fast, expected",
    [
        ((0.02, 0.05), flat(0.6), True, SUPPORTED),
        ((0.02, 0.5), flat(0.6), True, NOT_SUPPORTED),  # the median passes, the maximum does not
        ((0.5, 0.5), falling(30.0, 20.0), True, INCONCLUSIVE),  # off, but ρ is still moving
        ((0.02, 0.02), flat(0.6), False, INCONCLUSIVE),  # 0.015 τ: not an equilibrium
        ((0.2, 0.2), flat(0.6), True, INCONCLUSIVE),
    ],
)
def test_claim6_rho_eq(tree, errs, rho, fast, expected):
    for i, err in enumerate(errs):
        tree.run("cpu_fig2", f"s{i}", {"metrics.csv": metrics(rho=rho), "theory.csv": theory(rho_eq=err)}, wd=WD * (i + 1) if fast else 0.01 * (i + 1), **(FAST if fast else {}))
    verdict, why, nums = tree.verdict(6)
    assert verdict == expected, why


def test_claim6_and_16_controls_early_runs_must_not_pass(tree):
    tree.run("cpu_fig2", "a", {"metrics.csv": metrics(rho=flat(0.6)), "theory.csv": theory(rho_eq=0.02, margin_gap_lemma2=0.1)}, wd=WD, **FAST)
    tree.run("cpu_fig2_early", "a", {"metrics.csv": metrics(rho=falling(5.0, 2.0), epochs=5), "theory.csv": theory(rho_eq=0.01, margin_gap_lemma2=0.01)}, epochs=5, wd=0.01)
    res = tree.results()
    for n in (6, 16):
        assert res[n].verdict == SUPPORTED, res[n].why
        assert res[n].control_verdict == INCONCLUSIVE and "not settled" in res[n].control_why


@pytest.mark.parametrize("err, expected", [(0.1, SUPPORTED), (1.5, NOT_SUPPORTED), (0.6, INCONCLUSIVE)])
def test_claim16_lemma2(tree, err, expected):
    tree.run("cpu_fig2", "a", {"metrics.csv": metrics(rho=flat(0.6)), "theory.csv": theory(margin_gap_lemma2=err)}, wd=WD, **FAST)
    assert tree.verdict(16)[0] == expected


# ----------------------------------------------------------------------------- claim 7 (random labels)

LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


@pytest.mark.parametrize(
    "levels, rhos, accs, train_acc, expected",
    [
        (LEVELS, (1, 2, 3, 4, 5), (0.8, 0.7, 0.6, 0.55, 0.5), 1.0, SUPPORTED),
        (LEVELS, (5, 4, 3, 2, 1), (0.8, 0.7, 0.6, 0.55, 0.5), 1.0, NOT_SUPPORTED),  # ρ falls with the noise
        (LEVELS, (1, 3, 2, 5, 4), (0.8, 0.7, 0.6, 0.55, 0.5), 1.0, INCONCLUSIVE),  # Spearman 0.8 for ρ... see below
        (LEVELS, (1, 2, 3, 4, 5), (0.8, 0.7, 0.6, 0.55, 0.5), 0.9, INCONCLUSIVE),  # not interpolating
        ((0.0, 0.5, 1.0), (1, 2, 3), (0.8, 0.6, 0.5), 1.0, INCONCLUSIVE),  # three levels
    ],
)
def test_claim7_random_labels_rho(tree, levels, rhos, accs, train_acc, expected):
    if rhos == (1, 3, 2, 5, 4):
        assert spearman(list(LEVELS), list(rhos)) == pytest.approx(0.8)
        rhos = (1, 4, 2, 5, 3)  # Spearman 0.7: a weak trend
    for lvl, rho, acc in zip(levels, rhos, accs):
        tree.run("cpu_random_labels", f"noise={lvl}", {"metrics.csv": metrics(rho=flat(rho), test_acc=acc, train_acc=train_acc)}, wd=WD, data__label_noise=lvl, **FAST)
    verdict, why, nums = tree.verdict(7)
    assert verdict == expected, why


def test_claim7_control_small_net_and_levels_within_one_experiment(tree):
    for i, (lvl, rho) in enumerate(zip(LEVELS, (1, 2, 3, 4, 5))):
        exp = "cpu_random_labels" if i < 3 else "fig11_random_labels"  # split over two experiments: not mixed
        tree.run(exp, f"noise={lvl}", {"metrics.csv": metrics(rho=flat(rho), test_acc=0.8 - lvl / 4)}, wd=WD, data__label_noise=lvl, **FAST)
        tree.run("cpu_random_labels_small", f"noise={lvl}", {"metrics.csv": metrics(rho=flat(rho), test_acc=0.8 - lvl / 4, train_acc=0.6)}, wd=WD, data__label_noise=lvl, **FAST)
    r = tree.results()[7]
    assert r.verdict == INCONCLUSIVE and "too few settings" in r.why
    assert r.control_verdict == INCONCLUSIVE and "interpolate" in r.control_why


# ----------------------------------------------------------------------------- claim 9 (exponential loss)


def exp_runs(tree, experiment, loss, nc1_sgd, nc1_gd, loss_gd, gd_epochs=150):
    # SGD: batch 16 on 96 samples = 6 steps per epoch x 50 = 300 steps; GD: 1 per epoch.
    for seed in (0, 1):
        for full, nc1_final, tl, ep in ((False, nc1_sgd, 0.01, E), (True, nc1_gd, loss_gd, gd_epochs)):
            curve = [1.0, 2.0, 1.5, 1.2, 1.0, 0.9, nc1_final + 0.01 * seed]
            nce = [0, 1, 2, 5, 10, 20, ep]
            tree.run(experiment, f"full={full}", {"metrics.csv": metrics(train_loss=tl, epochs=ep), "nc.csv": nc(curve, epochs=nce)}, seed=seed, epochs=ep, full_batch=full, batch_size=16, loss__kind=loss)


@pytest.mark.parametrize(
    "nc1_sgd, nc1_gd, loss_gd, gd_epochs, expected",
    [
        (0.3, 0.7, 0.015, 300, SUPPORTED),
        (0.7, 0.3, 0.015, 300, NOT_SUPPORTED),
        (0.3, 0.7, 0.11, 300, INCONCLUSIVE),  # GD at 11x SGD's loss
        (0.3, 0.4, 0.015, 300, INCONCLUSIVE),  # only 1.33x
        (0.3, 0.7, 0.015, 50, INCONCLUSIVE),  # GD ran 50 steps against SGD's 300: not matched
    ],
)
def test_claim9_exponential_loss(tree, nc1_sgd, nc1_gd, loss_gd, gd_epochs, expected):
    exp_runs(tree, "cpu_exp_batch", "exponential", nc1_sgd, nc1_gd, loss_gd, gd_epochs)
    verdict, why, nums = tree.verdict(9)
    assert verdict == expected, why


def test_claim9_control_square_loss_must_not_pass(tree):
    exp_runs(tree, "cpu_exp_batch", "exponential", 0.3, 0.7, 0.015, 300)
    exp_runs(tree, "cpu_exp_batch_square", "square", 0.3, 0.32, 0.015, 300)  # under the square loss GD collapses as well
    r = tree.results()[9]
    assert (r.verdict, r.control_verdict) == (SUPPORTED, INCONCLUSIVE), r.control_why


# ----------------------------------------------------------------------------- claim 10 (rank)
# The full batch sits at N = 96 (write_run's n_train) on the batch axis, so the minibatches are 16, 32.


@pytest.mark.parametrize(
    "ranks_wd, rank_wd0, expected",
    [
        ({16: 3, 32: 5, "full": 8}, 8, SUPPORTED),
        ({16: 7, 32: 5, "full": 3}, 8, NOT_SUPPORTED),  # rank falls with the batch size
        ({16: 3, 32: 5, "full": 8}, 5, NOT_SUPPORTED),  # without WD the rank fell 37.5% too
        ({16: 6, 32: 3, "full": 8}, 8, NOT_SUPPORTED),  # batch 16's rank above batch 32's (an inversion)
        ({16: 5, 32: 5, "full": 5}, 8, INCONCLUSIVE),  # WD lowers it, but equally for every batch
    ],
)
def test_claim10_rank(tree, ranks_wd, rank_wd0, expected):
    rank_runs(tree, ranks_wd, rank_wd0)
    verdict, why, nums = tree.verdict(10)
    assert verdict == expected, why
    assert any(k.startswith("stable rank/max") for k in nums)


def rank_runs(tree, ranks_wd, rank_wd0, matched=True):
    # 300 steps each: batch 16 = 6 steps per epoch x 50, batch 32 = 3 x 100, full batch = 1 x 300.
    for batch, rank in ranks_wd.items():
        full = batch == "full"
        ep = {16: 50, 32: 100, "full": 300}[batch] if matched else E
        for wd, r in ((0.01, rank), (0.0, rank_wd0)):
            exp = "cpu_rank_gd" if full else "cpu_rank"
            tables = {"metrics.csv": metrics(epochs=ep), "spectra.csv": spectra(r, epochs=ep)}
            tree.run(exp, f"batch={batch}_wd={wd}", tables, epochs=ep, full_batch=full, batch_size=16 if full else batch, wd=wd)


def test_claim10_needs_matched_steps(tree):
    rank_runs(tree, {16: 3, 32: 5, "full": 8}, 8, matched=False)  # 50 epochs each: 300, 150 and 50 steps
    verdict, why, _ = tree.verdict(10)
    assert verdict == INCONCLUSIVE and "matched steps" in why


def test_claim10_control_tiny_wd_must_not_pass(tree):
    for batch, ep in ((16, 50), (32, 100)):  # 300 steps each
        for wd, r in ((1e-5, 8), (0.0, 8)):
            tables = {"metrics.csv": metrics(epochs=ep), "spectra.csv": spectra(r, epochs=ep)}
            tree.run("cpu_rank_tinywd", f"batch={batch}_wd={wd}", tables, epochs=ep, batch_size=batch, wd=wd)
    assert tree.control(10) == NOT_SUPPORTED


# ----------------------------------------------------------------------------- claim 11 (SGD noise)

NONE = {"model__normalization": "none"}


@pytest.mark.parametrize(
    "u_sgd, gd_first, gd_tail, norm, expected",
    [
        (0.3, 0.1, 0.001, "none", SUPPORTED),  # per step 0.1 (3 steps an epoch) vs 0.001
        (0.012, 0.1, 0.004, "none", NOT_SUPPORTED),  # per step 0.004 vs 0.004
        (0.3, 0.1, 0.02, "none", INCONCLUSIVE),  # GD's end update 20% of its first: not converged
        (0.3, 0.1, 0.001, "batchnorm", INCONCLUSIVE),  # BN: GD does not stop either
        (0.09, 0.1, 0.005, "none", INCONCLUSIVE),  # per step 0.03 vs 0.005: 6x
    ],
)
def test_claim11_sgd_noise(tree, u_sgd, gd_first, gd_tail, norm, expected):
    # SGD at batch 32 on 96: 3 steps per epoch x 50 = 150 steps; GD 150 epochs of one step.
    tree.run("cpu_sgd_noise", "sgd", {"metrics.csv": metrics(updates={"conv1": u_sgd})}, batch_size=32, model__normalization=norm)
    tree.run("cpu_sgd_noise", "gd", {"metrics.csv": metrics(updates={"conv1": (gd_first, gd_tail)}, epochs=150)}, epochs=150, full_batch=True, model__normalization=norm)
    verdict, why, nums = tree.verdict(11)
    assert verdict == expected, why
    if norm == "none":
        assert nums["SGD / GD"] == pytest.approx(u_sgd / 3 / gd_tail)


def test_claim11_control_batch_n_must_not_pass(tree):
    tree.run("cpu_sgd_noise_control", "b96", {"metrics.csv": metrics(updates={"conv1": (0.1, 0.001)}, epochs=150)}, epochs=150, batch_size=96, **NONE)
    tree.run("cpu_sgd_noise_control", "gd", {"metrics.csv": metrics(updates={"conv1": (0.1, 0.001)}, epochs=150)}, epochs=150, full_batch=True, **NONE)
    assert tree.control(11) == NOT_SUPPORTED


# ----------------------------------------------------------------------------- claim 12 (MSE ResNet)

FALL_2000 = [1, 60, 5, 1, 0.3, 0.05, 0.03]  # 2000x since epoch 1
PERP_SMALL = ([0.05, 0.02, 0.01, 0.005, 0.001, 0.0002, 0.0001], [0.1] * 6 + [0.002])  # 5% at the end


@pytest.mark.parametrize(
    "nc1, perp, total, fast, expected",
    [
        (FALL_2000, *PERP_SMALL, True, SUPPORTED),
        (PLATEAU, [0.01] * 7, [0.1] * 7, True, NOT_SUPPORTED),  # NC1 3.0 and flat
        (FALL_2000, [0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0004], [0.1] * 6 + [0.0019], True, INCONCLUSIVE),  # L_perp 21%
        (FALL_2000, [0.08] * 7, [0.1] * 7, True, NOT_SUPPORTED),  # L_perp 80%, flat
        (PLATEAU, [0.01] * 7, [0.1] * 7, False, INCONCLUSIVE),  # flat, but too few τ in the terminal phase
    ],
)
def test_claim12_mse_resnet(tree, nc1, perp, total, fast, expected):
    tree.run("cpu_resnet_mse", "a", {"metrics.csv": metrics(), "nc.csv": nc(nc1, perp=perp, total=total)}, wd=WD if fast else 0.0005, **(FAST if fast else {}))
    verdict, why, nums = tree.verdict(12)
    assert verdict == expected, why


def test_claim12_control_cross_entropy_must_not_pass(tree):
    tree.run("cpu_resnet_mse", "a", {"metrics.csv": metrics(), "nc.csv": nc(FALL_2000, perp=PERP_SMALL[0], total=PERP_SMALL[1])}, wd=WD, **FAST)
    tree.run("cpu_resnet_ce", "ce", {"metrics.csv": metrics(), "nc.csv": nc(FALL_2000, perp=[0.08] * 7, total=[0.1] * 7)}, wd=WD, loss__kind="cross_entropy", **FAST)
    r = tree.results()[12]
    assert (r.verdict, r.control_verdict) == (SUPPORTED, NOT_SUPPORTED)


# ----------------------------------------------------------------------------- the evidence scale


def test_scale_counts_runs_seeds_and_n(tree):
    for seed in (0, 1, 2):
        for init in (0.01, 5):
            tree.run("cpu_fig2", f"init={init}", {"metrics.csv": metrics(rho=flat(0.6))}, seed=seed, wd=WD, model__init_scale=init, **BN, **FAST)
    analyze(tree.out)
    r = evaluate_claims(load_tables(tree.out))[0]
    assert r.verdict == SUPPORTED and r.decide == ""
    assert r.runs == 6 and len(r.settings) == 2
    assert (r.scale.epochs, r.scale.n_train, r.scale.seeds, r.scale.settings) == (E, 96, "3", 2)
    assert "epochs 50" in r.scale.text() and "N 96" in r.scale.text()
    json.dumps({k: v for k, v in r.numbers.items()}, default=str)


def test_every_protocol_expands_into_valid_run_configs():
    from sqloss_nc.config import expand_sweep, read_yaml, set_dotted, validate

    for p in {p.key(): p for c in CLAIMS for s in SCALES for p in c.protocols[s]}.values():
        raw = read_yaml(ROOT / p.config)
        raw["name"] = p.experiment
        if p.sweep:
            raw["sweep"] = dict(p.sweep)
        for k, v in p.overrides.items():
            set_dotted(raw, k, v)
        if raw.get("data", {}).get("source") == "folder":
            raw["data"]["path"] = "unused"  # the data dir is given at run time
        runs = expand_sweep(validate(raw))
        assert len(runs) == p.n_runs, p.experiment  # every protocol names its sweep, so n_runs is its run count


@pytest.mark.parametrize(
    "identity, bias_eq35, expected, expected_control",
    [
        (0.01, 0.4, SUPPORTED, NOT_SUPPORTED),
        (0.5, 0.4, NOT_SUPPORTED, NOT_SUPPORTED),  # Eq. 35 and the residual pass, the exact identity does not
        (0.01, 0.01, NOT_DISCRIMINATING, SUPPORTED),  # a control that passes voids the evidence
    ],
)
def test_claim5_judges_the_stationarity_identity_and_its_control_must_not_pass(tree, identity, bias_eq35, expected, expected_control):
    """The identity row theory_checks writes for bias-free heads is one of claim 5's parts; the
    biased-head control (no identity row: theory_checks leaves it out there) is judged on the rest."""
    ev = theory(w_dot_muG_eq35=0.01, w_norm_sq_eq34=0.1, w_norm_sq_identity=identity)
    tree.run("cpu_nc", "a", {"metrics.csv": metrics(), "nc.csv": nc(COLLAPSE), "theory.csv": ev}, wd=WD)
    tree.run("cpu_nc_bias", "a", {"metrics.csv": metrics(), "nc.csv": nc(COLLAPSE), "theory.csv": theory(w_dot_muG_eq35=bias_eq35, w_norm_sq_eq34=0.1)}, wd=WD, model__bias=True)
    r = tree.results()[5]
    assert (r.verdict, r.control_verdict) == (expected, expected_control), (r.why, r.control_why)
    if expected != NOT_DISCRIMINATING:
        assert "identity is not in" not in r.why
