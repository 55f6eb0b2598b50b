"""SGD with PyTorch's momentum convention and epoch-based learning-rate schedules (SPEC §4).

Keras' SGD keeps `m = μ·m − η·g; W += m`; PyTorch keeps `v = μ·v + g; W −= η·v`. The two agree
while η is constant but not across a learning-rate step: Keras' buffer still carries the old η.
The paper's experiments ran in PyTorch, so `TorchSGD` reproduces its rule. Weight decay is *not*
handled here: it is coupled (added to the gradient before momentum) by the training step, which
differentiates the objective L + λ/2·Σ||W||², exactly as PyTorch's `SGD(weight_decay=λ)` does.
"""

from __future__ import annotations

import keras
from keras import ops

from .normalization import UnitNorm, tangent_project


@keras.saving.register_keras_serializable(package="sqloss_nc")
class TorchSGD(keras.optimizers.Optimizer):
    """SGD with heavy-ball momentum in PyTorch's form: `v = μ·v + g`, `W ← W − η·v`.

    Args:
        learning_rate: float or `LearningRateSchedule` (called with the step count).
        momentum: μ in [0, 1).
        name: optimizer name.

    Example:

    ```python
    opt = TorchSGD(learning_rate=0.01, momentum=0.9)
    ```
    """

    def __init__(self, learning_rate=0.01, momentum: float = 0.9, name: str = "torch_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = self.add_optimizer_variables(variables, "velocity")
        # update_step may receive the backend's raw variable (no `.constraint`), so remember here
        # which variables are Lagrange-normalized.
        self._tangent = {self._var_key(v): v.constraint.per_unit for v in variables if isinstance(getattr(v, "constraint", None), UnitNorm)}

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        v = self.velocities[self._get_variable_index(variable)]
        # First step: v = 0·μ + g = g, the same as PyTorch's buffer initialisation.
        new_v = ops.add(ops.multiply(v, ops.cast(self.momentum, variable.dtype)), g)
        per_unit = self._tangent.get(self._var_key(variable))
        if per_unit is not None:
            # Lagrange normalization: the whole step (momentum included) moves along the sphere;
            # the constraint then only removes the O(η²) radial drift.
            new_v = tangent_project(new_v, variable, per_unit)
        self.assign(v, new_v)
        self.assign_sub(variable, ops.multiply(v, lr))

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum})
        return config


@keras.saving.register_keras_serializable(package="sqloss_nc")
class EpochStepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`lr · gamma^(number of milestones m with m ≤ epoch)`, epoch = step // steps_per_epoch.

    With 0-based epochs this is PyTorch's `MultiStepLR(milestones, gamma)` stepped once per
    epoch: the first `milestones[0]` epochs use `lr`, the next ones `lr·gamma`, ...

    Args:
        lr: initial learning rate.
        milestones: increasing epoch counts after which the rate is multiplied by `gamma`.
        gamma: multiplicative factor.
        steps_per_epoch: optimizer steps in one epoch.
    """

    def __init__(self, lr: float, milestones: list[int], gamma: float, steps_per_epoch: int):
        self.lr, self.milestones, self.gamma = float(lr), [int(m) for m in milestones], float(gamma)
        self.steps_per_epoch = int(steps_per_epoch)

    def __call__(self, step):
        # int32: JAX without x64 truncates int64 with a warning on every call; 2^31 steps is plenty
        epoch = ops.floor_divide(ops.cast(step, "int32"), self.steps_per_epoch)
        passed = sum(ops.cast(ops.greater_equal(epoch, m), "float32") for m in self.milestones)
        return ops.multiply(self.lr, ops.power(self.gamma, passed))

    def at_epoch(self, epoch: int) -> float:
        """Rate used during 0-based epoch `epoch` (plain Python, for logging)."""
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)

    def get_config(self):
        return {"lr": self.lr, "milestones": self.milestones, "gamma": self.gamma, "steps_per_epoch": self.steps_per_epoch}


def make_optimizer(optim_cfg, steps_per_epoch: int) -> TorchSGD:
    """The optimizer the `optim` config section describes."""
    if optim_cfg.schedule == "step":
        lr = EpochStepSchedule(optim_cfg.lr, optim_cfg.milestones, optim_cfg.gamma, steps_per_epoch)
    else:
        lr = optim_cfg.lr
    return TorchSGD(learning_rate=lr, momentum=optim_cfg.momentum)


def lr_at_epoch(optim_cfg, epoch: int) -> float:
    """The learning rate used during (1-based) epoch `epoch`; epoch 0 reports the first rate."""
    if optim_cfg.schedule != "step":
        return optim_cfg.lr
    e = max(epoch - 1, 0)
    return optim_cfg.lr * optim_cfg.gamma ** sum(e >= m for m in optim_cfg.milestones)
