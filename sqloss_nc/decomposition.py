"""Moved to :mod:`sqloss_nc.engine.decomposition` (the Keras-free measurement engine); this import path
keeps working for existing scripts and is the very same module object."""

import sys

from .engine import decomposition as _module

sys.modules[__name__] = _module
