"""The real TFDS loading path (no `tfds.testing.mock_data`), up to the download, network blocked.

`mock_data` replaces the builder's loading, so it passed while every real `source: tfds` run
failed on an import inside TFDS (tensorflow-datasets 4.9.x imports `importlib_resources`, which
nothing installed; issue 28). Here TFDS builds the real dataset, prepares its download into the
given `data_dir` and reaches for the network, which the test refuses at the socket layer: the
loader must end with a download error naming the dataset, never an import error, and must have
used `--data-dir` as TFDS' `data_dir`.
"""

import socket

import pytest

from sqloss_nc.config import load_config
from sqloss_nc.data import DataError, load_dataset


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection and name lookup fails at once; the attempts are recorded."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:2] or args[:1])
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_tfds_real_path_reaches_the_download_into_data_dir(tmp_path, no_network, monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    from tensorflow_datasets.core.download import downloader

    # TFDS retries a refused connection 10 times with exponential backoff (~3.5 min in all).
    monkeypatch.setattr(downloader, "MAX_RETRIES", 0)
    data_dir = tmp_path / "tfds"
    cfg = load_config(None, ["data.source=tfds", "data.name=mnist", "data.classes=[1,2]"])
    with pytest.raises(DataError) as err:
        load_dataset(cfg, data_dir=str(data_dir))  # the CLI's --data-dir
    msg = str(err.value)
    assert "\n" not in msg
    assert "Error" not in msg.split("(")[0], msg
    for bad in ("ModuleNotFoundError", "ImportError", "No module named"):
        assert bad not in msg, msg
    assert msg.startswith("data.source: TFDS could not download mnist"), msg
    assert no_network, "TFDS never tried the network: the test did not reach the download"
    # --data-dir reached TFDS: its download folder is under it, not under ~/tensorflow_datasets.
    assert (data_dir / "downloads").is_dir(), sorted(p.name for p in data_dir.iterdir()) if data_dir.exists() else "no data_dir"


def test_a_module_tfds_imports_lazily_is_named_with_its_install(monkeypatch):
    """TFDS imports some dependencies only inside `load`: a missing one is named, with its pip line."""
    tfds = pytest.importorskip("tensorflow_datasets")

    def load(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'importlib_resources'", name="importlib_resources")

    monkeypatch.setattr(tfds, "load", load)
    with pytest.raises(DataError) as err:
        load_dataset(load_config(None, ["data.source=tfds", "data.name=mnist", "data.classes=[1,2]"]))
    assert str(err.value) == "data.source: TFDS needs the module 'importlib_resources', which is not installed (pip install importlib_resources)"


def test_the_tensorflow_extra_installs_what_tfds_imports():
    """tensorflow-datasets 4.9.x imports importlib_resources without requiring it (issue 28)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from pathlib import Path

    extra = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]["tensorflow"]
    assert any(req.replace("-", "_").startswith("importlib_resources") for req in extra), extra
