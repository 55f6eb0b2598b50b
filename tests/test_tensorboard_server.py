"""`sqnc tensorboard` seen through TensorBoard's own server, the way a user meets it.

The export is checked by starting `tensorboard --logdir ... --load_fast=true` (the default, Rust
data loader; `true` instead of the default `auto` so that the test cannot silently fall back to
the Python loader, which also reads float64 events) and reading its scalars over HTTP: every
run lists every CSV column as a tag, and every series equals its CSV column, epoch by epoch, to
float32 precision. Expected values come from the CSV text itself (Python's `csv` module), not
from the export code.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fake_runs import config, fake_run, write_run

pytest.importorskip("tensorboard", reason="TensorBoard is not installed (pip install -e '.[tensorboard]')")


def data_server_binary() -> str | None:
    """The Rust data server TensorBoard's fast loader runs, or None where this platform has none."""
    try:
        import tensorboard_data_server
    except ImportError:
        return None
    path = tensorboard_data_server.server_binary()
    return path if path and os.access(path, os.X_OK) else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(base: str, path: str, **query):
    url = base + path + ("?" + urllib.parse.urlencode(query) if query else "")
    with urllib.request.urlopen(url, timeout=10) as r:  # loopback only
        return json.loads(r.read())


def csv_columns(path: Path) -> dict[str, list[tuple[int, float]]]:
    """column -> [(epoch, value)] of the non-empty numeric cells, read as text."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for col in rows[0]:
        if col == "epoch":
            continue
        cells = [(int(float(r["epoch"])), r[col]) for r in rows]
        try:
            series = [(e, float(v)) for e, v in cells if v != ""]
        except ValueError:  # a text column (none today): not a scalar
            continue
        series = [(e, v) for e, v in series if not math.isnan(v)]
        if series:
            out[col] = series
    return out


@pytest.fixture
def sweep(tmp_path):
    """Two runs of one sweep, with metrics.csv (update norms empty at epoch 0) and nc.csv
    (tracked at some epochs only)."""
    out = tmp_path / "out"
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        tables = fake_run(rng, epochs=6, nc_epochs=[0, 1, 3, 6])
        write_run(out / "sweep" / f"seed={seed}", config("sweep", seed, 6), tables)
    return out


def test_default_tensorboard_loader_shows_every_scalar_with_the_csv_values(sweep, tmp_path):
    binary = data_server_binary()
    if binary is None:
        pytest.skip("tensorboard-data-server (TensorBoard's default fast loader) has no binary for this platform")
    from typer.testing import CliRunner

    from cli.main import app

    res = CliRunner().invoke(app, ["tensorboard", str(sweep)])
    assert res.exit_code == 0, res.output
    logdir = sweep / "tensorboard"

    want = {}  # run -> tag -> [(step, value)]
    for seed in (0, 1):
        run = f"sweep/seed={seed}"
        want[run] = {}
        for name, prefix in (("metrics.csv", "metrics"), ("nc.csv", "nc")):
            for col, series in csv_columns(sweep / run / name).items():
                want[run][f"{prefix}/{col}"] = series
    assert len(want["sweep/seed=0"]) > 30  # the fake run has every documented column

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # `tensorboard` as its console script runs it, with TensorFlow hidden: TensorBoard then starts in
    # ~5 s instead of ~15 s (as in the TensorFlow-free install), and the scalars come from the Rust
    # data server either way (TensorFlow is used only by other plugins).
    start = "import sys; sys.modules['tensorflow'] = None; sys.argv[0] = 'tensorboard'; from tensorboard.main import run_main; run_main()"
    cmd = [sys.executable, "-c", start, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--load_fast=true", "--reload_interval=1"]
    log = open(tmp_path / "tensorboard.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        tags, deadline = {}, time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, "tensorboard exited: " + (tmp_path / "tensorboard.log").read_text()[-2000:]
            try:
                tags = get_json(base, "/data/plugin/scalars/tags")
            except OSError:  # not listening yet
                tags = {}
            if tags and all(set(tags.get(run, {})) == set(want[run]) for run in want):
                break
            time.sleep(0.5)
        assert set(tags) == set(want), f"runs with scalar tags: {sorted(tags)} of {sorted(want)}"
        for run in want:
            missing = sorted(set(want[run]) - set(tags[run]))
            assert not missing and set(tags[run]) == set(want[run]), f"{run}: tags missing from TensorBoard: {missing}"
        for run, series in want.items():
            for tag, expected in series.items():
                got = get_json(base, "/data/plugin/scalars/scalars", run=run, tag=tag)  # [[wall_time, step, value]]
                assert [p[1] for p in got] == [e for e, _ in expected], f"{run} {tag}: steps"
                # The server sends the float32 it read, widened to float64: equal to the CSV value
                # rounded to float32, and within float32 precision of the CSV value.
                assert [p[2] for p in got] == [float(np.float32(v)) for _, v in expected], f"{run} {tag}: values"
                np.testing.assert_allclose([p[2] for p in got], [v for _, v in expected], rtol=2**-23, atol=0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()
