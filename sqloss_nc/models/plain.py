"""The paper's `convnet` and the `mlp` (SPEC §3): chains of linear map, normalization, ReLU."""

from __future__ import annotations

import keras

from ._layers import LayerFactory


def convnet(x, make: LayerFactory):
    """Three (or `len(widths)`) 3×3 stride-2 'same' convs, each followed by the hidden
    normalization and a ReLU `relu{k}`; the flattened last activation is `features`.

    Args:
        x: the input tensor (N, H, W, C).
        make: the network's `LayerFactory`.

    Example: `h = convnet(keras.Input((32, 32, 3)), make)` has 4·4·128 = 2048 features at width 1.
    """
    for k, width in enumerate(make.cfg.widths, start=1):
        x = make.linear(True, make.channels(width), f"conv{k}", kernel_size=3, strides=2, padding="same")(x)
        x = keras.layers.ReLU(name=f"relu{k}")(make.normalize(x, f"norm{k}"))
    return keras.layers.Flatten(name="features")(x)


def mlp(x, make: LayerFactory):
    """Flatten, then dense layers `dense{k}` with normalization and ReLU; the last ReLU *is*
    h(x), so it carries the interface name `features`.

    Args:
        x: the input tensor (any shape; flattened first).
        make: the network's `LayerFactory`.

    Example: `h = mlp(keras.Input((8, 8, 3)), make)` has `widths[-1]·width` features.
    """
    x = keras.layers.Flatten(name="flatten")(x)
    depth = len(make.cfg.widths)
    for k, width in enumerate(make.cfg.widths, start=1):
        x = make.linear(False, make.channels(width), f"dense{k}")(x)
        x = keras.layers.ReLU(name="features" if k == depth else f"relu{k}")(make.normalize(x, f"norm{k}"))
    return x
