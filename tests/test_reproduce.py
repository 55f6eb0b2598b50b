"""`sqnc reproduce`: the budget, the registry's protocols, the plan's arithmetic, the budget's
choice, dry runs, a real end-to-end reproduction on a fake registry, and its rerun.

The registry here is a fake of this file's own (claims with `protocols` on tiny synthetic MLP
configs), so these tests do not depend on the real claims' protocols; the calibration is injected
(`Cost`) except in the one test that measures it.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from sqloss_nc import reproduce
from sqloss_nc.calibration import Cost, calibration_config, measure_cost, run_seconds
from sqloss_nc.errors import UserError
from sqloss_nc.protocol import Protocol
from sqloss_nc.reproduce import (
    GPU_SPEEDUP,
    RegistryError,
    make_plan,
    makespan,
    parse_budget,
    plan_json,
    plan_table,
    protocol_runs,
    run_plan,
    select_claims,
    unique_protocols,
)

TINY = {
    "name": "tiny",
    "data": {"source": "synthetic", "classes": [0, 1], "train_per_class": 32, "test_per_class": 8, "synthetic": {"shape": [6]}},
    "model": {"arch": "mlp", "widths": [8], "normalization": "none", "init_scale": 1.0},
    "optim": {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01, "batch_size": 16},
    "track": {"nc_epochs": [0], "margin_epochs": "none"},
}
# N = 64, batch 16: 4 steps per epoch.
COST = Cost(step_s=0.5, nc_s=2.0, host_s=3.0, n_cal=32)


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return str(path)  # absolute: the planner joins it to the repository root, which keeps it


def claim(number, cid, *protocols):
    return SimpleNamespace(number=number, id=cid, sentence=f"claim {cid}", protocols={"cpu": tuple(protocols), "paper": tuple(protocols)})


def protocols(cfg):
    ev = Protocol("tiny_ev", cfg, steps=13, rationale="evidence", sweep={"seed": [0, 1]})
    ct = Protocol("tiny_ct", cfg, steps=8, rationale="control", overrides={"optim.weight_decay": 0.0}, role="control")
    return ev, ct


def every_cost(monkeypatch, cost=COST):
    """Every kind of run costs `cost` (no calibration run); records whether one was asked for."""
    asked = []

    def fake(configs, threads=None, console=None, startup=False):
        asked.append(len(configs))
        out = {k: cost for k in configs}
        if startup:
            out["startup"] = Cost(0.0, 0.0, 5.0, 0)
        return out

    monkeypatch.setattr(reproduce, "measure_costs", fake)
    monkeypatch.setenv("SQNC_CACHE_DIR", tempfile.mkdtemp(prefix="sqnc-cache-"))  # never the user's cache
    return asked


# ----------------------------------------------------------------------------- user input


@pytest.mark.parametrize(
    "text,seconds", [("3h", 10800), ("20m", 1200), ("90s", 90), ("1h30m", 5400), ("1.5h", 5400), ("2h0m30s", 7230), (" 45M ", 2700)]
)
def test_budget_parses_durations(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "3", "h", "3x", "30m1h", "1h1h", "0m", "-1h", "1h 30", "1d"])
def test_budget_refuses_what_is_not_a_duration(text):
    with pytest.raises(UserError, match="--budget"):
        parse_budget(text)


def test_claims_are_selected_by_id_or_number_in_registry_order():
    reg = (claim(1, "a"), claim(2, "b"), claim(3, "c"))
    assert [c.id for c in select_claims("c,1", reg)] == ["a", "c"]
    assert len(select_claims(None, reg)) == 3
    with pytest.raises(UserError, match="unknown claim 'zz'; valid: 1 a, 2 b, 3 c"):
        select_claims("a,zz", reg)


# ----------------------------------------------------------------------------- registry


def test_one_experiment_is_planned_once_and_two_protocols_under_one_name_are_refused(tiny_config):
    ev, ct = protocols(tiny_config)
    same = Protocol("tiny_ev", tiny_config, steps=13, rationale="another wording", sweep={"seed": [0, 1]})
    assert list(unique_protocols((claim(1, "a", ev, ct), claim(2, "b", same)), "cpu")) == ["tiny_ev", "tiny_ct"]
    longer = Protocol("tiny_ev", tiny_config, steps=14, rationale="evidence", sweep={"seed": [0, 1]})
    with pytest.raises(RegistryError, match="tiny_ev.*claims a and b"):
        unique_protocols((claim(1, "a", ev), claim(2, "b", longer)), "cpu")


def test_epochs_are_the_fewest_that_make_the_protocols_steps(tiny_config, tmp_path):
    datasets = {}
    for steps, epochs in ((12, 3), (13, 4), (1, 1), (16, 4)):  # N 64 / batch 16 = 4 steps per epoch
        runs = protocol_runs(Protocol("e", tiny_config, steps=steps, rationale=""), tmp_path, datasets)
        assert [s.config.optim.epochs for s, _ in runs] == [epochs]
    gd = protocol_runs(Protocol("g", tiny_config, steps=7, rationale="", overrides={"optim.full_batch": True}), tmp_path, datasets)
    assert gd[0][0].config.optim.epochs == 7  # full-batch GD: one step per epoch
    runs = protocol_runs(Protocol("s", tiny_config, steps=5, rationale="", sweep={"optim.batch_size": [16, 64]}), tmp_path, datasets)
    assert {s.run_id: s.config.optim.epochs for s, _ in runs} == {"batch_size=16_seed=0": 2, "batch_size=64_seed=0": 5}
    assert all(p == tmp_path / "s" / s.run_id for s, p in runs) and runs[0][0].config.name == "s"


def test_an_invalid_protocol_is_a_registry_error(tiny_config, tmp_path):
    with pytest.raises(RegistryError, match="optim.lr"):
        protocol_runs(Protocol("bad", tiny_config, steps=4, rationale="", overrides={"optim.lr": -1}), tmp_path, {})


# ----------------------------------------------------------------------------- estimates


def test_run_seconds_model():
    # 6 + 8000·0.03 + 20·0.5·1000/512, by hand: 6 + 240 + 19.53125
    assert run_seconds(Cost(0.03, 0.5, 6.0, 512), 8000, 1000, 20) == pytest.approx(265.53125)
    assert run_seconds(Cost(0.03, 0.5, 6.0, 512), 8000, 1000, 20, done_fraction=0.5) == pytest.approx(6 + 259.53125 / 2)
    assert run_seconds(Cost(0.03, 0.5, 6.0, 512), 8000, 1000, 20, done_fraction=1.0) == 0.0
    # below the calibration's N an NC measurement is not taken cheaper: 6 + 240 + 20·0.5
    assert run_seconds(Cost(0.03, 0.5, 6.0, 512), 8000, 100, 20) == pytest.approx(256.0)


def test_makespan_packs_longest_first():
    assert makespan([3, 3, 2, 2, 2], 2) == 7.0
    assert makespan([5, 1, 1], 1) == 7.0
    assert makespan([5, 1, 1], 4) == 5.0


def test_plan_estimate_from_an_injected_calibration(tiny_config, tmp_path, monkeypatch):
    asked = every_cost(monkeypatch)
    ev, ct = protocols(tiny_config)
    plan = make_plan(tmp_path / "out", scale="cpu", claims=(claim(1, "a", ev, ct),))
    assert asked == [1]  # one kind of run: one calibration
    # evidence: 13 steps -> 4 epochs = 16 steps; NC at epoch 0 only; N 64 = 2 x n_cal:
    # 3 + 16·0.5 + 1·2·64/32 = 15 s per run, 2 runs. Control: 8 steps = 2 epochs: 3 + 4 + 4 = 11 s.
    assert [r.estimate_s for r in plan.experiments["tiny_ev"].runs] == [15.0, 15.0]
    assert plan.experiments["tiny_ct"].runs[0].estimate_s == 11.0
    assert plan.estimate_s == 41.0 and plan.remaining_s == 41.0
    assert plan.claims[0].estimate_s == 41.0 and plan.gpu_estimate_s is None
    # elapsed τ: 16 steps · η·λ/(1−β) = 16 · 0.05·0.01/0.1 = 0.08; the control has no WD
    assert plan.experiments["tiny_ev"].to_dict()["elapsed_tau"] == pytest.approx(0.08)
    assert plan.experiments["tiny_ct"].to_dict()["elapsed_tau"] is None
    # two workers: 15 | 15 + 11 on the busier one, plus a worker's start (5 s) and its data load
    # (as long as the planner's: a 64-sample synthetic set, well under a second)
    plan2 = make_plan(tmp_path / "out", claims=(claim(1, "a", ev, ct),), jobs=2)
    assert 26.0 + 5.0 < plan2.estimate_s < 26.0 + 5.0 + 1.0


def test_paper_scale_gives_a_labelled_gpu_estimate(tiny_config, tmp_path, monkeypatch):
    every_cost(monkeypatch)
    ev, ct = protocols(tiny_config)
    plan = make_plan(tmp_path / "out", scale="paper", claims=(claim(1, "a", ev, ct),))
    # per run: the fixed 3 s, the rest GPU_SPEEDUP times faster: 2·(3 + 12/8) + (3 + 8/8)
    assert plan.gpu_estimate_s == pytest.approx(2 * (3 + 12 / GPU_SPEEDUP) + (3 + 8 / GPU_SPEEDUP))
    doc = plan_json(plan)
    assert doc["gpu_estimate_s"] == pytest.approx(plan.gpu_estimate_s) and "not measured" in doc["gpu_assumption"]
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(plan_table(plan))
    assert "GPU estimate (not measured)" in console.export_text()


def test_over_budget_leaves_whole_claims_out_in_registry_order(tiny_config, tmp_path, monkeypatch):
    every_cost(monkeypatch)
    ev, ct = protocols(tiny_config)
    big = Protocol("tiny_big", tiny_config, steps=400, rationale="long", sweep={"seed": [0, 1]})
    reg = (claim(1, "a", ev, ct), claim(2, "big", big), claim(3, "c", ct))
    # a: 41 s; big: 2·(3 + 400·0.5 + 2·2) = 414 s; c reads a's control: 0 s more
    plan = make_plan(tmp_path / "out", budget_s=60, claims=reg)
    assert [c.claim.id for c in plan.included] == ["a", "c"]
    assert plan.claims[1].left_out.startswith("over budget") and plan.claims[2].estimate_s == 0.0
    assert plan.estimate_s == 41.0
    assert all(r.steps >= 400 for r in plan.experiments["tiny_big"].runs)  # never shortened
    doc = plan_json(plan)
    assert [c["included"] for c in doc["claims"]] == [True, False, True] and doc["budget_s"] == 60
    # 30 s: a (41 s) is left out, but c alone (a's control, 11 s) still fits
    assert [c.claim.id for c in make_plan(tmp_path / "out", budget_s=30, claims=reg).included] == ["c"]
    with pytest.raises(UserError, match="fits no claim; the cheapest needs about 0.2 min"):
        make_plan(tmp_path / "out", budget_s=10, claims=reg)


# ----------------------------------------------------------------------------- the CLI


def sqnc(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def fake_registry(monkeypatch, *claims):
    """The planner's registry is `claims` (`sqnc report` keeps the real one)."""
    monkeypatch.setattr(reproduce, "_registry", lambda given=None: tuple(given) if given is not None else tuple(claims))


def one_line_error(res, code=2):
    assert res.exit_code == code, res.output
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args,words",
    [
        (["--budget", "3x"], "--budget: '3x' is not a duration"),
        (["--claims", "nope"], "unknown claim 'nope'; valid: 1 a"),
        (["--scale", "huge"], "--scale: 'huge' is not a scale"),
    ],
)
def test_cli_mistakes_exit_2_with_one_line(args, words, tiny_config, tmp_path, monkeypatch):
    every_cost(monkeypatch)
    fake_registry(monkeypatch, claim(1, "a", *protocols(tiny_config)))
    assert words in one_line_error(sqnc("reproduce", tmp_path / "out", "--dry-run", *args))
    assert not (tmp_path / "out").exists()


def test_cli_missing_data_dir_exits_2(tmp_path, monkeypatch):
    every_cost(monkeypatch)
    folder = tmp_path / "folder.yaml"
    folder.write_text(yaml.safe_dump({**TINY, "data": {"source": "folder", "classes": [0, 1], "train_per_class": 4, "test_per_class": 2}}))
    fake_registry(monkeypatch, claim(1, "a", Protocol("f", str(folder), steps=4, rationale="")))
    line = one_line_error(sqnc("reproduce", tmp_path / "out", "--dry-run", "--data-dir", tmp_path / "missing.zip"))
    assert "missing.zip" in line and not (tmp_path / "out").exists()


def test_cli_dry_run_plans_and_writes_nothing_to_out(tiny_config, tmp_path, monkeypatch):
    every_cost(monkeypatch)
    fake_registry(monkeypatch, claim(1, "a", *protocols(tiny_config)), claim(2, "b"))
    out = tmp_path / "out"
    res = sqnc("reproduce", out, "--dry-run", "--budget", "20m", "--json", tmp_path / "plan.json")
    assert res.exit_code == 0, res.output
    assert not out.exists()
    assert "tiny_ev" in res.stdout and "tiny_ct" in res.stdout and "no protocol at scale cpu" in res.stdout
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert doc["budget_s"] == 1200 and doc["estimate_s"] == 41.0
    a = doc["claims"][0]
    assert (a["claim"], a["runs"], a["estimate_s"]) == ("a", 3, 41.0)
    assert a["protocol"][0]["rationale"] == "evidence" and a["protocol"][0]["steps"] == 13
    assert a["control"][0]["role"] == "control" and a["control"][0]["epochs"] == [2]
    assert doc["claims"][1]["left_out"] == "no protocol at scale cpu"


# ----------------------------------------------------------------------------- a real reproduction


def judge_from_tables(tables, claims):
    """A rule on the real analysis tables: supported when both evidence seeds finished their 4
    planned epochs (13 steps); the control is 'not supported' when its runs had no weight decay."""
    s = tables.get("summary")
    out = []
    for c in claims:
        ev = s[s["experiment"] == "tiny_ev"]
        ct = s[s["experiment"] == "tiny_ct"]
        seeds = pd.to_numeric(ev["n_seeds"]).sum()  # the summary has one row per setting, over its seeds
        verdict = "supported" if seeds == 2 and set(pd.to_numeric(ev["epochs_max"])) == {4} else "inconclusive"
        control = "not supported" if len(ct) == 1 and float(ct["optim.weight_decay"].iloc[0]) == 0 else "inconclusive"
        numbers = {"runs": int(seeds), "nan": math.nan}
        out.append(SimpleNamespace(claim=c, verdict=verdict, control_verdict=control, why="w", numbers=numbers))
    return out


def test_reproduce_end_to_end_then_rerun_continues_without_training(tiny_config, tmp_path, monkeypatch):
    every_cost(monkeypatch)
    ev, ct = protocols(tiny_config)
    reg = (claim(1, "a", ev, ct),)
    out = tmp_path / "out"
    plan = make_plan(out, budget_s=600, claims=reg)
    result = run_plan(plan, figures=False, evaluate=judge_from_tables)
    assert [r["state"] for r in result.results] == ["done"] * 3
    assert result.verdicts["a"]["verdict"] == "supported" and result.verdicts["a"]["control_verdict"] == "not supported"
    assert (out / "report" / "claims.md").is_file()
    doc = plan_json(plan, result)
    a = doc["claims"][0]
    assert (a["verdict"], a["control_verdict"], a["numbers"]) == ("supported", "not supported", {"runs": 2, "nan": None})
    assert doc["wall_s"] > 0 and doc["runs_by_state"] == {"done": 3}
    json.dumps(doc, allow_nan=False)
    # docs/reproduction.md's generator renders the verdicts and the protocols from this JSON
    import runpy

    tool = runpy.run_path(str(Path(__file__).resolve().parent.parent / "tools" / "reproduction_doc.py"))
    text = "\n".join(tool["reproduce_lines"](doc))
    assert "| 1 a | supported | not supported | tiny_ev: 2 × 13 (0.1 τ) | tiny_ct: 1 × 8 (no WD) |" in text
    assert "- control `tiny_ct`" in text and ": control" in text
    metrics = sorted(out.glob("tiny_*/*/metrics.csv"))
    before = {p: (p.stat().st_mtime_ns, p.read_text()) for p in metrics}
    # the same command again: the same runs, all done, nothing left to train
    again = make_plan(out, budget_s=600, claims=reg)
    assert [r.path for r in again.runs()] == [r.path for r in plan.runs()]
    assert {r.state for r in again.runs()} == {"done"} and again.remaining_s == 0.0
    result2 = run_plan(again, figures=False, evaluate=judge_from_tables)
    assert all(r.get("skipped") for r in result2.results)
    assert {p: (p.stat().st_mtime_ns, p.read_text()) for p in metrics} == before
    assert result2.verdicts == result.verdicts
    # a run stopped at epoch 2 of 4 has its fixed cost and half its work left: 3 + 12/2 = 9 s
    status_path = out / "tiny_ev" / "seed=0" / "status.json"
    status = json.loads(status_path.read_text())
    status_path.write_text(json.dumps({**status, "state": "interrupted", "epoch": 2}))
    stopped = make_plan(out, budget_s=600, claims=reg)
    assert [(r.state, r.remaining_s) for r in stopped.runs()] == [("resume", 9.0), ("done", 0.0), ("done", 0.0)]
    assert stopped.estimate_s == plan.estimate_s  # the budget's decision does not change on a rerun


# ----------------------------------------------------------------------------- calibration


def test_calibration_measures_a_tiny_run_and_is_cached(tiny_config, tmp_path, monkeypatch):
    from sqloss_nc.config import load_config

    cfg = load_config(tiny_config)
    cal = calibration_config(cfg, (6,), 64)
    assert (cal.optim.epochs, cal.data.source, cal.data.train_per_class, cal.track.nc_epochs) == (6, "synthetic", 32, [3, 5, 6])
    cost = measure_cost(cal)
    assert cost.n_cal == 64 and cost.step_s > 0 and cost.host_s > 0 and cost.nc_s >= 0
    assert cost.host_s > 10 * cost.step_s  # building and compiling costs more than a step of an 8-wide MLP
    # make_plan measures what the cache lacks, once: the second plan reads the cache
    monkeypatch.setenv("SQNC_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    real = reproduce.measure_costs
    monkeypatch.setattr(reproduce, "measure_costs", lambda *a, **k: calls.append(1) or real(*a, **k))
    reg = (claim(1, "a", Protocol("tiny_ev", tiny_config, steps=4, rationale="")),)
    first = make_plan(tmp_path / "out", claims=reg)
    second = make_plan(tmp_path / "out", claims=reg)
    assert calls == [1] and first.costs == second.costs and (tmp_path / "cache" / "calibration.json").is_file()


def test_cli_reproduce_runs_judges_and_writes_the_json_then_continues(tiny_config, tmp_path, monkeypatch):
    every_cost(monkeypatch)
    fake_registry(monkeypatch, claim(1, "a", *protocols(tiny_config)))
    real_judge = reproduce.judge  # the fake claims are judged by this file's rule, the report by the registry's
    monkeypatch.setattr(reproduce, "judge", lambda plan, evaluate=None: real_judge(plan, judge_from_tables))
    out, doc_path = tmp_path / "out", tmp_path / "repro.json"
    res = sqnc("reproduce", out, "--budget", "10m", "--json", doc_path, "--no-progress", "--no-figures")
    assert res.exit_code == 0, res.output
    assert "[3/3]" in res.stdout and "not supported" in res.stdout and "wall time" in res.stdout
    doc = json.loads(doc_path.read_text())
    assert (doc["claims"][0]["verdict"], doc["claims"][0]["control_verdict"]) == ("supported", "not supported")
    assert doc["wall_s"] > 0 and doc["command"].startswith("sqnc ")
    res = sqnc("reproduce", out, "--budget", "10m", "--no-progress", "--no-figures")
    assert res.exit_code == 0 and res.stdout.count("(already)") == 3, res.output



def test_one_experiment_as_a_claims_evidence_and_its_control_shows_both_roles(tiny_config, tmp_path, monkeypatch):
    """Claim 1 reads cpu_fig2's WD > 0 runs as evidence and its WD-0 runs as its control: one
    experiment, planned once, shown once per role in the table and the JSON (it was shown twice
    as 'evidence', the role of the protocol planned first)."""
    from dataclasses import replace

    from rich.console import Console

    every_cost(monkeypatch)
    ev, _ = protocols(tiny_config)
    plan = make_plan(tmp_path / "out", claims=(claim(1, "a", ev, replace(ev, role="control")),))
    assert list(plan.experiments) == ["tiny_ev"]
    console = Console(width=200, record=True)
    console.print(plan_table(plan))
    lines = [line for line in console.export_text().splitlines() if "tiny_ev" in line]
    assert [("control" in line, "evidence" in line) for line in lines] == [(False, True), (True, False)]
    doc = plan_json(plan)["claims"][0]
    assert [p["role"] for p in doc["protocol"]] == ["evidence"] and [p["role"] for p in doc["control"]] == ["control"]


def test_the_reproduction_doc_states_the_load_sampled_during_the_run(tmp_path):
    import runpy

    tool = runpy.run_path(str(Path(__file__).resolve().parent.parent / "tools" / "reproduction_doc.py"))
    log = tmp_path / "load.log"
    log.write_text("18:00:00 1.00 0.5 0.4 3/100 1\n18:01:00 3.00 1.0 0.5 3/100 2\n18:02:00 2.00 1.5 0.6 3/100 3\n")
    assert "3 samples, one a minute): 1-minute load average median 2.00, range 1.00–3.00" in tool["load_line"](log)
    log.write_text("")
    assert tool["load_line"](log) == "Load during the run: not sampled."
