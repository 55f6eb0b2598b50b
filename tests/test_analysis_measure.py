"""`sqnc analyze` reads `sqnc measure` folders (SPEC §12): one NC state of a model, no training."""

import json

import numpy as np
import pandas as pd
import pytest

from sqloss_nc.analysis import AnalysisError, analyze


def write_measurement(path, nc1, seed=0):
    path.mkdir(parents=True)
    (path / "measure.json").write_text(
        json.dumps(
            {
                "model": {"source": f"models/net{seed}.keras", "sha256": "ab" * 32},
                "layers": [{"name": "relu1", "pool": "avg"}, {"name": "features", "pool": "none"}],
                "data": {"source": "sample", "classes": [0, 1, 2]},
                "class_names": ["airplane", "automobile", "bird"],
                "splits": {"train": 90, "test": 30},
                "epoch": 0,
                "seconds": 1.5,
            }
        )
    )
    pd.DataFrame([{"epoch": 0, "nc1": nc1, "nc4": 0.1, "sigma_w_fro": 0.25}]).to_csv(path / "nc.csv", index=False)
    rows = [
        {"epoch": 0, "split": s, "layer": layer, "measure": "ncc_accuracy", "value": v}
        for s, v in (("train", 0.9), ("test", 0.7))
        for layer in ("relu1", "features")
    ]
    pd.DataFrame(rows).to_csv(path / "nc_layers.csv", index=False)


def test_a_measure_folder_is_a_run_of_one_nc_epoch(tmp_path):
    write_measurement(tmp_path / "measured" / "net0", nc1=2.5)
    res = analyze(tmp_path)
    assert res.problems == []
    run = res.runs.iloc[0]
    assert run["state"] == "done" and run["n_train"] == 90 and run["measure.model"] == "models/net0.keras"
    assert json.loads(run["class_names"]) == ["airplane", "automobile", "bird"]
    assert res.summary["nc1_mean"].iloc[0] == pytest.approx(2.5)
    assert res.nc_epochs["sigma_w_fro_mean"].iloc[0] == pytest.approx(0.25)
    final = res.nc_layers_final.set_index(["split", "layer"])["mean"]
    assert final[("test", "features")] == pytest.approx(0.7) and final[("train", "relu1")] == pytest.approx(0.9)


def test_two_measured_models_are_two_settings(tmp_path):
    write_measurement(tmp_path / "measured" / "net0", nc1=2.5, seed=0)
    write_measurement(tmp_path / "measured" / "net1", nc1=0.5, seed=1)
    res = analyze(tmp_path)
    assert sorted(np.round(res.summary["nc1_mean"], 6)) == [0.5, 2.5]


def test_the_measure_folder_itself_as_out_names_its_parent(tmp_path):
    write_measurement(tmp_path / "m", nc1=1.0)
    with pytest.raises(AnalysisError, match="one measurement's folder.*give the folder that holds it"):
        analyze(tmp_path / "m")
