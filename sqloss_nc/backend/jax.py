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
            XLA convolutions grouped convolutions), `map` (`lax.map`: a loop over the runs
            inside the program, each run's ops at their unstacked shapes) or `unroll` (the K
            runs' computations side by side in one program, no loop; compile time grows with
            K). XLA:CPU runs grouped convolutions and the backward convolutions inside a loop
            slowly, hence the stacked step's `patches_conv` in every mode.
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


def stacked_weight_stats(kernels, mode: str = "vmap"):
    """The per-epoch weight measures of K stacked runs, reduced on the device in one program
    (only (K,)-sized results cross to the host; no kernel is materialized).

    Args:
        kernels: `kernels(tv, ntv)` -> the L effective kernels (K, ...) of stacked values (the
            second function of `stacked_inference`).
        mode: `vmap` or `map` over the runs (`map_runs`).

    Returns:
        jitted `stats(values, previous, decayed)` -> (sq_norms (L, K), sq_previous (L, K),
        sq_updates (L, K), decayed_sq (K,)), `values` and `previous` (tv, ntv) pairs of stacked
        values: for each effective kernel W of `values` and W_previous of `previous`, per run,
        ||W||², ||W_previous||² and ||W − W_previous||², and Σ||θ||² over the `decayed` values
        (K, ...) per run, as float32 sums (their square roots and ratios are taken in float64 on
        the host: within float32 rounding of `engine.spectra.update_norm` and `measures.frobenius`).

    Example: `sq, sq_prev, up, dec = stacked_weight_stats(kernels)((tv, ntv), (tv0, ntv0), decayed)`.
    """

    def one(kernels, previous, decayed):
        sq = jax.numpy.stack([jax.numpy.sum(jax.numpy.square(w)) for w in kernels])
        sq_prev = jax.numpy.stack([jax.numpy.sum(jax.numpy.square(w)) for w in previous])
        up = jax.numpy.stack([jax.numpy.sum(jax.numpy.square(w - p)) for w, p in zip(kernels, previous)])
        return sq, sq_prev, up, _sum_of_squares(decayed) if decayed else jax.numpy.zeros(())

    mapped = map_runs(one, mode)

    def stats(values, previous, decayed):
        sq, sq_prev, up, dec = mapped(kernels(*values), kernels(*previous), decayed)
        return sq.T, sq_prev.T, up.T, dec

    return jax.jit(stats)


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


#: Device bytes the batched collapse measurement (`StackedCollapse.state_bytes`) may hold in
#: float64 statistics for all K runs together: per layer the (K, C, p) class means (twice in a
#: second pass: the running ones and the references), and the feature layer's K·p² scatter (the
#: MSE decomposition's, or Σ_W about the train means: `sigma_w_fro`, `sigma_w_fro_test`), K·C·p²
#: more for the per-class scatters of a rescaled loss with k != 1: 16·K·C·Σp + 8·K·p² bytes. 4 GiB
#: holds, e.g., K = 60 runs whose probed representations total Σp = 400,000 values at C = 10
#: (3.6 GiB) or, at C = 2 (the paper's Fig. 2), 2 million. Above it a stack measures its NC
#: epochs run by run, as before (`stacking._StackCollapse`). The chunk's representations are not counted: they are
#: the stacked inference pass's (`stacking.inference_chunk`), plus their float64 copies.
STACK_COLLAPSE_BYTES = 4 << 30


class StackedCollapse:
    """The collapse measurement of K stacked runs on the device (SPEC §5, §9, §10, §12): for a
    chunk of inputs shared by the runs, the K networks' probe model (hidden representations,
    features, class scores) runs once, vmapped, and its representations are reduced on the device
    to the per-run statistics the engine's two passes need; only (K, C, p)-sized results (and the
    feature layer's (K, p, p) scatter) reach the host, once per pass, never a representation.

    What each pass accumulates per run (`carry`), per layer j of the probe model:

    * pass 1 (`first=True`): class counts, class means and within-class sums of squares (every
      chunk's batch-class statistics, centred on the chunk's own class means, Chan-merged into
      the running ones exactly as `engine.nc.NCAccumulator._combine` merges a batch), whether
      every value was finite, Σ_n f_{y_n}(x_n) of the class scores (`eps_gap`), and with
      `scatter` the feature layer's pooled within-class scatter (`pooled`, the MSE
      decomposition's second moment) or also each class's (`class`, a rescaled loss with k != 1);
    * pass 2 (`refs`: the final class means and present classes of layers `ncc`, float64, and
      the feature layer's C−1 directions of Σ_B): how many samples are nearest (Euclidean,
      ties to the lowest index, as `engine.nc.nearest_class_mean`) to their label's mean (NCC),
      how many to a class other than the argmax of their scores (`nc4`), Σ_n ((h_n − μ_{y_n})·v_i)²
      (`directions`: NC1's projected quadratic forms) and Σ_W's scatter about the given means
      (`cov`: `sigma_w_fro`, and `sigma_w_fro_test` with the test split against the train means).

    The host folds these into the engine's accumulators (`engine.collapse.CollapsePasses`,
    `NCAccumulator.add_statistics` / `add_second_pass`) and finalizes each run with the same
    code as a run measured alone.

    Precision. The network computes its representations in float32, as alone; everything after
    that runs in float64 on the device (`jax.enable_x64` around the statistics only, so the
    network's own program is unchanged): per chunk, class sums, then every sample centred on its
    chunk's class mean before any square (no Σh² − nμ² cancellation when the features collapse),
    then Chan merges in float64. That is the engine's algorithm with the chunk as the batch, so
    on the same representations a stacked run's measures equal the engine's streaming ones up
    to float64 summation order (measured ≤ 3e-13 relative, ls_distance's λ = 0 solve amplifying
    the most; tests/test_stack_collapse.py asks 1e-9), except where a sample lies within float64
    rounding of a tie between two class means (NCC, nc4: counts may then differ by that sample).
    The representations themselves are the vmapped network's, whose float32 rounding may differ
    from the lone network's (another kernel, another batch shape, as a lone run's own inference
    batch size changes it): against the run's own Tracker, nc1 within 1.2e-7, every column
    within 3e-6 on the test's runs. Why not float32 statistics: the running sums must stay on
    the device across chunks (a chunk may hold as few as `compute.inference_batch` / K samples
    per run, 16 at K = 60, so per-chunk (K, C, p) statistics could move as many bytes as the
    representations), and float32 sums over thousands of chunks drift by ~sqrt(chunks)·2^-24
    (1e-5 at CIFAR's 50,000 samples), beyond 1e-6. A float64 sum costs at most twice a float32
    one on CPUs and on H100/H200-class GPUs; it is emulated (slow) on TPUs and consumer GPUs.

    Memory on the device: the chunk's representations of all K runs (as the outputs pass), the
    (K, C, p) means per layer in float64, and the feature layer's (K, p, p) scatter
    (`state_bytes`, bounded by `STACK_COLLAPSE_BYTES`).

    Args:
        probe_model: a Keras model over `network`'s layers whose outputs are the probed
            representations, the features among them, and last the network's output.
        network: the template run's network (the stacked values follow its variable order).
        classifier: the head layer (its `kernel` and `bias` per run: `head`).
        num_classes: C.
        features: the index of the feature layer among the probe model's outputs.
        scalar: a scalar head: the class scores are (−f, f), as the run's Tracker makes them.
        mode: `vmap` or `map` over the runs (`map_runs`).
        patches: 2-D convolutions as `patches_conv` (as `stacked_inference`).

    Example:

    ```python
    sc = StackedCollapse(probe, net, net.get_layer("classifier"), 10, features=2)
    first = sc.run(tv, ntv, x_train, labels, sc.carry(K, first=True, logits=True), chunk=16)
    first["mean"][2].shape            # (K, 10, p) float64: run k's feature class means
    ```
    """

    def __init__(self, probe_model, network, classifier, num_classes: int, features: int, scalar: bool = False, mode: str = "vmap", patches: bool = True):
        jnp = jax.numpy
        self.num_classes, self.features = int(num_classes), int(features)
        tpos = [_position(network.trainable_variables, v) for v in probe_model.trainable_variables]
        npos = [_position(network.non_trainable_variables, v) for v in probe_model.non_trainable_variables]
        *hidden, out = probe_model.outputs
        self.dims = [int(np.prod(t.shape[1:])) for t in hidden] + [2 if scalar else int(np.prod(out.shape[1:]))]

        def forward(tv, ntv, x):
            with PatchedConvolutions() if patches else contextlib.nullcontext():
                *reps, f = probe_model.stateless_call([tv[i] for i in tpos], [ntv[j] for j in npos], x, training=False)[0]
            scores = jnp.concatenate([-f, f], axis=1) if scalar else f
            return [r.reshape(r.shape[0], -1) for r in reps] + [scores]

        variables = [*network.trainable_variables, *network.non_trainable_variables]

        def head(tv, ntv):
            with keras.StatelessScope(state_mapping=list(zip(variables, [*tv, *ntv]))):
                bias = getattr(classifier, "bias", None)
                return [keras.ops.convert_to_tensor(w) for w in ([classifier.kernel] if bias is None else [classifier.kernel, bias])]

        self._forward = jax.jit(map_runs(forward, mode, shared=(2,)))
        self._head = jax.jit(map_runs(head, mode))
        C, feat = self.num_classes, self.features
        self._update = jax.jit(map_runs(lambda reps, y, valid, carry, refs: _collapse_update(C, feat, reps, y, valid, carry, refs), mode, shared=(2,)))

    def state_bytes(self, k: int, class_scatter: bool = False) -> int:
        """Device bytes of the float64 statistics for k runs (compare with `STACK_COLLAPSE_BYTES`):
        every layer's class means, twice (a second pass's running and reference means), and the
        feature layer's p x p scatter (C + 1 of them with `class_scatter`)."""
        p = self.dims[self.features]
        return 8 * k * (2 * self.num_classes * sum(self.dims) + p * p * (1 + (self.num_classes if class_scatter else 0)))

    def carry(self, k: int, *, first: bool = False, logits: bool = False, scatter: str | None = None, ncc=(), nc4: bool = False, directions: int = 0, cov: bool = False) -> dict:
        """The zero statistics of one pass for k runs (float64 numpy; class docstring).

        Args:
            k: runs.
            first: pass-1 statistics of every layer (counts, means, sums of squares, finite).
            logits: with `first`, Σ_n f_{y_n}(x_n) of the class scores.
            scatter: with `first`, the feature layer's `pooled` within-class scatter, or `class`
                (pooled and per class), or None.
            ncc: layers whose NCC counts are taken against `refs["means"]`.
            nc4: count the feature layer's NCC disagreeing with the scores' argmax.
            directions: k' > 0: the projected sums of squares on `refs["directions"]` (k', p).
            cov: the feature layer's scatter about `refs["means"]`.
        """
        C, z, p = self.num_classes, np.zeros, self.dims[self.features]
        c: dict = {}
        if first:
            c.update(count=[z((k, C)) for _ in self.dims], mean=[z((k, C, d)) for d in self.dims], ss=[z((k, C)) for _ in self.dims], finite=np.ones(k, bool))
            if logits:
                c["logit"] = z(k)
            if scatter is not None:
                c["scatter"] = z((k, p, p))
            if scatter == "class":
                c["class_scatter"] = z((k, C, p, p))
        if len(ncc):
            c["ncc"] = {int(j): z(k) for j in ncc}
        if nc4:
            c["nc4"] = z(k)
        if directions:
            c["proj"] = z((k, directions))
        if cov:
            c["cov"] = z((k, p, p))
        return c

    def head(self, tv, ntv) -> list[np.ndarray]:
        """Every run's classifier kernel (K, p, out) and bias (K, out) (when it has one), as numpy."""
        return [np.asarray(a) for a in jax.device_get(self._head(tv, ntv))]

    def run(self, tv, ntv, x, labels, carry: dict, refs: dict | None = None, chunk: int = 1000) -> dict:
        """One pass over a split: `carry`'s statistics of every run accumulated over `x`.

        Args:
            tv, ntv: the runs' (trainable, non-trainable) values, stacked (K, ...).
            x: (N, ...) inputs shared by the runs.
            labels: (K, N) every run's labels (label noise differs per run).
            carry: the pass's zero statistics (`carry`).
            refs: for pass 2, {"means": {j: (K, C, p_j)}, "present": {j: (K, C) bool},
                "directions": (K, k', p)} (float64).
            chunk: samples per run per call (the last chunk is padded, and the padding masked).

        Returns:
            the statistics as float64 numpy arrays (counts as floats), keyed as `carry`.
        """
        n = len(x)
        chunk = max(1, min(chunk, n))  # a split smaller than a chunk is one call, unpadded
        labels = np.asarray(labels, np.int32)
        with jax.enable_x64(True):
            carry, refs = jax.device_put(carry), jax.device_put(refs or {})
        for i in range(0, n, chunk):
            xb, yb = x[i : i + chunk], labels[:, i : i + chunk]
            valid = np.zeros(chunk)
            valid[: len(xb)] = 1.0
            if len(xb) < chunk:  # one compiled shape per split; the padding's rows are masked
                xb = np.concatenate([xb, np.repeat(xb[-1:], chunk - len(xb), axis=0)])
                yb = np.concatenate([yb, np.repeat(yb[:, -1:], chunk - yb.shape[1], axis=1)], axis=1)
            reps = self._forward(tv, ntv, xb)  # float32, outside the float64 context
            with jax.enable_x64(True):
                carry = self._update(reps, yb, valid, carry, refs)
        with jax.enable_x64(True):
            return jax.device_get(carry)


def _collapse_update(C: int, feat: int, reps, y, valid, carry: dict, refs: dict) -> dict:
    """One run's `StackedCollapse` statistics after one chunk (float64; traced under x64).
    `reps`: (b, p_j) per layer, the class scores last; `valid`: (b,) 1 for real rows."""
    jnp = jax.numpy
    hs = [r.astype(jnp.float64) for r in reps]
    scores = hs[-1]
    onehot = (y[:, None] == jnp.arange(C)[None, :]).astype(jnp.float64) * valid[:, None]
    out = dict(carry)
    if "count" in carry:
        cnt = jnp.sum(onehot, axis=0)
        out["finite"] = carry["finite"] & jnp.all(jnp.stack([jnp.all(jnp.isfinite(h)) for h in hs]))
        out["count"], out["mean"], out["ss"] = [], [], []
        for j, h in enumerate(hs):
            # The chunk's class means, every sample centred on its own before any square.
            mean_b = (onehot.T @ h) / jnp.maximum(cnt, 1.0)[:, None]
            c = (h - mean_b[y]) * valid[:, None]
            ss_b = onehot.T @ jnp.sum(c * c, axis=1)
            # Chan merge (NCAccumulator._combine): a class absent from the chunk has weight 0.
            n_a = carry["count"][j]
            n = n_a + cnt
            safe = jnp.where(n > 0, n, 1.0)
            delta = mean_b - carry["mean"][j]
            w = n_a * cnt / safe
            out["count"].append(n)
            out["mean"].append(carry["mean"][j] + delta * (cnt / safe)[:, None])
            out["ss"].append(carry["ss"][j] + ss_b + w * jnp.sum(delta * delta, axis=1))
            if j == feat and "scatter" in carry:
                out["scatter"] = carry["scatter"] + c.T @ c + (delta * w[:, None]).T @ delta
            if j == feat and "class_scatter" in carry:
                per_class = jnp.einsum("nc,ni,nj->cij", onehot, c, c)
                out["class_scatter"] = carry["class_scatter"] + per_class + w[:, None, None] * delta[:, :, None] * delta[:, None, :]
        if "logit" in carry:
            out["logit"] = carry["logit"] + jnp.sum(valid * jnp.take_along_axis(scores, y[:, None], axis=1)[:, 0])
    if "means" in refs:
        ncc = dict(carry.get("ncc", {}))
        for j, mu in refs["means"].items():
            h, present = hs[j], refs["present"][j]
            pm = present.astype(jnp.float64)
            mu_g = (pm @ mu) / jnp.sum(pm)
            mc = mu - mu_g
            # nearest_class_mean's expansion, centred on μ_G; absent classes are never chosen.
            score = jnp.where(present[None, :], jnp.sum(mc * mc, axis=1)[None, :] - 2.0 * ((h - mu_g) @ mc.T), jnp.inf)
            nearest = jnp.argmin(score, axis=1)
            if j in ncc:
                ncc[j] = ncc[j] + jnp.sum(valid * (nearest == y))
            if j == feat:
                if "nc4" in carry:
                    out["nc4"] = carry["nc4"] + jnp.sum(valid * (nearest != jnp.argmax(scores, axis=1)))
                c = (h - mu[y]) * valid[:, None]  # against the final means: no cancellation left
                if "proj" in carry:
                    proj = c @ refs["directions"].T
                    out["proj"] = carry["proj"] + jnp.sum(proj * proj, axis=0)
                if "cov" in carry:
                    out["cov"] = carry["cov"] + c.T @ c
        if ncc:
            out["ncc"] = ncc
    return out


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
