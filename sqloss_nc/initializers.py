"""Frobenius-norm initialization (SPEC §3, paper section 7).

Every weight tensor is drawn i.i.d. N(0, 1) and rescaled so that ||W||_F equals `norm` exactly,
which is how the paper sets the initial scale ρ(0) = prod_k ||W_k||_F = init_scale^L.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="sqloss_nc")
class FrobeniusNormal(keras.initializers.Initializer):
    """N(0, 1) entries rescaled to an exact Frobenius norm.

    Args:
        norm: the Frobenius norm of the returned tensor (> 0).
        seed: integer seed; the same seed gives the same tensor.

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

    def __call__(self, shape, dtype=None):
        w = keras.random.normal(shape, dtype="float32", seed=self.seed)
        w = w * (self.norm / ops.sqrt(ops.sum(ops.square(w))))
        return ops.cast(w, dtype or "float32")

    def get_config(self):
        return {"norm": self.norm, "seed": self.seed}
