"""The shared conventions of every architecture: width rounding, per-kernel Frobenius seeds,
biases, the hidden normalization and the classifier (one place, so the archs cannot drift)."""

from __future__ import annotations

import math

import keras

from ..initializers import FrobeniusNormal, KaimingNormalFanOut, TorchDefaultUniform
from ..normalization import hidden_normalization, linear_layer


def scaled_width(c: int, width: float, floor: int = 1) -> int:
    """`c` times `width`, rounded half up, at least `floor` (1 for a layer; 0 to see the clamp).

    Example: `scaled_width(64, 0.25)` is 16; `scaled_width(32, 0.001, floor=0)` is 0.
    """
    return max(floor, math.floor(c * width + 0.5))


class LayerFactory:
    """Makes the layers of one network, counting kernels as it goes.

    The k-th kernel made (1-based, construction order = depth order, the classifier last) is
    initialized with `FrobeniusNormal(scale, seed=seed·1000 + k)`, so a run is reproducible and
    each kernel draws its own tensor. Under `lagrange`/`weightnorm` the hidden V_k start at unit
    norm (the scale lives in the classifier or the gains g_k, see `normalization.py`).

    Args:
        cfg: the `model` section of the config.
        seed: the run seed.

    Example:

    ```python
    make = LayerFactory(load_config(None, ["model.width=0.5"]).model, seed=0)
    make.channels(64)  # 32
    ```
    """

    def __init__(self, cfg, seed: int):
        self.cfg, self.seed, self.count = cfg, seed, 0
        self.kind = cfg.normalization
        self.hidden_scale = 1.0 if self.kind in ("lagrange", "weightnorm") else cfg.init_scale

    def channels(self, c: int) -> int:
        """`c` times `model.width`, rounded half up, at least 1."""
        return scaled_width(c, self.cfg.width)

    def _init(self, scale: float | None, conv: bool = False) -> keras.initializers.Initializer:
        """The next kernel's initializer under `model.init` (`scale`: its Frobenius norm, used
        by `frobenius` only): `torch` is PyTorch's Conv2d/Linear default for every kernel,
        `torchvision` kaiming-normal fan-out for convolutions and the Linear default for dense
        maps (torchvision re-initializes only its convs; the classifier is a plain Linear)."""
        self.count += 1
        seed = self.seed * 1000 + self.count
        init = getattr(self.cfg, "init", "frobenius")
        if init == "frobenius":
            return FrobeniusNormal(scale, seed=seed)
        if init == "torchvision" and conv:
            return KaimingNormalFanOut(seed=seed)
        return TorchDefaultUniform(seed=seed)

    def linear(self, conv: bool, units: int, name: str, **conv_kwargs) -> keras.layers.Layer:
        """A hidden conv/dense map with `units` outputs (already width-scaled). A map followed by
        BatchNorm gets no bias even with `model.bias` (BN's mean subtraction cancels it exactly:
        it would have zero gradient and only decay), as in torchvision's ResNet."""
        use_bias = self.cfg.bias and self.kind == "none"
        return linear_layer(self.kind, self.cfg, conv, units, self._init(self.hidden_scale, conv), name, use_bias=use_bias, **conv_kwargs)

    def normalize(self, x, name: str):
        """The hidden normalization after a linear map (identity unless `batchnorm`); BatchNorm
        carries its learned γ/β only with `model.bias`."""
        norm = hidden_normalization(self.kind, name, affine=self.cfg.bias)
        return x if norm is None else norm(x)

    def classifier(self, h, outputs: int):
        """The last, never normalized, linear map f = W_L h (+ b with `model.bias`)."""
        # Under LN the hidden V_k have unit norm, so the classifier carries rho(0) = init_scale^L.
        scale = self.cfg.init_scale ** (self.count + 1) if self.kind == "lagrange" else self.cfg.init_scale
        return keras.layers.Dense(outputs, use_bias=self.cfg.bias, kernel_initializer=self._init(scale), name="classifier")(h)
