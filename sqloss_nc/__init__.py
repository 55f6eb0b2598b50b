"""sqloss-nc: deep classifiers trained with the square loss — ρ dynamics, margins, neural collapse.

Importing the package registers its Keras custom objects (initializer, constraint, layers,
optimizer, schedules, trainer), so a saved `model.keras` loads with `keras.saving.load_model`
after `import sqloss_nc`, whichever Keras backend saved it.

The Keras backend is Keras' own choice (`KERAS_BACKEND`, else `~/.keras/keras.json`, else
TensorFlow). One convenience: when `KERAS_BACKEND` is unset and TensorFlow is not installed but
JAX is (the TF-free install, `pip install -e ".[jax]"`), the package selects JAX instead of
letting Keras fail on a missing TensorFlow. Both backends give the same numbers (SPEC §11).
"""

__version__ = "0.2.0"

import importlib.util as _util
import os as _os

# TensorFlow's C++ log level, decided before anything imports TensorFlow: quiet where there is no
# NVIDIA driver (the cuInit line is no failure there), errors visible where there is one.
from .startup import apply_startup_environment as _apply_startup  # noqa: E402

_apply_startup()
# JAX would otherwise reserve 75% of GPU memory at start: several runs could not share a GPU.
_os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


# Keras writes `"backend": "tensorflow"` into ~/.keras/keras.json on its first import, whatever is
# installed, so only the environment variable counts as the user's choice here.
if "KERAS_BACKEND" not in _os.environ and _util.find_spec("tensorflow") is None:
    if _util.find_spec("jax") is None:
        raise ImportError('sqloss_nc needs a Keras backend: pip install -e ".[tensorflow]" (the default) or -e ".[jax]" (no TensorFlow)')
    _os.environ["KERAS_BACKEND"] = "jax"

from . import initializers, normalization, optimizers, training  # noqa: E402,F401  (registers custom objects)
