"""The minibatches of a run (SPEC §4): the data order of every epoch is a pure function of
(seed, epoch), drawn with numpy's generator, so a run sees the same batches on every Keras backend
and a run resumed at epoch e sees the batches an uninterrupted run would.

The last batch of an epoch is partial (PyTorch `drop_last=False`) and batches never straddle two
epochs. Full-batch gradient descent (`optim.full_batch`) is the case batch size = N: one batch
per epoch, the whole permutation (`train_batch_size`). The backends only differ in how these index arrays are fed to `fit` (a `tf.data`
pipeline on TensorFlow, a Python generator on JAX: `backend.epoch_dataset`).

Example:

```python
order = epoch_order(10, seed=0, epoch=1)           # a permutation of 0..9
batches = list(batch_indices(10, 4, seed=0, first_epoch=1, last_epoch=2))
[len(b) for b in batches]                          # [4, 4, 2, 4, 4, 2]
```
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# Its own stream, so the order draw is independent of the label-noise and init draws.
_ORDER_STREAM = 0x0DE7


def train_batch_size(optim, n: int) -> int:
    """The training batch size of a run: N for full-batch gradient descent (`optim.full_batch`),
    else `optim.batch_size`.

    Args:
        optim: the run's `OptimConfig`.
        n: number of training samples.

    Example: `train_batch_size(OptimConfig(full_batch=True), 600)` == 600.
    """
    return int(n) if optim.full_batch else int(optim.batch_size)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch; the last one is partial (PyTorch `drop_last=False`)."""
    return -(-n // batch_size)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The data order (int64 indices) of 1-based epoch `epoch`: a stateless function of (seed, epoch).

    Args:
        n: number of training samples.
        seed: the run seed (>= 0).
        epoch: the 1-based epoch.
    """
    return np.random.default_rng([int(seed), int(epoch), _ORDER_STREAM]).permutation(n).astype(np.int64)


def batch_indices(n: int, batch_size: int, seed: int, first_epoch: int, last_epoch: int) -> Iterator[np.ndarray]:
    """Index arrays of the minibatches of epochs first_epoch..last_epoch (1-based, inclusive)."""
    for epoch in range(first_epoch, last_epoch + 1):
        order = epoch_order(n, seed, epoch)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def array_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int, last_epoch: int) -> Iterator[tuple]:
    """(x, y) numpy minibatches in the order of `batch_indices` (labels as int32)."""
    y = np.asarray(y, dtype=np.int32)
    for idx in batch_indices(len(x), batch_size, seed, first_epoch, last_epoch):
        yield x[idx], y[idx]
