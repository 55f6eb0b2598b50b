"""How many threads numpy's BLAS runs the measurement's algebra with (issue 27).

A measurement runs between training steps, in a process whose backend keeps its own thread pool
busy-waiting for the next step. Numpy's BLAS (OpenBLAS) with several threads then meets it on
the same cores: every small product or factorization synchronizes its threads, and a thread that
is not scheduled holds the others up. Measured inside a quick-start run (2 cores, TensorFlow,
p = 512): a 513 x 513 Cholesky took 58 ms against 2 ms alone, and the NC measurement 0.19 s with
two BLAS threads against 0.077 s with one. The large p x p algebra is the exception: the
minimum-norm solve at p = 2049 (the width-1 convnet without weight decay) took 1.04 s on two
threads, more on one.

So a measurement runs on one BLAS thread (:func:`measuring`), and the few O(p^3) / O(N p^2)
operations of a wide feature layer (:data:`LARGE_P` and up) take the process's own count back
(:func:`large`). Thread counts change BLAS summation order only (float64 rounding, ~1e-15).

Example:

>>> import numpy as np
>>> with measuring():
...     a = np.eye(3) @ np.eye(3)
...     with large(4096):
...         b = np.linalg.eigh(np.eye(3))[0]
"""

from __future__ import annotations

import contextlib
import functools

#: The feature dimension from which the p x p algebra takes all of the process's BLAS threads.
LARGE_P = 1024

_state = {"full": None}  # the process's BLAS threads while a `measuring` block is open


@functools.lru_cache(maxsize=1)
def _controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # an install without it: the threads stay as they are
        return None
    return ThreadpoolController()


def _blas_threads(ctl) -> int:
    info = ctl.select(user_api="blas").info()
    return max((lib["num_threads"] for lib in info), default=1)


@contextlib.contextmanager
def measuring():
    """One BLAS thread inside the block (module docstring); nested blocks join the outer one."""
    ctl = _controller()
    if ctl is None or _state["full"] is not None:
        yield
        return
    _state["full"] = _blas_threads(ctl)
    try:
        with ctl.limit(limits=1, user_api="blas"):
            yield
    finally:
        _state["full"] = None


@contextlib.contextmanager
def large(p: int):
    """Inside :func:`measuring`: the process's own BLAS threads for algebra on a p x p matrix
    with p >= :data:`LARGE_P`; otherwise (or outside a measurement) nothing changes."""
    full, ctl = _state["full"], _controller()
    if full is None or full <= 1 or p < LARGE_P or ctl is None:
        yield
        return
    with ctl.limit(limits=full, user_api="blas"):
        yield
