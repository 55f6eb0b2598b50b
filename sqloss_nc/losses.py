"""The training losses (SPEC §4), as TensorFlow ops for the training step and as float64 numpy for
the measurements, with one convention each:

| kind | output | per-batch loss |
|---|---|---|
| `square` | `onehot` (C outputs) | mean over all b·C elements of (f − e_y)² (PyTorch `MSELoss`) |
| `square` | `scalar` (1 output, y = ±1) | mean over b of (f − y)² (the paper's toy model) |
| `cross_entropy` | `onehot` | mean over b of −log softmax(f)_y |
| `exponential` | `scalar` | mean over b of exp(−y f) |

For the scalar output, integer label 1 is y = +1 and label 0 is y = −1.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def signed(labels):
    """Integer labels {0, 1} -> {−1, +1} (the scalar binary output's targets)."""
    return 2.0 * labels - 1.0


def tf_loss(kind: str, output: str):
    """The loss as a function (labels (b,) int, outputs (b, k) float) -> scalar tensor."""
    if output == "scalar":
        if kind == "square":
            return lambda y, f: tf.reduce_mean(tf.square(f[:, 0] - signed(tf.cast(y, f.dtype))))
        if kind == "exponential":
            return lambda y, f: tf.reduce_mean(tf.exp(-signed(tf.cast(y, f.dtype)) * f[:, 0]))
    elif output == "onehot":
        if kind == "square":
            return lambda y, f: tf.reduce_mean(tf.square(f - tf.one_hot(y, tf.shape(f)[1], dtype=f.dtype)))
        if kind == "cross_entropy":
            return lambda y, f: tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int32), logits=f))
    raise ValueError(f"no loss {kind!r} for output {output!r}")


def np_loss(kind: str, output: str, outputs: np.ndarray, labels: np.ndarray) -> float:
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
        if kind == "square":
            target = np.zeros_like(f)
            target[np.arange(len(y)), y] = 1.0
            return float(np.mean(np.square(f - target)))
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
