"""State that must not lie (issue 20): a run stopped by SIGTERM or SIGHUP says `interrupted` and how
to resume; one that hit a full disk says `failed` with the reason and leaves no temporary
checkpoint; a second identical command says who is training the run; a 10-class sweep traces its
gradient probe once per run (no `tf.function retracing` warning). Each case runs `sqnc` in a
subprocess, as a user does."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_bad_inputs import SYN
from test_cli_newcomer import sets, sqnc

ROOT = Path(__file__).resolve().parent.parent

# A synthetic MLP run that trains until stopped (epochs are a few milliseconds each).
ENDLESS = [*(o for o in SYN if not o.startswith("optim.epochs")), "optim.epochs=100000", "track.margin_epochs=none", "track.nc_epochs=none"]


# How long a test waits for a stopped process: past the stop's watchdogs (`errors.STOP_GRACE_S`,
# the CLI's 30 s more), so a process stuck after a signal shows its threads' stacks in the failure.
STUCK_S = 200


def env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", COLUMNS="100")


def start(out, *extra, python_args=("-m", "cli.main")):
    return subprocess.Popen(
        [sys.executable, *python_args, "run", *sets(ENDLESS), "--out", str(out), "--no-progress", *extra],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def status(out):
    try:
        return json.loads((out / "quickstart" / "seed=0" / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def wait_training(proc, out, timeout=240):
    """Until the run has finished an epoch (so it is past its setup, inside `fit`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = status(out)
        if s.get("state") == "running" and s.get("epoch", 0) >= 1:
            return s
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.returncode}\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the run never reached epoch 1")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_mark_the_run_interrupted(tmp_path, sig):
    out = tmp_path / "o"
    proc = start(out)
    wait_training(proc, out)
    proc.send_signal(getattr(signal, sig))
    try:
        stdout, stderr = proc.communicate(timeout=STUCK_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        raise AssertionError(f"still alive {STUCK_S} s after {sig}: status {status(out)}\n{stderr[-3000:]}") from None
    s = status(out)
    assert s["state"] == "interrupted", (s, stderr[-3000:])
    assert sig in s["reason"] and "rerun the same command to resume" in s["reason"], s["reason"]
    assert proc.returncode == 128 + getattr(signal, sig), (proc.returncode, stderr[-3000:])
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and sig in lines[0] and "rerun the same command" in lines[0], stderr[-3000:]
    assert not (out / "quickstart" / "seed=0" / ".lock").exists()  # released: the rerun may resume


# The CLI's SIGTERM handler raises where the main thread happens to be; where that interrupt is
# swallowed (a finalizer or a callback from native code prints "Exception ignored" and goes on),
# the run must still stop at its next epoch end instead of training on, `running`, forever.
SWALLOWED = """
import os, signal, sys, time
from sqloss_nc import callbacks
real = callbacks.RunLogger.record
def record(self, epoch, *a, **k):
    row = real(self, epoch, *a, **k)
    if epoch == 3:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises here ...
        except KeyboardInterrupt:
            pass  # ... and this swallows it
    return row
callbacks.RunLogger.record = record
from cli.main import main
sys.argv = ["sqnc", *sys.argv[1:]]
main()
"""


def test_a_swallowed_sigterm_still_stops_the_run_at_the_next_epoch(tmp_path):
    out = tmp_path / "o"
    proc = start(out, python_args=("-c", SWALLOWED))
    try:
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    s = status(out)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, stderr[-3000:])
    assert s["state"] == "interrupted" and s["epoch"] <= 4, s
    assert "SIGTERM" in s["reason"] and "rerun the same command to resume" in s["reason"], s


def test_a_jobs_worker_remembers_its_interrupt_and_watches_its_stop():
    """A `--jobs` worker's SIGINT handler: it raises while a unit trains, remembers the stop (the
    run's next epoch end raises it again if that raise was swallowed), and ignores a second SIGINT
    (which could cut the save short)."""
    from sqloss_nc import errors, sweep

    saved = dict(sweep._WORKER)
    try:
        sweep._WORKER.update(training=True, stopping=False)
        with pytest.raises(KeyboardInterrupt):
            sweep._interrupt_worker(signal.SIGINT, None)
        with pytest.raises(KeyboardInterrupt):
            errors.raise_if_stopped()  # swallowed above: the epoch end raises it again
        sweep._interrupt_worker(signal.SIGINT, None)  # the second one: ignored
    finally:
        errors.request_stop(None)  # forget it and disarm the watchdog (this is pytest's process)
        sweep._WORKER.update(saved)
    errors.raise_if_stopped()  # nothing pending any more


STUCK_AFTER_STOP = """
import sys, time
from sqloss_nc.errors import request_stop
request_stop(KeyboardInterrupt(), grace_s=float(sys.argv[1]))
if sys.argv[2] == "disarm":
    request_stop(None)
def saving_the_last_epoch():
    time.sleep(6)  # stands for a stop stuck after its signal
saving_the_last_epoch()
"""


@pytest.mark.parametrize("disarm", [False, True])
def test_a_process_stuck_after_its_stop_prints_its_stacks_and_exits(disarm):
    """The stop's watchdog: still alive `grace_s` after the signal, the process writes where every
    thread is and exits 1; a disarmed one (`request_stop(None)`) runs on."""
    t0 = time.time()
    res = subprocess.run([sys.executable, "-c", STUCK_AFTER_STOP, "1", "disarm" if disarm else "keep"], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60)
    took = time.time() - t0
    if disarm:
        assert res.returncode == 0 and took >= 6, (res.returncode, took, res.stderr[-2000:])
    else:
        assert res.returncode == 1 and took < 5, (res.returncode, took)
        assert "most recent call first" in res.stderr and "saving_the_last_epoch" in res.stderr, res.stderr[-2000:]


def test_stopping_a_jobs_sweep_stops_its_workers_and_starts_no_queued_run(tmp_path):
    """SIGTERM to the driver of a `--jobs 2` sweep of 4 endless runs: the two training runs stop
    `interrupted` and resumable, the two queued ones never start (the pool used to train every
    queued run to its end before the driver could exit: 220 s in the quick start's case)."""
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "cli.main", "run", *sets(ENDLESS), "--out", str(out), "--no-progress", "--jobs", "2", "--set", "sweep={seed: [0, 1, 2, 3]}"]
    # Its own session: whatever happens, the driver and its workers are killed at the end.
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    run = out / "quickstart"
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            states = [json.loads((run / f"seed={i}" / "status.json").read_text()) if (run / f"seed={i}" / "status.json").exists() else {} for i in (0, 1)]
            if all(s.get("state") == "running" and s.get("epoch", 0) >= 1 for s in states):
                break
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            time.sleep(0.2)
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=STUCK_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, stderr = proc.communicate()
            statuses = {i: (run / f"seed={i}" / "status.json").read_text() for i in range(4) if (run / f"seed={i}" / "status.json").exists()}
            raise AssertionError(f"still alive {STUCK_S} s after SIGTERM: {statuses}\n{stderr[-6000:]}") from None
        took = time.time() - t0
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, stderr[-3000:])
    for i in (0, 1):
        s = json.loads((run / f"seed={i}" / "status.json").read_text())
        assert s["state"] == "interrupted" and "rerun the same command to resume" in s["reason"], s
        assert not (run / f"seed={i}" / ".lock").exists()
    assert not (run / "seed=2").exists() and not (run / "seed=3").exists()
    assert took < 60, took  # measured 1-9 s; the endless queued runs would never end
    assert "Traceback" not in stderr, stderr[-3000:]


# The disk fills while the second checkpoint is written: numpy's writer raises ENOSPC after part
# of the file, and (the disk being full) no other file can be created while that partial
# temporary checkpoint takes the last free space.
DISK_FULL = """
import errno, glob, sys, tempfile
import numpy as np

out = sys.argv[-1]
calls = {"savez": 0}
real_savez, real_mkstemp = np.savez, tempfile.mkstemp

def savez(file, *args, **kwargs):
    calls["savez"] += 1
    if calls["savez"] >= 2:
        file.write(b"x" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device")
    return real_savez(file, *args, **kwargs)

def mkstemp(*args, **kwargs):
    if glob.glob(out + "/**/.checkpoint.tmp.npz", recursive=True):
        raise OSError(errno.ENOSPC, "No space left on device")
    return real_mkstemp(*args, **kwargs)

np.savez, tempfile.mkstemp = savez, mkstemp
import runpy
sys.argv = ["sqnc", *sys.argv[1:]]
runpy.run_module("cli.main", run_name="__main__")
"""


def test_full_disk_marks_the_run_failed_and_leaves_no_temporary_checkpoint(tmp_path):
    out = tmp_path / "o"
    overrides = [o for o in ENDLESS if not o.startswith("optim.epochs")] + ["optim.epochs=5"]
    res = subprocess.run(
        [sys.executable, "-c", DISK_FULL, "run", *sets(overrides), "--no-progress", "--out", str(out)],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1, res.stderr[-3000:]
    s = status(out)
    assert s["state"] == "failed", s
    assert "No space left on device" in s["reason"] and "rerun the same command to resume" in s["reason"], s["reason"]
    assert s["epoch"] == 0  # where a rerun resumes: epoch 0's checkpoint (epoch 1's failed to write)
    assert not list(out.rglob(".checkpoint.tmp.npz"))
    assert "Traceback" not in res.stderr


def test_second_identical_command_says_who_is_training_the_run(tmp_path):
    out = tmp_path / "o"
    first = start(out)
    try:
        wait_training(first, out)
        second = sqnc("run", *sets(ENDLESS), "--out", str(out), "--no-progress")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    # It trained nothing (issue 28: it exited 0): not 0, and stderr says who holds the run.
    assert second.returncode == 1, second.stderr[-3000:]
    assert f"not trained by this command: being trained by pid {first.pid}" in " ".join(second.stderr.split())
    text = " ".join(second.stdout.split())  # the note may wrap
    assert f"being trained by pid {first.pid} on host {socket.gethostname()}" in text, second.stdout
    assert "finished before this command" not in text
    assert "locked*" not in text


def test_ten_class_sweep_traces_the_gradient_probe_once_per_run(tmp_path):
    """Each run's epoch-0 gradient probe used to trace twice (a full and the last, smaller batch),
    and three runs of a sweep were enough for TensorFlow's `tf.function retracing` warning."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("a tf.function matter")
    overrides = [
        "data.source=synthetic",
        "data.synthetic.shape=[8,8,3]",
        "data.classes=[0,1,2,3,4,5,6,7,8,9]",
        "data.train_per_class=10",  # 100 samples, batches of 32: three full, one of 4
        "data.test_per_class=2",
        "model.arch=mlp",
        "model.widths=[16]",
        "optim.epochs=1",
        "optim.batch_size=32",
        "track.margin_epochs=none",
        "track.nc_epochs=none",
        "sweep={loss.kind: [square, square_rescaled, cross_entropy]}",
    ]
    res = sqnc("run", *sets(overrides), "--out", str(tmp_path / "o"), "--no-progress", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "retracing" not in res.stderr, res.stderr[-3000:]


def test_gradient_probe_reuses_one_trace_for_every_batch_size():
    """The probe itself: batches of 32 and 4 (and eta given) trace once each, with the values of
    an eager computation."""
    import keras
    import numpy as np

    if keras.backend.backend() != "tensorflow":
        pytest.skip("a tf.function matter")
    from sqloss_nc.config import load_config
    from sqloss_nc.data import load_dataset
    from sqloss_nc.experiment import build_training

    cfg = load_config(None, ["data.source=synthetic", "data.synthetic.shape=[8,8,3]", "data.train_per_class=18", "model.arch=mlp", "model.widths=[8]"])
    ds = load_dataset(cfg)
    _, trainer, _ = build_training(cfg, ds)
    for n in (32, 4, 32, 4):
        trainer.gradients(ds.x_train[:n], ds.y_train[:n])
    trainer.gradients(ds.x_train[:4], ds.y_train[:4], eta=0.1)
    trainer.gradients(ds.x_train[:32], ds.y_train[:32], eta=0.2)
    traces = {key: fn.experimental_get_tracing_count() for key, fn in trainer._gradients_fns.items()}
    assert traces == {(True, True): 1, (True, False): 1}, traces
    # Same numbers as the graph-free computation.
    f, loss, objective, grads, grad_sq, corr = trainer.gradients(ds.x_train[:4], ds.y_train[:4], eta=0.1)
    _, loss_e, objective_e, grads_e, grad_sq_e, corr_e = trainer._objective_and_grads(ds.x_train[:4], ds.y_train[:4], eta=0.1)
    np.testing.assert_allclose([loss, objective, grad_sq, corr], [float(loss_e), float(objective_e), float(grad_sq_e), float(corr_e)], rtol=1e-5)
