"""What a user sees: a quiet start without an NVIDIA driver, run tables whose cells are never
broken across lines, and the TensorBoard export (read back with TensorBoard's own reader)."""

import re
from io import StringIO

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cli.main import app
from sqloss_nc.startup import apply_startup_environment, nvidia_driver_present, startup_environment
from sqloss_nc.sweep import states_table, summary_rows, summary_table

runner = CliRunner()

# ----------------------------------------------------------------------------- startup


@pytest.mark.parametrize(
    "driver, env, expected",
    [
        (False, {}, {"TF_CPP_MIN_LOG_LEVEL": "3"}),  # CPU machine: the cuInit failure is noise
        (True, {}, {"TF_CPP_MIN_LOG_LEVEL": "2"}),  # driver present: a broken one must show its error
        (True, {"CUDA_VISIBLE_DEVICES": "0,1"}, {"TF_CPP_MIN_LOG_LEVEL": "2"}),
        (True, {"CUDA_VISIBLE_DEVICES": "GPU-8e6c1b2a"}, {"TF_CPP_MIN_LOG_LEVEL": "2"}),
        (True, {"CUDA_VISIBLE_DEVICES": ""}, {"TF_CPP_MIN_LOG_LEVEL": "3"}),  # GPUs hidden on purpose
        (True, {"CUDA_VISIBLE_DEVICES": "-1"}, {"TF_CPP_MIN_LOG_LEVEL": "3"}),
        (True, {"CUDA_VISIBLE_DEVICES": " -1, 0"}, {"TF_CPP_MIN_LOG_LEVEL": "3"}),
        (False, {"TF_CPP_MIN_LOG_LEVEL": "0"}, {}),  # the user's level always wins
        (True, {"TF_CPP_MIN_LOG_LEVEL": "3"}, {}),
        (True, {"TF_CPP_MIN_LOG_LEVEL": "", "CUDA_VISIBLE_DEVICES": ""}, {}),
    ],
)
def test_startup_decision(driver, env, expected):
    assert startup_environment(driver, env) == expected


def test_driver_detection_looks_at_the_driver_files(tmp_path):
    assert not nvidia_driver_present((str(tmp_path / "version"), str(tmp_path / "nvidiactl")))
    (tmp_path / "nvidiactl").write_text("")
    assert nvidia_driver_present((str(tmp_path / "version"), str(tmp_path / "nvidiactl")))


def test_apply_startup_environment_sets_only_what_the_user_left_open(monkeypatch):
    monkeypatch.setattr("sqloss_nc.startup.nvidia_driver_present", lambda: False)
    env = {"PATH": "/bin"}
    assert apply_startup_environment(env) == {"TF_CPP_MIN_LOG_LEVEL": "3"} and env["TF_CPP_MIN_LOG_LEVEL"] == "3"
    env = {"TF_CPP_MIN_LOG_LEVEL": "1"}
    assert apply_startup_environment(env) == {} and env == {"TF_CPP_MIN_LOG_LEVEL": "1"}


# ----------------------------------------------------------------------------- run tables

# Realistic ids of the Fig. 2 / Fig. 11 sweeps, and numbers across the ranges runs produce.
IDS = [
    "init=0.01_wd=0.01_seed=0",
    "init=5_wd=0.01_seed=1",
    "init=0.01_wd=0_seed=12",
    "init=5_wd=0.001_noise=0.2_seed=3",
]
FINALS = [
    dict(train_loss=0.09043127, train_acc=0.935, test_acc=0.81, rho=2.3177512, margin_mean=0.51234, elapsed_s=13.87),
    dict(train_loss=1.2345e-05, train_acc=1.0, test_acc=0.79, rho=10733.2, margin_mean=-0.012345, elapsed_s=2400.5),
    dict(train_loss=0.4999, train_acc=0.5, test_acc=0.5, rho=107.345, margin_mean=3.2e-07, elapsed_s=0.5),
    dict(train_loss=float("nan"), train_acc=float("nan"), test_acc=float("nan"), rho=float("inf"), margin_mean=float("nan"), elapsed_s=9.0),
]


def results(ids=IDS):
    states = ["done", "done", "done", "diverged"]
    return [
        dict(run_id=i, state=s, skipped=k == 1, epoch=[60, 400, 1, 7][k], rundir=f"outputs/fig2_init_wd/{i}", final=f)
        for k, (i, s, f) in enumerate(zip(ids, states, FINALS))
    ]


def render(renderable, width):
    buf = StringIO()
    Console(width=width, file=buf, force_terminal=False, color_system=None).print(renderable)
    return buf.getvalue()


def tokens_by_line(text):
    """Whitespace-separated tokens of each line; `key=value` tokens also give their value."""
    out = []
    for line in text.splitlines():
        toks = line.split()
        out.append(set(toks) | {t.split("=", 1)[1] for t in toks if "=" in t})
    return out


@pytest.mark.parametrize("width", [60, 80, 120])
def test_run_table_never_breaks_a_number_or_a_run_id(width):
    res = results()
    text = render(summary_table(res), width)
    lines = tokens_by_line(text)
    assert all(len(line) <= width for line in text.splitlines()), text
    for row in summary_rows(res):
        for key, cell in row.items():
            if cell:
                # The whole cell is one token of one line: never folded, never cut with "…".
                assert any(cell in toks for toks in lines), (key, cell, text)
    assert "…" not in text
    # Every shown number is the run's number at the stated precision (not a fragment of it).
    numbers = [float(t) for toks in lines for t in toks if re.fullmatch(r"-?\d+(\.\d+)?(e[-+]\d+)?", t)]
    for want in (0.0904, 0.935, 2.318, 0.512, 1.23e-05, 1.073e04, -0.0123, 107.3, 3.2e-07, 0.23):
        assert any(abs(n - want) <= 1e-3 * abs(want) for n in numbers), (want, text)


def test_run_table_is_a_table_at_80_columns_and_one_line_per_run_when_narrow():
    res = results(IDS[:3])  # the Fig. 2 ids: a table at 80 columns
    wide = render(summary_table(res), 80)
    assert "train" in wide and "──" in wide
    assert [line.split()[0] for line in wide.splitlines() if line.split() and line.split()[0] in IDS] == IDS[:3]
    narrow = render(summary_table(res), 50)
    starts = [line.split()[0] for line in narrow.splitlines() if line.split() and line.split()[0] in IDS]
    assert starts == IDS[:3] and "rho=2.318" in narrow and "──" not in narrow


def test_run_table_marks_skipped_runs_and_names_the_folder():
    text = render(summary_table(results()), 120)
    assert "done*" in text and "* finished before this command (skipped)" in text and "outputs/fig2_init_wd" in text


def test_dry_run_table_keeps_ids_whole_and_puts_conflicts_under_it():
    states = [
        dict(run_id=IDS[0], plan="new", state="", epoch="", epochs=400),
        dict(run_id=IDS[3], plan="resume", state="running", epoch=123, epochs=400),
        dict(run_id=IDS[1], plan="conflict: output: /a/long/path holds a run with a different config (optim.lr)", state="done", epoch=400, epochs=400),
    ]
    for width in (60, 80):
        text = render(states_table(states), width)
        lines = tokens_by_line(text)
        for cell in (*[s["run_id"] for s in states], "-/400", "123/400", "400/400", "conflict"):
            assert any(cell in toks for toks in lines), (cell, text)
        assert "different config (optim.lr)" in " ".join(text.split())


# ----------------------------------------------------------------------------- TensorBoard

METRICS = (
    "epoch,train_loss,train_acc,test_acc,rho,rho_bn,margin_mean,lr,elapsed_s\n"
    "0,0.5000000000000001,0.5,0.5,1.0000000000000002,,0.0012345678901234567,0.1,0.25\n"
    "1,0.3141592653589793,0.71875,0.6875,1.2345678901234567,,0.1,0.1,0.75\n"
    "2,0.09043127123456789,0.9375,0.8125,2.3177512345678,,0.51234,0.01,1.5\n"
)
NC = "epoch,nc1,nc2_equinorm_means,test_nc1\n0,1.6400000000000001,0.3,2.5\n2,0.16123456789012345,0.05,0.9\n"


def make_runs(out):
    for run_id in ("init=0.1_seed=0", "init=5_seed=0"):
        d = out / "fig2" / run_id
        d.mkdir(parents=True)
        (d / "metrics.csv").write_text(METRICS)
        (d / "nc.csv").write_text(NC)
        (d / "status.json").write_text('{"state": "done", "epoch": 2}\n')
    return out


def read_back(run_dir):
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    acc = ea.EventAccumulator(str(run_dir), size_guidance={ea.TENSORS: 0})  # 0: keep every point
    acc.Reload()
    return {
        tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto).item()) for e in acc.Tensors(tag)] for tag in acc.Tags()["tensors"]
    }


def csv_series(text, prefix):
    """tag -> [(epoch, value rounded to float32)]: the export writes float32, the only scalar dtype
    TensorBoard's default loader shows (tests/test_tensorboard_server.py checks that server)."""
    import numpy as np

    header, *rows = [line.split(",") for line in text.strip().splitlines()]
    return {
        f"{prefix}/{col}": [(int(r[0]), float(np.float32(float(r[i])))) for r in rows if r[i] != ""]
        for i, col in enumerate(header)
        if col != "epoch" and any(r[i] != "" for r in rows)
    }


def test_tensorboard_export_reads_back_with_the_csv_values(tmp_path):
    out = make_runs(tmp_path / "out")
    res = runner.invoke(app, ["tensorboard", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote 2 run(s)" in res.output and "tensorboard --logdir" in res.output
    want = {**csv_series(METRICS, "metrics"), **csv_series(NC, "nc")}
    for run_id in ("init=0.1_seed=0", "init=5_seed=0"):
        got = read_back(out / "tensorboard" / "fig2" / run_id)
        assert got == want  # the CSV values rounded to float32, step = epoch, empty cells left out
    # Rerunning replaces the event files instead of adding a second copy of every point.
    first = sorted(p.name for p in (out / "tensorboard").rglob("events.out.tfevents.*"))
    assert runner.invoke(app, ["tensorboard", str(out)]).exit_code == 0
    assert len(sorted(p.name for p in (out / "tensorboard").rglob("events.out.tfevents.*"))) == len(first) == 2
    assert read_back(out / "tensorboard" / "fig2" / "init=5_seed=0") == want
    assert not [p for p in (out / "tensorboard").iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_tensorboard_export_is_ignored_by_analyze(tmp_path):
    from sqloss_nc.analysis import find_run_dirs

    out = make_runs(tmp_path / "out")
    runner.invoke(app, ["tensorboard", str(out)])
    runs, empty = find_run_dirs(out)
    assert [p.name for p in runs] == ["init=0.1_seed=0", "init=5_seed=0"] and empty == []


def test_tensorboard_export_to_another_logdir_skips_runs_without_rows(tmp_path):
    out = make_runs(tmp_path / "out")
    (out / "fig2" / "init=9_seed=0").mkdir()
    (out / "fig2" / "init=9_seed=0" / "status.json").write_text('{"state": "running", "epoch": 0}\n')
    res = runner.invoke(app, ["tensorboard", str(out), "--logdir", str(tmp_path / "tb")])
    assert res.exit_code == 0, res.output
    assert "skipped fig2/init=9_seed=0" in res.output and "wrote 2 run(s)" in res.output
    assert sorted(p.name for p in (tmp_path / "tb" / "fig2").iterdir()) == ["init=0.1_seed=0", "init=5_seed=0"]


def test_tensorboard_export_needs_no_tensorflow(tmp_path):
    """The export reads CSVs and writes with TensorBoard's own writer: it runs where TensorFlow
    is not installed (blocked here; Keras on JAX) and writes the same points."""
    import os
    import subprocess
    import sys

    pytest.importorskip("jax")
    out = make_runs(tmp_path / "out")
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"  # as if TensorFlow were not installed
        "from sqloss_nc.tensorboard import export_tensorboard\n"
        f"export_tensorboard({str(out)!r}, {str(tmp_path / 'tb')!r})\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    want = {**csv_series(METRICS, "metrics"), **csv_series(NC, "nc")}
    assert read_back(tmp_path / "tb" / "fig2" / "init=0.1_seed=0") == want
