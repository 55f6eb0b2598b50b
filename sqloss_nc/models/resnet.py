"""ResNet-18, the CIFAR variant (He et al. 2016, as in kuangliu/pytorch-cifar and the NC papers).

Stem: 3×3 conv (stride 1) → norm → ReLU, no max-pool. Four stages of two basic blocks with
64, 128, 256, 512 channels (times `model.width`); the first block of stages 2–4 has stride 2 and a
1×1 conv shortcut (+ its normalization) because the shape changes; the other blocks add the
identity. Global average pooling of the last 512·width-channel map gives h(x) (`features`,
512·width values for every input size; the map is 4×4 at 32×32 (kuangliu's `avg_pool2d(4)`), 4×4 at
28×28 (28 → 14 → 7 → 4) and 12×12 at 96×96), then the dense `classifier`.

A basic block is `relu(norm(conv(act(norm(conv(x))))) + shortcut(x))`: block k (1..8 in depth
order) has layers `block{k}_conv1`, `block{k}_norm1`, `block{k}_act1` (an `Activation`, so it is
not probed as a representation), `block{k}_conv2`, `block{k}_norm2`, optionally
`block{k}_shortcut` + `block{k}_shortcut_norm`, `block{k}_add`, and the block output `relu{k}`
(a `keras.layers.ReLU`: the tracker measures layer-wise collapse on exactly these eight). The stem
is `stem_conv`, `stem_norm`, `stem_relu` (an `Activation`).

The stride-2 3×3 convs pad one pixel on every side (PyTorch's `padding=1`) instead of Keras'
'same', which pads only bottom/right on even sizes: that would centre the conv on odd pixels while
the 1×1 stride-2 shortcut samples even ones, misaligning the two branches of the sum by a pixel.
"""

from __future__ import annotations

import keras

from ._layers import LayerFactory

STAGES = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2


def _conv(make: LayerFactory, x, filters: int, kernel: int, stride: int, name: str):
    if kernel == 3 and stride == 2:
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        return make.linear(True, filters, name, kernel_size=3, strides=2, padding="valid")(x)
    return make.linear(True, filters, name, kernel_size=kernel, strides=stride, padding="same")(x)


def basic_block(x, make: LayerFactory, filters: int, stride: int, k: int):
    """One basic block (see the module docstring); returns the output of `relu{k}`.

    Args:
        x: the block input (N, H, W, C_in).
        make: the network's `LayerFactory`.
        filters: output channels (already width-scaled).
        stride: 1, or 2 to halve the spatial size.
        k: the block's index (1-based, depth order), used in its layer names.

    Example: `y = basic_block(keras.Input((8, 8, 16)), make, 32, 2, k=3)` has shape (None, 4, 4, 32).
    """
    p = f"block{k}"
    y = _conv(make, x, filters, 3, stride, f"{p}_conv1")
    y = keras.layers.Activation("relu", name=f"{p}_act1")(make.normalize(y, f"{p}_norm1"))
    y = make.normalize(_conv(make, y, filters, 3, 1, f"{p}_conv2"), f"{p}_norm2")
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = make.normalize(_conv(make, x, filters, 1, stride, f"{p}_shortcut"), f"{p}_shortcut_norm")
    return keras.layers.ReLU(name=f"relu{k}")(keras.layers.Add(name=f"{p}_add")([y, shortcut]))


def resnet18(x, make: LayerFactory):
    """The CIFAR ResNet-18 body on image input `x`; returns h(x), the `features` layer's output.

    Args:
        x: the input tensor (N, H, W, C), any H, W ≥ 1 and any C.
        make: the network's `LayerFactory`.

    Example: `h = resnet18(keras.Input((32, 32, 3)), make)` has 512·width features.
    """
    x = _conv(make, x, make.channels(STAGES[0]), 3, 1, "stem_conv")
    x = keras.layers.Activation("relu", name="stem_relu")(make.normalize(x, "stem_norm"))
    k = 0
    for s, filters in enumerate(STAGES):
        for b in range(BLOCKS_PER_STAGE):
            k += 1
            x = basic_block(x, make, make.channels(filters), 2 if (s > 0 and b == 0) else 1, k)
    return keras.layers.GlobalAveragePooling2D(name="features")(x)
