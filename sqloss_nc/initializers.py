"""Frobenius-norm initialization (SPEC §3, paper section 7).

Every weight tensor is drawn i.i.d. N(0, 1) and rescaled so that ||W||_F equals `norm` exactly,
which is how the paper sets the initial scale ρ(0) = prod_k ||W_k||_F = init_scale^L.

The draw comes from numpy's generator (PCG64 seeded with `seed`), not `keras.random`, whose
streams differ between Keras backends: a seed means the same weights on TensorFlow and JAX. The
rescaling is done in float64, then the tensor is cast to the variable's dtype.
"""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="sqloss_nc")
class FrobeniusNormal(keras.initializers.Initializer):
    """N(0, 1) entries rescaled to an exact Frobenius norm.

    Args:
        norm: the Frobenius norm of the returned tensor (> 0).
        seed: integer seed (>= 0); the same seed gives the same tensor on every backend. None
            draws fresh entropy.

    Example:

    ```python
    w = FrobeniusNormal(0.01, seed=0)((3, 3, 3, 32))
    float(keras.ops.sqrt(keras.ops.sum(w * w)))  # 0.01
    ```
    """

    def __init__(self, norm: float = 1.0, seed: int | None = None):
        if norm <= 0:
            raise ValueError(f"norm must be > 0, got {norm}")
        self.norm = float(norm)
        self.seed = seed

    def numpy(self, shape) -> np.ndarray:
        """The float64 tensor before the cast (what every backend receives)."""
        w = np.random.default_rng(self.seed).standard_normal(tuple(shape))
        return w * (self.norm / np.sqrt(np.sum(np.square(w))))

    def __call__(self, shape, dtype=None):
        return ops.convert_to_tensor(self.numpy(shape), dtype=dtype or "float32")

    def get_config(self):
        return {"norm": self.norm, "seed": self.seed}


# ----------------------------------------------------------------------------- PyTorch's initializations
#
# `model.init` (SPEC §12): the multiclass neural-collapse papers trained with the framework's
# initialization, not the paper's Frobenius one. Shapes are Keras': a conv kernel is
# (kh, kw, in, out), a dense kernel (in, out), so fan_in = kh·kw·in (PyTorch's in·kh·kw) and
# fan_out = kh·kw·out (PyTorch's out·kh·kw). The draws come from numpy, like FrobeniusNormal, so a
# seed gives the same weights on every Keras backend (not the same numbers as torch's generator).


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a Keras kernel shape, as PyTorch's `_calculate_fan_in_and_fan_out`
    computes them for the transposed PyTorch weight.

    Example: `fans((3, 3, 16, 32)) == (144, 288)`; `fans((512, 10)) == (512, 10)`.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(f"a kernel has at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


@keras.saving.register_keras_serializable(package="sqloss_nc")
class TorchDefaultUniform(keras.initializers.Initializer):
    """PyTorch's `nn.Conv2d` / `nn.Linear` default: `kaiming_uniform_(a=√5)`, i.e. U(−b, b) with
    b = gain·√3/√fan_in = 1/√fan_in (gain = √(2/(1+a²)) = 1/√3); the bias is U(±1/√fan_in) too.

    Args:
        seed: integer seed (numpy's generator; the same tensor on every backend).
        fan_in: the layer's fan-in; None computes it from the kernel shape (a bias has shape
            (out,) and must be given its layer's fan-in).

    Example:

    ```python
    w = TorchDefaultUniform(seed=0).numpy((3, 3, 16, 32))   # |w| <= 1/sqrt(144) = 1/12
    b = TorchDefaultUniform(seed=1, fan_in=144).numpy((32,))
    ```
    """

    def __init__(self, seed: int | None = None, fan_in: int | None = None):
        self.seed, self.fan_in = seed, fan_in

    def numpy(self, shape) -> np.ndarray:
        fan_in = self.fan_in if self.fan_in is not None else fans(shape)[0]
        bound = 1.0 / np.sqrt(fan_in) if fan_in > 0 else 0.0
        return np.random.default_rng(self.seed).uniform(-bound, bound, tuple(shape))

    def __call__(self, shape, dtype=None):
        return ops.convert_to_tensor(self.numpy(shape), dtype=dtype or "float32")

    def get_config(self):
        return {"seed": self.seed, "fan_in": self.fan_in}


@keras.saving.register_keras_serializable(package="sqloss_nc")
class KaimingNormalFanOut(keras.initializers.Initializer):
    """torchvision's ResNet/VGG convolutions: `kaiming_normal_(mode="fan_out",
    nonlinearity="relu")`, i.e. N(0, 2/fan_out) with fan_out = kh·kw·out.

    Args:
        seed: integer seed (numpy's generator).

    Example: `KaimingNormalFanOut(seed=0).numpy((3, 3, 64, 64)).std()` ≈ √(2/576) = 0.0589.
    """

    def __init__(self, seed: int | None = None):
        self.seed = seed

    def numpy(self, shape) -> np.ndarray:
        std = np.sqrt(2.0 / fans(shape)[1])
        return std * np.random.default_rng(self.seed).standard_normal(tuple(shape))

    def __call__(self, shape, dtype=None):
        return ops.convert_to_tensor(self.numpy(shape), dtype=dtype or "float32")

    def get_config(self):
        return {"seed": self.seed}
