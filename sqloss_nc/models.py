"""The networks (SPEC §3): the paper's `convnet` and an `mlp`, bias-free, Frobenius-initialized.

Layer names are an interface: hidden linear maps are `conv1..` / `dense1..`, their normalizations
`norm1..`, activations `relu1..`; the layer whose output is the feature vector h(x) is named
`features` and the last (never normalized) linear map `classifier`.

Example:

```python
from sqloss_nc.config import load_config
net = build_network(load_config(None, ["model.init_scale=0.1"]).model, (32, 32, 3), 2, seed=0)
net.get_layer("features").output.shape  # (None, 2048)
```
"""

from __future__ import annotations

import keras

from .config import ModelConfig
from .initializers import FrobeniusNormal
from .normalization import hidden_normalization, linear_layer


def build_network(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int, seed: int = 0) -> keras.Model:
    """Build the functional network `x -> f(x)` described by `cfg`.

    Args:
        cfg: `model` section of the config.
        input_shape: shape of one input (e.g. (32, 32, 3)).
        num_classes: C; the classifier has C outputs (1 for `output: scalar`).
        seed: seeds every layer's initializer (layer k uses seed·1000 + k), so a run is
            reproducible and different seeds draw different weights.
    """
    outputs = 1 if cfg.output == "scalar" else num_classes
    depth = len(cfg.widths) + 1
    hidden_scale, last_scale = cfg.init_scale, cfg.init_scale
    if cfg.normalization in ("lagrange", "weightnorm"):
        # The hidden V_k start on the unit sphere; under LN the classifier carries the whole
        # initial scale, so rho(0) = init_scale^L as for the unnormalized net; under weight norm
        # the gains g_k = init_scale set ||W_k|| = init_scale.
        hidden_scale = 1.0
        if cfg.normalization == "lagrange":
            last_scale = cfg.init_scale**depth

    def init(k, scale):
        return FrobeniusNormal(scale, seed=seed * 1000 + k)

    x = inputs = keras.Input(shape=tuple(input_shape), name="input")
    if cfg.arch == "convnet":
        if len(input_shape) != 3:
            raise ValueError(f"convnet needs image inputs (H, W, C), got shape {tuple(input_shape)}")
        for k, width in enumerate(cfg.widths, start=1):
            conv = linear_layer(
                cfg.normalization, cfg, True, width, init(k, hidden_scale), f"conv{k}", kernel_size=3, strides=2, padding="same"
            )
            x = _normalize_and_activate(conv(x), cfg.normalization, k)
        h = keras.layers.Flatten(name="features")(x)
    elif cfg.arch == "mlp":
        x = keras.layers.Flatten(name="flatten")(x)
        for k, width in enumerate(cfg.widths, start=1):
            dense = linear_layer(cfg.normalization, cfg, False, width, init(k, hidden_scale), f"dense{k}")
            x = _normalize_and_activate(dense(x), cfg.normalization, k, last=k == len(cfg.widths))
        h = x
    else:  # pragma: no cover - the schema forbids it
        raise ValueError(f"unknown arch {cfg.arch!r}")
    out = keras.layers.Dense(outputs, use_bias=False, kernel_initializer=init(depth, last_scale), name="classifier")(h)
    return keras.Model(inputs, out, name=f"{cfg.arch}_{cfg.normalization}")


def _normalize_and_activate(x, kind: str, k: int, last: bool = False):
    norm = hidden_normalization(kind, f"norm{k}")
    if norm is not None:
        x = norm(x)
    # In the MLP the last activation *is* h(x), so it carries the interface name.
    return keras.layers.ReLU(name="features" if last else f"relu{k}")(x)


def weight_layers(network: keras.Model) -> list[keras.layers.Layer]:
    """The layers holding the weight tensors W_1..W_L, in depth order (classifier last)."""
    return [layer for layer in network.layers if getattr(layer, "kernel", None) is not None]


def feature_extractor(network: keras.Model) -> keras.Model:
    """A model returning (h(x), f(x)) in one pass, for margins and neural-collapse measures."""
    return keras.Model(network.inputs, [network.get_layer("features").output, network.output])
