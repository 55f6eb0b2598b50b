"""TensorFlow edges of training (see `sqloss_nc.backend`): `GradientTape` train step with the
finite-step correction's double backprop, `tf.function` inference, `tf.data` feeding, devices.

Follows Keras' guide "Customizing what happens in fit() with TensorFlow": `train_step(data)`
computes the gradient on a tape, lets the optimizer apply it, and updates the trainer's metrics.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from ..batches import batch_indices


def _sum_of_squares(tensors):
    return tf.add_n([tf.reduce_sum(tf.square(t)) for t in tensors])


class TrainStep:
    """`train_step` and `gradients` for `SquareLossTrainer` on TensorFlow (a mixin: the trainer
    provides `network`, `decayed`, `objective`, `step_values`, `finite_step_correction`)."""

    def _objective_and_grads(self, x, y, training=True, eta=None):
        """(f, loss, L_tot, gradient of the minimized objective, ||∇L_tot||², correction term).
        With `eta` the minimized objective is L_tot + (η/4)||∇L_tot||², differentiated exactly by
        a second tape over the first gradient (double backprop)."""
        variables = self.network.trainable_variables
        with tf.GradientTape() as outer:
            with tf.GradientTape() as tape:
                f = self.network(x, training=training)
                loss, objective = self.objective(y, f, self.decayed)
            grads = tape.gradient(objective, variables)
            grad_sq = _sum_of_squares(grads)
            if eta is None:
                correction = tf.zeros((), grad_sq.dtype)
            else:  # a Python float exactly in the gradient's dtype (tf.cast would round it to float32 first)
                eta = tf.constant(eta, grad_sq.dtype) if isinstance(eta, (int, float)) else tf.cast(eta, grad_sq.dtype)
                correction = 0.25 * eta * grad_sq
            corrected = objective + correction  # recorded on the outer tape
        if eta is not None:
            grads = outer.gradient(corrected, variables)
        return f, loss, objective, grads, grad_sq, correction

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        eta = self.optimizer.learning_rate if self.finite_step_correction else None
        f, loss, objective, grads, grad_sq, correction = self._objective_and_grads(x, y, eta=eta)
        self.optimizer.apply(grads, self.network.trainable_variables)
        values = self.step_values(f, y, loss, objective, grad_sq, correction)
        for metric in self.metrics:
            metric.update_state(values[metric.name])
        return {m.name: m.result() for m in self.metrics}

    def gradients(self, x, y, eta=None, training=True):
        """The step's quantities at the current weights, changing nothing: (f, loss, L_tot,
        gradients of the minimized objective, ||∇L_tot||², correction), as numpy. BatchNorm's
        moving statistics, which a training-mode call updates, are restored afterwards."""
        # One trace per trainer and (training, eta given or not): the batch size is left unknown,
        # so an epoch's last, smaller batch reuses the trace, and eta is a tensor argument. Each
        # run's partial batch used to retrace the double-backprop graph, which in a sweep also
        # printed TensorFlow's "tf.function retracing" warning amid the progress bars.
        fns = self.__dict__.setdefault("_gradients_fns", {})
        key = (bool(training), eta is None)
        x = tf.convert_to_tensor(x)
        if key not in fns:
            spec = [tf.TensorSpec([None, *x.shape[1:]], x.dtype), tf.TensorSpec([None], tf.int32)]
            if eta is None:
                fns[key] = tf.function(lambda x, y: self._objective_and_grads(x, y, training=training), input_signature=spec)
            else:
                fns[key] = tf.function(
                    lambda x, y, eta: self._objective_and_grads(x, y, training=training, eta=eta),
                    input_signature=[*spec, tf.TensorSpec([], tf.float64)],
                )
        # A Python eta must become float64 directly: tf.cast(0.3, float64) rounds through float32 first.
        eta_arg = () if eta is None else (tf.constant(eta, tf.float64) if isinstance(eta, (int, float)) else tf.cast(eta, tf.float64),)
        args = (x, tf.constant(np.asarray(y, dtype=np.int32))) + eta_arg
        saved = [v.numpy() for v in self.network.non_trainable_variables]
        try:
            out = fns[key](*args)
        finally:
            for v, value in zip(self.network.non_trainable_variables, saved):
                v.assign(value)
        f, loss, objective, grads, grad_sq, correction = out
        return f.numpy(), float(loss), float(objective), [g.numpy() for g in grads], float(grad_sq), float(correction)


def compile_inference(model, jit_compile: bool = False):
    """x (numpy batch) -> list of numpy outputs of `model(x, training=False)`, as a `tf.function`
    (with XLA when `jit_compile`)."""
    # One trace per model: the batch size is left unknown, so a split's last, smaller batch and
    # the test split reuse it (each new shape used to retrace, and warn, in every run of a sweep).
    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], model.inputs[0].dtype)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec], jit_compile=bool(jit_compile))

    def run(x):
        out = fn(x)
        return [t.numpy() for t in out] if isinstance(out, (list, tuple)) else [out.numpy()]

    return run


def epoch_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int, last_epoch: int) -> tf.data.Dataset:
    """The batches of `batches.batch_indices` as a `tf.data` pipeline: the index arrays come from
    numpy (the backend-independent order), the gathers run in TensorFlow's threads."""
    x_t, y_t = tf.constant(x), tf.constant(np.asarray(y, dtype=np.int32))
    n = len(x)
    idx = tf.data.Dataset.from_generator(
        lambda: batch_indices(n, batch_size, seed, first_epoch, last_epoch), output_signature=tf.TensorSpec([None], tf.int64)
    )
    ds = idx.map(lambda i: (tf.gather(x_t, i), tf.gather(y_t, i)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def seed_everything(seed: int) -> None:
    """Python's, numpy's, Keras' and TensorFlow's global seeds (`keras.utils.set_random_seed`)."""
    keras.utils.set_random_seed(seed)


def configure_device() -> None:
    """Let several runs share a GPU: allocate GPU memory on demand instead of all at once."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialized: nothing to do
            pass


def limit_threads(threads: int) -> None:
    """Size TensorFlow's thread pools (read once, before the first op)."""
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))


def devices() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for g in gpus:
            details = tf.config.experimental.get_device_details(g)
            names.append(f"{g.name} ({details.get('device_name', 'GPU')})")
        return ", ".join(names)
    return f"CPU ({os.cpu_count()} cores)"


def versions() -> dict:
    return {"tensorflow": tf.__version__}
