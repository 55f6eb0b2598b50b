"""Stacked runs (`compute.stack`, SPEC §11): every run of a stack writes the run directory it would
write alone, within float32 summation order (rtol 2e-4, atol 1e-6, as tests/test_backends.py:
vmapped convolutions are grouped convolutions, another kernel), resumes per run, and a diverging
run is frozen while the others go on. JAX backend; on TensorFlow `--stack K` is refused."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from conftest import SIXTEEN_STEP_CONVNET, assert_runs_equal

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax", reason="stacked runs are a JAX-backend feature")

CSVS = ("metrics.csv", "nc.csv", "margins.csv", "nc_layers.csv")
# conftest's 16-step convnet (last batch partial) with BatchNorm and label noise, cut to 3 epochs.
BASE = [
    *SIXTEEN_STEP_CONVNET,
    "model.normalization=batchnorm",
    "optim.epochs=3",
    "data.label_noise=0.1",
    "track.nc_test=true",
    "track.margin_epochs=[0,3]",
]
# 8 points differing in seed, init scale and weight decay: two stacks of 4 with compute.stack=4.
SWEEP = "sweep={seed: [0, 1], model.init_scale: [1.0, 0.5], optim.weight_decay: [0.01, 0]}"


def run_ids(results):
    return [r["run_id"] for r in results]


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """The 8 runs trained one by one (the reference every stacked run must equal)."""
    from sqloss_nc.sweep import run_config

    out = tmp_path_factory.mktemp("alone")
    res = run_config(None, [*BASE, SWEEP, "compute.stack=1"], out)
    assert all(r["state"] == "done" for r in res)
    return out / "quickstart", res


def test_a_stack_of_4_writes_every_run_as_if_trained_alone(tmp_path, alone):
    from sqloss_nc.sweep import run_config

    ref, ref_res = alone
    res = run_config(None, [*BASE, SWEEP, "compute.stack=4"], tmp_path)
    assert run_ids(res) == run_ids(ref_res) and all(r["state"] == "done" for r in res)
    stacks = set()
    for r in res:
        here, there = tmp_path / "quickstart" / r["run_id"], ref / r["run_id"]
        assert sorted(p.name for p in here.iterdir()) == sorted(p.name for p in there.iterdir())
        assert_runs_equal(there, here, csvs=(*CSVS, "theory.csv") if (there / "theory.csv").exists() else CSVS)
        status = json.loads((here / "status.json").read_text())
        assert r["run_id"] in status["stack"] and status["state"] == "done"
        stacks.add(tuple(status["stack"]))
        a, b = (np.load(d / "checkpoint.npz") for d in (there, here))
        assert a.files == b.files
        for name in a.files:
            np.testing.assert_allclose(b[name], a[name], rtol=2e-4, atol=1e-6, err_msg=name)
        m = keras.saving.load_model(here / "model.keras")
        assert len(m.get_weights()) == len(keras.saving.load_model(there / "model.keras").get_weights())
    # Plan order, cut into stacks of 4 (all 8 points stack: they differ only in shape-free keys).
    assert sorted(map(len, stacks)) == [4, 4] and {i for s in stacks for i in s} == set(run_ids(res))
    # Training moved every run, and the runs differ from each other (no lane shared another's state).
    finals = [pd.read_csv(tmp_path / "quickstart" / r["run_id"] / "metrics.csv")["rho"].iloc[-1] for r in res]
    assert len({round(f, 6) for f in finals}) == len(finals)


@pytest.mark.parametrize("arch", ["mlp", "convnet"])
def test_a_full_batch_stack_takes_the_data_unpermuted_and_equals_the_runs_alone(tmp_path, arch, monkeypatch):
    """Full-batch GD (`optim.full_batch`): the stack skips the per-run gather of the epoch's
    permutation (`_Stack.full_batch`); the order of one batch of all N samples changes only
    summation order, so every run still writes its run alone's files (BatchNorm, label noise,
    weight decay on and off, epoch 0's grad-norm probe included)."""
    from sqloss_nc import stacking
    from sqloss_nc.sweep import run_config

    base = [*BASE, f"model.arch={arch}", "optim.full_batch=true", "optim.lr=0.2", "track.margin_epochs=[0,3]"]
    sweep = "sweep={seed: [0, 1], optim.weight_decay: [0.01, 0]}"
    ref = run_config(None, [*base, sweep, "compute.stack=1"], tmp_path / "alone")
    gathered = []
    real = stacking._Stack.batches
    monkeypatch.setattr(stacking._Stack, "batches", lambda self, epoch: gathered.append(epoch) or real(self, epoch))
    res = run_config(None, [*base, sweep, "compute.stack=4"], tmp_path / "stacked")
    assert gathered == []  # no epoch gathered per-run batches
    assert [r["state"] for r in res] == ["done"] * 4 and run_ids(res) == run_ids(ref)
    for r in res:
        assert_runs_equal(tmp_path / "alone" / "quickstart" / r["run_id"], tmp_path / "stacked" / "quickstart" / r["run_id"])
    losses = [pd.read_csv(tmp_path / "stacked" / "quickstart" / r["run_id"] / "metrics.csv")["train_loss"] for r in res]
    assert all(loss.iloc[-1] < loss.iloc[0] for loss in losses)  # full-batch GD trained every run


def test_lagrange_steps_finite_step_correction_and_per_run_schedules_stack(tmp_path):
    """The tangent projection and unit-norm constraint, the double backprop with each run's own
    rate, and lr schedules whose milestones and base rates differ inside one stack."""
    from sqloss_nc.sweep import run_config

    over = [*BASE, "model.normalization=lagrange", "loss.finite_step_correction=true", "optim.schedule=step", "optim.milestones=[1]",
            "optim.lr=0.02", "sweep={optim.milestones: [[1], [2]]}"]  # fmt: skip
    res = run_config(None, [*over, "compute.stack=2"], tmp_path / "stack")
    run_config(None, [*over, "compute.stack=1"], tmp_path / "alone")
    assert all(r["state"] == "done" for r in res)
    for r in res:
        assert_runs_equal(tmp_path / "alone" / "quickstart" / r["run_id"], tmp_path / "stack" / "quickstart" / r["run_id"])
    lrs = [pd.read_csv(tmp_path / "stack" / "quickstart" / f"milestones={m}_seed=0" / "metrics.csv")["lr"].tolist() for m in (1, 2)]
    assert lrs == [pytest.approx([0.02, 0.02, 0.002, 0.002]), pytest.approx([0.02, 0.02, 0.02, 0.002])]


@pytest.mark.slow
def test_on_ray_each_stack_is_one_task(tmp_path, alone):
    pytest.importorskip("ray")
    from sqloss_nc.sweep import run_config

    ref, _ = alone
    over = [*BASE, "model.init_scale=1.0", "sweep={seed: [0, 1], optim.weight_decay: [0.01, 0]}", "compute.stack=2"]
    res = run_config(None, over, tmp_path, backend="ray")
    assert all(r["state"] == "done" for r in res)
    stacks = {tuple(json.loads((tmp_path / "quickstart" / r["run_id"] / "status.json").read_text())["stack"]) for r in res}
    assert sorted(map(len, stacks)) == [2, 2]
    for r in res:
        seed, wd = r["run_id"].split("_")[1].removeprefix("seed="), r["run_id"].split("_")[0].removeprefix("wd=")
        assert_runs_equal(ref / f"init=1_wd={wd}_seed={seed}", tmp_path / "quickstart" / r["run_id"])


def test_a_diverging_run_is_frozen_and_the_others_go_on(tmp_path, alone):
    from sqloss_nc.sweep import run_config

    ref, _ = alone
    over = [*BASE, "model.init_scale=1.0", "optim.weight_decay=0.01", "sweep={optim.lr: [0.05, 1.0e+30], seed: [0, 1]}"]
    res = {r["run_id"]: r for r in run_config(None, [*over, "compute.stack=4"], tmp_path / "stack")}
    lone = {r["run_id"]: r for r in run_config(None, [*over, "compute.stack=1"], tmp_path / "alone")}
    for seed in (0, 1):
        good, bad = f"lr=0.05_seed={seed}", f"lr=1e+30_seed={seed}"
        assert res[good]["state"] == "done"
        assert_runs_equal(ref / f"init=1_wd=0.01_seed={seed}", tmp_path / "stack" / "quickstart" / good)
        # Diverged at the epoch, with the reason, an unstacked run gives; its rows end there.
        assert lone[bad]["state"] == res[bad]["state"] == "diverged"
        assert res[bad]["epoch"] == lone[bad]["epoch"] < 3 and res[bad]["reason"] == lone[bad]["reason"]
        here, there = (pd.read_csv(root / "quickstart" / bad / "metrics.csv") for root in (tmp_path / "stack", tmp_path / "alone"))
        assert here["epoch"].tolist() == there["epoch"].tolist()


def test_an_interrupted_stack_resumes_to_the_uninterrupted_numbers(tmp_path, alone, monkeypatch):
    from sqloss_nc import experiment
    from sqloss_nc.sweep import plan_runs, run_config, run_states

    ref, _ = alone
    over = [*BASE, SWEEP, "compute.stack=4", "compute.stack_checkpoint_s=0"]  # a checkpoint every epoch
    real, saved = experiment.save_checkpoint, []

    def interrupt(rundir, network, optimizer, epoch):
        real(rundir, network, optimizer, epoch)
        saved.append((rundir.path.name, epoch))
        # Mid-stack in epoch 2: the runs written before this one are a checkpoint ahead.
        if epoch == 2 and len([s for s in saved if s[1] == 2]) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "save_checkpoint", interrupt)
    # One run of the first stack is finished beforehand (trained alone): it is not retrained.
    plan = plan_runs(None, over, tmp_path)
    finished = plan[1][0]
    experiment.train_and_evaluate(finished.config, plan[1][1])
    done_mtime = (plan[1][1] / "status.json").stat().st_mtime
    saved.clear()
    with pytest.raises(KeyboardInterrupt):
        run_config(None, over, tmp_path)
    states = {s["run_id"]: s for s in run_states(plan)}
    assert states[finished.run_id]["state"] == "done"
    epochs = sorted({int(s["epoch"]) for rid, s in states.items() if s["state"] == "interrupted"})
    assert epochs == [1, 2], states  # some runs of the stack are an epoch ahead of the others
    monkeypatch.setattr(experiment, "save_checkpoint", real)
    res = run_config(None, over, tmp_path)
    assert all(r["state"] == "done" for r in res)
    assert [r for r in res if r["run_id"] == finished.run_id][0]["skipped"]
    assert (plan[1][1] / "status.json").stat().st_mtime == done_mtime
    for spec, path in plan:
        assert pd.read_csv(path / "metrics.csv")["epoch"].tolist() == [0, 1, 2, 3]
        assert_runs_equal(ref / spec.run_id, path)


def test_spaced_checkpoints_an_interrupt_saves_the_last_recorded_epoch(tmp_path, alone, monkeypatch):
    """Default `compute.stack_checkpoint_s` (60 s): no checkpoint before the last epoch, yet an
    interrupt during epoch 3's training checkpoints every run at epoch 2, its status says so, and
    the rerun trains only epoch 3, to the uninterrupted numbers."""
    from sqloss_nc import experiment, stacking
    from sqloss_nc.sweep import plan_runs, run_config, run_states

    ref, _ = alone
    over = [*BASE, SWEEP, "compute.stack=4"]
    real_save, real_train, saved = experiment.save_checkpoint, stacking._Stack.train_epoch, []

    def save(rundir, network, optimizer, epoch):
        saved.append(epoch)
        real_save(rundir, network, optimizer, epoch)

    def train(self, epoch, active):
        if epoch == 3:
            raise KeyboardInterrupt
        return real_train(self, epoch, active)

    monkeypatch.setattr(experiment, "save_checkpoint", save)
    monkeypatch.setattr(stacking._Stack, "train_epoch", train)
    with pytest.raises(KeyboardInterrupt):
        run_config(None, over, tmp_path)
    assert saved == [2, 2, 2, 2]  # nothing at epochs 0 and 1: the interrupt wrote epoch 2 of the first stack
    plan = plan_runs(None, over, tmp_path)
    states = [(s["state"], s["epoch"]) for s in run_states(plan)]
    assert states[:4] == [("interrupted", 2)] * 4 and all(s[0] not in ("done", "running") for s in states[4:]), states
    for spec, path in plan[:4]:
        status = json.loads((path / "status.json").read_text())
        assert status["wall_time_s"] == pd.read_csv(path / "metrics.csv")["elapsed_s"].iloc[-1]
    monkeypatch.setattr(stacking._Stack, "train_epoch", real_train)
    saved.clear()
    res = run_config(None, over, tmp_path)
    assert all(r["state"] == "done" for r in res) and saved == [3] * 8
    for spec, path in plan:
        assert pd.read_csv(path / "metrics.csv")["epoch"].tolist() == [0, 1, 2, 3]
        assert_runs_equal(ref / spec.run_id, path)


def test_groups_and_dry_run_show_which_runs_stack(tmp_path):
    from sqloss_nc.sweep import plan_runs
    from sqloss_nc.stackplan import stack_groups, stack_key

    plan = plan_runs(None, [*BASE, "sweep={optim.batch_size: [16, 32], seed: [0, 1, 2], optim.lr: [0.1, 0.01]}"], tmp_path)
    groups = stack_groups(plan, 4)
    # Batch size changes shapes: two groups of 6, cut into stacks of 4 and 2.
    assert [len(g) for g in groups] == [4, 2, 4, 2]
    assert all(len({spec.config.optim.batch_size for spec, _ in g}) == 1 for g in groups)
    assert len({stack_key(spec.config) for spec, _ in plan}) == 2
    res = CliRunner().invoke(app, ["run", "--dry-run", "--out", str(tmp_path), "--stack", "4", *[a for o in BASE for a in ("--set", o)],
                                   "--set", "sweep={optim.batch_size: [16, 32], seed: [0, 1]}"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "stack" in res.output and "4 runs in 2 stack(s) of up to 4" in res.output and not (tmp_path / "quickstart").exists()


def test_auto_stack_is_1_on_a_cpu_and_says_so(tmp_path):
    from sqloss_nc.stackplan import choose_stack
    from sqloss_nc.sweep import plan_runs

    k, note = choose_stack(plan_runs(None, [*BASE, "sweep={seed: [0, 1]}"], tmp_path))
    assert k == 1 and "CPU" in note
    assert choose_stack(plan_runs(None, [*BASE, "compute.stack=3", "sweep={seed: [0, 1]}"], tmp_path)) == (3, None)
    assert choose_stack(plan_runs(None, BASE, tmp_path)) == (1, None)  # nothing to stack: no note


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorflow") is None, reason="TensorFlow is not installed")
def test_tensorflow_refuses_an_explicit_stack_with_one_line(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = ["run", "--no-progress", "--out", str(tmp_path / "out"), "--stack", "2", "--set", "sweep={seed: [0, 1]}"]
    res = subprocess.run([sys.executable, "-c", "from cli.main import main; main()", *args], env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "compute.stack: stacked runs need the JAX backend" in lines[0], res.stderr
    assert not (tmp_path / "out").exists()


def test_batched_tracking_equals_each_run_measured_alone(tmp_path):
    """Epochs without NC are measured from the stack's one batched pass (outputs, effective
    kernels' norms and update norms, Σ||θ||² reduced on the device), not by each run's Tracker:
    weight norm (effective kernel V/||V||·g), label noise, a margin epoch between NC epochs."""
    from sqloss_nc.sweep import run_config

    over = [*BASE, "model.normalization=weightnorm", "track.nc_epochs=[0,3]", "track.margin_epochs=[0,2]",
            "sweep={seed: [0, 1], optim.weight_decay: [0.01, 0]}"]  # fmt: skip
    res = run_config(None, [*over, "compute.stack=4"], tmp_path / "stack")
    run_config(None, [*over, "compute.stack=1"], tmp_path / "alone")
    assert all(r["state"] == "done" for r in res)
    for r in res:
        here, there = tmp_path / "stack" / "quickstart" / r["run_id"], tmp_path / "alone" / "quickstart" / r["run_id"]
        assert sorted(p.name for p in here.iterdir()) == sorted(p.name for p in there.iterdir())
        assert_runs_equal(there, here, csvs=(*CSVS, "spectra.csv"))
        m = pd.read_csv(here / "metrics.csv")
        assert m["update_norm_classifier"].iloc[1:].notna().all() and np.isnan(m["update_norm_classifier"].iloc[0])
        assert pd.read_csv(here / "margins.csv")["epoch"].unique().tolist() == [0, 2]


def test_map_runs_modes_equal_a_loop_over_runs():
    import jax.numpy as jnp

    from sqloss_nc.backend.jax import STACK_MODES, map_runs, stacked_weight_stats

    rng = np.random.default_rng(0)
    w, b, x = rng.normal(size=(3, 4, 5)).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=(6, 4)).astype(np.float32)
    want = np.stack([np.tanh(x @ w[k] + b[k]) for k in range(3)])
    for mode in STACK_MODES:
        got = map_runs(lambda w, b, x: jnp.tanh(x @ w + b), mode, shared=(2,))(w, b, x)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6, err_msg=mode)
    # The device-reduced weight measures against float64 numpy on each run's arrays: effective
    # kernels (here w, and b scaled by a non-trainable per-run value) of the current and the
    # previous (trainable, non-trainable) values, computed inside the one program.
    prev = [w + 0.01 * rng.normal(size=w.shape).astype(np.float32), b + 0.01]
    scale, scale_prev = np.float32([1.0, 2.0, 0.5]), np.float32([1.5, 1.0, 3.0])
    stats = stacked_weight_stats(lambda tv, ntv: [tv[0], tv[1] * ntv[0][:, None]])
    sq, sq_prev, sq_up, dec = (np.asarray(a, np.float64) for a in stats(([w, b], [scale]), (prev, [scale_prev]), [w]))
    for k in range(3):
        for i, (cur, old) in enumerate(zip([w, b * scale[:, None]], [prev[0], prev[1] * scale_prev[:, None]])):
            c, o = cur[k].astype(np.float64), old[k].astype(np.float64)
            assert sq[i, k] == pytest.approx(np.sum(c**2), rel=1e-5) and sq_prev[i, k] == pytest.approx(np.sum(o**2), rel=1e-5)
            assert np.sqrt(sq_up[i, k]) / np.sqrt(sq_prev[i, k]) == pytest.approx(np.linalg.norm(c - o) / np.linalg.norm(o), rel=1e-4)
        assert dec[k] == pytest.approx(np.sum(w[k].astype(np.float64) ** 2), rel=1e-5)


def test_one_sync_defers_fsyncs_and_replacements(tmp_path, monkeypatch):
    """Inside `one_sync` nothing is fsynced and no file is replaced until the block ends (then one
    os.sync, then the replacements); reads of status.json and appends to a rewritten CSV go to
    the pending files."""
    from sqloss_nc import rundir as rd

    calls = []
    monkeypatch.setattr(rd.os, "fsync", lambda fd: calls.append("fsync"))
    real_sync = rd.os.sync
    monkeypatch.setattr(rd.os, "sync", lambda: (calls.append("sync"), real_sync()))
    runs = [rd.RunDir(tmp_path / f"r{i}") for i in range(3)]
    for r in runs:
        r.create()
        r.write_status("running", 0, environment={"backend": "jax"})
    calls.clear()
    with rd.one_sync():
        for r in runs:
            r.write_status("running", 1)
            assert r.read_status()["epoch"] == 1 and r.read_status()["environment"] == {"backend": "jax"}
            assert json.loads(r.status_path.read_text())["epoch"] == 0  # not yet replaced
        rd.atomic_write_text(runs[0].path / "m.csv", "a,b\n1,2\n")
        app = rd.CSVAppender(runs[0].path / "m.csv", ["a", "b"])
        app.write({"a": 3, "b": 4})
        app.close()
        assert calls == []
    assert calls == ["sync"]
    assert [json.loads(r.status_path.read_text())["epoch"] for r in runs] == [1, 1, 1]
    assert (runs[0].path / "m.csv").read_text() == "a,b\n1,2\n3,4\n"
    assert sorted(p.name for p in runs[0].path.iterdir()) == ["m.csv", "status.json"]  # no temporary left


def test_step_bytes_of_auto_k_grows_with_the_stack():
    """`compute.stack: auto` on a GPU sizes K from the compiled step's bytes for 1 and 2 runs
    (it once built its runs with the Keras objects in the wrong fields and could not run)."""
    from sqloss_nc.config import load_config
    from sqloss_nc.data import load_clean_dataset
    from sqloss_nc.stacking import step_bytes

    cfg = load_config(None, BASE)
    ds = load_clean_dataset(cfg)
    one, two = step_bytes(cfg, ds, 1), step_bytes(cfg, ds, 2)
    # The second run adds at least its parameters, its optimizer state and a batch of outputs.
    assert 0 < one < two
