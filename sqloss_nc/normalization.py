"""Hidden-layer normalization (SPEC §3): the one place that maps `model.normalization` to layers.

The classifier is never normalized (Figure 1B of the paper); these apply to layers k < L only.

- `none`: nothing; the network is positively homogeneous in each weight tensor.
- `batchnorm`: BatchNorm without affine parameters, with PyTorch's defaults (momentum 0.1,
  eps 1e-5, i.e. Keras `momentum=0.9, epsilon=1e-5`). The hidden layers become scale invariant,
  so the classifier norm carries the scale: rho = ||W_L||_F. Keras normalizes with the biased
  batch variance and also tracks the *biased* moving variance, where PyTorch tracks the unbiased
  one (factor n/(n-1) on `moving_variance`, which only enters `rho_bn`).
- `lagrange`, `weightnorm`: planned (see the open issues); the config refuses them for now.
"""

from __future__ import annotations

import keras

SCALE_INVARIANT = {"batchnorm", "lagrange"}


def hidden_normalization(kind: str, name: str) -> keras.layers.Layer | None:
    """The layer to insert after hidden layer `name`'s linear map, or None."""
    if kind == "none":
        return None
    if kind == "batchnorm":
        return keras.layers.BatchNormalization(center=False, scale=False, momentum=0.9, epsilon=1e-5, name=name)
    raise NotImplementedError(f"normalization {kind!r} is not implemented yet")


def rho_mode(kind: str) -> str:
    """Which norm is the scale of the function: `last` for scale-invariant hidden layers."""
    return "last" if kind in SCALE_INVARIANT else "product"
