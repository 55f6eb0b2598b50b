"""JAX edges of training (see `sqloss_nc.backend`): the stateless train step with the finite-step
correction's double backprop (`jax.value_and_grad` of a function that itself takes a gradient),
`jax.jit` inference over `stateless_call`, generator feeding, devices.

Follows Keras' guide "Customizing what happens in fit() with JAX": `train_step(state, data)`
receives `(trainable, non_trainable, optimizer, metrics)` variable values, returns
`(logs, new_state)`, and touches no Keras variable (Keras jits it and writes the state back).
On JAX the train step and the inference passes are always compiled with XLA, JAX's only
compiler: `compute.jit_compile` chooses XLA only on TensorFlow.
"""

from __future__ import annotations

import contextlib
import os

import jax
import keras
import numpy as np

from ..batches import array_batches


def _keep_tensorflow_unloaded() -> None:
    """Keras' serializer asks `tf.available` (importing TensorFlow when it is installed) to
    recognize TF shapes and dtypes, even on the JAX backend: seconds and hundreds of MB per run,
    plus TF's import banner. A JAX run holds no TF objects, so unless TF is already loaded, tell
    Keras' lazy module it is absent (private attribute; harmless if Keras changes it)."""
    import sys

    from keras.src.utils import module_utils

    lazy = getattr(module_utils, "tensorflow", None)
    if lazy is not None and getattr(lazy, "_available", True) is None and "tensorflow" not in sys.modules:
        lazy._available = False


_keep_tensorflow_unloaded()


def _sum_of_squares(arrays):
    return sum(jax.numpy.sum(jax.numpy.square(a)) for a in arrays)


class TrainStep:
    """`train_step` and `gradients` for `SquareLossTrainer` on JAX (a mixin: the trainer provides
    `network`, `decayed`, `objective`, `step_values`, `finite_step_correction`)."""

    def _decayed_index(self) -> list[int]:
        # The penalty needs the decayed variables' *values* in the stateless state: their
        # positions among the trainable variables (plain Python, resolved while tracing).
        position = {id(v): i for i, v in enumerate(self.network.trainable_variables)}
        return [position[id(v)] for v in self.decayed]

    def _reorder(self, values, source, target) -> list:
        """`values` listed in the order of variables `source`, re-listed in the order of `target`
        (Keras' trainer state follows the trainer's variable order, `stateless_call` the
        network's; the two may differ)."""
        by_id = {id(v): value for v, value in zip(source, values)}
        return [by_id[id(v)] for v in target]

    def _objective_and_grads(self, trainable, non_trainable, x, y, training=True, eta=None):
        """(f, loss, L_tot, gradient of the minimized objective, ||∇L_tot||², correction, new
        non-trainable values). With `eta` the minimized objective is L_tot + (η/4)||∇L_tot||²,
        differentiated exactly through the inner gradient (double backprop)."""
        index = self._decayed_index()

        def objective_fn(tv):
            f, new_non_trainable = self.network.stateless_call(tv, non_trainable, x, training=training)
            loss, objective = self.objective(y, f, [tv[i] for i in index])
            return objective, (f, loss, new_non_trainable)

        value_and_grad = jax.value_and_grad(objective_fn, has_aux=True)
        if eta is None:
            (objective, (f, loss, new_nt)), grads = value_and_grad(trainable)
            grad_sq = _sum_of_squares(grads)
            correction = jax.numpy.zeros((), grad_sq.dtype)
        else:

            def corrected_fn(tv):
                (objective, aux), g = value_and_grad(tv)
                grad_sq = _sum_of_squares(g)
                correction = 0.25 * jax.numpy.asarray(eta, grad_sq.dtype) * grad_sq
                return objective + correction, (objective, aux, grad_sq, correction)

            (_, (objective, (f, loss, new_nt), grad_sq, correction)), grads = jax.value_and_grad(corrected_fn, has_aux=True)(trainable)
        return f, loss, objective, grads, grad_sq, correction, new_nt

    def _learning_rate(self, optimizer_variables):
        """The optimizer's current rate (schedules read `iterations`) from the stateless state."""
        with keras.StatelessScope(state_mapping=list(zip(self.optimizer.variables, optimizer_variables))):
            return keras.ops.convert_to_tensor(self.optimizer.learning_rate)

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_vars, metrics_vars = state
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        net = self.network
        eta = self._learning_rate(optimizer_vars) if self.finite_step_correction else None
        f, loss, objective, grads, grad_sq, correction, new_non_trainable = self._objective_and_grads(
            self._reorder(trainable, self.trainable_variables, net.trainable_variables),
            self._reorder(non_trainable, self.non_trainable_variables, net.non_trainable_variables),
            x,
            y,
            eta=eta,
        )
        non_trainable = self._reorder(new_non_trainable, net.non_trainable_variables, self.non_trainable_variables)
        # stateless_apply lists variables in the order the optimizer was built with.
        opt_order = self.optimizer._trainable_variables
        updated, optimizer_vars = self.optimizer.stateless_apply(
            optimizer_vars,
            self._reorder(grads, net.trainable_variables, opt_order),
            self._reorder(trainable, self.trainable_variables, opt_order),
        )
        trainable = self._reorder(updated, opt_order, self.trainable_variables)
        values = self.step_values(f, y, loss, objective, grad_sq, correction)
        logs, new_metrics_vars = {}, []
        for metric in self.metrics:
            n = len(metric.variables)
            mv = metric.stateless_update_state(metrics_vars[len(new_metrics_vars) : len(new_metrics_vars) + n], values[metric.name])
            logs[metric.name] = metric.stateless_result(mv)
            new_metrics_vars += mv
        return logs, (trainable, non_trainable, optimizer_vars, new_metrics_vars)

    def gradients(self, x, y, eta=None, training=True):
        """The step's quantities at the current weights, changing nothing: (f, loss, L_tot,
        gradients of the minimized objective, ||∇L_tot||², correction), as numpy."""
        cache = self.__dict__.setdefault("_gradients_fns", {})
        key = (bool(training), eta is None)
        if key not in cache:
            cache[key] = jax.jit(
                lambda tv, ntv, x, y, eta: self._objective_and_grads(tv, ntv, x, y, training=training, eta=eta)[:6]
            )
        tv = [v.value for v in self.network.trainable_variables]
        ntv = [v.value for v in self.network.non_trainable_variables]
        out = cache[key](tv, ntv, x, np.asarray(y, dtype=np.int32), eta)
        f, loss, objective, grads, grad_sq, correction = out
        return np.asarray(f), float(loss), float(objective), [np.asarray(g) for g in grads], float(grad_sq), float(correction)


# ----------------------------------------------------------------------------- stacked runs
#
# `sqloss_nc.stacking` trains K runs of one shape as one program. These are the JAX pieces it
# needs, written here so that the step's internals (`_objective_and_grads`, `_reorder`) stay in
# this module: the step of one run of a stack, its mapping over the K runs (`vmap` or
# `lax.map`), and the batched inference-mode measurement of all K runs at once.

STACK_MODES = ("vmap", "map", "unroll")


def patches_conv(inputs, kernel, strides, padding: str):
    """A 2-D channels-last convolution (no dilation, one group) as im2col: the kh·kw shifted,
    strided slices of the (padded) input side by side, times the kernel as one matrix.

    Why: XLA:CPU runs a convolution fast only in its canonical layouts. Mapped over the runs of
    a stack it gets others: `vmap` makes K runs' convolutions one grouped convolution, and inside
    `lax.map`'s loop the backward convolutions keep non-canonical dimension orders; both fall
    back to a naive loop (measured on the paper's convnet: 3× and 40× slower per run than
    alone). Here every op is a slice, a pad, a concatenation or a matmul, whose `vmap` is a
    batched matmul and whose gradients are pads and matmuls again.

    Args:
        inputs: (N, H, W, C).
        kernel: (kh, kw, C, O).
        strides: (sh, sw).
        padding: `same` (as `lax.conv_general_dilated`'s SAME: the extra row/column low-side
            last) or `valid`.

    Returns:
        (N, OH, OW, O), equal to `lax.conv_general_dilated` within float32 rounding.

    Example: `patches_conv(x, w, (2, 2), "same")` for x (8, 32, 32, 3) and w (3, 3, 3, 32) is (8, 16, 16, 32).
    """
    jnp = jax.numpy
    kh, kw, c, o = kernel.shape
    (sh, sw), (n, h, w, _) = strides, inputs.shape
    if padding == "same":
        oh, ow = -(-h // sh), -(-w // sw)
        ph, pw = max((oh - 1) * sh + kh - h, 0), max((ow - 1) * sw + kw - w, 0)
        inputs = jnp.pad(inputs, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    # Column (i·kw + j)·C + c of the patches is kernel row (i, j, c) of kernel.reshape(-1, O).
    cols = [inputs[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :] for i in range(kh) for j in range(kw)]
    patches = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]
    return jnp.matmul(patches.reshape(n * oh * ow, kh * kw * c), kernel.reshape(kh * kw * c, o)).reshape(n, oh, ow, o)


def has_convolutions(network) -> bool:
    """Whether `network` (or a model nested in it) has a convolution layer: what decides
    whether `compute.stack_mode: auto` times the stack's modes (`stackplan.choose_stack_mode`).

    Example: `has_convolutions(build_network(load_config(None, ["model.arch=mlp"]).model, (8, 8, 3), 2))` is False.
    """
    convs = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
    return any(isinstance(layer, convs) or (hasattr(layer, "layers") and has_convolutions(layer)) for layer in network.layers)


class PatchedConvolutions:
    """While active (entered by the stacked step and the stacked inference as they are traced,
    never around an unstacked run), Keras' JAX `conv` computes 2-D channels-last convolutions
    with `patches_conv`; any other convolution (channels-first, dilated, grouped, 1-D/3-D) keeps
    Keras' own. Not thread-safe: it swaps a module attribute of Keras for the block.

    Example: `with PatchedConvolutions(): jax.jit(lambda x: net(x)).lower(x)` traces no convolution.
    """

    def __enter__(self):
        from keras.src.backend.jax import nn as keras_nn  # what keras.ops.conv calls on JAX

        self.module, self.original = keras_nn, keras_nn.conv
        original = self.original

        def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
            pad = str(padding).lower()
            two = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
            if (
                getattr(inputs, "ndim", 0) == 4
                and len(kernel.shape) == 4
                and (data_format or keras.config.image_data_format()) == "channels_last"
                and two(dilation_rate) == (1, 1)
                and inputs.shape[-1] == kernel.shape[-2]
                and pad in ("same", "valid")
            ):
                kernel = jax.numpy.asarray(kernel)
                return patches_conv(jax.numpy.asarray(inputs, kernel.dtype), kernel, two(strides), pad)
            return original(inputs, kernel, strides, padding, data_format, dilation_rate)

        keras_nn.conv = conv
        return self

    def __exit__(self, *exc):
        self.module.conv = self.original
        return False


class _StackedRunStep(TrainStep):
    """The trainer's step for one run of a stack: its loss plus this run's λ/2·Σ||θ||² (a traced
    scalar per run; the trainer's own penalty holds one Python λ)."""

    def __init__(self, trainer, half_decay):
        self.network, self.decayed, self.finite_step_correction = trainer.network, trainer.decayed, trainer.finite_step_correction
        self.trainer, self.half_decay = trainer, half_decay

    def objective(self, y, f, decayed_values):
        loss, _ = self.trainer.objective(y, f, [])  # loss only: no decayed variables, no penalty
        # The same expression as SquareLossTrainer.penalty, with λ/2 a traced value.
        return loss, loss + self.half_decay * _sum_of_squares(decayed_values)


def stacked_run_step(trainer, optimizer, lr_slot: int, patches: bool = True):
    """The train step of ONE run of a stack, as a pure function to be mapped over the runs.

    Args:
        trainer: the template run's `SquareLossTrainer` (its network, loss, decayed variables,
            finite-step correction; every run of the stack has the same).
        optimizer: a built `TorchSGD` whose `variables` order the optimizer state `ov`.
        lr_slot: the index in `optimizer.variables` of its float learning-rate variable (each
            run's rate of the epoch is fed there).
        patches: 2-D convolutions as `patches_conv` (im2col and a matmul) while the step is
            traced, else Keras' own (`lax.conv_general_dilated`).

    Returns:
        `run_step(tv, ntv, ov, x, y, half_decay, active, update=True)`: with `update`
        ((new tv, new ntv, new ov), step values) where a run with `active` False keeps its
        state; without, the step values only (nothing changes). `tv`, `ntv` in the network's
        variable order; `half_decay` = λ/2 of this run.

    Example: `step = stacked_run_step(trainer, template_sgd, slot); map_runs(step, "vmap")`.
    """
    net = trainer.network
    fsc = trainer.finite_step_correction

    def run_step(tv, ntv, ov, x, y, half_decay, active, update=True):
        with PatchedConvolutions() if patches else contextlib.nullcontext():
            return _run_step(tv, ntv, ov, x, y, half_decay, active, update)

    def _run_step(tv, ntv, ov, x, y, half_decay, active, update):
        step = _StackedRunStep(trainer, half_decay)
        eta = ov[lr_slot] if fsc and update else None
        f, loss, objective, grads, grad_sq, correction, new_ntv = step._objective_and_grads(tv, ntv, x, y, eta=eta)
        values = trainer.step_values(f, y, loss, objective, grad_sq, correction)
        if not update:
            return values
        order = optimizer._trainable_variables  # stateless_apply's order (as in TrainStep.train_step)
        updated, new_ov = optimizer.stateless_apply(ov, step._reorder(grads, net.trainable_variables, order), step._reorder(tv, net.trainable_variables, order))
        new_tv = step._reorder(updated, order, net.trainable_variables)
        # A frozen run (diverged, or ahead of the stack after a resume) keeps its state.
        keep = lambda new, old: jax.numpy.where(active, new, old)  # noqa: E731
        return (jax.tree.map(keep, new_tv, tv), jax.tree.map(keep, new_ntv, ntv), jax.tree.map(keep, new_ov, ov)), values

    return run_step


def map_runs(fn, mode: str = "vmap", shared: tuple = ()):
    """`fn` mapped over the leading (run) axis of its arguments, in one program either way.

    Args:
        fn: a function of one run's arguments.
        mode: `vmap` (one batched computation: K runs' matmuls become batched matmuls and their
            convolutions grouped convolutions), `map` (`lax.map`: a loop over the runs inside
            the program, each run's ops at their unstacked shapes) or `unroll` (the K runs'
            computations side by side in one program, no loop: unstacked shapes without the
            loop, which XLA:CPU runs slowly; compile time grows with K).
        shared: positions of arguments that are the same for every run (not mapped).

    Example: `map_runs(lambda w, x: x @ w, "map", shared=(1,))(w_stack, x)` is (K, n, m).
    """
    if mode not in STACK_MODES:
        raise ValueError(f"stack mode must be one of {STACK_MODES}, got {mode!r}")
    if mode == "vmap":
        return lambda *args: jax.vmap(fn, in_axes=tuple(None if i in shared else 0 for i in range(len(args))))(*args)

    def mapped(*args):
        fixed = {i: args[i] for i in shared}
        per_run = tuple(a for i, a in enumerate(args) if i not in shared)

        def one(run_args):
            it = iter(run_args)
            return fn(*(fixed[i] if i in fixed else next(it) for i in range(len(args))))

        if mode == "map":
            return jax.lax.map(one, per_run)
        k = len(jax.tree.leaves(per_run)[0])
        outs = [one(jax.tree.map(lambda a, r=r: a[r], per_run)) for r in range(k)]
        return jax.tree.map(lambda *xs: jax.numpy.stack(xs), *outs)

    return mapped


def stacked_inference(network, weight_layers, mode: str = "vmap", patches: bool = True):
    """Inference-mode outputs and effective kernels of K stacked runs of `network`'s shape.

    Args:
        network: the template run's network (every run of the stack has its shape).
        weight_layers: the layers whose effective kernels (`normalization.effective_kernel`:
            V/||V||, ·g for weight norm, else the kernel) are returned, in this order.
        mode: `vmap` or `map` over the runs (`map_runs`).
        patches: 2-D convolutions as `patches_conv` (as `stacked_run_step`).

    Returns:
        (outputs, kernels), two jitted functions compiled once per input shape:
        `outputs(tv, ntv, x)` -> (K, n, out) for a batch `x` (n, ...) shared by the runs, and
        `kernels(tv, ntv)` -> [(K, ...) per weight layer]; `tv`, `ntv` are the network's
        (trainable, non-trainable) values stacked (K, ...), in its variable order.

    Example: `outputs, kernels = stacked_inference(net, weight_layers(net)); outputs(tv, ntv, x).shape`.
    """
    from ..normalization import effective_kernel

    def outputs(tv, ntv, x):
        with PatchedConvolutions() if patches else contextlib.nullcontext():
            return network.stateless_call(tv, ntv, x, training=False)[0]

    variables = [*network.trainable_variables, *network.non_trainable_variables]

    def kernels(tv, ntv):
        # The layers' own `effective_kernel`, evaluated on this run's values (no variable touched).
        with keras.StatelessScope(state_mapping=list(zip(variables, [*tv, *ntv]))):
            return [keras.ops.convert_to_tensor(effective_kernel(layer)) for layer in weight_layers]

    return jax.jit(map_runs(outputs, mode, shared=(2,))), jax.jit(map_runs(kernels, mode))


def stacked_weight_stats(mode: str = "vmap"):
    """The per-epoch weight measures of K stacked runs, reduced on the device (only (K,)-sized
    results cross to the host).

    Args:
        mode: `vmap` or `map` over the runs (`map_runs`).

    Returns:
        jitted `stats(kernels, previous, decayed)` -> (sq_norms (L, K), sq_previous (L, K),
        sq_updates (L, K), decayed_sq (K,)): for each of the L effective kernels (K, ...) its
        ||W||², ||W_previous||² and ||W − W_previous||² per run, and Σ||θ||² over the `decayed`
        values (K, ...) per run, as
        float32 sums (their square roots and ratios are taken in float64 on the host: within
        float32 rounding of `engine.spectra.update_norm` and `measures.frobenius`).

    Example: `sq, up, dec = stacked_weight_stats()(kernels, previous_kernels, decayed_values)`.
    """

    def one(kernels, previous, decayed):
        sq = jax.numpy.stack([jax.numpy.sum(jax.numpy.square(w)) for w in kernels])
        sq_prev = jax.numpy.stack([jax.numpy.sum(jax.numpy.square(w)) for w in previous])
        up = jax.numpy.stack([jax.numpy.sum(jax.numpy.square(w - p)) for w, p in zip(kernels, previous)])
        return sq, sq_prev, up, _sum_of_squares(decayed) if decayed else jax.numpy.zeros(())

    mapped = map_runs(one, mode)
    return jax.jit(lambda kernels, previous, decayed: (lambda r: (r[0].T, r[1].T, r[2].T, r[3]))(mapped(kernels, previous, decayed)))


def shared_inference(model, network):
    """`compile_inference` for many networks built like `network` (the runs of a stack), compiled
    once: `model` is built on `network`'s layers (the network itself, or a multi-output model
    over them); returns `bind(other)` -> run(x), `model`'s function on `other`'s current values.

    Example: `bind = shared_inference(probe_model, net0); run1 = bind(net1); run1(x)`.
    """
    tpos = [_position(network.trainable_variables, v) for v in model.trainable_variables]
    npos = [_position(network.non_trainable_variables, v) for v in model.non_trainable_variables]
    fn = jax.jit(lambda tv, ntv, x: model.stateless_call([tv[i] for i in tpos], [ntv[j] for j in npos], x, training=False)[0])

    def bind(other):
        def run(x):
            out = fn([v.value for v in other.trainable_variables], [v.value for v in other.non_trainable_variables], x)
            return [np.asarray(t) for t in out] if isinstance(out, (list, tuple)) else [np.asarray(out)]

        return run

    return bind


def _position(items, obj) -> int:
    """Index of `obj` in `items` by identity (`list.index` compares Keras variables by value)."""
    return next(i for i, v in enumerate(items) if v is obj)


def compile_inference(model, jit_compile: bool = True):
    """x (numpy batch) -> list of numpy outputs of `model(x, training=False)`: `jax.jit` of
    `stateless_call` on the variables' current values (always XLA; `jit_compile` is ignored)."""
    fn = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])

    def run(x):
        out = fn([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables], x)
        return [np.asarray(t) for t in out] if isinstance(out, (list, tuple)) else [np.asarray(out)]

    return run


def epoch_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int, last_epoch: int):
    """The batches of `batches.batch_indices` as a Python generator of numpy arrays (Keras' JAX
    trainer moves each batch to the device, one batch ahead on accelerators)."""
    return array_batches(x, y, batch_size, seed, first_epoch, last_epoch)


def seed_everything(seed: int) -> None:
    """`keras.utils.set_random_seed` without its side trip: it imports TensorFlow whenever TF is
    installed, even on the JAX backend (seconds and hundreds of MB per process). The run's own
    draws are seeded explicitly; this covers anything that reads the global seeds."""
    import random

    from keras.src.backend.common import global_state

    random.seed(seed)
    np.random.seed(seed)
    global_state.set_global_attribute("global_random_seed", seed)


def configure_device() -> None:
    """Nothing to do: `sqloss_nc/__init__.py` turns JAX's GPU preallocation off before import."""


def limit_threads(threads: int) -> None:
    """Best effort: XLA's CPU client reads its flags when JAX first runs something, so a worker
    that calls this before any computation gets single-threaded Eigen kernels for threads == 1."""
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_cpu_multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1".strip()


def devices() -> str:
    devs = jax.devices()
    if devs and devs[0].platform != "cpu":
        return ", ".join(f"{d.platform}:{d.id} ({d.device_kind})" for d in devs)
    return f"CPU ({os.cpu_count()} cores)"


def versions() -> dict:
    import jaxlib

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__}
