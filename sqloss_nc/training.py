"""The training step (SPEC §4): square loss, coupled weight decay, PyTorch-style SGD.

`SquareLossTrainer` wraps the network (which is what gets saved as `model.keras`) and overrides
`train_step`. Per minibatch it minimizes the objective

    L_tot = 1/(b·C) Σ_n ||f(x_n) − e_{y_n}||²  +  λ/2 · Σ_k ||W_k||_F²

so the gradient is ∇L + λW *before* momentum, PyTorch `SGD(weight_decay=λ)` semantics (Keras'
optimizer `weight_decay` is decoupled and is deliberately not used). Every logged scalar is a
Keras metric, averaged over the epoch's steps: `batch_loss`, `batch_objective`, `batch_acc`
(training mode, i.e. BatchNorm with batch statistics) and `grad_norm_sq` = ||∇L_tot||².

The data order of epoch e (1-based) is a permutation drawn statelessly from (seed, e), so a run
resumed at epoch e sees the same batches an uninterrupted run would.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .models import weight_layers


@keras.saving.register_keras_serializable(package="sqloss_nc")
class SquareLossTrainer(keras.Model):
    """Trains a network with the square loss and coupled weight decay.

    Args:
        network: the functional network `x -> f(x)` (C outputs).
        weight_decay: λ of the coupled penalty λ/2·Σ||W||² over `decayed` kernels.
        decayed: names of the layers whose kernels are decayed (default: every layer with a kernel).

    Example:

    ```python
    trainer = SquareLossTrainer(network, weight_decay=0.01)
    trainer.compile(optimizer=TorchSGD(0.01, momentum=0.9))
    trainer.fit(epoch_batches(x, y, 128, seed=0, first_epoch=1, last_epoch=10), epochs=10,
                steps_per_epoch=steps_per_epoch(len(x), 128))
    ```
    """

    def __init__(self, network: keras.Model, weight_decay: float = 0.0, decayed: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.weight_decay = float(weight_decay)
        layers = weight_layers(network)
        self.decayed = list(decayed) if decayed is not None else [layer.name for layer in layers]
        self._decayed_kernels = [network.get_layer(n).kernel for n in self.decayed]
        self.num_outputs = int(network.output.shape[-1])
        self.loss_tracker = keras.metrics.Mean(name="batch_loss")
        self.objective_tracker = keras.metrics.Mean(name="batch_objective")
        self.grad_tracker = keras.metrics.Mean(name="grad_norm_sq")
        self.acc_tracker = keras.metrics.Mean(name="batch_acc")

    def call(self, x, training=False):
        return self.network(x, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.objective_tracker, self.grad_tracker, self.acc_tracker]

    def penalty(self):
        """λ/2 · Σ ||W_k||_F² over the decayed kernels."""
        if self.weight_decay == 0.0:
            return tf.constant(0.0)
        return 0.5 * self.weight_decay * tf.add_n([tf.reduce_sum(tf.square(w)) for w in self._decayed_kernels])

    def _objective_and_grads(self, x, y, training=True):
        with tf.GradientTape() as tape:
            f = self.network(x, training=training)
            loss = tf.reduce_mean(tf.square(f - tf.one_hot(y, self.num_outputs, dtype=f.dtype)))
            objective = loss + self.penalty()
        variables = self.network.trainable_variables
        grads = tape.gradient(objective, variables)
        grad_sq = tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads])
        return f, loss, objective, grads, grad_sq

    def train_step(self, data):
        x, y = data
        f, loss, objective, grads, grad_sq = self._objective_and_grads(x, y)
        self.optimizer.apply(grads, self.network.trainable_variables)
        self.loss_tracker.update_state(loss)
        self.objective_tracker.update_state(objective)
        self.grad_tracker.update_state(grad_sq)
        self.acc_tracker.update_state(tf.reduce_mean(tf.cast(tf.equal(tf.argmax(f, axis=1, output_type=y.dtype), y), f.dtype)))
        return {m.name: m.result() for m in self.metrics}

    def probe_grad_norm_sq(self, batches) -> float:
        """Mean ||∇L_tot||² over `batches` at the current weights, in training mode, without
        changing anything: BatchNorm's moving statistics are restored afterwards. Gives epoch 0
        the same `grad_norm_sq` definition as the epochs that train."""
        saved = [v.numpy() for v in self.network.non_trainable_variables]
        step = tf.function(lambda x, y: self._objective_and_grads(x, y)[-1], reduce_retracing=True)
        values = [float(step(x, y)) for x, y in batches]
        for v, value in zip(self.network.non_trainable_variables, saved):
            v.assign(value)
        return float(np.mean(values))

    def get_config(self):
        return {
            "network": keras.saving.serialize_keras_object(self.network),
            "weight_decay": self.weight_decay,
            "decayed": self.decayed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch; the last one is partial (PyTorch `drop_last=False`)."""
    return -(-n // batch_size)


def epoch_permutation(n: int, seed: int, epoch: int) -> tf.Tensor:
    """The data order of (1-based) epoch `epoch`: a stateless function of (seed, epoch)."""
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=key)


def epoch_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int, last_epoch: int) -> tf.data.Dataset:
    """Minibatches of epochs first_epoch..last_epoch (1-based, inclusive), reshuffled per epoch
    from (seed, epoch); batches never straddle two epochs."""
    x_t, y_t = tf.constant(x), tf.constant(y, dtype=tf.int32)
    n = len(x)

    def one_epoch(epoch):
        order = epoch_permutation(n, seed, epoch)
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    ds = tf.data.Dataset.range(first_epoch, last_epoch + 1).flat_map(one_epoch)
    ds = ds.map(lambda idx: (tf.gather(x_t, idx), tf.gather(y_t, idx)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
