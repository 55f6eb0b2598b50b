"""sqloss-nc: deep classifiers trained with the square loss — ρ dynamics, margins, neural collapse.

Importing the package registers its Keras custom objects (initializer, optimizer, schedules,
trainer), so a saved `model.keras` loads with `keras.saving.load_model` after `import sqloss_nc`.
"""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ INFO lines drown the CLI's own output; users can still raise the level.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from . import initializers, optimizers, training  # noqa: E402,F401  (registers custom objects)
