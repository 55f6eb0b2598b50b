"""Stacked runs (SPEC §11, `compute.stack`): K sweep points that differ only in shape-free values
trained as one mapped step over K stacked parameter sets, each still a run of its own.

A sweep of the paper's small nets leaves a GPU idle: one run's step costs launch overhead, not
arithmetic. Here the stateless train step of one run (`backend.jax.stacked_run_step`: the
trainer's objective with this run's λ, `TorchSGD.stateless_apply` with its tangent projection and
constraints, the finite-step correction) is mapped over K runs (`backend.jax.map_runs`: `vmap`,
or `lax.map`), and on an accelerator an epoch's full batches run as one `lax.scan` (on a CPU step
by step: XLA:CPU runs this step far slower inside a loop), so K runs cost one launch per step or
per epoch. Which runs stack, the groups and K: `sqloss_nc.stackplan` (re-exported here).

Each run keeps what it would have alone:

- initialization, trainer, optimizer and tracker are built per run by `experiment.build_training`
  / `build_tracker` exactly as an unstacked run builds them; the stack gathers their variable
  values into (K, ...) arrays;
- measurement, batched: after every epoch one compiled inference pass over the train and test
  sets gives every run's outputs, and the effective kernels' norms, update norms and Σ||θ||² are
  reduced on the device (`_Stack.measure`); each run's probes (`tracking`) turn its slice into
  its rows and its `RunLogger` writes its own files (the same hooks `fit` calls, so every file
  and column is an unstacked run's); its checkpoint is written from the stacked values. Nothing
  is written back into the runs' Keras networks except on NC epochs (log-spaced, few), where each
  run's own Tracker measures its network through one compiled pass shared by the stack, and at
  the end (`model.keras`);
- data order (`batches.epoch_order(n, seed_k, epoch)`) and labels (label noise with seed_k): the
  training set lives on the device once, the step gathers run k's batch by index; a full-batch
  epoch (one batch of all N) takes the set unpermuted, shared by the runs (the order of a single
  batch changes only summation order);
- optimizer state: each run's velocities and iteration count; its learning rate of the epoch is
  read from its own optimizer (`TorchSGD.learning_rate`, schedules included) and fed to the
  mapped step through a float learning-rate slot of one template `TorchSGD`; the finite-step
  correction uses that rate;
- weight decay: λ_k enters the objective as a mapped scalar (the penalty λ/2·Σ||θ||² is linear in λ);
- BatchNorm statistics: the non-trainable values, stacked like the weights.

All runs' files of an epoch are made durable with one sync (`rundir.one_sync`), not ~3 fsyncs
per run. A run whose tracker finds a NaN/Inf (`RunLogger` marks it `diverged`) is frozen: its
lane's updates are masked (`jnp.where`) and it is measured no more; the others go on. Resume:
every run loads its own `checkpoint.npz` (the same file an unstacked run writes, so either kind
resumes the other); the stack starts at the earliest run's next epoch and a run that is ahead
stays masked until the stack reaches it, so nobody's epochs are repeated or cut and every number
is an uninterrupted run's. Finished runs (`done`, `diverged`) are not retrained; locks are per run.

Claiming, opening, finishing, failing and interrupting runs is `experiment.train_runs`' work, the
one run driver of a lone run and a stack alike; this module gives it the stack's epoch loop
(`train_epochs`). Checkpoints (with `status.json` and one sync) are spaced by
`compute.stack_checkpoint_s`; an interrupt or error checkpoints the last epoch every run recorded.

Example:

```python
from sqloss_nc.config import expand_sweep, load_config
from sqloss_nc.stacking import train_stack
specs = expand_sweep(load_config(None, ["sweep={seed: [0, 1, 2, 3]}"]))
results = train_stack([(s, f"outputs/quickstart/{s.run_id}") for s in specs])
[r["state"] for r in results]          # ['done', 'done', 'done', 'done']
```
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .config import Config, ConfigError
from .experiment import OpenRun, TrainingRun, announce_resume, build_training, train_runs

# Planning (which runs stack, the groups, K) lives beside the sweep planner; re-exported here.
from .stackplan import AUTO_CAP, STACKABLE, check_stack_backend, choose_stack, requested_stack, stack_groups, stack_key  # noqa: E402,F401


def step_bytes(cfg: Config, ds, k: int) -> int:
    """Device bytes of the stacked step for k copies of `cfg`'s run (arguments, outputs and XLA
    temporaries), from compiling it, not running it (`stackplan.choose_stack`'s `auto`).

    Example: `step_bytes(cfg, ds, 2) - step_bytes(cfg, ds, 1)` is about one more run's bytes.
    """
    members = [TrainingRun(None, cfg, ds, run=OpenRun(*build_training(cfg, ds), first_epoch=1, elapsed=0.0)) for _ in range(k)]
    stack = _Stack(members)
    carry = (stack.state, {name: np.zeros(k, np.float32) for name in stack.metric_names})
    compiled = stack.step_fn.lower(carry, stack.constants(), np.zeros((k, stack.batch_size), np.int32)).compile()
    mem = compiled.memory_analysis()
    return int(mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes)


# ----------------------------------------------------------------------------- one run of a stack


def _attach_logger(m: TrainingRun, probe, stack: "_Stack", k: int, durable=None) -> None:
    """The run's `Tracker` and `RunLogger`, as an unstacked run builds them, except that its
    Tracker measures from the stack's batched pass (`_MemberTracker`) and its checkpoint saves
    the stack's values of run k; `probe` gives its epoch-0 grad_norm_sq (computed for the whole
    stack at once)."""
    from .experiment import build_tracker, run_logger

    tracker = _MemberTracker(build_tracker(m.config, m.ds, m.network, m.trainer), stack, k)
    m.logger = run_logger(m.config, m.ds, m.rundir, m.lock, m.run, probe, tracker=tracker, state=lambda: stack.checkpoint_values(k), durable=durable)
    m.logger.set_model(m.trainer)  # RunLogger sets `model.stop_training` on divergence


# ----------------------------------------------------------------------------- the stacked step


class _Stack:
    """The K runs' variable values as stacked (K, ...) arrays, the mapped, jitted step, and the
    batched inference-mode measurement of every run (`backend.jax.stacked_inference`).

    `state` = (trainable, non_trainable, optimizer) value lists, each entry (K, ...), in the
    template (first) run's variable order; the optimizer list follows one template `TorchSGD`
    with a float learning-rate variable (so each run's rate of the epoch can be fed in). Every
    compiled function is the stack's, shared by its runs (their shapes are equal by construction).

    Args:
        members: the runs (opened, or built for the benchmark).
        mode: `vmap` or `map` over the runs (`backend.jax.map_runs`).
    """

    def __init__(self, members: list[TrainingRun], mode: str = "vmap"):
        import jax
        import jax.numpy as jnp

        from .backend import jax as jax_backend
        from .batches import train_batch_size
        from .models import weight_layers
        from .optimizers import TorchSGD

        self.members, self.mode = members, mode
        first = members[0]
        self.net, self.trainer = first.network, first.trainer
        cfg, ds = first.config, first.ds
        self.batch_size = train_batch_size(cfg.optim, len(ds.y_train))
        self.template = TorchSGD(learning_rate=1.0, momentum=cfg.optim.momentum)
        self.template.build(self.net.trainable_variables)
        lr_var = [v for v in self.template.variables if v is not self.template.iterations and all(v is not s for s in self.template.velocities)]
        assert len(lr_var) == 1, "TorchSGD's variables: iterations, learning_rate, velocities"
        self.lr_slot = next(i for i, v in enumerate(self.template.variables) if v is lr_var[0])
        self.iter_slot = _position(self.template.variables, self.template.iterations)
        self.state = self.gather()
        # On the device once (an argument, not a constant baked into the program); every run's
        # batches are gathered from it by index, its labels from its own row of `labels`.
        self.x = jnp.asarray(ds.x_train)
        # Every run's labels (its own label noise), (K, N) on the host, once per stack.
        self.y_train = np.stack([np.asarray(m.ds.y_train, np.int32) for m in members])
        self.y_test = np.stack([np.asarray(m.ds.y_test, np.int32) for m in members])
        self.labels = jnp.asarray(self.y_train)
        self.half_decay = jnp.asarray([0.5 * m.config.optim.weight_decay for m in members], jnp.float32)
        self.metric_names = [mt.name for mt in self.trainer.metrics]

        run_step = jax_backend.stacked_run_step(self.trainer, self.template, self.lr_slot)
        stacked_step = jax_backend.map_runs(run_step, mode)

        def step(carry, constants, batch):
            """One step of every run: `batch` (K, b) indices; carry = (state, per-run running
            float32 totals of the step values, as Keras' Mean metric keeps them)."""
            x_all, labels, half_decay, active = constants
            st, sums = carry
            st, values = stacked_step(*st, x_all[batch], jnp.take_along_axis(labels, batch, axis=1), half_decay, active)
            return st, {k: sums[k] + values[k] for k in sums}

        def steps(carry, constants, idx):
            """`idx` (steps, K, b): the steps in one compiled loop (one launch per epoch)."""
            return jax.lax.scan(lambda c, batch: (step(c, constants, batch), None), carry, idx)[0]

        # XLA:CPU runs this step ~50x slower inside a while loop (lax.scan) than called step by
        # step (measured: 2.4 s vs 0.025 s per step of the paper's convnet), so on a CPU each step
        # is its own call; accelerators take the whole epoch's full batches in one scan.
        self.step_fn, self.steps_fn = jax.jit(step), jax.jit(steps)
        self.scan = jax.devices()[0].platform != "cpu"
        # A full-batch epoch (one batch of all N samples: `optim.full_batch`, or batch_size >= N)
        # needs no per-run gather: its order only changes the summation order of the batch mean
        # and of BatchNorm's batch statistics (float32 rounding, the stack's tolerance anyway),
        # so every run takes the training set as it lies on the device, shared by the K runs.
        # A first dense layer is then one matmul for all K runs instead of K gathered copies of
        # the data (94 MB per step for the MLP of issue 19's table at K = 60): measured 2x faster.
        self.full_batch = self.batch_size >= len(ds.y_train)
        shared_step = jax_backend.map_runs(run_step, mode, shared=(3,))

        def full_step(carry, constants):
            """The one step of a full-batch epoch: every run on the whole, unpermuted training set."""
            x_all, labels, half_decay, active = constants
            st, sums = carry
            st, values = shared_step(*st, x_all, labels, half_decay, active)
            return st, {k: sums[k] + values[k] for k in sums}

        self.full_fn = jax.jit(full_step)
        probe_step = jax_backend.map_runs(lambda *a: run_step(*a, update=False), mode, shared=(3,) if self.full_batch else ())

        def probe(state, constants, batch):
            x_all, labels, half_decay, active = constants
            x, y = (x_all, labels) if batch is None else (x_all[batch], jnp.take_along_axis(labels, batch, axis=1))
            return probe_step(*state, x, y, half_decay, active)["grad_norm_sq"]

        self.probe_fn = jax.jit(lambda state, constants: probe(state, constants, None)) if self.full_batch else jax.jit(probe)

        # The batched measurement: positions (in the template's variable lists) of what the
        # probes read besides the outputs, the same for every run.
        self.layers = weight_layers(self.net)
        self.outputs_fn, self.kernels_fn = jax_backend.stacked_inference(self.net, self.layers, mode)
        self.stats_fn = jax_backend.stacked_weight_stats(self.kernels_fn, mode)
        # The (trainable, non-trainable) values W_{e-1} of every run's update norms come from,
        # first those it starts from (a resumed run's are its checkpoint's, as `RunLogger`
        # primes an unstacked run's): set before the first epoch trains or is measured.
        self.previous = None
        tvars, ntvars = self.net.trainable_variables, self.net.non_trainable_variables
        self.decayed_at = [_position(tvars, v) for v in self.trainer.decayed]
        import keras

        bn = [layer for layer in self.net.layers if isinstance(layer, keras.layers.BatchNormalization)]
        self.bn_at = [_position(ntvars, layer.moving_variance) for layer in bn]
        # network.get_weights() order (the checkpoint's w0, w1, ...) as (trainable?, position).
        self.weights_at = [(True, _position(tvars, v)) if any(v is t for t in tvars) else (False, _position(ntvars, v)) for v in self.net.weights]
        opt = first.optimizer
        slots = self.template.variables
        # Each run's optimizer.variables (the checkpoint's o0, o1, ...) as a template slot, or
        # None for its own (constant) learning-rate variable.
        self.opt_at = [
            self.iter_slot if v is opt.iterations else _position(slots, self.template.velocities[_position(opt.velocities, v)]) if any(v is u for u in opt.velocities) else None
            for v in opt.variables
        ]
        self.chunk = inference_chunk(self.net, len(members), cfg.compute.inference_batch)
        self._x_eval = None  # the train and test inputs in one array, when one chunk holds both
        # The state whose epoch every run has recorded (its rows written), and its host copy
        # (`fetch`, for checkpoints): JAX arrays are immutable, so keeping it costs nothing.
        self.recorded, self.host, self._views = self.state, None, None
        # Each run's learning rate by (its optim settings, iteration count): one Keras schedule
        # evaluation per distinct pair, not one per run and epoch.
        self.optim_keys = [m.config.optim.model_dump_json() for m in members]
        self._rates: dict = {}

    # -- moving values between the stacked arrays and each run's own Keras objects

    @staticmethod
    def rate(m: TrainingRun) -> np.ndarray:
        """Run m's learning rate for its next step, read from its own optimizer (a schedule is
        evaluated at its iteration count, as inside the unstacked step)."""
        return np.asarray(m.optimizer.learning_rate, np.float32)

    def _optimizer_values(self, m: TrainingRun) -> list:
        """Run m's optimizer state in the template's variable order (its rate goes in the lr slot)."""
        out = []
        for i, v in enumerate(self.template.variables):
            if i == self.lr_slot:
                out.append(self.rate(m))
            elif v is self.template.iterations:
                out.append(m.optimizer.iterations.value)
            else:
                out.append(m.optimizer.velocities[_position(self.template.velocities, v)].value)
        return out

    def gather(self):
        import jax.numpy as jnp

        def stacked(lists):
            return [jnp.stack([jnp.asarray(a) for a in arrays]) for arrays in zip(*lists)]

        ms = self.members
        return (
            stacked([[v.value for v in m.network.trainable_variables] for m in ms]),
            stacked([[v.value for v in m.network.non_trainable_variables] for m in ms]),
            stacked([self._optimizer_values(m) for m in ms]),
        )

    def scatter(self, k: int) -> None:
        """Write run k's stacked values into its own network and optimizer (only where Keras
        objects are read: NC epochs, `model.keras`)."""
        tv, ntv, ov = self.state
        m = self.members[k]
        for v, a in zip(m.network.trainable_variables, tv):
            v.assign(a[k])
        for v, a in zip(m.network.non_trainable_variables, ntv):
            v.assign(a[k])
        slots = self.template.variables
        m.optimizer.iterations.assign(ov[self.iter_slot][k])
        for v, s in zip(m.optimizer.velocities, self.template.velocities):
            v.assign(ov[_position(slots, s)][k])

    def set_rates(self) -> None:
        """Each run's learning rate for the coming epoch (read from its own optimizer, whose
        iteration count is the stack's)."""
        tv, ntv, ov = self.state
        import jax.numpy as jnp

        iterations = np.asarray(ov[self.iter_slot])
        rates = np.empty(len(self.members), np.float32)
        for k, (m, it) in enumerate(zip(self.members, iterations)):
            key = (self.optim_keys[k], int(it))
            if key not in self._rates:
                m.optimizer.iterations.assign(it)
                self._rates[key] = self.rate(m)
            rates[k] = self._rates[key]
        ov = list(ov)
        ov[self.lr_slot] = jnp.asarray(rates)
        self.state = (tv, ntv, ov)

    def constants(self, active=None):
        """The epoch function's inputs besides state and batches: data, labels, λ/2, active lanes."""
        import jax.numpy as jnp

        active = np.ones(len(self.members), bool) if active is None else np.asarray(active, bool)
        return self.x, self.labels, self.half_decay, jnp.asarray(active)

    def batches(self, epoch: int) -> list[np.ndarray]:
        """This epoch's batch indices of every run: (steps, K, b) for the full batches, then
        (1, K, b_last) for a partial last batch (its own compiled shape)."""
        from .batches import epoch_order

        ms, b = self.members, self.batch_size
        orders = np.stack([epoch_order(len(m.ds.y_train), m.config.seed, epoch) for m in ms]).astype(np.int32)
        n = orders.shape[1]
        full = n // b * b
        blocks = [orders[:, :full].reshape(len(ms), -1, b).transpose(1, 0, 2)] if full else []
        if full < n:
            blocks.append(orders[None, :, full:])
        return blocks

    def probe(self, active) -> np.ndarray:
        """Epoch 0's grad_norm_sq of every run: the mean over the first epoch's batches of
        ||∇L_tot||², training mode, nothing updated (`SquareLossTrainer.probe_grad_norm_sq`)."""
        constants = self.constants(active)
        if self.full_batch:
            return np.asarray(self.probe_fn(self.state, constants), np.float64)
        values = [np.asarray(self.probe_fn(self.state, constants, block[i])) for block in self.batches(1) for i in range(len(block))]
        return np.mean(np.asarray(values, np.float64), axis=0)

    def train_epoch(self, epoch: int, active) -> dict[str, np.ndarray]:
        """One epoch of every active run; returns the epoch means of the step values per run."""
        import jax.numpy as jnp

        if self.previous is None and self.members[0].logger is not None:  # measured runs only (not the bench)
            self.previous = self.state[:2]
        self.set_rates()
        constants = self.constants(active)
        carry = (self.state, {k: jnp.zeros((len(self.members),), jnp.float32) for k in self.metric_names})
        steps = 0
        for block in [] if self.full_batch else self.batches(epoch):
            if self.scan:
                carry = self.steps_fn(carry, constants, block)
            else:
                for batch in block:
                    carry = self.step_fn(carry, constants, batch)
            steps += len(block)
        if self.full_batch:
            carry, steps = self.full_fn(carry, constants), 1
        self.state, sums = carry
        return {k: np.asarray(v) / np.float32(steps) for k, v in sums.items()}

    # -- the batched measurement

    def _outputs(self, x: np.ndarray) -> np.ndarray:
        """(K, N, out) inference-mode outputs of every run on `x`, in padded chunks."""
        import jax

        tv, ntv, _ = self.state
        n = len(x)
        c = min(self.chunk, n)  # a split smaller than a chunk is one call, unpadded
        parts = []
        for i in range(0, n, c):
            xb = x[i : i + c]
            if len(xb) < c:  # pad to the chunk's shape (one compiled program); cut below
                xb = np.concatenate([xb, np.repeat(xb[-1:], c - len(xb), axis=0)])
            parts.append(self.outputs_fn(tv, ntv, xb))
        return np.concatenate(jax.device_get(parts), axis=1)[:, :n]

    def measure(self) -> None:
        """Every run's outputs on the train and test sets and effective kernels, on the device
        in one compiled pass each; only (K,)-sized values and the outputs (and the BatchNorm
        moving variances ρ reads) come to the host, not the state (`fetch` does, for checkpoints)."""
        import jax

        ds = self.members[0].ds
        tv, ntv, ov = self.state
        stats = self.stats_fn((tv, ntv), (tv, ntv) if self.previous is None else self.previous, [tv[i] for i in self.decayed_at])
        self.previous = (tv, ntv)
        n = len(ds.x_train)
        if n + len(ds.x_test) <= self.chunk:  # both splits in one call (each call re-reads K runs' weights)
            if self._x_eval is None:
                self._x_eval = np.concatenate([ds.x_train, ds.x_test])
            f = self._outputs(self._x_eval)
            self.f_train, self.f_test = f[:, :n], f[:, n:]
        else:
            self.f_train, self.f_test = self._outputs(ds.x_train), self._outputs(ds.x_test)
        self._views = None  # (epoch, every run's view), made on first use
        (sq, sq_prev, sq_up, decayed_sq), self.bn_vars = jax.device_get((stats, [ntv[j] for j in self.bn_at]))
        # float64 from here on, as the unstacked measures (`measures.frobenius`, `update_norm`).
        sq, sq_prev, sq_up = (np.asarray(a, np.float64) for a in (sq, sq_prev, sq_up))
        self.norms = np.sqrt(sq)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.updates = np.where(sq_prev > 0, np.sqrt(sq_up) / np.sqrt(sq_prev), np.nan)
        self.decayed_sq = np.asarray(decayed_sq, np.float64)

    def fetch(self) -> None:
        """The recorded state to the host (`checkpoint_values` reads it): at checkpoints only."""
        import jax

        self.host = jax.device_get(self.recorded)

    def view(self, k: int, epoch: int):
        """Run k's `tracking.EpochView` of the last `measure` (what its Tracker would compute
        from its own network: outputs, effective kernels, BN variances, Σ||θ||² of the decayed),
        its margins and their statistics already computed for all K runs in one batched call
        (`measures.margins`, `measures.margin_stats`: the same numbers, row by row)."""
        from .engine import measures

        if self._views is None or self._views[0] != epoch:
            views = [self._view(i, epoch) for i in range(len(self.members))]
            margins = measures.margins(self.f_train, self.y_train)
            stats = measures.margin_stats(margins, np.array([v.rho()["rho"] for v in views]))
            for i, v in enumerate(views):
                v._cache["margins"] = margins[i]
                v._cache["margin_stats"] = {key: float(col[i]) for key, col in stats.items()}
            self._views = (epoch, views)
        return self._views[1][k]

    def _view(self, k: int, epoch: int):
        from . import tracking

        t = self.members[k].logger.tracker
        weights = _stack_weights()(
            kernels={},  # read on NC epochs only, which the run's own Tracker measures
            rho_mode=t.mode,
            bn_moving_vars=[v[k] for v in self.bn_vars],
            decayed_sq=float(self.decayed_sq[k]),
            frobenius={layer.name: float(self.norms[i, k]) for i, layer in enumerate(self.layers)},
        )
        d = self.members[k].ds
        return tracking.EpochView(epoch, d.y_train, self.f_train[k], weights, d.y_test, self.f_test[k])

    def update_norms(self, k: int) -> dict[str, float]:
        """Run k's `update_norm_<layer>` of the last `measure` (SPEC §10: ||W_e − W_{e−1}||_F /
        ||W_{e−1}||_F, NaN for a zero W_{e−1})."""
        return {f"update_norm_{layer.name}": float(self.updates[i, k]) for i, layer in enumerate(self.layers)}

    def checkpoint_values(self, k: int):
        """Run k's (network, optimizer) as `experiment.save_checkpoint` reads them, from the
        host copy of the stacked state (no Keras variable is written)."""
        tv, ntv, ov = self.host
        weights = [tv[i][k] if trainable else ntv[i][k] for trainable, i in self.weights_at]
        own = self.members[k].optimizer.variables
        variables = [np.asarray(v) if slot is None else ov[slot][k] for v, slot in zip(own, self.opt_at)]
        return _Values(weights, variables), _Values(weights, variables)


#: Device memory the stacked inference pass may use for activations (`inference_chunk`).
INFERENCE_BYTES = 256 * 2**20


def inference_chunk(network, k: int, inference_batch: int) -> int:
    """Samples per call of the stacked inference pass of K runs of `network`.

    At least `inference_batch // k` (K runs then hold the memory of one unstacked pass), and as
    many more as fit `INFERENCE_BYTES` of float32 activations (the sum of every layer's output
    size: a bound on what XLA keeps at once). A stack of small nets measures its splits in one
    or two calls instead of `n·K / inference_batch`, each of which reads all K runs' weights.

    Example: `inference_chunk(mlp, 60, 1000)` is ~300 for the paper's MLP on 32×32×3 inputs.
    """
    floor = max(1, inference_batch // k)
    try:
        per_sample = sum(int(np.prod(layer.output.shape[1:])) for layer in network.layers)
    except (AttributeError, ValueError, TypeError):  # a layer without one symbolic output
        return floor
    return max(floor, INFERENCE_BYTES // (4 * k * max(per_sample, 1)))


@dataclass
class _Values:
    """What `experiment.save_checkpoint` reads of a network (`get_weights()`) and an optimizer
    (`variables`), as numpy arrays."""

    weights: list
    variables: list

    def get_weights(self) -> list:
        return self.weights


def _stack_weights():
    """`tracking.Weights` whose Frobenius norms were computed on the device for the whole stack
    (defined on first use: `tracking` stays unimported until a stack trains)."""
    global _StackWeights
    if _StackWeights is None:
        from . import tracking

        @dataclass
        class StackWeights(tracking.Weights):
            frobenius: dict = field(default_factory=dict)  # layer -> ||W||_F (float64 of a float32 sum)

            def norms(self) -> dict[str, float]:
                return dict(self.frobenius)

        _StackWeights = StackWeights
    return _StackWeights


_StackWeights = None


def _stack_update_norms(stack: "_Stack", k: int):
    """Run k's update-norm probe reading the stack's device-computed values (the unstacked
    probe keeps W_{e−1} on the host and recomputes in float64: K runs' kernels every epoch)."""
    from . import tracking

    class StackUpdateNorms(tracking.UpdateNormProbe):
        def prime(self, kernels) -> None:
            pass  # the stack keeps every run's W_{e−1} (`_Stack.previous`)

        def rows(self, view):
            # Epoch 0 of a fresh run has no W_{e−1}: no values, as `UpdateNormProbe` writes.
            return {tracking.schema.METRICS_CSV: [stack.update_norms(k) if view.epoch > 0 else {}]}

    return StackUpdateNorms()


class _MemberTracker:
    """Run k's `Tracker` as its `RunLogger` sees it, measuring from the stack's batched pass
    (`_Stack.view`) on epochs without NC; on NC epochs the run's own Tracker measures its
    network (written back first), through the stack's shared compiled passes."""

    def __init__(self, tracker, stack: "_Stack", k: int):
        self.tracker, self.stack, self.k = tracker, stack, k
        # The Tracker's update-norm probe (its attribute and its entry in `probes`) replaced.
        probe = _stack_update_norms(stack, k)
        tracker.probes = [probe if p is tracker.update_norms else p for p in tracker.probes]
        tracker.update_norms = probe

    def __getattr__(self, name):
        return getattr(self.tracker, name)

    def record(self, epoch: int, nc: bool = False, margins: bool = False) -> dict[str, list]:
        from . import tracking

        if nc:
            # From the stack's device statistics (`_StackCollapse`); None: this run was written
            # back (the stack's p x p statistics over budget) and its own Tracker measures it.
            view = self.nc_pass.view(self.k, epoch) or self.tracker.view(epoch, nc)
        else:
            view = self.stack.view(self.k, epoch)
        return tracking.collect(tracking.active(self.tracker.probes, nc, margins), view)


# ----------------------------------------------------------------------------- training a stack


def train_stack(plan: list, datasets: dict | None = None, data_dir: str | None = None, console=None) -> list[dict]:
    """Train the runs of `plan` as one stack; every run writes its own run directory, equal to
    the run trained alone (within float32 summation order).

    Args:
        plan: (spec, run directory) pairs whose configs differ only in `STACKABLE` keys.
        datasets: clean datasets by `stackplan.data_key` (loaded here when None).
        data_dir: overrides `data.path`.
        console: where to say which runs train together (None: silent).

    Returns:
        One result per run, as `experiment.train_and_evaluate` returns it (plus `run_id`).

    Raises:
        ConfigError: the runs cannot share a stack, or the backend is not JAX.
    """
    from . import backend

    if backend.NAME != "jax":
        raise ConfigError(f"compute.stack: stacked runs need the JAX backend (KERAS_BACKEND=jax), this is {backend.NAME}; use --stack 1")
    if len({stack_key(spec.config) for spec, _ in plan}) > 1:
        raise ConfigError("compute.stack: these runs differ in more than " + ", ".join(STACKABLE))
    return train_runs(plan, lambda runs: train_epochs(runs, console), datasets, data_dir)


def _share_passes(members: list[TrainingRun]) -> "_StackCollapse":
    """The NC epochs' measurement of the stack (`_StackCollapse`, set as every run's
    `_MemberTracker.nc_pass`), and for its fallback one compiled inference function per stack:
    every run's Tracker calls the template's (their networks have one shape)."""
    import keras

    from .backend import jax as jax_backend

    t0 = members[0].logger.tracker.tracker
    net = members[0].network
    names = t0.probe_names[:-1]  # the Tracker's probe model: hidden representations, features, outputs
    probe_model = keras.Model(net.inputs, [net.get_layer(n).output for n in names] + [net.output])
    bind_probe, bind_predict = jax_backend.shared_inference(probe_model, net), jax_backend.shared_inference(net, net)
    nc_pass = _StackCollapse(members[0].logger.tracker.stack, members, probe_model)
    for m in members:
        t = m.logger.tracker.tracker
        # The Tracker's compiled passes (private to it; replaced by the stack's shared ones).
        t._probe, t._predict = bind_probe(m.network), bind_predict(m.network)
        m.logger.tracker.nc_pass = nc_pass
    return nc_pass


class _StackCollapse:
    """A stack's NC epochs without writing any run back into its network: the device measures
    all K runs at once (`backend.jax.StackedCollapse`: the probe model vmapped over the runs, its
    representations reduced to per-run class statistics in float64, two passes over the train
    split and one or two over the test split), and each run's collapse is finalized on the host
    by the engine (`engine.collapse.CollapsePasses.result`, the code a run measured alone ends
    in), from (K, C, p)-sized statistics; its probes then write the rows they write alone.

    Fallback: when the K runs' float64 statistics (every layer's class means, the feature layer's
    p x p second moment of the MSE decomposition or Σ_W for `sigma_w_fro`) exceed
    `backend.jax.STACK_COLLAPSE_BYTES`, every run is written back on NC epochs and its own
    Tracker measures it, as before (`view` then returns None).

    The run's loss, weight decay and decomposition settings are read from its Tracker, as
    `Tracker.collapse` passes them to the engine.
    """

    def __init__(self, stack: "_Stack", members: list[TrainingRun], probe_model):
        from .backend import jax as jax_backend

        t = members[0].logger.tracker.tracker
        self.stack, self.members, self.layers = stack, members, list(t.probe_names)
        self.feat = self.layers.index("features")
        self.device = jax_backend.StackedCollapse(
            probe_model, stack.net, stack.net.get_layer("classifier"), t.num_classes, self.feat, scalar=t.output == "scalar", mode=stack.mode
        )
        # The feature layer's p x p statistics: the decomposition's scatter (per class too for a
        # rescaled loss with k != 1), else Σ_W about the train means (`sigma_w_fro`).
        self.scatter = ("class" if t.decomposition_k != 1.0 else "pooled") if t.decompose else None
        self.fits = self.device.state_bytes(len(members), self.scatter == "class") <= jax_backend.STACK_COLLAPSE_BYTES
        self.results: list = [None] * len(members)
        self.kernels: list = []

    def measure(self, on: list[bool]) -> None:
        """Every run's collapse at the stack's current state (after `_Stack.measure`); runs with
        `on` False are computed with the others (one program) but not kept."""
        if not self.fits:
            self.results = [None] * len(self.members)
            for k, flag in enumerate(on):
                if flag:
                    self.stack.scatter(k)
            return
        import jax

        self.kernels = [np.asarray(a) for a in jax.device_get(self.stack.kernels_fn(*self.stack.previous))]  # this epoch's effective kernels
        results = self._passes()
        self.results = [r if flag else None for r, flag in zip(results, on)]

    def view(self, k: int, epoch: int):
        """Run k's `tracking.EpochView` with its collapse and effective kernels (None: measured
        by its own Tracker)."""
        if self.results[k] is None:
            return None
        view = self.stack.view(k, epoch)
        view.weights.kernels = {layer.name: self.kernels[i][k] for i, layer in enumerate(self.stack.layers)}
        view.collapse = self.results[k]
        return view

    def _passes(self) -> list:
        from .engine.collapse import CollapsePasses

        dev, ms, K, feat = self.device, self.members, len(self.members), self.feat
        trackers = [m.logger.tracker.tracker for m in ms]
        C, L, nc_test = trackers[0].num_classes, len(self.layers), trackers[0].nc_test
        tv, ntv = self.stack.state[:2]
        ds = ms[0].ds
        y_train, y_test = self.stack.y_train, self.stack.y_test
        n, n_test = y_train.shape[1], y_test.shape[1]
        eps = float(np.finfo(np.float32).eps)  # the representations are the network's float32
        chunk = self.stack.chunk
        passes = [CollapsePasses(C, self.layers, "features", t.decompose, t.decomposition_k, nc_test) for t in trackers]

        def first(splits, s, size):
            """Pass-1 statistics `s` into every run's accumulators (`splits[k]`; None: skipped)."""
            for k, sp in enumerate(splits):
                if sp is None:
                    continue
                sp.finite = bool(s["finite"][k])
                for j, acc in enumerate(sp.accs):
                    full = j == feat and "scatter" in s and acc.full
                    acc.add_statistics(
                        s["count"][j][k],
                        s["mean"][j][k],
                        s["ss"][j][k],
                        scatter=s["scatter"][k] if full else None,
                        class_scatter=s["class_scatter"][k] if full and acc.keep_class_scatter else None,
                        logit_true_sum=s["logit"][k] if j == feat else 0.0,
                        num_logits=size if j == feat else 0,
                        input_eps=eps,
                    )

        def refs(splits, layers):
            """Pass 2's references: every run's final class means of `layers` and the feature
            layer's Σ_B directions (placeholders for a run with nothing to measure: None, or
            non-finite)."""
            p, kdir = dev.dims[feat], min(C - 1, dev.dims[feat])
            ok = [sp is not None and sp.finite for sp in splits]
            directions = np.zeros((K, kdir, p))
            for k, sp in enumerate(splits):
                if ok[k]:
                    directions[k] = sp.accs[feat].sigma_b_directions()[1]
            means = {j: np.stack([sp.accs[j].means if ok[k] else np.zeros((C, dev.dims[j])) for k, sp in enumerate(splits)]) for j in layers}
            present = {j: np.stack([sp.accs[j].counts > 0 if ok[k] else np.ones(C, bool) for k, sp in enumerate(splits)]) for j in layers}
            return {"means": means, "present": present, "directions": directions}, kdir, ok

        # Train, pass 1: every layer's class statistics (and the decomposition's scatter).
        s = dev.run(tv, ntv, ds.x_train, y_train, dev.carry(K, first=True, logits=True, scatter=self.scatter), chunk=chunk)
        first([P.train for P in passes], s, n)
        # Train, pass 2, against the final means: NCC per layer, NC4, NC1's projections, Σ_W.
        train_refs, kdir, live = refs([P.train for P in passes], range(L))
        s = dev.run(tv, ntv, ds.x_train, y_train, dev.carry(K, ncc=range(L), nc4=True, directions=kdir, cov=self.scatter is None), train_refs, chunk)
        for k, P in enumerate(passes):
            if live[k]:
                counters, cov = P.begin_second()
                for j, counter in enumerate(counters):
                    counter.add(s["ncc"][j][k], n)
                if cov is not None:
                    cov.add(s["cov"][k], n)
                P.train.accs[feat].add_second_pass(n, nc4_mismatch=s["nc4"][k], proj_sq=s["proj"][k])
        # Test: NCC per layer and Σ_W against the train means (with nc_test its own statistics too).
        s = dev.run(tv, ntv, ds.x_test, y_test, dev.carry(K, first=nc_test, logits=nc_test, ncc=range(L), cov=True), train_refs, chunk)
        tests = [P.begin_test() if live[k] else None for k, P in enumerate(passes)]
        for k, P in enumerate(passes):
            if live[k]:
                for j, counter in enumerate(P.test_counters):
                    counter.add(s["ncc"][j][k], n_test)
                P.test_cov.add(s["cov"][k], n_test)
        if nc_test:
            first(tests, s, n_test)
            test_refs, kdir, ok = refs(tests, [feat])
            s = dev.run(tv, ntv, ds.x_test, y_test, dev.carry(K, nc4=True, directions=kdir), test_refs, chunk)
            for k, te in enumerate(tests):
                if ok[k]:
                    te.accs[feat].add_second_pass(n_test, nc4_mismatch=s["nc4"][k], proj_sq=s["proj"][k])
        head = self.device.head(tv, ntv)  # every run's classifier kernel (K, p, C) [and bias (K, C)]
        index = {layer.name: i for i, layer in enumerate(self.stack.layers)}
        results = []
        for k, (P, t) in enumerate(zip(passes, trackers)):
            nxt = {name: (None if layer is None else self.kernels[index[layer.name]][k]) for name, layer in t.next_layer.items()}
            results.append(
                P.result(
                    has_test=True,
                    classifier_weights=head[0][k].T if t.output == "onehot" else None,  # a scalar head has one row, not C
                    classifier_bias=head[1][k] if len(head) > 1 else None,
                    weight_decay=t.weight_decay if t.kernel_decayed else 0.0,
                    decay_bias=t.bias_decayed,
                    loss_M=t.decomposition_M,
                    next_kernels=nxt,
                )
            )
        return results

def train_epochs(members: list[TrainingRun], console=None) -> None:
    """The epochs of a stack of opened runs (`experiment.train_runs`' loop for a stack). The stack's mode
    (`compute.stack_mode`) is said on `console` and recorded in each run's `status.json`.

    Per epoch: one mapped step per batch for all runs; then, on epochs without NC, one batched
    measurement of every run on the device (`_Stack.measure`) whose per-run views the runs'
    probes turn into rows, and checkpoints from the stacked values; on NC epochs each run's
    values are written back into its network and its Tracker measures it (shared compiled
    passes). All runs' files of an epoch are written together (`rundir.one_sync`), and synced
    with their checkpoints (`compute.stack_checkpoint_s`); interrupted or failing, every run
    still training checkpoints the last epoch all recorded (`_save_recorded`), then it raises."""
    from .rundir import one_sync

    t0 = time.perf_counter()
    start, epochs = min(m.first_epoch for m in members), members[0].config.optim.epochs
    every = members[0].config.compute.stack_checkpoint_s
    # When the runs last checkpointed, whether this epoch does, the last epoch all runs recorded.
    clock = SimpleNamespace(saved=t0, due=every == 0, epoch=None)
    nc_epochs, stack = None, None
    try:
        if console is not None:
            console.print(f"stack of {len(members)}: {', '.join(m.spec.run_id for m in members)}", highlight=False, markup=False, soft_wrap=True)
        stack, mode, note = _mode_stack(members)
        if console is not None:
            console.print(note, highlight=False, markup=False, soft_wrap=True)
        for m in members:
            announce_resume(m, console)
        with one_sync():
            for m in members:
                m.rundir.write_status("running", m.first_epoch - 1, stack_mode=mode)
        fresh = [m.first_epoch == 1 for m in members]
        probes = stack.probe(fresh) if any(fresh) else None
        with one_sync():  # the loggers' new CSV headers
            for k, m in enumerate(members):
                _attach_logger(m, (lambda k=k: float(probes[k])) if fresh[k] else None, stack, k, durable=lambda e: clock.due)
        _share_passes(members)
        nc_epochs = members[0].logger.nc_epochs  # the same schedule for every run (same tracking config)

        def measured(epoch: int, on: list[bool]) -> None:
            """Before the runs' loggers record `epoch`: the batched pass, or the write-back."""
            stack.measure()
            if epoch in nc_epochs:
                members[0].logger.tracker.nc_pass.measure(on)  # every run's collapse, no write-back

        def recorded(epoch: int, on: list[bool], write) -> None:
            """The runs' loggers write `epoch` (`write(k, m)`), checkpointing when it is due."""
            clock.due = epoch == epochs or time.perf_counter() - clock.saved >= every
            if clock.due:
                stack.recorded = stack.state
                stack.fetch()  # the host copy this epoch's checkpoints are written from
            with one_sync(sync=clock.due):
                for k, (m, flag) in enumerate(zip(members, on)):
                    if flag:
                        write(k, m)
                        m.stopped = m.logger.divergence is not None
            # Every run's rows of `epoch` are written: an interrupt from here on saves this state.
            stack.recorded, clock.epoch = stack.state, epoch
            for m in members:
                m.row = m.logger.last_row
            if clock.due:
                clock.saved = time.perf_counter()

        if any(fresh):
            measured(0, fresh)
        recorded(0, fresh, lambda k, m: m.logger.on_train_begin())  # epoch 0 of a fresh run
        clock.epoch = start - 1
        for epoch in range(start, epochs + 1):
            # A run trains from its own first epoch on (ahead of the stack after a resume: frozen until then).
            active = [not m.stopped and m.first_epoch <= epoch for m in members]
            if not any(active):
                break
            means = stack.train_epoch(epoch, active)
            measured(epoch, active)
            recorded(epoch, active, lambda k, m: m.logger.on_epoch_end(epoch - 1, {name: float(v[k]) for name, v in means.items()}))
        for k in range(len(members)):
            stack.scatter(k)  # model.keras: each run's final (or frozen) values
    except BaseException:  # an interrupt or an error: nothing recorded is lost
        _save_recorded(members, stack, clock.epoch)
        raise


def bench_epochs(cfg: Config, ds, k: int, seed: int = 0, mode: str = "auto"):
    """The benchmark's stacked arm (`sqnc bench --stack K`): K runs of `cfg` (seeds seed..seed+K−1)
    built as a sweep builds them, trained as one stack with no tracking and no files.

    Args:
        cfg: the run config (its `seed` is replaced by seed + k).
        ds: the dataset every run trains on.
        k: the stack size K.
        seed: the first run's seed.
        mode: `compute.stack_mode`: `auto` (`stackplan.choose_stack_mode`), `vmap`, `map`
            or `unroll` (`backend.jax.map_runs`).

    Returns:
        callable(e) that trains 0-based epoch e of all K runs and returns once they are done;
        its `mode` is the mode used, its `note` the line saying why.

    Example: `train = bench_epochs(cfg, ds, 4); train(0)` trains 4 run-epochs.
    """
    members = []
    for i in range(k):
        run_cfg = cfg.model_copy(update={"seed": seed + i})
        members.append(TrainingRun(None, run_cfg, ds, run=OpenRun(*build_training(run_cfg, ds), first_epoch=1, elapsed=0.0)))
    stack, chosen, note = _mode_stack(members, mode)

    def train(e: int):
        return stack.train_epoch(e + 1, None)  # np.asarray of the epoch's means waits for the device

    train.mode, train.note = chosen, note
    return train


def _mode_stack(members: list[TrainingRun], requested: str | None = None) -> tuple[_Stack, str, str]:
    """The stack of `members` in the mode `requested` (default: their `compute.stack_mode`),
    `auto` decided by `stackplan.choose_stack_mode`: (stack, mode, one line saying which)."""
    from .backend import jax as jax_backend
    from .stackplan import choose_stack_mode

    requested = requested or members[0].config.compute.stack_mode
    return choose_stack_mode(requested, jax_backend.has_convolutions(members[0].network), lambda mode: _Stack(members, mode), _time_step)


def _time_step(stack: _Stack) -> float:
    """Seconds of one call of the stack's step as `train_epoch` makes it (one step on a CPU,
    the first full block's `lax.scan` on an accelerator) on its first epoch's batches, the
    stack's state not changed (the first call also compiles it)."""
    import jax
    import jax.numpy as jnp

    carry = (stack.state, {k: jnp.zeros((len(stack.members),), jnp.float32) for k in stack.metric_names})
    constants = stack.constants()
    if stack.full_batch:
        fn, args = stack.full_fn, (carry, constants)
    else:
        block = stack.batches(max(1, min(m.first_epoch for m in stack.members)))[0]
        fn, batch = (stack.steps_fn, block) if stack.scan else (stack.step_fn, block[0])
        args = (carry, constants, batch)
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t


def _position(items: list, obj) -> int:
    """Index of `obj` in `items` by identity (`list.index` compares Keras variables by value)."""
    return next(i for i, v in enumerate(items) if v is obj)


def _save_recorded(members: list[TrainingRun], stack: "_Stack | None", epoch: int | None) -> None:
    """A stack stopped by an interrupt or an error: every run still training checkpoints `epoch`,
    the last one all runs recorded (checkpoints are spaced by `compute.stack_checkpoint_s`), so
    it resumes there and loses nothing (`experiment.train_runs` then writes its status). Best
    effort: after an error, which may be the disk's, the error that stopped the stack wins."""
    from .rundir import one_sync

    todo = [
        m
        for m in members
        if not m.stopped and m.logger is not None and m.row is not None and int(m.row["epoch"]) == epoch and (m.logger.checkpointed is None or m.logger.checkpointed < epoch)
    ]
    if not todo:
        return
    try:
        with one_sync():
            stack.fetch()
            for m in todo:
                m.logger.save(epoch, float(m.row["elapsed_s"]))
    except Exception:  # noqa: BLE001 - the runs resume from their earlier checkpoints
        pass


__all__ = ["STACKABLE", "AUTO_CAP", "stack_key", "stack_groups", "requested_stack", "check_stack_backend", "choose_stack", "train_stack", "train_epochs", "bench_epochs", "step_bytes", "inference_chunk"]
