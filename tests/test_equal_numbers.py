"""Faster measuring, the same numbers (issue 27): the NC files of the quick start and of the narrow
ResNet-18 equal those today's code wrote before the measurement path was sped up.

The fixtures (`tests/data/equal_numbers/<backend>/`) were written by `tools/equal_numbers.py` with
the code of the commit that added them, before any change to the measurement path. Training is
deterministic on one backend and machine kind, so the networks measured here are the same ones;
only the measuring can differ. Tolerance: 1e-6 relative, plus an absolute floor for values that
are zero up to rounding (an NC2 of collapsed class means, a decomposition term at initialization:
1e-12 of the column's largest magnitude, the float64 rounding of the sums that make them).

One stated exception, an ill-conditioned value: without weight decay the MSE decomposition's W_LS
is the minimum-norm solution of Sigma_T w = b with lstsq's cut-off, and with N < p (the quick
start: N = 600, p = 2048) Sigma_T's spectrum runs down through the cut-off, so how the total
splits into mse_nc1 / mse_nc23 / mse_perp (and ls_distance, which divides by a huge ||W_LS||)
depends on the solver's rounding: `np.linalg.eigh` and `np.linalg.lstsq` on the same matrix
differ by 5e-4 relative (measured on this fixture's epoch 2). There the three terms are compared
to 1e-5 of mse_total (which is well-conditioned and compared to 1e-6) and ls_distance to 1e-3.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sqloss_nc import backend

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import equal_numbers  # noqa: E402

FIXTURES = equal_numbers.FIXTURES / backend.NAME
RTOL = 1e-6
CROSS_CPU_RTOL = 1e-4

# The ResNet takes ~3x the quick start's time; on JAX (compiles per shape) it is slow.
CASES = [
    pytest.param(name, marks=pytest.mark.slow) if name == "resnet18_narrow" and backend.NAME == "jax" else name
    for name in equal_numbers.RUNS
]


ILL_CONDITIONED = {"quickstart_wd0": ("mse_nc1", "mse_nc23", "mse_perp", "ls_distance")}


def assert_frames_equal(mine: pd.DataFrame, ref: pd.DataFrame, where: str, loose: tuple = (), rtol_all: float = RTOL) -> None:
    assert list(mine.columns) == list(ref.columns), f"{where}: columns differ"
    assert len(mine) == len(ref), f"{where}: {len(mine)} rows, fixture has {len(ref)}"
    for col in ref.columns:
        a, b = mine[col], ref[col]
        if not pd.api.types.is_numeric_dtype(b):
            assert a.astype(str).tolist() == b.astype(str).tolist(), f"{where}:{col}"
            continue
        a, b = a.to_numpy(float), b.to_numpy(float)
        assert (np.isnan(a) == np.isnan(b)).all(), f"{where}:{col}: NaN pattern differs"
        ok = ~np.isnan(b)
        # and an absolute 1e-13: float64 rounding of quantities that are 0 by construction (with
        # C = 2 the centred class means are antipodal: |cos + 1| is 1e-16 or 4e-16 by CPU)
        floor = max(1e-12 * (np.abs(b[ok]).max() if ok.any() else 0.0), 1e-13)
        rtol = rtol_all
        if col in loose and col == "ls_distance":
            rtol = 1e-3
        elif col in loose:
            floor = 1e-5 * ref["mse_total"].to_numpy(float)[ok]
        bad = np.abs(a[ok] - b[ok]) > rtol * np.abs(b[ok]) + floor
        assert not bad.any(), f"{where}:{col}: {a[ok][bad][:3]} vs fixture {b[ok][bad][:3]}"


@pytest.mark.skipif(not FIXTURES.exists(), reason=f"no equal-numbers fixtures for the {backend.NAME} backend")
@pytest.mark.parametrize("name", CASES)
def test_the_nc_files_equal_those_written_before_the_speed_up(tmp_path, name):
    rundir = equal_numbers.run(name, tmp_path)
    epochs = same_weights_epochs(pd.read_csv(rundir / "spectra.csv"), pd.read_csv(FIXTURES / name / "spectra.csv"))
    assert 0 in epochs, "the initial weights differ from the fixture's (they are drawn with numpy from the seed)"
    # Another CPU: its float32 forward passes differ too (~1e-7 in the features, 1e-6 after the
    # class-mean Gram's cancellation), so 1e-4 there; on the fixtures' machine every epoch, 1e-6.
    same_machine = len(epochs) == len(set(pd.read_csv(FIXTURES / name / "spectra.csv")["epoch"]))
    for f in equal_numbers.FILES:
        loose = ILL_CONDITIONED.get(name, ()) if f == "nc.csv" else ()
        mine, ref = (d[d["epoch"].isin(epochs)].reset_index(drop=True) for d in (pd.read_csv(rundir / f), pd.read_csv(FIXTURES / name / f)))
        assert_frames_equal(mine, ref, f"{name}/{f}", loose, RTOL if same_machine else CROSS_CPU_RTOL)


def same_weights_epochs(mine: pd.DataFrame, ref: pd.DataFrame) -> list[int]:
    """The epochs at which the run's weights are the fixture's: every singular value of every
    layer equal to 1e-6. Epoch 0 always is (numpy draws the weights); later epochs are on the
    machine that wrote the fixtures, but float32 training on another CPU (oneDNN picks its kernels
    by instruction set: AVX-512 FP16 / AMX against AVX2) moves the weights by ~1e-5 in 4 epochs,
    and then the NC files cannot be compared; they are compared at every epoch where they can."""
    out = []
    for e in sorted(set(ref["epoch"])):
        a, b = (d[d["epoch"] == e].sort_values(["layer", "index"])["singular_value"].to_numpy(float) for d in (mine, ref))
        if len(a) == len(b) and np.allclose(a, b, rtol=1e-6, atol=0):
            out.append(int(e))
    return out


def test_the_comparison_fails_on_a_changed_number():
    ref = pd.read_csv(FIXTURES / "quickstart" / "nc.csv") if FIXTURES.exists() else pd.DataFrame({"nc1": [1.0, 2.0]})
    changed = ref.copy()
    col = "nc1"
    changed.loc[len(changed) - 1, col] *= 1 + 1e-5
    with pytest.raises(AssertionError, match=col):
        assert_frames_equal(changed, ref, "x")
    assert_frames_equal(ref.copy(), ref, "x")
