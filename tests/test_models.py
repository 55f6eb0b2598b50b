import keras
import numpy as np
import pytest

import sqloss_nc  # noqa: F401  (registers custom objects)
from sqloss_nc import measures
from sqloss_nc.config import load_config
from sqloss_nc.initializers import FrobeniusNormal
from sqloss_nc.models import build_network, feature_extractor, weight_layers


def net(*overrides, shape=(32, 32, 3), classes=2, seed=0):
    return build_network(load_config(None, list(overrides)).model, shape, classes, seed=seed)


@pytest.mark.parametrize("arch", ["convnet", "mlp"])
@pytest.mark.parametrize("scale", [0.01, 1.0, 5.0])
def test_initial_layer_norms_equal_init_scale(arch, scale):
    n = net(f"model.arch={arch}", f"model.init_scale={scale}", "model.normalization=none")
    layers = weight_layers(n)
    assert len(layers) == 4 and layers[-1].name == "classifier"
    for layer in layers:
        assert np.linalg.norm(layer.kernel.numpy().astype(np.float64)) == pytest.approx(scale, rel=1e-6)


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
    assert np.array_equal(a.get_layer("conv1").kernel.numpy(), b.get_layer("conv1").kernel.numpy())
    assert not np.array_equal(a.get_layer("conv1").kernel.numpy(), c.get_layer("conv1").kernel.numpy())


@pytest.mark.parametrize("arch", ["convnet", "mlp"])
def test_homogeneity_without_normalization(arch):
    """ReLU nets without biases: scaling W_k by a_k scales f by prod a_k, and rho follows."""
    n = net(f"model.arch={arch}", "model.normalization=none", "model.init_scale=1.0")
    x = np.random.default_rng(0).normal(size=(7, 32, 32, 3)).astype(np.float32)
    f0 = n(x).numpy().astype(np.float64)
    rho0 = measures.rho_values({layer.name: measures.frobenius(layer.kernel.numpy()) for layer in weight_layers(n)}, "product")["rho"]
    factors = [0.5, 3.0, 2.0, 0.25]
    for layer, a in zip(weight_layers(n), factors):
        layer.kernel.assign(layer.kernel.numpy() * a)
    f1 = n(x).numpy().astype(np.float64)
    np.testing.assert_allclose(f1, f0 * np.prod(factors), rtol=1e-4, atol=1e-7 * np.abs(f0).max())
    rho1 = measures.rho_values({layer.name: measures.frobenius(layer.kernel.numpy()) for layer in weight_layers(n)}, "product")["rho"]
    assert rho1 == pytest.approx(rho0 * np.prod(factors), rel=1e-5)
    # The normalized margins are then scale free.
    y = np.arange(7) % 2
    np.testing.assert_allclose(measures.margins(f1, y) / rho1, measures.margins(f0, y) / rho0, rtol=1e-3, atol=1e-9)


def test_batchnorm_net_is_invariant_to_hidden_scale():
    n = net("model.normalization=batchnorm", "model.init_scale=1.0")
    x = np.random.default_rng(0).normal(size=(16, 32, 32, 3)).astype(np.float32)
    f0 = n(x, training=True).numpy()
    n.get_layer("conv2").kernel.assign(n.get_layer("conv2").kernel.numpy() * 7.0)
    # Exact up to BatchNorm's eps (1e-5 against small batch variances): a 7x change would show.
    np.testing.assert_allclose(n(x, training=True).numpy(), f0, rtol=1e-2, atol=1e-4)


def test_saved_model_round_trips(tmp_path):
    n = net("model.normalization=batchnorm")
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
    n.save(tmp_path / "m.keras")
    m = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(m(x).numpy(), n(x).numpy())
    assert isinstance(m.get_layer("conv1").kernel_initializer, FrobeniusNormal)
    h, f = feature_extractor(m)(x)
    assert h.shape == (4, 2048) and np.allclose(f.numpy(), n(x).numpy())


def test_frobenius_initializer_config_round_trip():
    init = FrobeniusNormal(0.3, seed=5)
    again = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert isinstance(again, FrobeniusNormal)
    np.testing.assert_array_equal(init((4, 5)).numpy(), again((4, 5)).numpy())
