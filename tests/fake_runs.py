"""Synthetic run folders for the analysis and figure tests: the files a run writes (SPEC §6, §9,
§10, with the documented columns), filled with random numbers, without training anything.

`fake_run(rng, ...)` returns the CSV tables of one run as DataFrames (so a test can compute its
expected aggregates from exactly what was written); `write_run(dir, config, tables)` writes them
as a finished run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from sqloss_nc.nc import NC_KEYS

# Layer names whose alphabetical order is not the run's order: depth must come from the file.
WEIGHT_LAYERS = {"conv2": (6, 12), "dense1": (5, 6), "classifier": (3, 5)}  # name -> (out, fan_in)
HIDDEN = ["relu1", "features", "classifier"]
NC_COLUMNS = [k for k in NC_KEYS if k.startswith("nc")]  # nc1 ... nc4, the columns of the NC panel
SPLIT_FREE = ("nc2_equinorm_weights", "nc2_equiangular_weights", "nc2_maxangle_weights")


def config(name: str, seed: int, epochs: int, batch_size: int | None = 32, full_batch: bool = False, wd: float = 0.01, **extra) -> dict:
    """A nested run config with the keys the analysis groups on (`extra`: `section.key=value`)."""
    cfg = {
        "name": name,
        "seed": seed,
        "data": {"source": "synthetic", "classes": [0, 1, 2], "label_noise": 0.0},
        "model": {"arch": "mlp", "init_scale": 0.1},
        "loss": {"kind": "square"},
        "optim": {
            "lr": 0.01,
            "weight_decay": wd,
            "batch_size": None if full_batch else batch_size,
            "full_batch": full_batch,
            "epochs": epochs,
        },
        "track": {"nc_epochs": "all", "nc_test": True},
    }
    for key, value in extra.items():
        section, k = key.split("__")
        cfg[section][k] = value
    return cfg


def fake_run(rng: np.random.Generator, epochs: int, nc_epochs: list[int], classes: int = 3) -> dict[str, pd.DataFrame]:
    """Random but plausible tables of one run: metrics (with update norms), nc (with the MSE
    decomposition and test columns), spectra, nc_layers, class_gram."""
    ep = np.arange(epochs + 1)
    metrics = pd.DataFrame(
        {"epoch": ep, "train_loss": 0.5 / (1 + ep), "train_acc": 1 - 0.5 / (1 + ep), "test_acc": 0.8 + 0 * ep, "rho": 1.0 + ep}
    )
    for name in WEIGHT_LAYERS:
        u = rng.uniform(0.01, 0.5, len(ep))
        u[0] = np.nan  # no update before the first epoch
        metrics[f"update_norm_{name}"] = u
    nce = np.array(nc_epochs)
    nc = pd.DataFrame({"epoch": nce})
    for col in NC_COLUMNS:
        nc[col] = rng.uniform(0.1, 1.0) * np.exp(-nce / max(epochs, 1)) * rng.uniform(0.5, 1.5, len(nce))
    for col in NC_COLUMNS:
        nc[f"test_{col}"] = nc[col] if col in SPLIT_FREE else nc[col] * rng.uniform(1.0, 2.0, len(nce))
    for col in ("mse_nc1", "mse_nc23", "mse_perp"):
        nc[col] = rng.uniform(0.01, 0.2, len(nce))
    nc["mse_total"] = nc["mse_nc1"] + nc["mse_nc23"] + nc["mse_perp"]
    nc["ls_distance"] = rng.uniform(0.1, 2.0, len(nce))
    spectra, layers, gram = [], [], []
    for e in nc_epochs:
        for name, (out, fan_in) in WEIGHT_LAYERS.items():
            sv = np.sort(rng.uniform(0.01, 1.0, min(out, fan_in)))[::-1]
            w_rank = int(rng.integers(1, len(sv) + 1))
            stable = float((sv**2).sum() / sv[0] ** 2)
            spectra += [(e, name, i, s, w_rank, stable) for i, s in enumerate(sv)]
        for split in ("train", "test"):
            for name in HIDDEN:
                for measure in ("trace_ratio", "cdnv", "ncc_accuracy") + (
                    ("alignment",) if split == "train" and name != "classifier" else ()
                ):
                    layers.append((e, split, name, measure, float(rng.uniform(0, 1))))
            means = rng.normal(size=(classes, 4))
            means -= means.mean(axis=0)
            means /= np.linalg.norm(means, axis=1, keepdims=True)
            g = means @ means.T
            gram += [(e, split, i, j, g[i, j]) for i in range(classes) for j in range(classes)]
    return {
        "metrics.csv": metrics,
        "nc.csv": nc,
        "spectra.csv": pd.DataFrame(spectra, columns=["epoch", "layer", "index", "singular_value", "rank", "stable_rank"]),
        "nc_layers.csv": pd.DataFrame(layers, columns=["epoch", "split", "layer", "measure", "value"]),
        "class_gram.csv": pd.DataFrame(gram, columns=["epoch", "split", "i", "j", "value"]),
    }


def write_run(path: Path, cfg: dict, tables: dict[str, pd.DataFrame], n_train: int = 96, state: str = "done") -> Path:
    """Write a run folder: config.yaml, status.json and the given CSVs."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    epoch = int(tables["metrics.csv"]["epoch"].max())
    (path / "status.json").write_text(json.dumps({"state": state, "epoch": epoch, "data": {"n_train": n_train, "n_test": 24}}))
    for name, df in tables.items():
        df.to_csv(path / name, index=False)
    return path
