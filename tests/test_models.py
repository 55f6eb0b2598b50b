import math

import keras
import numpy as np
import pytest

import sqloss_nc  # noqa: F401  (registers custom objects)
from sqloss_nc import measures
from sqloss_nc.config import ConfigError, load_config
from sqloss_nc.initializers import FrobeniusNormal
from sqloss_nc.models import build_network, check_input_shape, feature_extractor, weight_layers
from sqloss_nc.models._layers import LayerFactory
from sqloss_nc.models.resnet import basic_block


def net(*overrides, shape=(32, 32, 3), classes=2, seed=0):
    return build_network(load_config(None, list(overrides)).model, shape, classes, seed=seed)


@pytest.mark.parametrize("arch", ["convnet", "mlp"])
@pytest.mark.parametrize("scale", [0.01, 1.0, 5.0])
def test_initial_layer_norms_equal_init_scale(arch, scale):
    n = net(f"model.arch={arch}", f"model.init_scale={scale}", "model.normalization=none")
    layers = weight_layers(n)
    assert len(layers) == 4 and layers[-1].name == "classifier"
    for layer in layers:
        assert np.linalg.norm(np.asarray(layer.kernel).astype(np.float64)) == pytest.approx(scale, rel=1e-6)


def test_paper_convnet_shape_names_and_no_biases():
    n = net("model.normalization=batchnorm")
    assert n.get_layer("features").output.shape[-1] == 4 * 4 * 128
    assert n.get_layer("classifier").output.shape[-1] == 2
    assert [w.name for w in n.trainable_weights] == ["kernel"] * 4  # no biases, no BN affine parameters
    kshapes = [tuple(layer.kernel.shape) for layer in weight_layers(n)]
    assert kshapes == [(3, 3, 3, 32), (3, 3, 32, 64), (3, 3, 64, 128), (2048, 2)]
    bn = n.get_layer("norm1")
    assert (bn.momentum, bn.epsilon, bn.center, bn.scale) == (0.9, 1e-5, False, False)


def test_seeds_differ_and_repeat():
    a, b, c = net(seed=0), net(seed=0), net(seed=1)
    assert np.array_equal(np.asarray(a.get_layer("conv1").kernel), np.asarray(b.get_layer("conv1").kernel))
    assert not np.array_equal(np.asarray(a.get_layer("conv1").kernel), np.asarray(c.get_layer("conv1").kernel))


@pytest.mark.parametrize("arch", ["convnet", "mlp"])
def test_homogeneity_without_normalization(arch):
    """ReLU nets without biases: scaling W_k by a_k scales f by prod a_k, and rho follows."""
    n = net(f"model.arch={arch}", "model.normalization=none", "model.init_scale=1.0")
    x = np.random.default_rng(0).normal(size=(7, 32, 32, 3)).astype(np.float32)
    f0 = np.asarray(n(x)).astype(np.float64)
    rho0 = measures.rho_values({layer.name: measures.frobenius(np.asarray(layer.kernel)) for layer in weight_layers(n)}, "product")["rho"]
    factors = [0.5, 3.0, 2.0, 0.25]
    for layer, a in zip(weight_layers(n), factors):
        layer.kernel.assign(np.asarray(layer.kernel) * a)
    f1 = np.asarray(n(x)).astype(np.float64)
    # atol for outputs that are sums of cancelling float32 terms (XLA's conv rounds differently from oneDNN's)
    np.testing.assert_allclose(f1, f0 * np.prod(factors), rtol=1e-4, atol=1e-5 * np.abs(f0).max())
    rho1 = measures.rho_values({layer.name: measures.frobenius(np.asarray(layer.kernel)) for layer in weight_layers(n)}, "product")["rho"]
    assert rho1 == pytest.approx(rho0 * np.prod(factors), rel=1e-5)
    # The normalized margins are then scale free.
    y = np.arange(7) % 2
    np.testing.assert_allclose(measures.margins(f1, y) / rho1, measures.margins(f0, y) / rho0, rtol=1e-3, atol=1e-9)


def test_batchnorm_net_is_invariant_to_hidden_scale():
    n = net("model.normalization=batchnorm", "model.init_scale=1.0")
    x = np.random.default_rng(0).normal(size=(16, 32, 32, 3)).astype(np.float32)
    f0 = np.asarray(n(x, training=True))
    n.get_layer("conv2").kernel.assign(np.asarray(n.get_layer("conv2").kernel) * 7.0)
    # Exact up to BatchNorm's eps (1e-5 against small batch variances): a 7x change would show.
    np.testing.assert_allclose(np.asarray(n(x, training=True)), f0, rtol=1e-2, atol=1e-4)


def test_saved_model_round_trips(tmp_path):
    n = net("model.normalization=batchnorm")
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
    n.save(tmp_path / "m.keras")
    m = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(m(x)), np.asarray(n(x)))
    assert isinstance(m.get_layer("conv1").kernel_initializer, FrobeniusNormal)
    h, f = feature_extractor(m)(x)
    assert h.shape == (4, 2048) and np.allclose(np.asarray(f), np.asarray(n(x)))


def test_frobenius_initializer_config_round_trip():
    init = FrobeniusNormal(0.3, seed=5)
    again = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert isinstance(again, FrobeniusNormal)
    np.testing.assert_array_equal(np.asarray(init((4, 5))), np.asarray(again((4, 5))))


# ----------------------------------------------------------------------------- resnet18, vgg11

DEEP = ["resnet18", "vgg11"]
SHAPES = [(32, 32, 3), (28, 28, 1), (96, 96, 3)]


def deep(arch, *overrides, shape=(32, 32, 3), classes=10, width=0.125, seed=0):
    return net(f"model.arch={arch}", f"model.width={width}", *overrides, shape=shape, classes=classes, seed=seed)


def scaled(c, width):
    """The rounding rule of `model.width` as documented: half up, at least 1."""
    return max(1, int(c * width + 0.5))


def halvings(size, times):
    # A stride-2 step on `size` pixels keeps ceil(size/2) (PyTorch padding=1, or ceil_mode pools).
    for _ in range(times):
        size = -(-size // 2)
    return size


def resnet18_count(width, c_in, classes, bias, norm):
    """Trainable parameters of torchvision-style CIFAR ResNet-18, counted layer by layer."""
    ch = [scaled(c, width) for c in (64, 128, 256, 512)]

    def conv(i, o, k):  # + the layer after it: BN's gamma/beta, or the conv's own bias
        extra = (2 * o if norm == "batchnorm" else o) if bias else 0
        return k * k * i * o + extra

    total, i = conv(c_in, ch[0], 3), ch[0]
    for s, o in enumerate(ch):
        for b in range(2):
            total += conv(i, o, 3) + conv(o, o, 3)
            if (s > 0 and b == 0) or i != o:
                total += conv(i, o, 1)
            i = o
    return total + i * classes + (classes if bias else 0)


def vgg11_count(width, c_in, classes, bias, norm):
    total, i = 0, c_in
    for c in (64, 128, 256, 256, 512, 512, 512, 512):
        o = scaled(c, width)
        total += 9 * i * o + ((2 * o if norm == "batchnorm" else o) if bias else 0)
        i = o
    return total + i * classes + (classes if bias else 0)


def n_trainable(n):
    return sum(int(np.prod(w.shape)) for w in n.trainable_weights)


@pytest.mark.parametrize("arch", DEEP)
@pytest.mark.parametrize("shape", SHAPES, ids=["32x32x3", "28x28x1", "96x96x3"])
def test_deep_nets_feature_and_output_shapes(arch, shape):
    n = deep(arch, shape=shape, classes=7)
    assert n.get_layer("features").output.shape == (None, scaled(512, 0.125))
    assert n.get_layer("classifier").output.shape == (None, 7) and n.output.shape == (None, 7)
    # The map that is averaged into h(x): after 3 stride-2 stages (resnet) or 5 pools (vgg).
    last = "relu8" if arch == "resnet18" else "pool5"
    side = halvings(shape[0], 3 if arch == "resnet18" else 5)
    assert n.get_layer(last).output.shape == (None, side, side, scaled(512, 0.125))
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    h, f = feature_extractor(n)(x)
    assert h.shape == (2, 64) and f.shape == (2, 7) and np.all(np.isfinite(np.asarray(f)))


def test_known_parameter_counts_at_width_1():
    # The standard CIFAR ResNet-18 (kuangliu/pytorch-cifar, 10 classes): 11,173,962 parameters.
    assert resnet18_count(1.0, 3, 10, True, "batchnorm") == 11_173_962
    assert n_trainable(deep("resnet18", "model.bias=true", width=1.0)) == 11_173_962
    # kuangliu's VGG('VGG11') has 9,231,114, including 2,752 conv biases that BatchNorm cancels
    # (64+128+2·256+4·512 channels) and which this net leaves out.
    assert n_trainable(deep("vgg11", "model.bias=true", width=1.0)) == 9_231_114 - 2_752


@pytest.mark.parametrize("arch", DEEP)
@pytest.mark.parametrize("width", [0.0625, 0.3, 0.5])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_parameter_counts_against_layer_by_layer_arithmetic(arch, width, bias, norm):
    count = resnet18_count if arch == "resnet18" else vgg11_count
    for shape in [(28, 28, 1), (32, 32, 3)]:
        n = deep(arch, f"model.bias={str(bias).lower()}", f"model.normalization={norm}", width=width, shape=shape)
        assert n_trainable(n) == count(width, shape[-1], 10, bias, norm)


@pytest.mark.parametrize("arch", DEEP)
def test_width_scales_every_kernel_and_rounds(arch):
    n = deep(arch, width=0.3)
    out_channels = [layer.kernel.shape[-1] for layer in weight_layers(n)[:-1]]
    expected = {"resnet18": [64] + [64] * 4 + [128] * 5 + [256] * 5 + [512] * 5, "vgg11": [64, 128, 256, 256, 512, 512, 512, 512]}[arch]
    # 0.3·64 = 19.2 -> 19, 0.3·128 = 38.4 -> 38, 0.3·256 = 76.8 -> 77, 0.3·512 = 153.6 -> 154
    assert out_channels == [{64: 19, 128: 38, 256: 77, 512: 154}[c] for c in expected]
    assert weight_layers(n)[-1].kernel.shape == (154, 10)
    tiny = deep(arch, width=0.001)
    assert {layer.kernel.shape[-1] for layer in weight_layers(tiny)[:-1]} == {1}


@pytest.mark.parametrize("arch", DEEP)
@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_bias_adds_exactly_the_standard_variables(arch, norm):
    off = {v.path for v in deep(arch, f"model.normalization={norm}").trainable_weights}
    on = {v.path for v in deep(arch, f"model.normalization={norm}", "model.bias=true").trainable_weights}
    assert off <= on and all(p.endswith("/kernel") for p in off)
    kernels = sorted(p.removesuffix("/kernel") for p in off)
    hidden = [k for k in kernels if k != "classifier"]
    if norm == "batchnorm":
        # Every hidden conv is followed by its BatchNorm, which gets gamma/beta; no conv bias.
        # conv3 -> norm3, stem_conv -> stem_norm, block2_conv1 -> block2_norm1, block3_shortcut -> block3_shortcut_norm
        norms = [k.replace("conv", "norm") if "shortcut" not in k else k + "_norm" for k in hidden]
        added = {f"{k}/{v}" for k in norms for v in ("gamma", "beta")}
    else:
        added = {f"{k}/bias" for k in hidden}
    assert on - off == added | {"classifier/bias"}


@pytest.mark.parametrize("arch", DEEP)
@pytest.mark.parametrize("scale", [0.01, 5.0])
def test_every_deep_kernel_starts_at_the_exact_frobenius_norm(arch, scale):
    for norm in ["none", "batchnorm"]:
        layers = weight_layers(deep(arch, f"model.init_scale={scale}", f"model.normalization={norm}"))
        assert len(layers) == {"resnet18": 21, "vgg11": 9}[arch] and layers[-1].name == "classifier"
        for layer in layers:
            assert np.linalg.norm(np.asarray(layer.kernel).astype(np.float64)) == pytest.approx(scale, rel=1e-6), layer.name
        # Each kernel its own draw: no two equal-shape kernels coincide.
        firsts = {float(np.asarray(layer.kernel).ravel()[0]) for layer in layers}
        assert len(firsts) == len(layers)


@pytest.mark.parametrize("arch", DEEP)
def test_only_block_outputs_are_relu_layers(arch):
    """The tracker probes every keras.layers.ReLU: exactly the 8 block/conv outputs."""
    n = deep(arch)
    assert [layer.name for layer in n.layers if isinstance(layer, keras.layers.ReLU)] == [f"relu{k}" for k in range(1, 9)]
    inner = [layer.name for layer in n.layers if isinstance(layer, keras.layers.Activation)]
    assert inner == ([] if arch == "vgg11" else ["stem_relu"] + [f"block{k}_act1" for k in range(1, 9)])


@pytest.mark.parametrize("arch", DEEP)
def test_deep_nets_save_and_load(tmp_path, arch):
    n = deep(arch, "model.bias=true", shape=(28, 28, 1))
    x = np.random.default_rng(1).normal(size=(3, 28, 28, 1)).astype(np.float32)
    # One training-mode call moves the BN statistics away from their initial values.
    n(x, training=True)
    n.save(tmp_path / "model.keras")
    m = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(np.asarray(m(x)), np.asarray(n(x)))
    assert [layer.name for layer in weight_layers(m)] == [layer.name for layer in weight_layers(n)]
    assert isinstance(m.get_layer("classifier").kernel_initializer, FrobeniusNormal)


def conv_same_as_pytorch(x, w, stride, pad):
    """Direct cross-correlation with symmetric zero padding (PyTorch Conv2d), float64."""
    x = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    k = w.shape[0]
    oh, ow = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[-1]))
    for i in range(k):
        for j in range(k):
            out += np.einsum("nhwc,co->nhwo", x[:, i : i + stride * oh : stride, j : j + stride * ow : stride], w[i, j])
    return out


def block_model(c_in, filters, stride, norm="none"):
    make = LayerFactory(load_config(None, [f"model.normalization={norm}", "model.init_scale=1"]).model, seed=0)
    inp = keras.Input((7, 7, c_in))
    return keras.Model(inp, basic_block(inp, make, filters, stride, k=1))


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_identity_block_with_zeroed_convs_is_relu_of_its_input(norm):
    m = block_model(6, 6, 1, norm)
    for name in ("block1_conv1", "block1_conv2"):
        m.get_layer(name).kernel.assign(np.zeros(m.get_layer(name).kernel.shape, np.float32))
    x = np.random.default_rng(2).normal(size=(4, 7, 7, 6)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(m(x, training=True)), np.maximum(x, 0))


def test_projection_block_samples_the_same_grid_in_both_branches():
    """Stride-2 block on an odd 7x7 input: the 1x1 shortcut and the 3x3 conv (padding 1 on every
    side, as PyTorch) must both be centred on pixels 0, 2, 4, 6."""
    m = block_model(3, 5, 2)
    x = np.random.default_rng(3).normal(size=(2, 7, 7, 3)).astype(np.float32)
    ws = np.asarray(m.get_layer("block1_shortcut").kernel)
    conv2 = m.get_layer("block1_conv2")
    conv2.kernel.assign(np.zeros(conv2.kernel.shape, np.float32))
    np.testing.assert_allclose(np.asarray(m(x)), np.maximum(conv_same_as_pytorch(x, ws, 2, 0), 0), rtol=1e-5, atol=1e-6)
    # The residual branch's first conv, against the direct computation.
    w1 = np.asarray(m.get_layer("block1_conv1").kernel)
    branch = keras.Model(m.inputs, m.get_layer("block1_conv1").output)
    np.testing.assert_allclose(np.asarray(branch(x)), conv_same_as_pytorch(x, w1, 2, 1), rtol=1e-5, atol=1e-6)


def test_resnet_block_identity_inside_the_full_net():
    n = deep("resnet18", "model.normalization=batchnorm", "model.init_scale=1")
    for name in ("block2_conv1", "block2_conv2"):
        n.get_layer(name).kernel.assign(np.zeros(n.get_layer(name).kernel.shape, np.float32))
    probe = keras.Model(n.inputs, [n.get_layer("relu1").output, n.get_layer("relu2").output])
    a, b = probe(np.random.default_rng(4).normal(size=(4, 32, 32, 3)).astype(np.float32), training=True)
    np.testing.assert_array_equal(np.asarray(b), np.maximum(np.asarray(a), 0))


@pytest.mark.parametrize("arch", DEEP)
def test_deep_batchnorm_nets_are_invariant_to_each_hidden_kernel_scale(arch):
    # init_scale 30: conv outputs with variances far above BN's eps = 1e-5, so the invariance is
    # exact up to float32 (at norm 1 a 3x3x32x64 conv has output variance ~0.016 and eps shows).
    n = deep(arch, "model.normalization=batchnorm", "model.init_scale=30")
    x = np.random.default_rng(5).normal(size=(16, 32, 32, 3)).astype(np.float32)
    f0 = np.asarray(n(x, training=True))
    names = ["stem_conv", "block3_conv1", "block3_shortcut", "block8_conv2"] if arch == "resnet18" else ["conv1", "conv5", "conv8"]
    for name in names:
        n.get_layer(name).kernel.assign(np.asarray(n.get_layer(name).kernel) * 7.0)
    np.testing.assert_allclose(np.asarray(n(x, training=True)), f0, rtol=1e-3, atol=1e-4 * np.abs(f0).max())
    classifier = n.get_layer("classifier")
    classifier.kernel.assign(np.asarray(classifier.kernel) * 3.0)  # ... but not to the classifier's
    np.testing.assert_allclose(np.asarray(n(x, training=True)), 3.0 * f0, rtol=1e-3, atol=1e-4 * np.abs(f0).max())


def test_vgg_without_normalization_is_homogeneous_in_each_kernel():
    n = deep("vgg11", "model.normalization=none", "model.init_scale=3", shape=(28, 28, 3))
    x = np.random.default_rng(6).normal(size=(5, 28, 28, 3)).astype(np.float32)
    f0 = np.asarray(n(x)).astype(np.float64)
    factors = np.linspace(0.5, 2.0, 9)
    for layer, a in zip(weight_layers(n), factors):
        layer.kernel.assign(np.asarray(layer.kernel) * a)
    np.testing.assert_allclose(np.asarray(n(x)), f0 * np.prod(factors), rtol=1e-3, atol=1e-6 * np.abs(f0).max())


def test_resnet_without_normalization_is_not_homogeneous():
    """The residual sum adds paths of different depth: doubling one block conv does not double f
    (what the models docstring says about rho_product for this net)."""
    n = deep("resnet18", "model.normalization=none", "model.init_scale=4")
    x = np.random.default_rng(7).normal(size=(5, 32, 32, 3)).astype(np.float32)
    f0 = np.asarray(n(x))
    layer = n.get_layer("block4_conv2")
    layer.kernel.assign(np.asarray(layer.kernel) * 2.0)
    f1 = np.asarray(n(x))
    assert np.abs(f1 - 2 * f0).max() > 0.05 * np.abs(f0).max() and np.abs(f1 - f0).max() > 1e-4 * np.abs(f0).max()


def test_deep_archs_refuse_vectors_and_weight_normalized_layers():
    cfg = load_config(None, ["model.arch=resnet18"]).model
    with pytest.raises(ConfigError, match=r"^model.arch: resnet18 needs image inputs, the data has shape \(12,\)$"):
        check_input_shape(cfg, (12,))
    for arch in DEEP:
        for kind in ("lagrange", "weightnorm"):
            with pytest.raises(ConfigError, match=f"^model.normalization: '{kind}' is only for convnet and mlp"):
                load_config(None, [f"model.arch={arch}", f"model.normalization={kind}"])
    with pytest.raises(ConfigError, match="^model.bias: the 'weightnorm' layers are bias-free"):
        load_config(None, ["model.normalization=weightnorm", "model.bias=true"])
    with pytest.raises(ConfigError, match="^model.width: Input should be greater than 0"):
        load_config(None, ["model.width=0"])


@pytest.mark.parametrize("arch", ["convnet", "mlp"])
def test_width_and_bias_apply_to_the_paper_nets_too(arch):
    n = net(f"model.arch={arch}", "model.width=0.5", "model.bias=true", "model.normalization=none")
    assert [layer.kernel.shape[-1] for layer in weight_layers(n)[:-1]] == [16, 32, 64]
    assert sorted(v.path.split("/")[-1] for v in n.trainable_weights).count("bias") == 4
