"""The training losses (SPEC §4, §9), as `keras.ops` functions for the training step (any Keras
backend) and as float64 numpy for the measurements, with one convention each:

| kind | output | per-batch loss |
|---|---|---|
| `square` | `onehot` (C outputs) | mean over all b·C elements of (f − e_y)² (PyTorch `MSELoss`) |
| `square_rescaled` | `onehot` | 1/(b·C) Σ_n [k·(f_{y_n} − M)² + Σ_{c≠y_n} f_c²] (Hui & Belkin); k = M = 1 is `square` |
| `square` | `scalar` (1 output, y = ±1) | mean over b of (f − y)² (the paper's toy model) |
| `cross_entropy` | `onehot` | mean over b of −log softmax(f)_y |
| `exponential` | `scalar` | mean over b of exp(−y f) |

For the scalar output, integer label 1 is y = +1 and label 0 is y = −1.

Example:

```python
import numpy as np
loss = keras_loss("square_rescaled", "onehot", k=2.0, M=3.0)
float(loss(np.array([0]), np.array([[1.0, 0.5]])))   # (2·(1−3)² + 0.5²)/2 = 4.125
```
"""

from __future__ import annotations

import numpy as np
from keras import ops


def signed(labels):
    """Integer labels {0, 1} -> {−1, +1} (the scalar binary output's targets)."""
    return 2.0 * labels - 1.0


def _mean(x):
    # Not ops.mean: on JAX it accumulates in float32 even for float64 inputs (Keras 3.15 promotes
    # (float64, "float32") to float32), which would make float64 checks of the losses fail.
    return ops.sum(x) / ops.cast(ops.size(x), x.dtype)


def _rescaled_weights_targets(onehot, k: float, M: float):
    # Weight k on the true class, 1 elsewhere; target M on the true class, 0 elsewhere.
    return 1.0 + (k - 1.0) * onehot, M * onehot


def keras_loss(kind: str, output: str, k: float = 1.0, M: float = 1.0):
    """The loss as a function (labels (b,) int, outputs (b, C) float) -> scalar, in `keras.ops`.

    Args:
        kind: `square`, `square_rescaled`, `cross_entropy` or `exponential`.
        output: `onehot` (C outputs) or `scalar` (1 output, binary).
        k, M: the rescaled square loss's weight of the true class and its target value.
    """
    if output == "scalar":
        if kind == "square":
            return lambda y, f: _mean(ops.square(f[:, 0] - signed(ops.cast(y, f.dtype))))
        if kind == "exponential":
            return lambda y, f: _mean(ops.exp(-signed(ops.cast(y, f.dtype)) * f[:, 0]))
    elif output == "onehot":
        if kind == "square":
            return lambda y, f: _mean(ops.square(f - ops.one_hot(ops.cast(y, "int32"), f.shape[1], dtype=f.dtype)))
        if kind == "square_rescaled":

            def rescaled(y, f):
                weights, targets = _rescaled_weights_targets(ops.one_hot(ops.cast(y, "int32"), f.shape[1], dtype=f.dtype), k, M)
                return _mean(weights * ops.square(f - targets))

            return rescaled
        if kind == "cross_entropy":
            return lambda y, f: _mean(ops.sparse_categorical_crossentropy(ops.cast(y, "int32"), f, from_logits=True))
    raise ValueError(f"no loss {kind!r} for output {output!r}")


def np_loss(kind: str, output: str, outputs: np.ndarray, labels: np.ndarray, k: float = 1.0, M: float = 1.0) -> float:
    """The same loss in float64 numpy, over a whole data set."""
    f = np.asarray(outputs, dtype=np.float64)
    y = np.asarray(labels)
    if output == "scalar":
        s = signed(y.astype(np.float64))
        if kind == "square":
            return float(np.mean(np.square(f[:, 0] - s)))
        if kind == "exponential":
            return float(np.mean(np.exp(-s * f[:, 0])))
    elif output == "onehot":
        if kind in ("square", "square_rescaled"):
            onehot = np.zeros_like(f)
            onehot[np.arange(len(y)), y] = 1.0
            if kind == "square":
                k, M = 1.0, 1.0
            weights, targets = _rescaled_weights_targets(onehot, k, M)
            return float(np.mean(weights * np.square(f - targets)))
        if kind == "cross_entropy":
            z = f - f.max(axis=1, keepdims=True)
            logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
            return float(-np.mean(logp[np.arange(len(y)), y]))
    raise ValueError(f"no loss {kind!r} for output {output!r}")


def np_accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Argmax for C outputs; sign for the scalar output (f > 0 means label 1)."""
    f = np.asarray(outputs)
    pred = (f[:, 0] > 0).astype(int) if f.shape[1] == 1 else np.argmax(f, axis=1)
    return float(np.mean(pred == labels))
