"""What to set in the environment before TensorFlow is imported, so a CPU machine starts quietly.

TensorFlow's CUDA build calls `cuInit` when it first lists devices (at the first op, after the
import) and logs its failure at ERROR level:

    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ... (303)

On a machine without an NVIDIA driver that line is expected and means only "no GPU", but it reads
like a failure. `TF_CPP_MIN_LOG_LEVEL=2` (INFO and WARNING off) keeps it; only level 3 drops it.
Level 3 also drops every other C++ ERROR line for the life of the process, so it is chosen only
where the GPU probe is the one thing that can fail: no driver is installed, or the user hid the
GPUs (`CUDA_VISIBLE_DEVICES=""` or `-1`). Where a driver is present, ERROR lines stay visible, so
a user whose driver is broken still reads why the GPU is not used. A `TF_CPP_MIN_LOG_LEVEL` the
user set always wins.

Errors that matter still surface as Python exceptions with their messages at any level; the
C++ log only adds context.

Example:

```python
from sqloss_nc.startup import apply_startup_environment
apply_startup_environment()   # then import TensorFlow (this module itself imports only os, pathlib)
```
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path

# Files the NVIDIA kernel driver creates when it is loaded; either one means a driver is there.
DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl")


def nvidia_driver_present(files: tuple[str, ...] = DRIVER_FILES) -> bool:
    """Whether the NVIDIA kernel driver is loaded on this machine (any of `files` exists).

    Args:
        files: paths whose existence shows the driver (default: /proc/driver/nvidia/version,
            /dev/nvidiactl).

    Example: `nvidia_driver_present()` is False on a CPU-only laptop or CI runner.
    """
    return any(Path(f).exists() for f in files)


def startup_environment(driver_present: bool, env: Mapping[str, str]) -> dict[str, str]:
    """The environment variables to set before TensorFlow is imported (a pure decision).

    Args:
        driver_present: whether an NVIDIA driver is loaded (`nvidia_driver_present()`).
        env: the current environment (`os.environ`); read, never changed.

    Returns:
        `{"TF_CPP_MIN_LOG_LEVEL": "3"}` when TensorFlow's GPU probe can only fail noisily (no
        driver, or GPUs hidden by `CUDA_VISIBLE_DEVICES`), `{"TF_CPP_MIN_LOG_LEVEL": "2"}` (INFO
        and WARNING off, errors shown) otherwise, and `{}` when the user set the level.

    Example:

    ```python
    startup_environment(False, {})                              # {'TF_CPP_MIN_LOG_LEVEL': '3'}
    startup_environment(True, {})                               # {'TF_CPP_MIN_LOG_LEVEL': '2'}
    startup_environment(True, {"CUDA_VISIBLE_DEVICES": "-1"})   # {'TF_CPP_MIN_LOG_LEVEL': '3'}
    startup_environment(False, {"TF_CPP_MIN_LOG_LEVEL": "0"})   # {}: the user's level wins
    ```
    """
    if "TF_CPP_MIN_LOG_LEVEL" in env:
        return {}
    # CUDA reads CUDA_VISIBLE_DEVICES as a list; an empty one or one starting with an invalid
    # index (-1 by convention) hides every GPU, and cuInit then fails with "no device".
    visible = env.get("CUDA_VISIBLE_DEVICES")
    gpus_hidden = visible is not None and (visible.strip() == "" or visible.split(",")[0].strip().startswith("-"))
    return {"TF_CPP_MIN_LOG_LEVEL": "3" if not driver_present or gpus_hidden else "2"}


def apply_startup_environment(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Apply `startup_environment` for this machine to `env` (default `os.environ`); call it
    before TensorFlow is imported (TensorFlow reads the level once). Returns what was set.

    Args:
        env: the environment to update (default: the process's `os.environ`).

    Example: `apply_startup_environment()` first thing in `sqloss_nc/__init__.py`.
    """
    env = os.environ if env is None else env
    settings = startup_environment(nvidia_driver_present(), env)
    env.update(settings)
    return settings


# TensorFlow's C++ runtime writes these at import whatever TF_CPP_MIN_LOG_LEVEL says (absl INFO and
# WARNING lines, the pre-absl banner, the CPU-feature notice): noise, not news.
IMPORT_NOISE = re.compile(r"^([IW]\d{4} |WARNING: All log messages before absl::InitializeLog|To enable the following instructions)")


def quietly(fn) -> None:
    """Run `fn` (an import of the Keras backend) with the process's stderr (file descriptor 2)
    captured: the backend's C++ runtime prints absl lines at import that would bury the lines
    that matter. Everything else it printed (an E-level line of a broken CUDA install, say) is
    passed on afterwards; an exception still raises, after stderr is restored.

    Example: `quietly(lambda: __import__("keras"))`.
    """
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines()
            kept = [line for line in lines if line.strip() and not IMPORT_NOISE.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)
