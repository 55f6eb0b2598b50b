"""Loading the library from the command line: only when a command needs it, quietly, and with
one line (not a traceback) when the Keras backend cannot load.

`sqnc <command> --help`, `sqnc config show` and `sqnc bench` need no framework, so no command
imports one before its body runs; `sqnc run` calls `import_keras_quietly()` first thing.

Example:

```python
from cli.library import BackendUnavailable, import_keras_quietly
try:
    import_keras_quietly()
except BackendUnavailable as err:
    print(f"error: {err}")   # e.g. KERAS_BACKEND=torch: sqloss_nc runs on Keras' tensorflow or jax backend ...
```
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Mapping

BACKENDS = ("tensorflow", "jax")  # the Keras backends sqloss_nc runs on, and their pip extras


class BackendUnavailable(Exception):
    """The Keras backend cannot be loaded; the message is one line saying what to install or set."""


def installed(module: str) -> bool:
    """Whether `module` can be imported (without importing it; a module blocked with
    `sys.modules[name] = None` counts as absent)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def backend_problem(env: Mapping[str, str] | None = None) -> str | None:
    """Why the Keras backend `env` asks for cannot load, as one line naming the fix; None when
    it can (as far as can be told without importing it).

    Args:
        env: the environment (default `os.environ`); `KERAS_BACKEND` is read.

    Example: with only TensorFlow installed, `backend_problem({"KERAS_BACKEND": "jax"})` is
    `'KERAS_BACKEND=jax: JAX is not installed (pip install -e ".[jax]"), or unset KERAS_BACKEND to use tensorflow'`.
    """
    env = os.environ if env is None else env
    have = [b for b in BACKENDS if installed(b)]
    if not have:
        return 'no Keras backend is installed: pip install -e ".[tensorflow]" (the default) or -e ".[jax]" (no TensorFlow)'
    name = env.get("KERAS_BACKEND")
    if name is None or name in have:
        return None
    if name not in BACKENDS:
        return f"KERAS_BACKEND={name}: sqloss_nc runs on Keras' tensorflow or jax backend; set KERAS_BACKEND={have[0]} or unset it"
    label = {"tensorflow": "TensorFlow", "jax": "JAX"}[name]
    return f'KERAS_BACKEND={name}: {label} is not installed (pip install -e ".[{name}]"), or unset KERAS_BACKEND to use {have[0]}'


def _quietly(fn) -> None:
    """`sqloss_nc.startup.quietly`: the backend's import noise filtered from stderr."""
    from sqloss_nc.startup import quietly

    quietly(fn)


def import_library_quietly() -> None:
    """Import `sqloss_nc` with stderr captured (whatever its `__init__` loads)."""
    if "sqloss_nc" not in sys.modules:
        _quietly(lambda: __import__("sqloss_nc"))


def import_keras_quietly() -> None:
    """Import `sqloss_nc`, Keras and the package's backend layer, quietly; raises
    `BackendUnavailable` (one line) when `KERAS_BACKEND` names a backend that is not installed or
    not supported, or the backend fails to import."""
    if "sqloss_nc.backend" in sys.modules:
        return
    problem = backend_problem()
    if problem:
        raise BackendUnavailable(problem)

    def load():
        import sqloss_nc  # noqa: F401  (picks JAX where TensorFlow is absent)
        import keras  # noqa: F401  (and with it the framework; the package registers its objects)
        import sqloss_nc.backend  # noqa: F401  (refuses a backend the package does not run on)

    try:
        _quietly(load)
    except (ImportError, ValueError) as err:
        # Keras raises ValueError for an unknown backend name (from ~/.keras/keras.json, say).
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BackendUnavailable(f"cannot load the Keras backend: {first}") from None


def import_keras_or_fail(fail) -> None:
    """`import_keras_quietly`, a backend that cannot load ending the command with one line:
    `fail(message, 2)` (each command module's `_fail`)."""
    try:
        import_keras_quietly()
    except BackendUnavailable as err:
        fail(str(err), 2)
