"""The pieces of training that differ per Keras backend, chosen once from `keras.backend.backend()`.

Everything else in the package (models, losses, the optimizer, initializers, constraints, the
tracker's maths) is written in `keras.ops` or numpy and runs unchanged on either backend. What
cannot be written once lives in one small module per backend, following Keras' guides for a custom
`train_step` on each backend:

| name | what it is |
|---|---|
| `TrainStep` | mixin giving `SquareLossTrainer` its `train_step` (TensorFlow: `GradientTape`; JAX: the stateless step over `(trainable, non_trainable, optimizer, metrics)` state), the finite-step correction's double backprop, and `gradients` (the objective and its gradient at the current weights, no side effects) |
| `compile_inference(model, jit_compile)` | a function numpy batch -> list of numpy outputs of `model(x, training=False)`, compiled (`tf.function`, or `jax.jit` of `stateless_call`) |
| `epoch_dataset(x, y, batch_size, seed, first, last)` | what `fit` consumes: the batches of `batches.batch_indices` (`tf.data` on TensorFlow, a generator on JAX) |
| `configure_device()`, `limit_threads(n)`, `seed_everything(seed)` | GPU memory on demand; thread pools of a worker process; the global seeds |
| `devices()`, `versions()` | what `status.json` records |

Example:

```python
from sqloss_nc import backend
backend.NAME                      # 'tensorflow' or 'jax'
```
"""

from __future__ import annotations

import keras

NAME = keras.backend.backend()

if NAME == "tensorflow":
    from . import tensorflow as _impl
elif NAME == "jax":
    from . import jax as _impl
else:
    raise ImportError(f"sqloss_nc runs on the Keras backends 'tensorflow' and 'jax', not {NAME!r}: set KERAS_BACKEND")

TrainStep = _impl.TrainStep
compile_inference = _impl.compile_inference
epoch_dataset = _impl.epoch_dataset
configure_device = _impl.configure_device
seed_everything = _impl.seed_everything
limit_threads = _impl.limit_threads
devices = _impl.devices
versions = _impl.versions

__all__ = ["NAME", "TrainStep", "compile_inference", "epoch_dataset", "configure_device", "seed_everything", "limit_threads", "devices", "versions"]
