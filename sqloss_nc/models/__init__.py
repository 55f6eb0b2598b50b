"""The networks (SPEC §3): the paper's `convnet`, an `mlp`, the CIFAR `resnet18` and `vgg11`
(with BatchNorm), Frobenius-initialized, bias-free unless `model.bias`.

`model.arch` picks the body (one module per family: `plain.py`, `resnet.py`, `vgg.py`, which say
their layer names and how they handle 28×28, 32×32 and 96×96 inputs); `_layers.LayerFactory`
holds what they share. Layer names are an interface: the layer whose output is the feature vector
h(x) is `features`, the last (never normalized) linear map is `classifier`, every hidden linear map
has a `kernel` (so `weight_layers` finds it), and the representations whose layer-wise collapse is
tracked are exactly the `keras.layers.ReLU` layers `relu1..` (activations inside a ResNet block are
`keras.layers.Activation`, so only block outputs are probed).

Keys:

- `model.width` (default 1.0) multiplies every hidden width (convnet/mlp `widths`, the ResNet
  stages 64..512, the VGG convs), rounded half up to an integer ≥ 1: h(x) has 512·width values for
  resnet18 and vgg11 (e.g. 128 at width 0.25).
- `model.bias` (default false: the paper's homogeneous nets). `true` gives the standard layers: a
  bias on every hidden conv/dense that is *not* followed by BatchNorm (BN's mean subtraction would
  cancel it, as torchvision's ResNet omits it), BatchNorm's learned γ/β (`affine`), and a
  classifier bias. Trainable parameters at width 1, 10 classes: resnet18 11,173,962 with bias
  (the standard CIFAR ResNet-18 count), 11,164,352 without; vgg11 9,228,362 with bias
  (kuangliu's VGG('VGG11') minus its 2,752 BN-cancelled conv biases), 9,222,848 without.
- `model.normalization`: `none` or `batchnorm` for resnet18/vgg11 (the config refuses `lagrange`
  and `weightnorm` there); every BatchNorm is the affine-free PyTorch-default one of SPEC §3
  unless `model.bias`.
- `model.init` (SPEC §12): `frobenius` (default, the paper's: below), `torch` (PyTorch's
  `nn.Conv2d`/`nn.Linear` default, kaiming-uniform with a = √5: every kernel U(±1/√fan_in), every
  bias U(±1/√fan_in) of its layer; kuangliu-style CIFAR nets left at their defaults) or
  `torchvision` (torchvision's ResNet/VGG: convolutions kaiming-normal N(0, 2/fan_out), conv biases
  0, BN γ = 1, β = 0, the dense classifier at PyTorch's Linear default). `model.init_scale` is then
  unused and refused if given. The published NC codes build torchvision's ImageNet-stem
  ResNet-18 (7×7 stride-2 stem + max-pool) and VGG-11-BN (4096-wide head); this package's
  `resnet18`/`vgg11` are the CIFAR variants, so only the initialization is theirs.
- `model.init_scale` (`model.init: frobenius`): every kernel (stem, block convs, 1×1 shortcuts, classifier) starts at exactly
  that Frobenius norm (SPEC §3), drawn with seed·1000 + k for the k-th kernel in depth order. For a
  deep net without BN this is a per-layer *scale*, not a variance-preserving init: a 3×3×64×64 conv
  at norm s has entries of std s/192 and shrinks its input by about s/8 per layer, so at
  init_scale 0.01 and `normalization: none` the signal vanishes: the residual branches add ~(s/8)²
  and the identity paths carry only what the stem and the three 1×1 shortcuts pass on. Measured on
  100 sample images (unit-norm inputs, the default `input_norm`), the rms of f at init is 3e-18
  for resnet18, 8e-32 for vgg11 and 4e-14 for the paper's convnet. With BatchNorm the hidden
  scales do not matter in training mode (only for the effective learning rate) and init_scale
  sets the classifier norm ρ(0); in inference mode a fresh BN (moving mean 0, variance 1) passes
  the same vanishing signal until its statistics have been trained.

What ρ means (the tracker writes `rho_product` = Π_k ||W_k||_F over every kernel `weight_layers`
returns, `rho_last` = ||W_L||_F, and `rho` = one of them by `normalization.rho_mode`):

- convnet, mlp, vgg11 without normalization or biases: f is positively homogeneous of degree 1 in
  each kernel (ReLU, max- and average-pooling are), so `rho = rho_product` is the paper's ρ and
  f/ρ is scale free.
- any arch with `batchnorm` (every hidden conv of resnet18 and vgg11 is followed by a BN, the 1×1
  shortcuts included): f is invariant to each hidden kernel's scale, so `rho = rho_last` =
  ||W_L||_F, as for the paper's BN net. With `model.bias` the BN γ of the last layers also scales
  h(x), so ||W_L||_F is then the classifier's norm, not the whole function's scale.
- resnet18 with `normalization: none`: the residual sum relu(F(x) + x) adds paths of different
  depth, so f is not homogeneous in any single kernel nor jointly; `rho = rho_product` is still
  the product of all 21 kernel norms (stem, 16 block convs, 3 shortcuts, classifier), written for
  comparability, but it is no homogeneity degree: the normalized margins m/ρ are not scale free
  there. Read `raw_margin_*` and `rho_last` instead.

Example:

```python
from sqloss_nc.config import load_config
cfg = load_config(None, ["model.arch=resnet18", "model.width=0.25"]).model
net = build_network(cfg, (32, 32, 3), 10, seed=0)
net.get_layer("features").output.shape  # (None, 128)
```
"""

from __future__ import annotations

import keras

from ..config import ConfigError, ModelConfig
from ..normalization import weight_layers  # noqa: F401  (the W_k layers: normalization's, re-exported)
from ._layers import LayerFactory, scaled_width
from .plain import convnet, mlp
from .resnet import resnet18
from .vgg import vgg11

BODIES = {"convnet": convnet, "mlp": mlp, "resnet18": resnet18, "vgg11": vgg11}


def check_input_shape(cfg: ModelConfig, input_shape: tuple[int, ...]) -> None:
    """Raise a one-line `ConfigError` when `cfg.arch` cannot take inputs of `input_shape`
    (every arch but `mlp` needs images (H, W, C)).

    Args:
        cfg: `model` section of the config.
        input_shape: shape of one input, e.g. `data.x_train.shape[1:]`.

    Example: `check_input_shape(cfg, (12,))` raises for `cfg.arch == "resnet18"`.
    """
    if cfg.arch != "mlp" and len(input_shape) != 3:
        raise ConfigError(f"model.arch: {cfg.arch} needs image inputs, the data has shape {tuple(input_shape)}")


def width_warnings(cfg: ModelConfig) -> list[str]:
    """One line when `model.width` rounds hidden widths below 1, which are then clamped to 1
    (`LayerFactory.channels`): valid, but surely not the network meant (a 1-unit layer is a
    bottleneck; its class means are collinear and NC1 is NaN).

    Example: `width_warnings(load_config(None, ["model.width=0.0001"]).model)` names the
    convnet's 3 widths [32, 64, 128].
    """
    from .resnet import STAGES
    from .vgg import CONFIG_A

    base = {"resnet18": list(STAGES), "vgg11": [c for c in CONFIG_A if c != "M"]}.get(cfg.arch, list(cfg.widths))
    clamped = [c for c in base if scaled_width(c, cfg.width, floor=0) < 1]
    if not clamped:
        return []
    n = "every hidden width" if len(clamped) == len(base) else f"{len(clamped)} of {len(base)} hidden widths"
    return [f"model.width: {cfg.width:g} rounds {n} of {cfg.arch} ({sorted(set(clamped))} x {cfg.width:g}) below 1: clamped to 1 unit"]


def build_network(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int, seed: int = 0) -> keras.Model:
    """Build the functional network `x -> f(x)` described by `cfg`.

    Args:
        cfg: `model` section of the config.
        input_shape: shape of one input (e.g. (32, 32, 3), (28, 28, 1), (96, 96, 3)).
        num_classes: C; the classifier has C outputs (1 for `output: scalar`).
        seed: seeds every kernel's initializer (the k-th kernel in depth order uses seed·1000 + k),
            so a run is reproducible and different seeds draw different weights.

    Raises:
        ConfigError: an image arch on non-image inputs.

    Example:

    ```python
    net = build_network(load_config(None, ["model.init_scale=0.1"]).model, (32, 32, 3), 2, seed=0)
    net.get_layer("features").output.shape  # (None, 2048)
    ```
    """
    check_input_shape(cfg, input_shape)
    make = LayerFactory(cfg, seed)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    h = BODIES[cfg.arch](inputs, make)
    out = make.classifier(h, 1 if cfg.output == "scalar" else num_classes)
    net = keras.Model(inputs, out, name=f"{cfg.arch}_{cfg.normalization}")
    init_biases(net, getattr(cfg, "init", "frobenius"), seed)
    return net


def init_biases(network: keras.Model, init: str, seed: int) -> None:
    """Set the biases of `network`'s weight layers as `model.init` says (they are built at 0).

    `frobenius` keeps them at 0. `torch`: PyTorch's Conv2d/Linear default bias, U(±1/√fan_in)
    with the layer's fan-in (a Keras bias initializer sees only the bias shape, so this is done
    after the build). `torchvision`: conv biases 0 (torchvision's VGG sets them to 0, its ResNet
    has none), dense biases the `torch` default (its classifier is a plain `nn.Linear`). The k-th
    weight layer's bias draws from the seed (seed·1000 + k, 1), apart from its kernel's.

    Args:
        network: a built network (`build_network`).
        init: `model.init`.
        seed: the run seed.

    Example: `init_biases(net, "torch", 0)`.
    """
    from ..initializers import TorchDefaultUniform, fans

    if init == "frobenius":
        return
    for k, layer in enumerate(weight_layers(network), start=1):
        bias = getattr(layer, "bias", None)
        if bias is None:
            continue
        conv = len(layer.kernel.shape) > 2
        if init == "torchvision" and conv:
            continue  # already 0
        fan_in = fans(layer.kernel.shape)[0]
        bias.assign(TorchDefaultUniform(seed=[seed * 1000 + k, 1], fan_in=fan_in).numpy(bias.shape).astype("float32"))


def probed_layers(network: keras.Model) -> list[str]:
    """The hidden representations whose collapse a run tracks (before `features` and
    `classifier`): every ReLU before the features; the convnet's last ReLU is left out, since its
    flattened copy is the features.

    Example: `probed_layers(net)[:2] == ["relu1", "relu2"]`.
    """
    names = [layer.name for layer in network.layers if isinstance(layer, keras.layers.ReLU) and layer.name != "features"]
    if isinstance(network.get_layer("features"), keras.layers.Flatten):
        names = names[:-1]
    return names


def next_weight_layer(network: keras.Model, name: str):
    """The first layer holding a kernel after layer `name` in the layer order (alignment's
    W_{l+1}), or None.

    Example: `next_weight_layer(net, "features").name == "classifier"`.
    """
    order = [layer.name for layer in network.layers]
    return next((layer for layer in network.layers[order.index(name) + 1 :] if getattr(layer, "kernel", None) is not None), None)


def feature_extractor(network: keras.Model) -> keras.Model:
    """A model returning (h(x), f(x)) in one pass, for margins and neural-collapse measures.

    Example: `h, f = feature_extractor(net)(x)`.
    """
    return keras.Model(network.inputs, [network.get_layer("features").output, network.output])
