"""The bad-input catalogue (README "Bad input"): each case exits 2 with one line naming the
problem, prints no traceback and writes nothing."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()
SYN = [
    "data.source=synthetic",
    "data.synthetic.shape=[8,8,3]",
    "data.train_per_class=16",
    "data.test_per_class=4",
    "model.arch=mlp",
    "model.widths=[4]",
    "optim.epochs=1",
    "optim.batch_size=8",
    "optim.schedule=constant",  # configs/quickstart.yaml decays its rate at epoch 270
    "optim.milestones=[]",
]


def image_folder(root, classes=("a", "b", "c"), n=3, corrupt=False, drop_test_class=None):
    for split in ("train", "test"):
        for c in classes:
            if split == "test" and c == drop_test_class:
                continue
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(d / f"{i}.png")
    if corrupt:
        (root / "train" / classes[0] / "0.png").write_bytes(b"\x89PNG broken")
    return root


def folder(tmp, **kw):
    return [
        "data.source=folder",
        f"data.path={image_folder(tmp / 'imgs', **kw)}",
        "data.classes=[0,1]",
        "data.train_per_class=null",
        "data.test_per_class=null",
        "model.arch=mlp",
        "optim.epochs=1",
        "optim.batch_size=2",
    ]


# (id, setup(tmp) -> (config file or None, [--set overrides], [extra args]), expected text)
CASES = [
    ("unknown-key", lambda t: (None, ["optim.momentun=0.5"], []), "did you mean 'optim.momentum'"),
    ("unknown-section", lambda t: (None, ["modle.arch=mlp"], []), "modle: unknown key"),
    ("wrong-type-int", lambda t: (None, ["optim.epochs=abc"], []), "optim.epochs"),
    ("wrong-type-list", lambda t: (None, ["data.classes=3"], []), "data.classes"),
    ("negative-lr", lambda t: (None, ["optim.lr=-0.1"], []), "optim.lr"),
    ("zero-lr", lambda t: (None, ["optim.lr=0"], []), "optim.lr"),
    ("momentum-1", lambda t: (None, ["optim.momentum=1"], []), "optim.momentum"),
    ("batch-larger-than-data", lambda t: (None, [*SYN, "optim.batch_size=1000"], []), "optim.batch_size"),
    ("class-out-of-0-9", lambda t: (None, ["data.classes=[1,10]"], []), "data.classes"),
    ("class-out-of-folder", lambda t: (None, [*folder(t), "data.classes=[0,5]"], []), "data.classes"),
    ("duplicate-classes", lambda t: (None, ["data.classes=[2,2]"], []), "data.classes"),
    ("one-class", lambda t: (None, ["data.classes=[2]"], []), "data.classes"),
    ("label-noise-above-1", lambda t: (None, ["data.label_noise=1.5"], []), "data.label_noise"),
    ("label-noise-negative", lambda t: (None, ["data.label_noise=-0.1"], []), "data.label_noise"),
    ("init-scale-zero", lambda t: (None, ["model.init_scale=0"], []), "model.init_scale"),
    ("init-scale-with-torch-init", lambda t: (None, ["model.init=torch", "model.init_scale=1"], []), "model.init_scale: unused with model.init 'torch'"),
    ("init-scale-negative", lambda t: (None, ["model.init_scale=-1"], []), "model.init_scale"),
    ("unknown-normalization", lambda t: (None, ["model.normalization=groupnorm"], []), "model.normalization"),
    ("unknown-loss", lambda t: (None, ["loss.kind=hinge"], []), "loss.kind"),
    ("rescaled-loss-on-scalar-output", lambda t: (None, ["model.output=scalar", "loss.kind=square_rescaled"], []), "loss.kind"),
    ("rescaled-loss-k-zero", lambda t: (None, ["loss.kind=square_rescaled", "loss.k=0"], []), "loss.k"),
    ("seed-negative", lambda t: (None, ["seed=-1"], []), "seed"),
    ("unknown-arch", lambda t: (None, ["model.arch=resnet"], []), "model.arch"),
    ("deep-arch-weight-normalized", lambda t: (None, ["model.arch=resnet18", "model.normalization=lagrange"], []), "model.normalization"),
    ("bias-with-normalized-layers", lambda t: (None, ["model.normalization=weightnorm", "model.bias=true"], []), "model.bias"),
    ("width-zero", lambda t: (None, ["model.width=0"], []), "model.width"),
    ("unknown-dataset", lambda t: (None, ["data.source=tfds", "data.name=imagenet"], []), "data.name"),
    ("sample-not-cifar10", lambda t: (None, ["data.name=mnist"], []), "data.name: the shipped sample is cifar10"),
    ("class-out-of-dataset", lambda t: (None, ["data.source=tfds", "data.name=cifar100", "data.classes=[0,100]"], []), "out of range 0..99"),
    ("exponential-with-onehot", lambda t: (None, ["loss.kind=exponential"], []), "loss.kind"),
    ("scalar-output-3-classes", lambda t: (None, ["model.output=scalar", "data.classes=[0,1,2]"], []), "model.output"),
    ("convnet-on-vectors", lambda t: (None, [*SYN, "data.synthetic.shape=[12]", "model.arch=convnet"], []), "model.arch"),
    ("resnet-on-vectors", lambda t: (None, [*SYN, "data.synthetic.shape=[12]", "model.arch=resnet18"], []), "model.arch"),
    ("step-without-milestones", lambda t: (None, ["optim.schedule=step", "optim.milestones=[]"], []), "milestones"),
    ("milestones-not-increasing", lambda t: (None, ["optim.schedule=step", "optim.milestones=[50,10]"], []), "milestones"),
    ("missing-data-folder", lambda t: (None, ["data.source=folder"], ["--data-dir", str(t / "nope")]), "does not exist"),
    ("folder-without-path", lambda t: (None, ["data.source=folder"], []), "data.path"),
    (
        "empty-data-folder",
        lambda t: ((t / "empty").mkdir() or None, ["data.source=folder", f"data.path={t / 'empty'}"], []),
        "no 'train/' folder",
    ),
    ("missing-class-in-test", lambda t: (None, folder(t, drop_test_class="b"), []), "'test/b' is missing"),
    ("corrupt-image", lambda t: (None, folder(t, corrupt=True), []), "cannot decode image"),
    ("too-few-images", lambda t: (None, [*folder(t), "data.train_per_class=10"], []), "data.train_per_class"),
    ("output-below-a-file", lambda t: ((t / "file").write_text("x") and None, SYN, ["--out", str(t / "file" / "out")]), "is a file"),
    ("config-not-found", lambda t: (t / "missing.yaml", [], []), "not found"),
    ("yaml-syntax-error", lambda t: ((t / "bad.yaml").write_text("optim:\n  lr: [0.1\n") and t / "bad.yaml", [], []), "line"),
    ("yaml-not-a-mapping", lambda t: ((t / "list.yaml").write_text("- 1\n- 2\n") and t / "list.yaml", [], []), "mapping"),
    ("empty-sweep-list", lambda t: (None, ["sweep={optim.lr: []}"], []), "sweep.optim.lr"),
    ("sweep-unknown-key", lambda t: (None, ["sweep={optim.lrr: [0.1]}"], []), "sweep.optim.lrr"),
    ("sweep-bad-value", lambda t: (None, ["sweep={optim.lr: [0.1, -1]}"], []), "optim.lr"),
    ("name-with-slash", lambda t: (None, ["name=a/b"], []), "name"),
    ("override-without-equals", lambda t: (None, ["optim.lr"], []), "key=value"),
    ("unknown-backend", lambda t: (None, SYN, ["--backend", "slurm"]), "--backend"),
    # 32 samples / batch 8 = 4 steps per epoch: 3 steps per call would run into the next epoch.
    ("steps-per-execution-not-dividing", lambda t: (None, [*SYN, "compute.steps_per_execution=3"], []), "does not divide the 4 steps"),
    (
        "steps-per-execution-with-step-tracking",
        lambda t: (None, [*SYN, "compute.steps_per_execution=epoch", "track.step_margins_until=5"], []),
        "compute.steps_per_execution: per-step tracking",
    ),
    ("stack-zero", lambda t: (None, SYN, ["--stack", "0"]), "compute.stack: must be an integer >= 1 or 'auto', got 0"),
    ("stack-not-a-number", lambda t: (None, SYN, ["--stack", "many"]), "compute.stack"),
    (
        "stack-with-step-tracking",
        lambda t: (None, [*SYN, "track.step_margins_until=5"], ["--stack", "4"]),
        "compute.stack: per-step tracking (track.step_margins_until) needs unstacked runs",
    ),
    # Stacking is a JAX feature: on TensorFlow an explicit K > 1 is refused (tests/test_stacking.py
    # runs this case on TensorFlow from the JAX suite).
    *(
        [("stack-on-tensorflow", lambda t: (None, SYN, ["--stack", "2"]), "compute.stack: stacked runs need the JAX backend")]
        if __import__("keras").backend.backend() == "tensorflow"
        else []
    ),
]


@pytest.mark.parametrize("case, setup, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case, setup, expected):
    config, overrides, extra = setup(tmp_path)
    out = tmp_path / "out"
    args = ["run", *([str(config)] if config else []), "--no-progress", *[a for o in overrides for a in ("--set", o)]]
    if "--out" not in extra:
        args += ["--out", str(out)]
    res = runner.invoke(app, args + extra)
    assert res.exit_code == 2, (res.output, res.exception)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], res.stderr
    assert "Traceback" not in res.output
    assert not out.exists() and not (tmp_path / "file" / "out").exists()


def test_catalogue_is_documented_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [c[0] for c in CASES if f"`{c[0]}`" not in readme]
    assert not missing, f"README bad-input table lacks {missing}"


def _run_without_rows(t):
    """OUT with one run folder that has only its status (a run that has not finished epoch 0)."""
    (t / "out" / "quickstart" / "seed=0").mkdir(parents=True)
    (t / "out" / "quickstart" / "seed=0" / "status.json").write_text('{"state": "running", "epoch": 0}')
    return t / "out"


OTHER_CASES = [
    ("analyze-no-runs", lambda t: ["analyze", str(t)], "no run directories"),
    ("analyze-missing-folder", lambda t: ["analyze", str(t / "nope")], "is not a folder"),
    ("figures-before-analyze", lambda t: ["figures", str(t)], "run `sqnc analyze"),
    ("simulate-missing-run", lambda t: ["simulate", "--rho-flow", str(t / "nope")], "does not exist"),
    ("tensorboard-missing-folder", lambda t: ["tensorboard", str(t / "nope")], "is not a folder"),
    ("tensorboard-no-runs", lambda t: ["tensorboard", str(t)], "no run directories"),
    ("tensorboard-no-rows-yet", lambda t: ["tensorboard", str(_run_without_rows(t))], "has per-epoch rows yet"),
]


@pytest.mark.parametrize("case, args, expected", OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_bad_input_other_commands(tmp_path, case, args, expected):
    argv = args(tmp_path)  # may set up files (a run folder) before the snapshot
    before = sorted(p.name for p in tmp_path.rglob("*"))
    res = runner.invoke(app, argv)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], res.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_other_commands_catalogue_is_documented():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert not [c[0] for c in OTHER_CASES if f"`{c[0]}`" not in readme]
