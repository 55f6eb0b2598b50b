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

from .losses import tf_loss
from .models import weight_layers


@keras.saving.register_keras_serializable(package="sqloss_nc")
class SquareLossTrainer(keras.Model):
    """Trains a network with the square (or another) loss and coupled weight decay.

    Args:
        network: the functional network `x -> f(x)`.
        weight_decay: λ of the coupled penalty λ/2·Σ||θ||² over the `decayed` variables.
        decayed: the decayed variables (default: every kernel; see
            `normalization.decayed_variables` for the per-normalization choice).
        loss: `square`, `cross_entropy` or `exponential` (see `losses.py`).
        output: `onehot` (C outputs) or `scalar` (1 output, y = ±1).
        finite_step_correction: minimize L_tot + (η/4)·||∇L_tot||² on each minibatch (section 5,
            implicit gradient regularization), η the current learning rate, by double backprop.

    Example:

    ```python
    trainer = SquareLossTrainer(network, weight_decay=0.01)
    trainer.compile(optimizer=TorchSGD(0.01, momentum=0.9))
    trainer.fit(epoch_batches(x, y, 128, seed=0, first_epoch=1, last_epoch=10), epochs=10,
                steps_per_epoch=steps_per_epoch(len(x), 128))
    ```
    """

    def __init__(
        self,
        network: keras.Model,
        weight_decay: float = 0.0,
        decayed=None,
        loss: str = "square",
        output: str = "onehot",
        finite_step_correction: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.network = network
        self.weight_decay = float(weight_decay)
        self.decayed = list(decayed) if decayed is not None else [layer.kernel for layer in weight_layers(network)]
        self.loss_kind, self.output_mode, self.finite_step_correction = loss, output, bool(finite_step_correction)
        self._loss = tf_loss(loss, output)
        self.loss_tracker = keras.metrics.Mean(name="batch_loss")
        self.objective_tracker = keras.metrics.Mean(name="batch_objective")
        self.grad_tracker = keras.metrics.Mean(name="grad_norm_sq")
        self.fsc_tracker = keras.metrics.Mean(name="fsc_term")
        self.acc_tracker = keras.metrics.Mean(name="batch_acc")

    def call(self, x, training=False):
        return self.network(x, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.objective_tracker, self.grad_tracker, self.fsc_tracker, self.acc_tracker]

    def penalty(self):
        """λ/2 · Σ ||θ||² over the decayed variables."""
        if self.weight_decay == 0.0 or not self.decayed:
            return 0.0
        return 0.5 * self.weight_decay * tf.add_n([tf.reduce_sum(tf.square(w)) for w in self.decayed])

    def _objective_and_grads(self, x, y, training=True, eta=None):
        """(f, loss, L_tot, gradient of the minimized objective, ||∇L_tot||², correction term).
        With `eta` the minimized objective is L_tot + (η/4)||∇L_tot||², differentiated exactly by
        a second tape over the first gradient (double backprop)."""
        variables = self.network.trainable_variables
        with tf.GradientTape() as outer:
            with tf.GradientTape() as tape:
                f = self.network(x, training=training)
                loss = self._loss(y, f)
                objective = loss + self.penalty()
            grads = tape.gradient(objective, variables)
            grad_sq = tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads])
            correction = 0.25 * tf.cast(eta, grad_sq.dtype) * grad_sq if eta is not None else tf.zeros((), grad_sq.dtype)
            corrected = objective + correction  # recorded on the outer tape
        if eta is not None:
            grads = outer.gradient(corrected, variables)
        return f, loss, objective, grads, grad_sq, correction

    def train_step(self, data):
        x, y = data
        eta = self.optimizer.learning_rate if self.finite_step_correction else None
        f, loss, objective, grads, grad_sq, correction = self._objective_and_grads(x, y, eta=eta)
        self.optimizer.apply(grads, self.network.trainable_variables)
        self.loss_tracker.update_state(loss)
        self.objective_tracker.update_state(objective)
        self.grad_tracker.update_state(grad_sq)
        self.fsc_tracker.update_state(correction)
        if self.output_mode == "scalar":
            pred = tf.cast(f[:, 0] > 0, y.dtype)
        else:
            pred = tf.argmax(f, axis=1, output_type=y.dtype)
        self.acc_tracker.update_state(tf.reduce_mean(tf.cast(tf.equal(pred, y), f.dtype)))
        return {m.name: m.result() for m in self.metrics}

    def probe_grad_norm_sq(self, batches) -> float:
        """Mean ||∇L_tot||² over `batches` at the current weights, in training mode, without
        changing anything: BatchNorm's moving statistics are restored afterwards. Gives epoch 0
        the same `grad_norm_sq` definition as the epochs that train."""
        saved = [v.numpy() for v in self.network.non_trainable_variables]
        step = tf.function(lambda x, y: self._objective_and_grads(x, y)[4], reduce_retracing=True)
        values = [float(step(x, y)) for x, y in batches]
        for v, value in zip(self.network.non_trainable_variables, saved):
            v.assign(value)
        return float(np.mean(values))

    def get_config(self):
        paths = [v.path for v in self.decayed]
        return {
            "network": keras.saving.serialize_keras_object(self.network),
            "weight_decay": self.weight_decay,
            "decayed_paths": paths,
            "loss": self.loss_kind,
            "output": self.output_mode,
            "finite_step_correction": self.finite_step_correction,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        network = keras.saving.deserialize_keras_object(config.pop("network"))
        paths = set(config.pop("decayed_paths"))
        decayed = [v for v in network.weights if v.path in paths]
        return cls(network, decayed=decayed, **config)


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
