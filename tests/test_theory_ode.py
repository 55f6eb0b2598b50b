"""The toy model's ρ dynamics (theory.py) against closed forms, and `sqnc simulate`'s exit codes."""

import math

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from cli.simulate import register
from sqloss_nc.theory import (
    THEORY_COLUMNS,
    compare_rho_flow,
    flow_time,
    gd_characteristic,
    integrate_rho_flow,
    margin_rate,
    predicted_w_norm_sq,
    rho_equilibrium,
    rho_flow_rhs,
    simulate_gd_flow,
    simulate_gd_map,
    simulate_logistic,
    theory_checks,
    toy_weight_decay,
)

# ------------------------------------------------------------------ the ρ flow in project units


@pytest.mark.parametrize("output,c,k,lam_p", [("scalar", 2, 2.0, 0.005), ("onehot", 2, 0.5, 0.02), ("onehot", 3, 4 / 9, 0.01 * 9 / 4)])
def test_rate_and_effective_weight_decay(output, c, k, lam_p):
    assert margin_rate(output, c) == pytest.approx(k)
    assert toy_weight_decay(0.01, output, c) == pytest.approx(lam_p)
    # dρ/dt = k(μ − ρ(M + λ′)) vanishes at Eq. 11's ρ_eq
    rho_eq = rho_equilibrium(0.2, 0.05, lam_p)
    assert rho_flow_rhs(rho_eq, 0.2, 0.05, 0.01, output, c) == pytest.approx(0.0, abs=1e-12)


def test_scalar_flow_is_minus_gradient_of_the_objective():
    """Scalar head: L(ρ) + λ/2·ρ² = 1 − 2ρμ + ρ²M + λ/2·ρ² along fixed V; the flow is −d/dρ of it."""
    mu, M, lam = 0.3, 0.2, 0.05
    obj = lambda r: 1 - 2 * r * mu + r * r * M + lam / 2 * r * r
    r, h = 1.3, 1e-6
    assert rho_flow_rhs(r, mu, M, lam, "scalar") == pytest.approx(-(obj(r + h) - obj(r - h)) / (2 * h), rel=1e-8)


def test_onehot_c2_flow_is_exact_when_common_mode_is_kept():
    """ρρ̇ = −Σ<∂L/∂f, f> − λρ² for the mean-over-N·C loss on random outputs: the margin part
    plus the common-mode term mean a(1 − a)/(2ρ) is exact."""
    rng = np.random.default_rng(1)
    n, rho, lam = 50, 1.7, 0.03
    f = rng.normal(0.4, 0.5, size=(n, 2))
    y = rng.integers(0, 2, n)
    yo = np.eye(2)[y]
    exact = -np.sum(2.0 / (n * 2) * (f - yo) * f) / rho - lam * rho
    m = f[np.arange(n), y] - f[np.arange(n), 1 - y]
    a = f.sum(axis=1)
    mbar = m / rho
    got = rho_flow_rhs(rho, mbar.mean(), np.mean(mbar**2), lam, "onehot", 2, common=np.mean(a * (1 - a)))
    assert got == pytest.approx(exact, rel=1e-12)
    # and the loss splits exactly into the margin and common-mode parts
    loss = np.mean((f - yo) ** 2)
    assert loss == pytest.approx(0.25 * np.mean((1 - m) ** 2) + 0.25 * np.mean((1 - a) ** 2), rel=1e-12)


def test_flow_time_with_momentum():
    assert flow_time(0.01, 5, 0.9) == pytest.approx(0.5)
    assert flow_time(0.1, 10, 0.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        flow_time(0.1, 1, 1.0)


@pytest.mark.parametrize("output,c", [("scalar", 2), ("onehot", 2), ("onehot", 4)])
def test_rho_flow_constant_margins_matches_closed_form_and_converges(output, c):
    mu, M, lam, rho0 = 0.2, 0.05, 0.01, 0.1
    epochs = np.arange(0, 2001, 10)  # sparse rows: each interval is 10 epochs
    df = integrate_rho_flow(epochs, [mu] * len(epochs), [M] * len(epochs), rho0, 0.01, lam, 5, 0.9, output=output, num_classes=c)
    t = epochs * flow_time(0.01, 5, 0.9)
    np.testing.assert_allclose(df["t"], t, rtol=1e-12)
    lam_p, k = toy_weight_decay(lam, output, c), margin_rate(output, c)
    rho_eq = mu / (M + lam_p)
    closed = rho_eq + (rho0 - rho_eq) * np.exp(-k * (M + lam_p) * t)
    np.testing.assert_allclose(df["rho"], closed, rtol=1e-9)
    assert df["rho"].iloc[-1] == pytest.approx(rho_eq, rel=1e-9)


def test_rho_flow_with_linearly_varying_margin():
    """ρ̇ = k(μ0 + μ1 t) − Bρ: linear interpolation between rows is exact, so RK4 matches the
    closed form ρ_p(t) + (ρ0 − ρ_p(0))e^(−Bt), ρ_p = (A0 + A1 t)/B − A1/B²."""
    lam, M, rho0 = 0.01, 0.1, 2.0
    epochs = np.arange(0, 301, 3)
    t = epochs * 0.1 * 4  # lr 0.1, 4 steps/epoch, no momentum
    mu = 0.05 + 0.002 * t
    df = integrate_rho_flow(epochs, mu, [M] * len(epochs), rho0, 0.1, lam, 4, 0.0, output="scalar")
    k, B = 2.0, 2.0 * (M + lam / 2)
    a0, a1 = k * 0.05, k * 0.002
    rho_p = (a0 + a1 * t) / B - a1 / B**2
    closed = rho_p + (rho0 - rho_p[0]) * np.exp(-B * t)
    np.testing.assert_allclose(df["rho"], closed, rtol=1e-9)


def test_rho_flow_stiff_interval_is_stable():
    """A huge M over a long interval (stiff): the integrator substeps instead of blowing up."""
    df = integrate_rho_flow([0, 1], [10.0, 10.0], [1e4, 1e4], 5.0, 1.0, 0.0, 10, 0.0, output="scalar")
    assert df["rho"].iloc[-1] == pytest.approx(1e-3, rel=1e-6)


def _equilibrium_metrics(output="onehot", c=2, lam=0.01, mu=0.2, epochs=11, kappa=1.0):
    """Metrics rows sitting exactly at Eq. 11's equilibrium with equal margins (σ = 0, M = μ²)."""
    M = mu * mu
    lam_p = toy_weight_decay(lam, output, c)
    rho_l = kappa * mu / (kappa**2 * M + lam_p)
    rho = kappa * rho_l
    margin = 1.0 - rho * mu
    loss = margin * margin if output == "scalar" else margin * margin / 4.0  # f_0 + f_1 = 1: no common-mode loss
    n = epochs
    return pd.DataFrame(
        {
            "epoch": np.arange(n),
            "lr": [0.01] * n,
            "train_loss": [loss] * n,
            "rho": [rho] * n,
            "rho_last": [rho_l] * n,
            "margin_mean": [mu] * n,
            "margin_sq_mean": [M] * n,
        }
    )


def _config(output="onehot", c=2, lam=0.01, n_train=600, kind="square"):
    return {
        "model": {"output": output, "normalization": "batchnorm"},
        "data": {"classes": list(range(1, c + 1)), "train_per_class": n_train // c},
        "loss": {"kind": kind},
        "optim": {"lr": 0.01, "momentum": 0.9, "weight_decay": lam, "batch_size": 128},
    }


def test_compare_rho_flow_on_a_run_at_equilibrium_and_with_kappa():
    for kappa in (1.0, 3.0):
        m = _equilibrium_metrics(kappa=kappa)
        df = compare_rho_flow(m, _config())
        assert list(df.columns[:5]) == ["epoch", "t", "rho_recorded", "rho_predicted", "rel_error"]
        assert df.attrs["max_rel_error"] < 1e-10
        assert df.attrs["steps_per_epoch"] == 5 and df.attrs["lambda_prime"] == pytest.approx(0.02)
        np.testing.assert_allclose(df["rho_eq"], m["rho_last"], rtol=1e-12)
    with pytest.raises(ValueError, match="n_train"):
        compare_rho_flow(m, {"optim": {"weight_decay": 0.01}})
    with pytest.raises(ValueError, match="square"):
        compare_rho_flow(m, _config(kind="cross_entropy"))


# --------------------------------------------------------------------------- Eq. 51 (Figure 10)


@pytest.mark.parametrize("depth", [1, 2])
def test_logistic_simulation_matches_closed_form(depth):
    df = simulate_logistic(depth=depth, t_end=5.0 if depth == 2 else 800.0)
    assert list(df.columns) == ["t", "rho_numeric", "rho_closed_form"]
    rel = np.abs(df["rho_numeric"] - df["rho_closed_form"]) / df["rho_closed_form"]
    assert rel.max() < 1e-6
    assert np.all(np.diff(df["rho_numeric"]) > 0)  # sigmoidal growth from a small init
    assert df["rho_numeric"].iloc[-1] == pytest.approx(100.0, rel=1e-3)  # ρ_0 = Σyf/Σf²


def test_logistic_deeper_net_has_no_closed_form_but_still_saturates():
    df = simulate_logistic(depth=3, t_end=5.0)
    assert df["rho_closed_form"].isna().all()
    assert df["rho_numeric"].iloc[-1] == pytest.approx(100.0, rel=1e-3)


# ----------------------------------------------------------------------- Eq. 23 (GD, section 5)


def _peaks(t, x):
    i = np.flatnonzero((x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:])) + 1
    # parabolic refinement of each local maximum
    out_t, out_x = [], []
    for j in i:
        y0, y1, y2 = x[j - 1], x[j], x[j + 1]
        d = y0 - 2 * y1 + y2
        s = 0.5 * (y0 - y2) / d if d else 0.0
        out_t.append(t[j] + s * (t[1] - t[0]))
        out_x.append(y1 - 0.25 * (y0 - y2) * s)
    return np.array(out_t), np.array(out_x)


def test_gd_ode_shows_damped_oscillations_at_the_characteristic_rate_and_frequency():
    eta, sum_f2, lam = 125.0, 0.01, 0.01  # ηβ = 5: underdamped, ω/γ = 3
    df = simulate_gd_flow(sum_yf=1.0, sum_f2=sum_f2, lam=lam, eta=eta, rho0=0.01, t_end=1500.0, points=6001)
    ch = gd_characteristic(eta, sum_f2, lam)
    assert ch["underdamped"] and ch["gamma"] == pytest.approx(1 / eta)
    assert ch["omega"] == pytest.approx(math.sqrt(2 * eta * 0.04 - 1) / eta)
    np.testing.assert_allclose(df["rho"], df["rho_closed_form"], rtol=1e-8, atol=1e-8)
    x = df["rho"].to_numpy() - df.attrs["rho_eq"]
    tp, xp = _peaks(df["t"].to_numpy(), x)
    assert len(tp) >= 3
    period = 2 * math.pi / ch["omega"]
    np.testing.assert_allclose(np.diff(tp), period, rtol=2e-3)
    np.testing.assert_allclose(xp[1:] / xp[:-1], math.exp(-ch["gamma"] * period), rtol=1e-2)
    # η → 0 is the gradient flow: no oscillation
    assert gd_characteristic(1.0, sum_f2, lam)["underdamped"] is False


def test_gd_ode_overdamped_matches_closed_form_and_gd_map_factor():
    df = simulate_gd_flow(eta=5.0, t_end=200.0, points=401)  # ηβ = 0.2 < 1/2
    assert df.attrs["underdamped"] is False
    np.testing.assert_allclose(df["rho"], df["rho_closed_form"], rtol=1e-8)
    gd = simulate_gd_map(eta=40.0, steps=12)
    factor = gd_characteristic(40.0, 0.01, 0.01)["map_factor"]
    np.testing.assert_allclose(gd["rho"] - 50.0, (0.01 - 50.0) * factor ** gd["step"], rtol=1e-9, atol=1e-9)
    assert np.all(np.sign(np.diff(gd["rho"]))[:-1] != np.sign(np.diff(gd["rho"]))[1:])  # period-2 oscillation


# -------------------------------------------------------------------------------- theory_checks


@pytest.mark.parametrize("output", ["onehot", "scalar"])
def test_theory_checks_at_exact_equilibrium(output):
    lam, c = 0.01, 2
    m = _equilibrium_metrics(output=output, lam=lam)
    rho, mu = m["rho"].iloc[-1], m["margin_mean"].iloc[-1]
    nc = None
    if output == "onehot":
        eps = 0.5 * (1 - rho * mu)  # Assumption 1 for C = 2: ε = (1 − m)/2
        nc = pd.DataFrame(
            {
                "epoch": [5, 10],
                "eps_gap": [0.3, eps],
                "w_norm_sq_mean": [1.0, rho**2 / 2],
                "w_norm_sq_eq34": [1.0, predicted_w_norm_sq(eps, lam, c)],
            }
        )
    checks = theory_checks(m, _config(output=output, lam=lam), nc)
    assert list(checks.columns) == THEORY_COLUMNS
    expected = {"rho_eq", "loss_identity", "margin_gap_lemma2", "rho_flow", "rho_flow_late"}
    if output == "onehot":
        expected |= {"eps_gap_lemma2", "w_norm_sq_eq34"}  # the toy ρ_eq and Eq. 34 agree
    # The stationarity identity is a statement about the head's loss, which this toy row set
    # does not model (its train_loss is the toy's); it is tested in test_theory.py.
    checks = checks[checks["check"] != "w_norm_sq_identity"]
    assert set(checks["check"]) == expected
    assert checks["rel_error"].max() < 1e-9, checks.to_string()


def test_theory_checks_report_the_known_error_when_perturbed():
    m = _equilibrium_metrics()
    rho_eq, mu, M = m["rho_last"].iloc[-1], m["margin_mean"].iloc[-1], m["margin_sq_mean"].iloc[-1]
    last = m.index[-1]
    m.loc[last, ["rho", "rho_last"]] = 1.1 * rho_eq  # ρ 10% above ρ_eq (μ, M unchanged)
    m.loc[last, "train_loss"] += 0.01  # some common-mode loss on top of the margin part
    checks = theory_checks(m, _config()).set_index("check")
    assert checks.loc["rho_eq", "predicted"] == pytest.approx(rho_eq, rel=1e-12)
    assert checks.loc["rho_eq", "rel_error"] == pytest.approx(0.1, rel=1e-9)
    rho = 1.1 * rho_eq
    margin_part = (1 - 2 * rho * mu + rho * rho * M) / 4
    assert checks.loc["loss_identity", "predicted"] == pytest.approx(margin_part, rel=1e-12)
    assert checks.loc["loss_identity", "rel_error"] == pytest.approx(abs(m.loc[last, "train_loss"] - margin_part) / margin_part, rel=1e-9)
    # 1 − ρμ against Lemma 2's gap, which ρ does not enter
    lam_p = 0.02
    gap = lam_p / (mu * mu) / (1 + lam_p / (mu * mu))
    assert checks.loc["margin_gap_lemma2", "rel_error"] == pytest.approx(abs(1 - rho * mu - gap) / gap, rel=1e-9)


def test_theory_checks_skip_other_losses_and_unknown_n():
    m = _equilibrium_metrics()
    assert theory_checks(m, _config(kind="cross_entropy")).empty
    cfg = _config()
    cfg["data"]["train_per_class"] = None
    assert "rho_flow" not in set(theory_checks(m, cfg)["check"])
    assert "rho_flow" in set(theory_checks(m, cfg, n_train=600)["check"])


# --------------------------------------------------------------------------------- the command


@pytest.fixture
def app():
    a = typer.Typer()

    @a.callback()
    def _main() -> None:
        """test app"""

    register(a)
    return a


runner = CliRunner()


def _stderr_lines(result):
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_cli_logistic_and_gd_write_csvs(app, tmp_path):
    r = runner.invoke(app, ["simulate", "--logistic", "--gd", "--out", str(tmp_path / "sims"), "--points", "101"])
    assert r.exit_code == 0, r.output
    lg = pd.read_csv(tmp_path / "sims" / "logistic.csv")
    assert list(lg.columns) == ["t", "rho_numeric", "rho_closed_form"] and len(lg) == 101
    assert list(pd.read_csv(tmp_path / "sims" / "gd_flow.csv").columns)[:2] == ["t", "rho"]
    assert list(pd.read_csv(tmp_path / "sims" / "gd_map.csv").columns) == ["step", "t", "rho"]


def test_cli_rho_flow_on_a_run_dir(app, tmp_path):
    run = tmp_path / "exp" / "seed=0"
    run.mkdir(parents=True)
    _equilibrium_metrics().to_csv(run / "metrics.csv", index=False)
    (run / "config.yaml").write_text(yaml.safe_dump(_config()))
    (run / "status.json").write_text('{"state": "done", "data": {"n_train": 600}}')
    r = runner.invoke(app, ["simulate", "--rho-flow", str(run)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(run / "rho_flow.csv")
    assert {"epoch", "rho_recorded", "rho_predicted", "rel_error"} <= set(df.columns)
    assert df["rel_error"].max() < 1e-9


@pytest.mark.parametrize(
    "args",
    [
        ["simulate"],  # no mode
        ["simulate", "--rho-flow", "/nonexistent/run"],
        ["simulate", "--gd", "--eta", "abc"],
        ["simulate", "--gd", "--eta", "-1"],
        ["simulate", "--logistic", "--depth", "0"],
        ["simulate", "--logistic", "--t-end", "nan"],
    ],
)
def test_cli_bad_input_exits_2_with_one_line(app, tmp_path, args):
    r = runner.invoke(app, args + (["--out", str(tmp_path)] if len(args) > 1 else []))
    assert r.exit_code == 2
    assert r.exception is None or isinstance(r.exception, SystemExit)
    lines = _stderr_lines(r)
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr


def test_cli_rho_flow_on_a_dir_without_needed_columns(app, tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,rho\n0,1.0\n")
    r = runner.invoke(app, ["simulate", "--rho-flow", str(tmp_path)])
    assert r.exit_code == 2
    assert len(_stderr_lines(r)) == 1 and "margin_mean" in r.stderr
