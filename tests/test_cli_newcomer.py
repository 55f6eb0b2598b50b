"""What a newcomer meets at the command line (issue 20), each case run the way they run it: `sqnc`
in a subprocess. Mistakes end in one line and exit 2, never a traceback; settings that would do
something else than written are refused or warned about; `--help` is instant and readable;
`sqnc config show` lists the schema."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_bad_inputs import SYN as TINY  # a 2-class synthetic MLP run that trains in seconds

ROOT = Path(__file__).resolve().parent.parent


def sqnc(*args, env=None, timeout=300, python=None):
    """`sqnc ARGS` as a user runs it (a fresh process); returns the CompletedProcess."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "100", **(env or {})}
    cmd = [*(python or [sys.executable]), "-m", "cli.main", *args]
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def one_line_error(res, *expected):
    """Exit 2, exactly one non-empty stderr line containing every `expected` text, no traceback."""
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-3000:])
    assert len(lines) == 1, res.stderr[-3000:]
    assert all(e in lines[0] for e in expected), lines
    assert "Traceback" not in res.stdout + res.stderr


# ----------------------------------------------------------------------------- one-line errors


def test_config_that_is_not_utf8_is_one_line(tmp_path):
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes("name: caf\xe9\n".encode("latin-1"))
    one_line_error(sqnc("run", str(cfg), "--dry-run", "--out", str(tmp_path / "o")), "not a UTF-8", "latin1.yaml")


def test_duplicate_yaml_key_is_refused_with_its_line(tmp_path):
    cfg = tmp_path / "dup.yaml"
    cfg.write_text("name: dup\noptim:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n")
    one_line_error(sqnc("run", str(cfg), "--dry-run", "--out", str(tmp_path / "o")), "line 5", "'lr'", "first on line 3")


def test_infinite_learning_rate_is_refused(tmp_path):
    res = sqnc("run", *sets([*TINY, "optim.lr=inf"]), "--out", str(tmp_path / "o"))
    one_line_error(res, "optim.lr", "finite")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--set", "optim.epochs", "8"], ("--set optim.epochs=8",)),  # a space instead of `=`
        (["--set", "data.classes=[1,", "2]"], ("quote it", "--set 'data.classes=[1, 2]'")),  # unquoted, split by the shell
        (["--set", "data.classes=[1,", "2,", "3]"], ("quote it", "--set 'data.classes=[1, 2, 3]'")),  # split twice: an extra argument
        (["configs/quickstart.yaml", "extra"], ("unexpected argument", "extra")),
    ],
    ids=["space-instead-of-equals", "unquoted-list", "unquoted-list-of-three", "extra-argument"],
)
def test_set_that_swallowed_the_next_word_says_so(tmp_path, argv, expected):
    res = sqnc("run", *argv, "--out", str(tmp_path / "o"))
    one_line_error(res, *expected)
    assert "file not found" not in res.stderr


def test_unknown_key_suggests_the_name_it_has_here(tmp_path):
    one_line_error(sqnc("run", "--set", "optim.learning_rate=0.1", "--dry-run"), "optim.learning_rate", "did you mean 'optim.lr'")
    one_line_error(sqnc("run", "--set", "optim.init_scale=1", "--dry-run"), "did you mean 'model.init_scale'")


@pytest.mark.parametrize("backend", ["torch", "mxnet"])
def test_keras_backend_that_is_not_supported_is_one_line(tmp_path, backend):
    res = sqnc("run", "--dry-run", "--out", str(tmp_path / "o"), env={"KERAS_BACKEND": backend})
    one_line_error(res, f"KERAS_BACKEND={backend}", "tensorflow or jax")


def test_keras_backend_that_is_not_installed_names_the_install_command(tmp_path):
    # As on the TF-free install: TensorFlow cannot be imported, KERAS_BACKEND=tensorflow.
    block = ["-c", "import sys; sys.modules['tensorflow'] = None; import runpy; runpy.run_module('cli.main', run_name='__main__')"]
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    res = subprocess.run(
        [sys.executable, *block, "run", "--dry-run", "--out", str(tmp_path / "o")],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if not __import__("importlib").util.find_spec("jax"):
        pytest.skip("needs JAX installed (the backend the message offers instead)")
    one_line_error(res, "KERAS_BACKEND=tensorflow", 'pip install -e ".[tensorflow]"', "unset KERAS_BACKEND")


# ----------------------------------------------------------------------------- silently something else


def test_data_dir_with_the_sample_source_is_refused(tmp_path):
    """`--data-dir` with the default (sample) config trained on the 600 shipped images, exit 0."""
    res = sqnc("run", "--data-dir", str(tmp_path / "cifar10-jpeg.zip"), "--out", str(tmp_path / "o"))
    one_line_error(res, "--data-dir", "data.source is 'sample'", "--set data.source=folder")
    assert not (tmp_path / "o").exists()


def test_empty_config_trains_on_the_whole_sample(tmp_path):
    """The schema's defaults (5000 images per class) asked more of the shipped sample (300) than it has."""
    cfg = tmp_path / "empty.yaml"
    cfg.write_text("")
    res = sqnc("run", str(cfg), *sets(["optim.epochs=1", "model.widths=[2,2,2]", "track.nc_epochs=none"]), "--out", str(tmp_path / "o"))
    assert res.returncode == 0, res.stderr[-3000:]
    import json

    status = json.loads((tmp_path / "o" / "quickstart" / "seed=0" / "status.json").read_text())
    # 300 train + 50 test images of each of the 2 classes: counted in the sample zip itself.
    import zipfile

    from sqloss_nc.data import sample_path

    names = zipfile.ZipFile(sample_path()).namelist()
    for split, key in (("train", "n_train"), ("test", "n_test")):
        want = sum(1 for n in names if n.split("/")[-3:-2] == [split] and n.split("/")[-2] in ("automobile", "bird") and not n.endswith("/"))
        assert status["data"][key] == want, (status["data"], want)


def test_milestones_beyond_the_run_are_warned_in_output_and_status(tmp_path):
    res = sqnc(
        "run", *sets([*TINY, "optim.epochs=2", "optim.schedule=step", "optim.milestones=[30,45]"]), "--out", str(tmp_path / "o"), "--no-progress"
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert out.count("optim.milestones: [30, 45] at or beyond optim.epochs 2: the learning rate never decays") == 1, out
    import json

    status = json.loads((tmp_path / "o" / "quickstart" / "seed=0" / "status.json").read_text())
    assert status["warnings"] == ["optim.milestones: [30, 45] at or beyond optim.epochs 2: the learning rate never decays"]


def test_finished_run_of_the_other_backend_is_named_when_skipped(tmp_path):
    """`KERAS_BACKEND=jax sqnc run` after `sqnc run` in the same folder trains nothing: it must say
    which backend made the run it skips, and how to train this one."""
    out = tmp_path / "o"
    assert sqnc("run", *sets(TINY), "--out", str(out), "--no-progress").returncode == 0
    status = out / "quickstart" / "seed=0" / "status.json"
    import json

    made = json.loads(status.read_text())["environment"]["backend"]
    other = {"tensorflow": "jax", "jax": "tensorflow"}[made]
    if not __import__("importlib").util.find_spec(other):
        pytest.skip(f"{other} is not installed")
    res = sqnc("run", *sets(TINY), "--out", str(out), "--no-progress", env={"KERAS_BACKEND": other})
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"already done on {made}, skipped" in res.stdout and f"to train it on {other} too, give another --out" in res.stdout


# ----------------------------------------------------------------------------- help and config show


def test_help_is_instant_and_imports_no_framework():
    code = (
        "import sys, runpy\n"
        "sys.argv = ['sqnc', 'run', '--help']\n"
        "try:\n    runpy.run_module('cli.main', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in ('tensorflow', 'jax', 'keras', 'torch') if m in sys.modules))\n"
    )
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ, COLUMNS="100"))
    seconds = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-2000:]
    assert "LOADED []" in res.stdout, res.stdout[-500:]
    assert seconds < 5.0, seconds  # was 5-10 s: TensorFlow imported by the app callback (about 1 s now)


def test_help_labels_read_like_the_readme():
    run_help = sqnc("run", "--help").stdout
    assert "pip install -e '.[ray]'" in run_help  # Rich markup ate "[ray]"
    assert "KEY=VALUE" in run_help and "<bool>" not in run_help and "<list[str]>" not in run_help
    analyze_help = sqnc("analyze", "--help").stdout
    assert "analyze [OPTIONS] OUT" in analyze_help and "{out}" not in analyze_help and "<bool>" not in analyze_help


def test_config_show_lists_every_key_with_default_and_meaning():
    from sqloss_nc.config import Config

    res = sqnc("config", "show")
    assert res.returncode == 0, res.stderr
    text = res.stdout

    def keys(model, prefix=""):
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                yield from keys(ann, f"{prefix}{name}.")
            else:
                yield prefix + name

    missing = [k for k in keys(Config) if f"\n{k} = " not in "\n" + text]
    assert not missing, missing
    lines = text.splitlines()
    key_lines = [i for i, line in enumerate(lines[:-1]) if " = " in line and not line.startswith(" ")]
    undocumented = [lines[i] for i in key_lines if not lines[i + 1].startswith("    ")]
    assert not undocumented, undocumented
    assert "optim.lr = 0.01  (float)" in text and "optim.schedule = constant  (constant | step)" in text
    one = sqnc("config", "show", "optim.lr")
    assert one.returncode == 0 and one.stdout.splitlines()[0] == "optim.lr = 0.01  (float)" and "Learning rate" in one.stdout
    one_line_error(sqnc("config", "show", "optim.learning_rate"), "did you mean 'optim.lr'")


# ----------------------------------------------------------------------------- analyze


def fake_out(root, losses=("cross_entropy", "square_rescaled")):
    """OUT with one finished fake run per loss; a cross-entropy run's theory.csv is header-only
    (no toy-model check applies to it), as `sqnc run` writes it."""
    import numpy as np
    from fake_runs import config, fake_run, write_run

    rng = np.random.default_rng(0)
    for loss in losses:
        cfg = config("nc_sweep", 0, 4, loss__kind=loss)
        run = write_run(root / "nc_sweep" / f"loss={loss}_seed=0", cfg, fake_run(rng, 4, [0, 2, 4]))
        (run / "theory.csv").write_text("check,measured,predicted,rel_error,note\n")
    return root


def test_analyze_of_one_run_folder_names_the_output_root(tmp_path):
    out = fake_out(tmp_path / "out")
    res = sqnc("analyze", str(out / "nc_sweep" / "loss=cross_entropy_seed=0"))
    one_line_error(res, "is one run's folder", f"give the output root that holds it: {out}")


def test_expected_empty_theory_csv_is_not_a_problem(tmp_path):
    out = fake_out(tmp_path / "out")
    res = sqnc("analyze", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "theory.csv" not in res.stdout.split("final values")[0], res.stdout  # no "problems" row for it
    import pandas as pd

    problems = pd.read_csv(out / "analysis" / "problems.csv")
    assert not problems["problem"].astype(str).str.contains("theory.csv").any(), problems


@pytest.mark.parametrize("width", [80, 100])
def test_analyze_table_keeps_every_cell_whole_at_terminal_widths(tmp_path, width):
    """At 80 columns the table split `loss=cross_entropy` into `loss=c / ross_e / ntropy`."""
    import pandas as pd

    out = fake_out(tmp_path / "out")
    res = sqnc("analyze", str(out), env={"COLUMNS": str(width)})
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    lines = lines[: next(i for i, line in enumerate(lines) if line.startswith("all columns:"))]  # the table (paths follow)
    assert all(len(line) <= width for line in lines), res.stdout
    tokens = {t for line in lines for t in line.split()} | {t.split("=", 1)[1] for line in lines for t in line.split() if "=" in t}
    summary = pd.read_csv(out / "analysis" / "summary.csv")
    for setting in summary["setting"]:
        assert setting in tokens, (setting, res.stdout)
    # The ρ column is never left out: every setting's mean ρ appears whole, at the table's precision.
    for rho in summary["rho_mean"]:
        assert f"{rho:.3g}" in tokens or any(t.startswith(f"{rho:.3g}±") for t in tokens), (rho, res.stdout)
