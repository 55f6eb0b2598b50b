"""Moved to :mod:`sqloss_nc.engine.nc` (the Keras-free measurement engine); this import path
keeps working for existing scripts and is the very same module object."""

import sys

from .engine import nc as _module

sys.modules[__name__] = _module
