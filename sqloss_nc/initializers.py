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
