"""Warnings raised while measuring, as one-line notices.

The measurement engine says why a number is NaN with a `RuntimeWarning` ("nc1 is NaN: Sigma_B is
numerically rank-deficient ..."), and numpy warns the same way. Python prints such a warning
with its source path and line, every time; `sqnc run` and `sqnc measure` show each distinct one
once, as one line, and keep it in `status.json` / `measure.json`. Other warnings pass through
unchanged.

Example:

```python
with runtime_notices() as notes:
    tracker.record(epoch, nc=True)
notes  # e.g. ["nc1 is NaN: Sigma_B is numerically rank-deficient (1 of 2 ...)"]
```
"""

from __future__ import annotations

import contextlib
import warnings


@contextlib.contextmanager
def runtime_notices():
    """Collect the `RuntimeWarning`s raised inside the block as one-line messages, in order, each
    distinct one once (the list is filled when the block ends); re-emit any other warning."""
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield notes
    for w in caught:
        if not issubclass(w.category, RuntimeWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)  # not a notice: as it was
            continue
        message = " ".join(str(w.message).split())
        if message not in notes:
            notes.append(message)
