"""The training step (SPEC §4): square loss, coupled weight decay, PyTorch-style SGD.

`SquareLossTrainer` wraps the network (which is what gets saved as `model.keras`) and gives it a
custom `train_step`. Per minibatch it minimizes the objective

    L_tot = 1/(b·C) Σ_n ||f(x_n) − e_{y_n}||²  +  λ/2 · Σ_k ||W_k||_F²

so the gradient is ∇L + λW *before* momentum, PyTorch `SGD(weight_decay=λ)` semantics (Keras'
optimizer `weight_decay` is decoupled and is deliberately not used). Every logged scalar is a
Keras metric, averaged over the epoch's steps: `batch_loss`, `batch_objective`, `batch_acc`
(training mode, i.e. BatchNorm with batch statistics) and `grad_norm_sq` = ||∇L_tot||².

The objective, the penalty and the logged values are written once, in `keras.ops`, here; how the
gradient is taken and applied differs per Keras backend and lives in `sqloss_nc.backend`
(`TrainStep`, the mixin this class inherits: a `GradientTape` step on TensorFlow, the stateless
step on JAX). The data order of epoch e is `batches.epoch_order(n, seed, e)`, the same on both.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from . import backend
from .batches import steps_per_epoch  # noqa: F401  (re-exported: part of this module's API)
from .losses import keras_loss
from .models import weight_layers


@keras.saving.register_keras_serializable(package="sqloss_nc")
class SquareLossTrainer(backend.TrainStep, keras.Model):
    """Trains a network with the square (or another) loss and coupled weight decay.

    Args:
        network: the functional network `x -> f(x)`.
        weight_decay: λ of the coupled penalty λ/2·Σ||θ||² over the `decayed` variables.
        decayed: the decayed variables (default: every kernel; see
            `normalization.decayed_variables` for the per-normalization choice).
        loss: `square`, `square_rescaled`, `cross_entropy` or `exponential` (see `losses.py`).
        output: `onehot` (C outputs) or `scalar` (1 output, y = ±1).
        finite_step_correction: minimize L_tot + (η/4)·||∇L_tot||² on each minibatch (section 5,
            implicit gradient regularization), η the current learning rate, by double backprop.
        loss_k, loss_M: the rescaled square loss's true-class weight and target.

    Example:

    ```python
    trainer = SquareLossTrainer(network, weight_decay=0.01)
    trainer.compile(optimizer=TorchSGD(0.01, momentum=0.9))
    trainer.fit(backend.epoch_dataset(x, y, 128, seed=0, first_epoch=1, last_epoch=10), epochs=10,
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
        loss_k: float = 1.0,
        loss_M: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.network = network
        self.weight_decay = float(weight_decay)
        self.decayed = list(decayed) if decayed is not None else [layer.kernel for layer in weight_layers(network)]
        self.loss_kind, self.output_mode, self.finite_step_correction = loss, output, bool(finite_step_correction)
        self.loss_k, self.loss_M = float(loss_k), float(loss_M)
        self._loss = keras_loss(loss, output, k=self.loss_k, M=self.loss_M)
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

    def penalty(self, decayed_values):
        """λ/2 · Σ ||θ||² over the values of the decayed variables."""
        if self.weight_decay == 0.0 or not decayed_values:
            return 0.0
        return 0.5 * self.weight_decay * sum(ops.sum(ops.square(w)) for w in decayed_values)

    def objective(self, y, f, decayed_values):
        """(loss, L_tot = loss + penalty) of outputs `f` for labels `y`."""
        loss = self._loss(y, f)
        return loss, loss + self.penalty(decayed_values)

    def step_values(self, f, y, loss, objective, grad_sq, correction) -> dict:
        """The per-step values the metrics average, keyed by metric name."""
        y = ops.cast(y, "int32")
        if self.output_mode == "scalar":
            pred = ops.cast(f[:, 0] > 0, "int32")
        else:
            pred = ops.cast(ops.argmax(f, axis=1), "int32")
        acc = ops.mean(ops.cast(ops.equal(pred, y), f.dtype))
        return {"batch_loss": loss, "batch_objective": objective, "grad_norm_sq": grad_sq, "fsc_term": correction, "batch_acc": acc}

    def probe_grad_norm_sq(self, batches) -> float:
        """Mean ||∇L_tot||² over `batches` at the current weights, in training mode, without
        changing anything (BatchNorm's moving statistics included). Gives epoch 0 the same
        `grad_norm_sq` definition as the epochs that train."""
        return float(np.mean([self.gradients(x, y)[4] for x, y in batches]))

    def get_config(self):
        paths = [v.path for v in self.decayed]
        return {
            "network": keras.saving.serialize_keras_object(self.network),
            "weight_decay": self.weight_decay,
            "decayed_paths": paths,
            "loss": self.loss_kind,
            "output": self.output_mode,
            "finite_step_correction": self.finite_step_correction,
            "loss_k": self.loss_k,
            "loss_M": self.loss_M,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        network = keras.saving.deserialize_keras_object(config.pop("network"))
        paths = set(config.pop("decayed_paths"))
        decayed = [v for v in network.weights if v.path in paths]
        return cls(network, decayed=decayed, **config)
