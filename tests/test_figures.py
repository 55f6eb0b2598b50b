"""`sqnc figures`: analysis tables -> PNG/PDF/index.html, on the session's tiny sweep (shared with
test_analysis.py) and on trees fabricated from it for the figures the sweep cannot feed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_analysis import fresh_copy, make_sweep, sqnc

from sqloss_nc.analysis import analyze
from sqloss_nc.figures import MissingAnalysisError, draw_figures

# What the 2 (init) x 2 (WD) x 2 (seed) sweep supports.
EXPECTED = {
    "fig2_tiny",
    "fig3_tiny",
    "fig4_tiny",
    "fig6_tiny",
    "fig12_tiny_wd-0",
    "fig12_tiny_wd-0.01",
    "fig14_tiny_wd-0.01",
    "fig15_tiny_wd-0",
    "fig16_tiny_wd-0.01",
    "fig17_tiny_wd-0",
    # Issues 13/14 (the sweep writes spectra, update norms, nc_layers.csv and class_gram.csv).
    "ncpanel_tiny",
    "decomp_tiny",
    "spectra_tiny_init-0.01_wd-0",
    "spectra_tiny_init-0.01_wd-0.01",
    "spectra_tiny_init-5_wd-0",
    "spectra_tiny_init-5_wd-0.01",
    "rank_tiny_init-0.01",
    "rank_tiny_init-5",
    "updates_tiny",
    "layerwise_tiny",
    "gram_tiny_init-0.01_wd-0",
    "gram_tiny_init-0.01_wd-0.01",
    "gram_tiny_init-5_wd-0",
    "gram_tiny_init-5_wd-0.01",
}


@pytest.fixture(scope="session")
def sweep_out(tmp_path_factory) -> Path:
    return make_sweep(tmp_path_factory)


def assert_figure_files(figdir: Path, names: set[str]) -> None:
    index = (figdir / "index.html").read_text()
    for name in names:
        png, pdf = figdir / f"{name}.png", figdir / f"{name}.pdf"
        assert png.stat().st_size > 5000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert pdf.stat().st_size > 2000 and pdf.read_bytes()[:5] == b"%PDF-", name
        assert f'src="{name}.png"' in index, name


def test_figures_from_the_sweep_via_the_cli(sweep_out, tmp_path):
    out = fresh_copy(sweep_out, tmp_path / "out")
    assert sqnc("analyze", out).exit_code == 0
    res = sqnc("figures", out)
    assert res.exit_code == 0, res.output
    figdir = out / "figures"
    drawn = {p.stem for p in figdir.glob("*.png")}
    assert drawn == EXPECTED
    assert_figure_files(figdir, EXPECTED)
    assert {p.stem for p in figdir.glob("*.pdf")} == EXPECTED
    # Figures the sweep cannot feed are named with the config that produces their data.
    out_text = " ".join(res.output.split())
    for kind, config in (("fig5", "fig4_margin_hist.yaml"), ("fig11", "fig11_random_labels.yaml"), ("fig13", "fig11_random_labels.yaml")):
        assert f"skipped {kind}:" in out_text and config in out_text, kind
    assert "skipped fig10:" in out_text and "simulations" in out_text
    index = (figdir / "index.html").read_text()
    assert "fig5" in index and "Not drawn" in index
    assert not list(figdir.glob(".*")), "temporary files left behind"


def test_figures_before_analyze_is_a_clear_error(sweep_out, tmp_path):
    out = fresh_copy(sweep_out, tmp_path / "out")
    with pytest.raises(MissingAnalysisError, match="sqnc analyze"):
        draw_figures(out)
    res = sqnc("figures", out)
    assert res.exit_code == 2 and "sqnc analyze" in res.stderr and "Traceback" not in res.output
    assert len([line for line in res.stderr.splitlines() if line.strip()]) == 1
    assert not (out / "figures").exists()
    (out / "analysis").mkdir()
    res = sqnc("figures", out)  # an analysis folder without tables is no better
    assert res.exit_code == 2 and "sqnc analyze" in res.stderr


def fabricated_tree(sweep_out: Path, out: Path) -> Path:
    """Runs relabelled as a label-noise experiment, one run with per-step files, and a toy-model
    simulation: the inputs of Figs 5, 10, 11 and 13, which the tiny sweep does not produce."""
    src = sweep_out / "tiny"
    noisy = out / "noisy"
    for noise, wd_src in ((0.0, "0.01"), (0.5, "0")):
        for seed in (0, 1):
            dst = noisy / f"noise={noise:g}_seed={seed}"
            shutil.copytree(src / f"init=0.01_wd={wd_src}_seed={seed}", dst, ignore=shutil.ignore_patterns("*.keras", "*.npz"))
            cfg = yaml.safe_load((dst / "config.yaml").read_text())
            cfg["name"], cfg["data"]["label_noise"], cfg["optim"]["weight_decay"] = "noisy", noise, 0.01
            (dst / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    early = out / "early" / "seed=0"
    shutil.copytree(src / "init=0.01_wd=0.01_seed=0", early, ignore=shutil.ignore_patterns("*.keras", "*.npz"))
    rng = np.random.default_rng(0)
    steps = np.arange(0, 50, 10)
    pd.DataFrame({"step": steps, "rho": 0.01 * np.exp(steps / 20)}).to_csv(early / "steps.csv", index=False)
    m = pd.DataFrame(
        [(s, i, i % 2, x, x / 2) for s in steps for i, x in enumerate(rng.normal(s / 50, 0.1, 64))],
        columns=["step", "index", "label", "margin", "margin_normalized"],
    )
    m.to_csv(early / "margins_steps.csv", index=False)
    (out / "simulations").mkdir()
    t = np.linspace(0, 10, 101)
    rho = 100 / (1 + 9999 * np.exp(-2 * t))
    # The columns `sqnc simulate --logistic` writes; gd_map.csv (Eq. 23) is not Figure 10.
    pd.DataFrame({"t": t, "rho_numeric": rho, "rho_closed_form": rho}).to_csv(out / "simulations" / "logistic.csv", index=False)
    pd.DataFrame({"step": [0, 1], "t": [0.0, 40.0], "rho": [0.01, 0.5]}).to_csv(out / "simulations" / "gd_map.csv", index=False)
    pd.DataFrame({"check": ["rho_eq", "eq34"], "measured": [1.0, 2.0], "predicted": [1.1, 2.0]}).to_csv(early / "theory.csv", index=False)
    return out


def test_figures_for_label_noise_steps_and_simulation(sweep_out, tmp_path):
    out = fabricated_tree(sweep_out, tmp_path / "out")
    res = analyze(out)
    assert set(res.summary["setting"]) == {"noise=0", "noise=0.5", "early"}
    assert not res.simulations.empty and not res.margins_steps_hist.empty and not res.steps.empty
    assert set(res.simulations["source"]) == {"logistic", "gd_map"}
    theory = pd.read_csv(out / "analysis" / "theory.csv")
    early_theory = theory[theory["experiment"] == "early"]
    assert early_theory["check"].tolist() == ["rho_eq", "eq34"] and set(early_theory["run_id"]) == {"seed=0"}
    results = draw_figures(out)
    drawn = {r.name for r in results if not r.skipped}
    assert {"fig5_early", "fig10_simulation", "fig11_noisy", "fig13_noisy"} <= drawn
    assert_figure_files(out / "figures", drawn)
    failed = [r for r in results if r.skipped and "failed to draw" in r.skipped]
    assert not failed, failed

    # Redrawing one kind after its data is gone removes its stale figure and keeps the others
    # (files and index entries).
    shutil.rmtree(out / "simulations")
    analyze(out)
    res = sqnc("figures", out, "--only", "fig10,fig5")
    assert res.exit_code == 0, res.output
    assert "skipped fig10:" in " ".join(res.output.split()) and "drew fig5_early" in res.output
    assert not (out / "figures" / "fig10_simulation.png").exists()
    index = (out / "figures" / "index.html").read_text()
    assert "fig10_simulation.png" not in index
    assert_figure_files(out / "figures", drawn - {"fig10_simulation"})
    assert sqnc("figures", out, "--only", "fig99").exit_code == 2
