"""Hidden-layer normalization (SPEC §3): the one place that maps `model.normalization` to layers,
constraints, decayed variables and the meaning of ρ.

The classifier is never normalized (Figure 1B of the paper); these apply to layers k < L only.

- `none`: nothing; the network is positively homogeneous in each weight tensor, ρ = Π_k ||W_k||.
- `batchnorm`: BatchNorm without affine parameters, with PyTorch's defaults (momentum 0.1,
  eps 1e-5, i.e. Keras `momentum=0.9, epsilon=1e-5`). The hidden layers become scale invariant,
  so the classifier norm carries the scale: ρ = ||W_L||_F. Keras normalizes with the biased batch
  variance and also tracks the *biased* moving variance, where PyTorch tracks the unbiased one
  (a factor (n−1)/n on `moving_variance`, n the training batch size). Inference mode divides by
  sqrt(moving_variance + eps), so every inference-mode number differs from PyTorch's, not only
  `rho_bn`: each BatchNorm layer's centred output is larger by about sqrt(n/(n−1)) (1.0039 at
  n = 128; exactly that for eps → 0 and converged statistics), and the deviations compound
  through the later layers (whose moving statistics were gathered on training-mode inputs, so
  not as an exact product) into the outputs f and so into the losses, margins, accuracies near
  ties and the NC measures of every layer after the first BatchNorm. Training-mode steps use the
  batch statistics and are unaffected. Full-batch runs (n = N) make the factor negligible.
- `lagrange` (LN, section 3.4, Eq. 5): hidden layers compute with V_k/||V_k||_F and V_k is kept on
  the unit sphere. Gradient flow with the Lagrange multiplier ν_k moves V_k only tangentially; the
  discrete version here: the optimizer removes the radial component of the update
  (`tangent_project`, applied to the momentum-updated step so the whole update is tangent), takes
  the step, then the `UnitNorm` constraint re-normalizes. Because the forward pass uses
  V/||V||, the function is exactly invariant to rescaling a normalized layer. Weight decay applies
  to the classifier only, so ρ = ||W_L||_F is the only free scale. `lagrange_mode: unit`
  normalizes each unit (row) instead of the whole layer, as BatchNorm does (appendix H.2).
- `weightnorm` (appendix J.1): W_k = g_k · V_k/||V_k||_F with a trainable scalar g_k (per unit with
  `lagrange_mode: unit`); weight decay on V_k and g_k as PyTorch's `weight_norm` + SGD would do;
  ρ = Π_k |g_k| · ||W_L||_F, the product of the effective weights' norms.
"""

from __future__ import annotations

import keras
from keras import ops

SCALE_INVARIANT = {"batchnorm", "lagrange"}


def _norm_axes(ndim: int, per_unit: bool):
    # Kernels keep output units on the last axis (Dense (in, out), Conv2D (h, w, in, out)).
    return tuple(range(ndim - 1)) if per_unit else tuple(range(ndim))


def _normalize(w, per_unit: bool):
    return w / ops.sqrt(ops.sum(ops.square(w), axis=_norm_axes(len(w.shape), per_unit), keepdims=True))


def tangent_project(x, w, per_unit: bool):
    """Remove from `x` its component along `w` (per unit when `per_unit`): the projection onto
    the tangent space of the sphere at `w`."""
    axes = _norm_axes(len(w.shape), per_unit)
    coef = ops.sum(x * w, axis=axes, keepdims=True) / ops.sum(w * w, axis=axes, keepdims=True)
    return x - coef * w


@keras.saving.register_keras_serializable(package="sqloss_nc")
class UnitNorm(keras.constraints.Constraint):
    """Keeps a kernel at unit Frobenius norm (or each output unit at unit norm).

    The optimizer (`TorchSGD`) recognizes variables with this constraint and makes their update
    tangent to the sphere first, so the re-normalization only corrects the O(η²) curvature error.

    Args:
        per_unit: normalize each output unit (last kernel axis) separately.

    Example:

    ```python
    layer = keras.layers.Dense(8, kernel_constraint=UnitNorm())
    ```
    """

    def __init__(self, per_unit: bool = False):
        self.per_unit = bool(per_unit)

    def __call__(self, w):
        return _normalize(w, self.per_unit)

    def get_config(self):
        return {"per_unit": self.per_unit}


class _NormalizedKernel:
    """Mixin: the layer computes with an effective kernel V/||V|| (·g for weight norm)."""

    def __init__(self, *args, mode: str = "lagrange", per_unit: bool = False, g_init: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        if mode not in ("lagrange", "weightnorm"):
            raise ValueError(f"mode must be 'lagrange' or 'weightnorm', got {mode!r}")
        self.mode, self.per_unit, self.g_init = mode, bool(per_unit), float(g_init)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_gain()

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "per_unit": self.per_unit, "g_init": self.g_init}

    def _build_gain(self):
        if self.mode == "weightnorm":
            shape = (self.kernel.shape[-1],) if self.per_unit else ()
            self.g = self.add_weight(name="g", shape=shape, initializer=keras.initializers.Constant(self.g_init), trainable=True)

    def effective_kernel(self):
        v = _normalize(self.kernel, self.per_unit)
        return v * self.g if self.mode == "weightnorm" else v

    # Conv2D/Dense save exactly (kernel[, bias]); the gain g must travel too.
    def save_own_variables(self, store):
        if not self.built:
            return
        store["0"] = self.kernel
        if self.mode == "weightnorm":
            store["1"] = self.g

    def load_own_variables(self, store):
        if not self.built:
            return
        expected = 2 if self.mode == "weightnorm" else 1
        if len(store.keys()) != expected:
            raise ValueError(f"layer {self.name!r} expected {expected} saved variables, got {len(store.keys())}")
        self._kernel.assign(store["0"])
        if self.mode == "weightnorm":
            self.g.assign(store["1"])


@keras.saving.register_keras_serializable(package="sqloss_nc")
class NormalizedConv2D(_NormalizedKernel, keras.layers.Conv2D):
    """A bias-free `Conv2D` computing with V/||V||_F (Lagrange) or g·V/||V||_F (weight norm).

    Args:
        mode: `lagrange` or `weightnorm`.
        per_unit: normalize each output channel separately.
        g_init: initial gain g (weight norm only).
        **kwargs: `keras.layers.Conv2D` arguments.

    Example:

    ```python
    conv = NormalizedConv2D(32, 3, strides=2, padding="same", use_bias=False, mode="lagrange")
    ```
    """

    def call(self, inputs):
        if self.use_bias:
            raise ValueError("NormalizedConv2D is bias-free")
        return self.convolution_op(inputs, self.effective_kernel())


@keras.saving.register_keras_serializable(package="sqloss_nc")
class NormalizedDense(_NormalizedKernel, keras.layers.Dense):
    """A bias-free `Dense` computing with V/||V||_F (Lagrange) or g·V/||V||_F (weight norm).

    Args:
        mode: `lagrange` or `weightnorm`.
        per_unit: normalize each output unit separately.
        g_init: initial gain g (weight norm only).
        **kwargs: `keras.layers.Dense` arguments.

    Example:

    ```python
    dense = NormalizedDense(64, use_bias=False, mode="weightnorm", g_init=0.1)
    ```
    """

    def call(self, inputs, training=None):
        return ops.matmul(inputs, self.effective_kernel())


def linear_layer(kind: str, cfg, conv: bool, width: int, initializer, name: str, use_bias: bool = False, **conv_kwargs) -> keras.layers.Layer:
    """The hidden linear map for normalization `kind` (plain, Lagrange-normalized or weight-normed);
    `use_bias` adds a zero-initialized bias to a plain layer (the normalized ones are bias-free)."""
    if use_bias and kind in ("lagrange", "weightnorm"):
        raise ValueError(f"{kind} layers are bias-free")
    per_unit = getattr(cfg, "lagrange_mode", "layer") == "unit"
    if kind in ("lagrange", "weightnorm"):
        cls = NormalizedConv2D if conv else NormalizedDense
        extra = {"kernel_constraint": UnitNorm(per_unit)} if kind == "lagrange" else {}
        return cls(
            width,
            **conv_kwargs,
            use_bias=False,
            kernel_initializer=initializer,
            name=name,
            mode=kind,
            per_unit=per_unit,
            g_init=cfg.init_scale,
            **extra,
        )
    cls = keras.layers.Conv2D if conv else keras.layers.Dense
    return cls(width, **conv_kwargs, use_bias=use_bias, kernel_initializer=initializer, name=name)


def hidden_normalization(kind: str, name: str, affine: bool = False) -> keras.layers.Layer | None:
    """The normalization layer to insert after hidden layer `name`'s linear map, or None
    (Lagrange and weight normalization live in the linear map itself); `affine` adds BatchNorm's
    learned γ/β (PyTorch's `affine=True`; the paper's nets have none)."""
    if kind == "batchnorm":
        return keras.layers.BatchNormalization(center=affine, scale=affine, momentum=0.9, epsilon=1e-5, name=name)
    return None


def weight_layers(network: keras.Model) -> list[keras.layers.Layer]:
    """The layers holding the weight tensors W_1..W_L, in depth order (classifier last): the
    layers `linear_layer` builds (anything with a `kernel`), whose `effective_kernel` is W_k.

    Example: `[l.name for l in weight_layers(net)][-1] == "classifier"`.
    """
    return [layer for layer in network.layers if getattr(layer, "kernel", None) is not None]


def effective_kernel(layer):
    """The weight tensor W_k the layer computes with."""
    return layer.effective_kernel() if hasattr(layer, "effective_kernel") else layer.kernel


def decayed_variables(network, kind: str) -> list:
    """The variables under coupled weight decay: every weight (kernels, and weight-norm gains)
    except the Lagrange-normalized hidden kernels, whose scale is fixed; with `model.bias: true`
    also every bias and BatchNorm's affine γ/β, as PyTorch's `SGD(weight_decay=λ)` decays every
    parameter it is given (the canonical neural-collapse runs train that way)."""
    out = []
    for layer in weight_layers(network):
        if kind == "lagrange" and layer.name != "classifier":
            continue
        out.append(layer.kernel)
        if getattr(layer, "mode", None) == "weightnorm":
            out.append(layer.g)
        if getattr(layer, "bias", None) is not None:
            out.append(layer.bias)
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            out += [v for v in (layer.gamma, layer.beta) if v is not None]
    return out


def rho_mode(kind: str) -> str:
    """Which norm is the scale of the function: `last` for scale-invariant hidden layers."""
    return "last" if kind in SCALE_INVARIANT else "product"
