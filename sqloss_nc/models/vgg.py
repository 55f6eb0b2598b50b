"""VGG-11 with BatchNorm (Simonyan & Zisserman 2015, configuration A), for small images.

Eight 3×3 'same' convs (stride 1) with 64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M
channels (times `model.width`; M = 2×2 max-pool, stride 2), each conv followed by the hidden
normalization and a ReLU `relu{k}` (k = 1..8, the representations the tracker probes); then global
average pooling is h(x) (`features`) and one dense `classifier`, as the CIFAR VGG of
kuangliu/pytorch-cifar (no 4096-wide fully connected layers).

Input sizes: the pools use 'same' padding (PyTorch's `ceil_mode=True`), so odd sizes keep their
border row instead of failing: 32 → 16 → 8 → 4 → 2 → 1 (the classic CIFAR VGG, where the average
pool of 1×1 is the flatten), 28 → 14 → 7 → 4 → 2 → 1 (MNIST; 'valid' pools would reach 0), and
96 → 48 → 24 → 12 → 6 → 3, averaged over the 3×3 (STL-10). So h(x) has 512·width values for every
input size. Max-pool and average pool are positively homogeneous, so without normalization and
biases the net is homogeneous of degree 1 in each kernel like the paper's convnet.

Layers: `conv{k}`, `norm{k}`, `relu{k}`, `pool{j}` (j = 1..5), `features`, `classifier`.
"""

from __future__ import annotations

import keras

from ._layers import LayerFactory

CONFIG_A = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def vgg11(x, make: LayerFactory):
    """The VGG-11 body on image input `x`; returns h(x), the `features` layer's output.

    Args:
        x: the input tensor (N, H, W, C), any H, W ≥ 1 and any C.
        make: the network's `LayerFactory`.

    Example: `h = vgg11(keras.Input((28, 28, 1)), make)` has 512·width features.
    """
    k = j = 0
    for item in CONFIG_A:
        if item == "M":
            j += 1
            x = keras.layers.MaxPooling2D(2, strides=2, padding="same", name=f"pool{j}")(x)
            continue
        k += 1
        x = make.linear(True, make.channels(item), f"conv{k}", kernel_size=3, strides=1, padding="same")(x)
        x = keras.layers.ReLU(name=f"relu{k}")(make.normalize(x, f"norm{k}"))
    return keras.layers.GlobalAveragePooling2D(name="features")(x)
