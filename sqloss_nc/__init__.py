"""sqloss-nc: deep classifiers trained with the square loss — ρ dynamics, margins, neural collapse.

Importing the package is cheap and imports no Keras: the measurement engine
(`sqloss_nc.engine`, and `nc`, `decomposition`, `spectra`, `measures` at their old paths), the
config, `analysis`, `figures` and `tensorboard` work without Keras, TensorFlow or JAX installed.

The Keras custom objects (initializer, constraint, layers, optimizer, schedules, trainer) are
registered as soon as Keras is imported in this process, whether before or after `sqloss_nc`, so
a saved `model.keras` loads with `keras.saving.load_model` after `import sqloss_nc`, whichever
backend saved it. `sqloss_nc.load_model(path)` does the same in one call.

The Keras backend is Keras' own choice (`KERAS_BACKEND`, else `~/.keras/keras.json`, else
TensorFlow). One convenience: when `KERAS_BACKEND` is unset and TensorFlow is not installed but
JAX is (the TF-free install, `pip install -e ".[jax]"`), the package selects JAX instead of
letting Keras fail on a missing TensorFlow. Both backends give the same numbers (SPEC §11).

`sqloss_nc.CollapseMonitor` (`sqloss_nc.monitor`) tracks neural collapse inside anyone's
`model.fit`; it is imported (with Keras) on first use.

Example:

```python
import sqloss_nc
model = sqloss_nc.load_model("outputs/quickstart/<run>/model.keras")
```
"""

__version__ = "0.3.0"

import importlib.abc as _abc
import importlib.util as _util
import os as _os
import sys as _sys

# TensorFlow's C++ log level, decided before anything imports TensorFlow: quiet where there is no
# NVIDIA driver (the cuInit line is no failure there), errors visible where there is one.
from .startup import apply_startup_environment as _apply_startup  # noqa: E402

_apply_startup()
# JAX would otherwise reserve 75% of GPU memory at start: several runs could not share a GPU.
_os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def _installed(module: str) -> bool:
    """Whether `module` can be found (an import blocker that raises counts as absent)."""
    try:
        return _util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# Keras writes `"backend": "tensorflow"` into ~/.keras/keras.json on its first import, whatever is
# installed, so only the environment variable counts as the user's choice here.
if "KERAS_BACKEND" not in _os.environ and not _installed("tensorflow") and _installed("jax"):
    _os.environ["KERAS_BACKEND"] = "jax"

NO_BACKEND = 'sqloss_nc needs a Keras backend: pip install -e ".[tensorflow]" (the default) or -e ".[jax]" (no TensorFlow)'


def register_custom_objects() -> None:
    """Import the modules that register this package's Keras objects (idempotent; imports Keras).

    Raises:
        ImportError: no Keras backend is installed (the message names the install command).
    """
    if not any(_installed(m) for m in ("tensorflow", "jax", "torch")):
        raise ImportError(NO_BACKEND)
    if "keras" not in _sys.modules:
        # The backend's C++ runtime prints absl lines at import: as quiet as the CLI.
        from .startup import quietly

        quietly(lambda: __import__("keras"))
    from . import initializers, normalization, optimizers, training  # noqa: F401


def load_model(path, **kwargs):
    """`keras.saving.load_model` with this package's custom objects registered.

    Args:
        path: a `.keras` file (e.g. a run's `model.keras`).
        **kwargs: passed to `keras.saving.load_model`.
    """
    register_custom_objects()
    import keras

    return keras.saving.load_model(path, **kwargs)


class _RegisterAfterKeras(_abc.MetaPathFinder, _abc.Loader):
    """Runs `register_custom_objects` right after `keras` itself is imported, so `import
    sqloss_nc` keeps its promise (saved models load) without importing Keras up front."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        _sys.meta_path.remove(self)  # find the real spec (and never intercept again)
        spec = _util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        # Keras imported by one of our own modules mid-import (e.g. `sqloss_nc.backend`): the
        # registering modules import that module back, so they must wait; the library imports
        # them itself wherever it builds or loads a model (`load_model` does too).
        if not any(
            getattr(getattr(m, "__spec__", None), "_initializing", False) for name, m in list(_sys.modules.items()) if name.startswith("sqloss_nc.")
        ):
            register_custom_objects()


def __getattr__(name):
    # `CollapseMonitor` is a Keras callback: importing it imports Keras, so only on first use.
    if name == "CollapseMonitor":
        from .monitor import CollapseMonitor

        return CollapseMonitor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if "keras" in _sys.modules:
    register_custom_objects()
else:
    _sys.meta_path.insert(0, _RegisterAfterKeras())
