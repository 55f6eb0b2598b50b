"""Sweeps: planning, dry run, resume after SIGKILL, worker processes and Ray give the same runs."""

import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from sqloss_nc.sweep import run_config

runner = CliRunner()


def sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def metrics(path):
    m = pd.read_csv(path / "metrics.csv")
    return m.drop(columns=["elapsed_s"])


def test_dry_run_lists_runs_and_states_without_training(tmp_path, synthetic_overrides):
    args = sets([*synthetic_overrides, "sweep={model.init_scale: [0.5, 1], seed: [0, 1]}"])
    res = runner.invoke(app, ["run", "--out", str(tmp_path), "--dry-run", *args])
    assert res.exit_code == 0, res.output
    assert "4 run(s)" in res.output and "init=0.5_seed=1" in res.output and "new" in res.output
    assert not (tmp_path / "quickstart").exists()
    # Train one of them, then the dry run reports it done.
    run_config(None, [*synthetic_overrides, "model.init_scale=0.5", "seed=1", "sweep={model.init_scale: [0.5]}"], tmp_path)
    res = runner.invoke(app, ["run", "--out", str(tmp_path), "--dry-run", *args])
    assert "done" in res.output


def _wait_for_rows(csv_path, rows, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if csv_path.exists() and len(csv_path.read_text().splitlines()) - 1 >= rows:
            return
        if proc.poll() is not None:
            raise AssertionError("run ended before it could be killed")
        time.sleep(0.05)
    raise AssertionError("timed out waiting for epochs")


def test_sigkill_then_rerun_gives_every_epoch_once_and_the_uninterrupted_numbers(tmp_path, synthetic_overrides):
    # 60 epochs of 256 samples per class: the kills land in the first ~22, and a compiled JAX epoch of this MLP takes
    # milliseconds, so fewer epochs could end before the kill arrives.
    over = [*synthetic_overrides, "optim.epochs=60", "data.train_per_class=256", "track.margin_epochs=all", "track.nc_epochs=[0,5,10,25,60]"]
    cmd = [sys.executable, "-m", "cli.main", "run", "--no-progress", *sets(over)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([*cmd, "--out", str(tmp_path / "ref")], check=True, env=env, capture_output=True, timeout=600)
    run = tmp_path / "killed" / "quickstart" / "seed=0"
    # Three kills at random instants: after a random number of finished epochs plus a random
    # delay, so the kill lands anywhere in an epoch (training, measuring, or writing).
    rng = random.Random(1234)
    rows = 1
    for _ in range(3):
        rows = rng.randint(rows + 2, rows + 7)
        proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_rows(run / "metrics.csv", rows, proc)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert (run / "status.json").exists()
        rows = len(pd.read_csv(run / "metrics.csv", on_bad_lines="skip"))
    subprocess.run([*cmd, "--out", str(tmp_path / "killed")], check=True, env=env, capture_output=True, timeout=600)
    ref = tmp_path / "ref" / "quickstart" / "seed=0"
    got, want = metrics(run), metrics(ref)
    assert got["epoch"].tolist() == list(range(61))
    pd.testing.assert_frame_equal(got, want)
    pd.testing.assert_frame_equal(pd.read_csv(run / "margins.csv"), pd.read_csv(ref / "margins.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(run / "nc.csv"), pd.read_csv(ref / "nc.csv"))


def test_worker_processes_give_the_sequential_runs(tmp_path, synthetic_overrides):
    over = [*synthetic_overrides, "sweep={model.init_scale: [0.5, 1], optim.weight_decay: [0.01, 0]}"]
    seq = run_config(None, over, tmp_path / "seq")
    par = run_config(None, over, tmp_path / "par", jobs=2)
    assert [r["run_id"] for r in seq] == [r["run_id"] for r in par] and all(r["state"] == "done" for r in par)
    for r in seq:
        a = metrics(tmp_path / "seq" / "quickstart" / r["run_id"])
        b = metrics(tmp_path / "par" / "quickstart" / r["run_id"])
        # Thread counts differ (2 vs 1 per process), so float reductions may round differently.
        pd.testing.assert_frame_equal(a, b, rtol=1e-4)


def test_a_failing_run_does_not_stop_the_sweep(tmp_path, synthetic_overrides, monkeypatch):
    import sqloss_nc.sweep as sweep

    real = sweep.train_and_evaluate

    def flaky(config, path, **kw):
        if config.model.init_scale == 0.5:
            raise RuntimeError("boom")
        return real(config, path, **kw)

    monkeypatch.setattr(sweep, "train_and_evaluate", flaky)
    res = run_config(None, [*synthetic_overrides, "sweep={model.init_scale: [0.5, 1]}"], tmp_path)
    assert [r["state"] for r in res] == ["failed", "done"] and "boom" in res[0]["reason"]


def test_ray_backend_on_a_local_instance_gives_the_same_runs(tmp_path, synthetic_overrides):
    pytest.importorskip("ray")
    over = [*synthetic_overrides, "sweep={model.init_scale: [0.5, 1]}"]
    seq = run_config(None, over, tmp_path / "seq")
    ray_res = run_config(None, over, tmp_path / "ray", backend="ray")
    assert [r["run_id"] for r in ray_res] == [r["run_id"] for r in seq] and all(r["state"] == "done" for r in ray_res)
    for r in seq:
        pd.testing.assert_frame_equal(
            metrics(tmp_path / "seq" / "quickstart" / r["run_id"]), metrics(tmp_path / "ray" / "quickstart" / r["run_id"]), rtol=1e-4
        )


def _kill_worker_after(run, rows, killed, timeout=180):
    """SIGKILL the process that holds `run`'s lock (the Ray worker) once `rows` epochs are written."""
    import json

    t0 = time.time()
    while time.time() - t0 < timeout:
        csv, lock = run / "metrics.csv", run / ".lock"
        if csv.exists() and len(csv.read_text().splitlines()) - 1 >= rows and lock.exists():
            try:
                pid = json.loads(lock.read_text())["pid"]
            except (ValueError, KeyError, OSError):
                continue
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.05)


def test_ray_shows_live_progress_and_a_killed_worker_resumes_to_the_sequential_numbers(tmp_path, synthetic_overrides, monkeypatch):
    pytest.importorskip("ray")
    import threading
    from io import StringIO

    from rich.console import Console

    import sqloss_nc.sweep as sweep

    monkeypatch.setattr(sweep, "RAY_POLL_S", 0.2)
    monkeypatch.setattr(sweep, "RAY_LOG_EVERY_S", 0.0)  # a log line of epochs at every poll
    over = [*synthetic_overrides, "optim.epochs=25", "track.nc_epochs=[0,10,25]", "sweep={model.init_scale: [0.5, 1]}"]
    seq = run_config(None, over, tmp_path / "seq")
    killed = []
    run = tmp_path / "ray" / "quickstart" / "init=1_seed=0"
    killer = threading.Thread(target=_kill_worker_after, args=(run, 8, killed), daemon=True)
    killer.start()
    buf = StringIO()
    res = run_config(None, over, tmp_path / "ray", backend="ray", console=Console(file=buf, width=100, force_terminal=False))
    killer.join()
    text = buf.getvalue()
    # Killed mid-run, retried by Ray, resumed from the checkpoint: every CSV as a sequential run's.
    assert killed and [r["state"] for r in res] == ["done", "done"], (killed, res, text)
    for r in seq:
        for name in ("metrics.csv", "nc.csv"):
            a, b = (pd.read_csv(root / "quickstart" / r["run_id"] / name) for root in (tmp_path / "seq", tmp_path / "ray"))
            pd.testing.assert_frame_equal(a.drop(columns=["elapsed_s"], errors="ignore"), b.drop(columns=["elapsed_s"], errors="ignore"))
    # Live progress while the runs train, not only at the end.
    assert "2 run(s) submitted to Ray" in text
    assert "init=1_seed=0: running, epoch" in text
    mid = [int(m) for m in __import__("re").findall(r"init=1_seed=0 (\d+)/25", text)]
    assert any(0 < e < 25 for e in mid), text
    assert "init=0.5_seed=0: done, epoch 25/25" in text and "2 done · 0 failed · 0 running · 0 waiting (of 2)" in text


@pytest.mark.parametrize("terminal", [True, False])
def test_sweep_progress_reads_running_epochs_from_status_files(tmp_path, synthetic_overrides, terminal):
    import json
    from io import StringIO

    from rich.console import Console

    from sqloss_nc.sweep import SweepProgress, plan_runs

    plan = plan_runs(None, [*synthetic_overrides, "sweep={model.init_scale: [0.5, 1, 2]}"], tmp_path)
    (stale := plan[2][1]).mkdir(parents=True)
    (stale / "status.json").write_text(json.dumps({"state": "running", "epoch": 1}))
    os.utime(stale / "status.json", (time.time() - 3600,) * 2)  # killed an hour ago: waiting, not running
    buf = StringIO()
    with SweepProgress(plan, Console(file=buf, width=100, force_terminal=terminal)) as progress:
        plan[0][1].mkdir(parents=True)
        (plan[0][1] / "status.json").write_text(json.dumps({"state": "running", "epoch": 2}))
        progress.poll()
        assert progress.running == {"init=0.5_seed=0": 2}
        assert progress.counts() == "0 done · 0 failed · 1 running · 2 waiting (of 3)"
        progress.finished({"run_id": "init=0.5_seed=0", "state": "done", "epoch": 3})
        progress.finished({"run_id": "init=1_seed=0", "state": "failed", "epoch": 0, "reason": "WorkerCrashedError: gone"})
        assert progress.counts() == "1 done · 1 failed · 0 running · 1 waiting (of 3)"
    text = buf.getvalue()
    assert "init=0.5_seed=0: done, epoch 3/3" in text and "init=1_seed=0: failed, epoch 0/3: WorkerCrashedError: gone" in text


def test_a_jobs_worker_sizes_the_host_blas_pool_to_its_share_of_the_cores():
    """Issue 27: numpy's BLAS sized its pool (all cores) when the worker imported numpy, before
    `_init_worker` set OMP_NUM_THREADS; J workers' float64 NC algebra then oversubscribed the cores.
    The worker's pools must be the share it was given."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from threadpoolctl import threadpool_info

    from sqloss_nc.sweep import _init_worker

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(1,)) as pool:
        pools = pool.submit(threadpool_info).result(timeout=300)
    blas = [p for p in pools if p["user_api"] == "blas"]
    assert blas, pools
    assert all(p["num_threads"] == 1 for p in blas), [(p["internal_api"], p["num_threads"]) for p in blas]
