"""`sqnc measure MODEL [CONFIG]`: a thin wrapper over `sqloss_nc.measure.measure` (parse, call
the library, print); `register(app)` adds it to the `sqnc` app, as `cli.report` does for its
commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from cli.report import _fail, console


def _names(text: Optional[str]) -> Optional[list[str]]:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def measure_command(
    model: str = typer.Argument(..., help="A model.keras (of `sqnc run` or any Keras 3 model), a keras-hub preset folder, a keras-hub preset name, or a FEATURES.npz of exported arrays (README: Track collapse in your own training)."),
    config: Optional[Path] = typer.Argument(None, help="YAML config whose data: section gives the data (default: the config.yaml beside the model)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for nc.csv, nc_layers.csv, class_gram.csv, spectra.csv, measure.json."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Image folder (or .zip) for data.source=folder; TFDS' data_dir for data.source=tfds."),
    set_: List[str] = typer.Option([], "--set", "-s", help="Override a config key: --set data.test_per_class=100 (repeatable)."),
    split: str = typer.Option("train,test", "--split", help="Splits to measure: train, or train,test (class means come from train)."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Also measure these layers' outputs: --layers conv1_relu,stack0_block0_out."),
    feature_layer: Optional[str] = typer.Option(None, "--feature-layer", help="Layer whose output is the feature vector (default: the classifier's input)."),
    classifier_layer: Optional[str] = typer.Option(None, "--classifier-layer", help="The Dense head on the features (default: the last Dense layer)."),
    pool: str = typer.Option("flatten", "--pool", help="A conv map (H, W, c) is measured flattened (flatten) or globally average-pooled (avg)."),
    preprocess: str = typer.Option(
        "auto",
        "--preprocess",
        help="How the images become the model's inputs: run (this project's: standardized, then data.input_norm), raw (pixels 0..255), "
        "scaled (pixels/255), hub (the keras-hub preset's image converter); auto: hub for a keras-hub preset, else run.",
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Inference batch size (default: compute.inference_batch)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier measurement in --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar over the batches."),
) -> None:
    """Measure neural collapse of a trained network (no training): NC1-NC4, layer-wise NCC, the MSE decomposition, spectra."""
    from cli.library import import_keras_or_fail

    import_keras_or_fail(_fail)  # Keras and its backend, without the backend's import noise on stderr
    from sqloss_nc.archive import is_archive, measure_archive
    from sqloss_nc.errors import UserError
    from sqloss_nc.measure import measure

    try:
        result = (measure_archive if is_archive(model) else measure)(
            model,
            config,
            out,
            layers=_names(layers),
            feature_layer=feature_layer,
            classifier_layer=classifier_layer,
            pool=pool,
            splits=_names(split) or [],
            batch_size=batch_size,
            data_dir=data_dir,
            overrides=set_,
            overwrite=overwrite,
            progress=progress,
            console=console,
            preprocess=preprocess,
        )
    except UserError as err:
        _fail(str(err), 2)
    except KeyboardInterrupt:
        _fail("interrupted; nothing was written", 130)
    except OSError as err:
        _fail(f"{type(err).__name__}: {err}", 1)
    info, nc = result.info, result.nc
    pooled = ", ".join(f"{d['name']} ({d['pool']}, p={d['dim']})" for d in info["layers"])
    console.print(f"measured {escape(info['model']['source'])} ({info['model']['kind']}) on {info['splits']}: {escape(pooled)}", highlight=False, soft_wrap=True)
    # With C = 2 the class means' equinorm is 0 by construction (two opposite centred means): not news.
    two = len(info.get("class_names") or []) == 2
    keys = [k for k in ("nc1", "nc2_equinorm_means", "nc3", "nc4", "test_nc1") if k in nc and not (two and k == "nc2_equinorm_means")]
    console.print("  ".join(f"{k} {nc[k]:.4g}" for k in keys), highlight=False, soft_wrap=True)
    console.print(f"wrote {', '.join(result.files)} to {escape(str(result.out))}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the `measure` command to a Typer app.

    Args:
        app: the `sqnc` Typer app (or any Typer app, e.g. a fresh one in tests).

    Example: `register(app)` in `cli/main.py`, then
    `sqnc measure outputs/quickstart/seed=0/model.keras --out measured`.
    """
    app.command("measure")(measure_command)
