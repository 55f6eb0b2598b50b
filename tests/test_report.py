"""`sqnc report OUT` (`sqloss_nc.report`): analysis freshness, the files it writes, the published
setups against their numbers, the link from the figures' index, and the command's exit codes."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest
from fake_runs import config, write_run
from test_claims import BN, E, FAST, WD, flat, metrics
from typer.testing import CliRunner

from cli.main import app
from sqloss_nc.claims import load_tables
from sqloss_nc.report import PUBLISHED, analysis_is_stale, compare_published, make_report

runner = CliRunner()


def fig2_tree(out):
    for init in (0.01, 5):
        write_run(out / "fig2_init_wd" / f"init={init}_seed=0", config("fig2_init_wd", 0, E, wd=WD, model__init_scale=init, **BN, **FAST), {"metrics.csv": metrics(rho=flat(0.6))})


def test_report_analyzes_when_stale_and_writes_the_files(tmp_path):
    out = tmp_path / "out"
    fig2_tree(out)
    assert analysis_is_stale(out)  # no tables yet
    rep = make_report(out, figures=False)
    assert rep.analyzed and not analysis_is_stale(out)
    assert {p.name for p in rep.files.values()} == {"claims.md", "claims.html", "claims.csv"}
    csv = pd.read_csv(out / "report" / "claims.csv")
    from sqloss_nc.claims import CLAIMS

    assert list(csv["number"]) == list(range(1, len(CLAIMS) + 1))
    assert csv.loc[0, "verdict"] == "supported" and csv.loc[1, "verdict"] == "inconclusive"  # no WD-0 runs for claim 2
    assert csv.loc[0, "control_verdict"] == "inconclusive"  # claim 1's control (WD 0) has no runs of two inits here
    assert (csv.loc[2:, "verdict"].isin(["no runs", "inconclusive"])).all()
    # every claim left undecided names the command that would decide it
    assert (csv.loc[1:, "decide"] == [f"sqnc reproduce {out} --claims {c.id}" for c in CLAIMS[1:]]).all()
    md = (out / "report" / "claims.md").read_text()
    assert "**supported**" in md and "## 1. rho_wd_init" in md and "epochs 50" in md
    assert "- runs used: 2 runs in 2 settings" in md and "1 runs" not in md and "cpu, evidence and control: `cpu_fig2`" in md
    assert "## Published setups" in md
    # A second call finds the tables current; a newer run file makes them stale again.
    assert not make_report(out, figures=False).analyzed
    later = time.time() + 5
    os.utime(out / "fig2_init_wd" / "init=5_seed=0" / "metrics.csv", (later, later))
    assert analysis_is_stale(out)
    assert make_report(out, figures=False).analyzed


def test_report_embeds_figures_and_is_linked_from_the_index(tmp_path):
    out = tmp_path / "out"
    fig2_tree(out)
    rep = make_report(out)  # draws the figures too
    assert rep.figures_drawn
    html = (out / "report" / "claims.html").read_text()
    assert '<img src="../figures/fig14_fig2_init_wd.png"' in html  # fig2 needs two WDs; fig14 is claim 1's other figure
    md = (out / "report" / "claims.md").read_text()
    section = md.split("## 1. rho_wd_init")[1].split("## 2.")[0]
    assert "no figure" not in section  # the figure exists: the report does not say "no figure drawn"
    assert "fig12_fig2_init_wd" not in html  # not one of claim 1's figures
    index = (out / "figures" / "index.html").read_text()
    assert index.count("../report/claims.html") == 1
    make_report(out)  # the link is added once
    assert (out / "figures" / "index.html").read_text().count("../report/claims.html") == 1
    from sqloss_nc.figures import draw_figures

    draw_figures(out, only=["fig14"])  # a redraw keeps it
    assert (out / "figures" / "index.html").read_text().count("../report/claims.html") == 1


def test_published_numbers_against_a_shortened_run(tmp_path):
    out = tmp_path / "out"
    setup = PUBLISHED[0]
    ep = np.arange(61)
    m = pd.DataFrame({"epoch": ep, "train_acc": np.minimum(1.0, 0.1 + ep / 50), "test_acc": 0.5 + 0 * ep, "rho": 1.0})
    ncdf = pd.DataFrame({"epoch": [0, 20, 45, 60], "nc1": 1.0, "sigma_w_fro": [0.2, 0.05, 0.02, 0.01], "sigma_w_fro_test": [0.2, 0.15, 0.12, 0.11]})
    write_run(out / setup.experiment / "seed=0", config(setup.experiment, 0, 60), {"metrics.csv": m, "nc.csv": ncdf})
    make_report(out, figures=False)
    comps = {(c.number.column, c.number.epoch): c for c in compare_published(load_tables(out))[setup.experiment]}
    assert comps[("train_acc", 50)].measured == pytest.approx(1.0) and comps[("train_acc", 50)].at_epoch == 50
    assert comps[("test_acc", 200)].at_epoch == 60 and "shortened" in comps[("test_acc", 200)].note
    assert comps[("sigma_w_fro", 0)].measured == pytest.approx(0.2)
    assert comps[("sigma_w_fro", 50)].measured == pytest.approx(0.02) and comps[("sigma_w_fro", 50)].at_epoch == 45  # nearest before
    assert comps[("sigma_w_fro_test", None)].measured == pytest.approx(0.11)
    other = compare_published(load_tables(out))[PUBLISHED[1].experiment]
    assert all(c.note == "no runs" for c in other)


def test_report_command(tmp_path):
    out = tmp_path / "out"
    fig2_tree(out)
    res = runner.invoke(app, ["report", str(out), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert "rho_wd_init" in res.output and "supported" in res.output and "claims.md" in res.output
    assert "sqnc reproduce" in res.output
    bad = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert bad.exit_code == 2
    assert "is not a folder" in bad.output and "Traceback" not in bad.output


def test_console_table_reads_in_80_columns(tmp_path):
    from rich.console import Console

    from sqloss_nc.report import claims_table

    out = tmp_path / "out"
    fig2_tree(out)
    rep = make_report(out, figures=False)
    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    console.print(claims_table(rep))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for r in rep.results:  # every claim's label on one line, whole (rich's "fold" cut it mid-word)
        assert f"{r.claim.number}. {r.claim.id}" in text, r.claim.id
    assert "rho_wd_init" in text and "rho_lagrange_init" in text
