"""Issue 27's equal-numbers fixtures: the NC files of two small runs, written by today's code.

The measurement path may be made faster, never different: `tests/test_equal_numbers.py` reruns
these runs and compares every column of `nc.csv`, `nc_layers.csv`, `spectra.csv` and
`class_gram.csv` with the fixtures to 1e-6 relative. Training is deterministic on one backend and
machine kind (the resume tests rely on it), so a changed number is a changed measurement.

    python tools/equal_numbers.py            # (re)write tests/data/equal_numbers/<backend>/
    KERAS_BACKEND=jax python tools/equal_numbers.py

Regenerate only when a measure's definition changes on purpose, and say so in the commit.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "data" / "equal_numbers"
FILES = ("nc.csv", "nc_layers.csv", "spectra.csv", "class_gram.csv")

# The quick start of 0.2.0 (BN convnet, binary, WD 0.01; a frozen copy, so that a redesigned
# configs/quickstart.yaml leaves the fixtures valid) and the narrow ResNet-18 (10 classes, biases, rescaled-free square loss,
# nc_test) of configs/nc, both on the shipped sample, NC every epoch.
QUICKSTART = "tests/data/equal_numbers/quickstart_0.2.yaml"
RUNS = {
    "quickstart": (QUICKSTART, ["optim.epochs=3", "track.nc_epochs=all"]),
    "quickstart_wd0": (QUICKSTART, ["optim.epochs=2", "track.nc_epochs=all", "optim.weight_decay=0"]),
    "resnet18_narrow": (
        "configs/nc/resnet18_narrow_cifar10_cpu.yaml",
        ["data.source=sample", "data.train_per_class=100", "data.test_per_class=50", "optim.epochs=2", "track.nc_epochs=all"],
    ),
}


def run(name: str, out: Path) -> Path:
    """Train run `name` of RUNS into `out` and return its run directory."""
    sys.path.insert(0, str(ROOT))
    from sqloss_nc.config import load_config
    from sqloss_nc.experiment import train_and_evaluate

    config, sets = RUNS[name]
    rundir = out / name
    res = train_and_evaluate(load_config(ROOT / config, sets), rundir)
    assert res["state"] == "done", res
    return rundir


def main() -> None:
    from sqloss_nc import backend

    dest = FIXTURES / backend.NAME
    with tempfile.TemporaryDirectory() as tmp:
        for name in RUNS:
            rundir = run(name, Path(tmp))
            (dest / name).mkdir(parents=True, exist_ok=True)
            for f in FILES:
                shutil.copy(rundir / f, dest / name / f)
            print(f"wrote {dest / name}")


if __name__ == "__main__":
    main()
