"""The run directory's files and their columns, declared once (SPEC §6, §9, §10, §12).

The writers (`callbacks`, `measure`, `monitor`), resume truncation (`rundir`), `analysis` and `tensorboard`
read these names instead of repeating them as strings. Column order is an interface: new columns
are appended, so files written by older versions keep their columns in place (and a resumed
run's older file is widened in place, `callbacks._appender`).

Pure Python: importing it loads no framework.

Example:

>>> from sqloss_nc import schema
>>> schema.nc_columns(nc_test=False)[:3]
['epoch', 'nc1', 'nc2_equinorm_means']
>>> schema.NC_LAYERS_CSV in schema.EPOCH_CSVS
True
"""

from __future__ import annotations

from .engine.collapse import ALIGNMENT_KEYS, SIGMA_W_KEYS
from .engine.decomposition import DECOMPOSITION_KEYS
from .engine.nc import FEATURE_COLLAPSE_KEYS, NC_KEYS
from .engine.spectra import SPECTRA_COLUMNS

# ---------------------------------------------------------------------------------- file names
CONFIG_YAML = "config.yaml"
STATUS_JSON = "status.json"
MODEL_KERAS = "model.keras"
METRICS_CSV = "metrics.csv"
MARGINS_CSV = "margins.csv"
NC_CSV = "nc.csv"
NC_LAYERS_CSV = "nc_layers.csv"
SPECTRA_CSV = "spectra.csv"
CLASS_GRAM_CSV = "class_gram.csv"
STEPS_CSV = "steps.csv"
MARGINS_STEPS_CSV = "margins_steps.csv"
THEORY_CSV = "theory.csv"
RHO_FLOW_CSV = "rho_flow.csv"
MEASURE_JSON = "measure.json"
MONITOR_JSON = "monitor.json"  # `CollapseMonitor`: what a monitored fit measures (the fields of measure.json)

#: Files with one or more rows per epoch, the epoch in the first column: cut back together when
#: a run resumes from a checkpoint (`rundir.RunDir.truncate_after`).
EPOCH_CSVS = (METRICS_CSV, MARGINS_CSV, NC_CSV, NC_LAYERS_CSV, SPECTRA_CSV, CLASS_GRAM_CSV, STEPS_CSV, MARGINS_STEPS_CSV)
#: The files `sqnc measure` writes: one state of a network (SPEC §12).
MEASURE_FILES = (NC_CSV, NC_LAYERS_CSV, CLASS_GRAM_CSV, SPECTRA_CSV, MEASURE_JSON)

# ---------------------------------------------------------------------------------- columns
MARGIN = ["margin_mean", "margin_sq_mean", "margin_std", "margin_min", "margin_p05", "margin_p50", "margin_p95"]
RAW_MARGIN = ["raw_margin_mean", "raw_margin_std", "raw_margin_min"]
MARGINS = ["epoch", "index", "label", "margin", "margin_normalized"]
NC_LAYERS = ["epoch", "split", "layer", "measure", "value"]
#: The measures of nc_layers.csv: per layer and split; alignment on the train split of hidden layers.
NC_LAYER_MEASURES = (*FEATURE_COLLAPSE_KEYS, "ncc_accuracy", *ALIGNMENT_KEYS)
CLASS_GRAM = ["epoch", "split", "i", "j", "value"]
SPECTRA = list(SPECTRA_COLUMNS)
STEPS = ["epoch", "step", "rho", "rho_product", "train_loss", "train_acc"] + MARGIN
MARGINS_STEPS = ["epoch", "step", "index", "label", "margin", "margin_normalized"]


def metrics_columns(layer_names: list[str]) -> list[str]:
    """The `metrics.csv` header of SPEC §6 for a network with these weight layers."""
    return (
        ["epoch", "lr", "train_loss", "train_objective", "train_acc", "test_loss", "test_acc"]
        + ["rho", "rho_product", "rho_last", "rho_bn"]
        + [f"norm_{n}" for n in layer_names]
        + MARGIN
        + RAW_MARGIN
        + ["grad_norm_sq", "elapsed_s"]
        + ["fsc_term"]  # beyond SPEC §6: the finite-step correction term (0 when off)
        + [f"update_norm_{n}" for n in layer_names]  # SPEC §10; last, so older columns keep their place
    )


def nc_columns(nc_test: bool) -> list[str]:
    """The `nc.csv` header: the NC keys and Eq. 34's prediction (train, then ``test_`` ones with
    ``track.nc_test``), the MSE decomposition (train), then ||Σ_W||_F (train, test)."""
    keys = list(NC_KEYS) + ["w_norm_sq_eq34"]
    return ["epoch"] + keys + ([f"test_{k}" for k in keys] if nc_test else []) + list(DECOMPOSITION_KEYS) + list(SIGMA_W_KEYS)
