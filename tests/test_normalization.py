"""Lagrange and weight normalization, the finite-step correction, and the other losses."""

import keras
import numpy as np
import pytest
from conftest import float64_backend

from sqloss_nc import measures
from sqloss_nc.config import load_config
from sqloss_nc.data import load_dataset
from sqloss_nc.losses import np_loss
from sqloss_nc.models import build_network, weight_layers
from sqloss_nc.normalization import decayed_variables, effective_kernel
from sqloss_nc.optimizers import TorchSGD
from sqloss_nc.batches import array_batches, steps_per_epoch
from sqloss_nc.training import SquareLossTrainer


def net(*overrides, shape=(6, 6, 3), classes=2, seed=0):
    return build_network(load_config(None, list(overrides)).model, shape, classes, seed=seed)


def x_batch(n=16, shape=(6, 6, 3), seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


@pytest.mark.parametrize("arch", ["mlp", "convnet"])
@pytest.mark.parametrize("mode", ["layer", "unit"])
def test_lagrange_steps_stay_on_the_sphere_and_move_tangentially(arch, mode):
    n = net(
        f"model.arch={arch}",
        "model.widths=[8,8]" if arch == "mlp" else "model.widths=[4,4]",
        "model.normalization=lagrange",
        f"model.lagrange_mode={mode}",
        "model.init_scale=1.0",
    )
    trainer = SquareLossTrainer(n, weight_decay=0.01, decayed=decayed_variables(n, "lagrange"))
    opt = TorchSGD(learning_rate=0.5, momentum=0.9)
    trainer.compile(optimizer=opt)
    hidden = [layer for layer in weight_layers(n) if layer.name != "classifier"]

    def axes(w):
        return tuple(range(w.ndim - 1)) if mode == "unit" else None

    x, y = x_batch(), (np.arange(16) % 2).astype(np.int32)
    for step in range(5):
        before = {layer.name: np.asarray(layer.kernel, dtype=np.float64) for layer in hidden}
        trainer.train_on_batch(x, y)
        for layer in hidden:
            # The pre-renormalization update is -lr * velocity (momentum included).
            delta = -0.5 * np.asarray(opt.velocities[opt._get_variable_index(layer.kernel)], dtype=np.float64)
            v_old = before[layer.name]
            radial = np.sum(v_old * delta, axis=axes(v_old))
            assert np.linalg.norm(delta) > 1e-4  # a real step, not rounding noise
            assert np.all(np.abs(radial) <= 1e-6 * np.linalg.norm(delta)), (step, layer.name)
            v_new = np.asarray(layer.kernel, dtype=np.float64)
            np.testing.assert_allclose(np.sqrt(np.sum(v_new**2, axis=axes(v_new))), 1.0, atol=1e-6)
    # Hidden kernels are not decayed under LN; the classifier is.
    assert [v.path for v in trainer.decayed] == [n.get_layer("classifier").kernel.path]


def test_lagrange_init_and_scale_invariance():
    n = net("model.arch=mlp", "model.widths=[8,8]", "model.normalization=lagrange", "model.init_scale=0.1")
    norms = [measures.frobenius(np.asarray(effective_kernel(layer))) for layer in weight_layers(n)]
    assert norms[:-1] == pytest.approx([1.0, 1.0], rel=1e-6) and norms[-1] == pytest.approx(0.1**3, rel=1e-6)
    x = x_batch()
    f0 = np.asarray(n(x))
    n.get_layer("dense2").kernel.assign(np.asarray(n.get_layer("dense2").kernel) * 7.0)
    np.testing.assert_allclose(np.asarray(n(x)), f0, rtol=1e-5, atol=1e-9)


def test_weightnorm_gain_carries_the_scale():
    n = net("model.arch=mlp", "model.widths=[8,8]", "model.normalization=weightnorm", "model.init_scale=0.5")
    layers = weight_layers(n)
    assert [measures.frobenius(np.asarray(effective_kernel(layer))) for layer in layers] == pytest.approx([0.5] * 3, rel=1e-6)
    x = x_batch()
    f0 = np.asarray(n(x), dtype=np.float64)
    n.get_layer("dense1").kernel.assign(np.asarray(n.get_layer("dense1").kernel) * 3.0)  # V: no effect
    np.testing.assert_allclose(np.asarray(n(x)), f0, rtol=1e-5, atol=1e-9)
    n.get_layer("dense1").g.assign(2.0)  # g: scales f (homogeneous ReLU net)
    np.testing.assert_allclose(np.asarray(n(x)), f0 * 4.0, rtol=1e-5, atol=1e-8)
    assert {v.path for v in decayed_variables(n, "weightnorm")} == {v.path for v in n.trainable_variables}


@pytest.mark.parametrize("kind", ["lagrange", "weightnorm"])
@pytest.mark.parametrize("mode", ["layer", "unit"])
def test_normalized_models_round_trip_through_keras_files(tmp_path, kind, mode):
    n = net("model.arch=convnet", "model.widths=[4,4]", f"model.normalization={kind}", f"model.lagrange_mode={mode}")
    x = x_batch()
    n.save(tmp_path / "m.keras")
    m = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(m(x)), np.asarray(n(x)))
    assert type(m.get_layer("conv1")) is type(n.get_layer("conv1"))


def float64_mlp():
    x = keras.Input((3,), dtype="float64")
    h = keras.layers.Dense(
        5, use_bias=False, activation="relu", dtype="float64", kernel_initializer=keras.initializers.RandomNormal(seed=1), name="dense1"
    )(x)
    out = keras.layers.Dense(
        2, use_bias=False, dtype="float64", kernel_initializer=keras.initializers.RandomNormal(seed=2), name="classifier"
    )(h)
    return keras.Model(x, out)


def test_finite_step_gradient_is_grad_plus_half_eta_hessian_grad_and_matches_finite_differences():
    """The double-backprop gradient of J = L_tot + (eta/4)||grad L_tot||^2 against first-order
    quantities only: J's gradient is g + (eta/2) H g, with H g from central differences of the
    plain gradient along g, and J's directional derivative from central differences of J."""
    with float64_backend():
        network = float64_mlp()
        trainer = SquareLossTrainer(network, weight_decay=0.05)
        x = np.random.default_rng(0).normal(size=(12, 3))
        y = (np.arange(12) % 2).astype(np.int32)
        eta = 0.3
        _, _, _, corrected, grad_sq, term = trainer.gradients(x, y, eta=eta)
        variables = network.trainable_variables
        base = [np.array(v) for v in variables]
        assert all(b.dtype == np.float64 for b in base) and corrected[0].dtype == np.float64

        def at(shift, fn):
            for v, b, d in zip(variables, base, shift):
                v.assign(b + d)
            try:
                return fn()
            finally:
                for v, b in zip(variables, base):
                    v.assign(b)

        def plain():
            _, _, objective, grads, g_sq, _ = trainer.gradients(x, y)
            return objective, grads, g_sq

        _, g, g_sq = plain()
        eps = 1e-5
        plus = at([eps * gi for gi in g], plain)[1]
        minus = at([-eps * gi for gi in g], plain)[1]
        for c, gi, p, m in zip(corrected, g, plus, minus):
            hg = (p - m) / (2 * eps)
            np.testing.assert_allclose(c, gi + 0.5 * eta * hg, rtol=1e-7, atol=1e-10)
        assert grad_sq == pytest.approx(g_sq, rel=1e-12) and term == pytest.approx(0.25 * eta * g_sq, rel=1e-12)

        def J():
            objective, _, g2 = plain()
            return objective + 0.25 * eta * g2

        rng = np.random.default_rng(3)
        direction = [rng.normal(size=b.shape) for b in base]
        eps = 1e-6
        fd = (at([eps * d for d in direction], J) - at([-eps * d for d in direction], J)) / (2 * eps)
        analytic = sum(float(np.sum(c * d)) for c, d in zip(corrected, direction))
        assert fd == pytest.approx(analytic, rel=1e-6)


def test_lagrange_equilibrium_rho_matches_mu_over_m_plus_lambda_prime(tmp_path):
    """Scalar head, LN MLP, separable data, full-batch GD with weight decay on the classifier: at
    the equilibrium of the radial direction, rho = mu / (M + lambda/2) exactly (the toy model's
    Eq. 11 with the project's normalization: d/drho [mean (rho m - 1)^2 + lambda/2 rho^2] = 0)."""
    cfg = load_config(
        None,
        [
            "data.source=synthetic",
            "data.synthetic.shape=[10]",
            "data.synthetic.separation=6",
            "data.synthetic.noise=0.3",
            "data.train_per_class=40",
            "data.test_per_class=10",
            "model.arch=mlp",
            "model.widths=[16]",
            "model.normalization=lagrange",
            "model.output=scalar",
            "model.init_scale=0.5",
            "data.input_norm=unit",
        ],
    )
    ds = load_dataset(cfg)
    network = build_network(cfg.model, ds.x_train.shape[1:], 2, seed=0)
    lam = 0.05
    trainer = SquareLossTrainer(network, weight_decay=lam, decayed=decayed_variables(network, "lagrange"), output="scalar")
    trainer.compile(optimizer=TorchSGD(learning_rate=0.05, momentum=0.9))
    n = len(ds.y_train)
    trainer.fit(array_batches(ds.x_train, ds.y_train, n, 0, 1, 1500), epochs=1500, steps_per_epoch=steps_per_epoch(n, n), verbose=0)
    f = np.asarray(network(ds.x_train), dtype=np.float64)
    rho = measures.frobenius(np.asarray(network.get_layer("classifier").kernel))
    mbar = measures.margins(f, ds.y_train) / rho
    mu, M = mbar.mean(), np.mean(mbar**2)
    assert np_loss("square", "scalar", f, ds.y_train) < 0.5  # it learned something
    assert rho == pytest.approx(mu / (M + lam / 2), rel=0.02)


def test_cross_entropy_and_exponential_losses_by_hand():
    f = np.array([[2.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 0])
    ce = -(np.log(np.exp(2) / (np.exp(2) + 1)) + np.log(1 / (1 + np.e))) / 2
    assert np_loss("cross_entropy", "onehot", f, y) == pytest.approx(ce, rel=1e-12)
    s = np.array([[0.5], [-2.0]])
    ys = np.array([1, 0])  # y = +1, -1
    assert np_loss("exponential", "scalar", s, ys) == pytest.approx((np.exp(-0.5) + np.exp(-2.0)) / 2, rel=1e-12)
    assert np_loss("square", "scalar", s, ys) == pytest.approx(((0.5 - 1) ** 2 + (-2 + 1) ** 2) / 2, rel=1e-12)
    from sqloss_nc.losses import keras_loss

    with float64_backend():
        for kind, out, ff, yy in (("cross_entropy", "onehot", f, y), ("exponential", "scalar", s, ys), ("square", "scalar", s, ys)):
            value = keras.ops.convert_to_numpy(keras_loss(kind, out)(keras.ops.convert_to_tensor(yy), keras.ops.convert_to_tensor(ff)))
            assert float(value) == pytest.approx(np_loss(kind, out, ff, yy), rel=1e-12)


def test_rescaled_square_loss_by_brute_force_and_equal_to_square_at_k_m_1():
    from sqloss_nc.losses import keras_loss

    rng = np.random.default_rng(5)
    f, y = rng.normal(size=(7, 4)), rng.integers(0, 4, size=7)
    k, M = 2.5, 3.0
    brute = np.mean([(k * (f[n, y[n]] - M) ** 2 + sum(f[n, c] ** 2 for c in range(4) if c != y[n])) / 4 for n in range(7)])
    assert np_loss("square_rescaled", "onehot", f, y, k=k, M=M) == pytest.approx(brute, rel=1e-12)
    assert np_loss("square_rescaled", "onehot", f, y) == pytest.approx(np_loss("square", "onehot", f, y), rel=1e-15)
    with float64_backend():
        for kk, MM in ((k, M), (1.0, 1.0)):
            value = keras.ops.convert_to_numpy(keras_loss("square_rescaled", "onehot", k=kk, M=MM)(y, keras.ops.convert_to_tensor(f)))
            assert float(value) == pytest.approx(np_loss("square_rescaled", "onehot", f, y, k=kk, M=MM), rel=1e-12)
        square = keras.ops.convert_to_numpy(keras_loss("square", "onehot")(y, keras.ops.convert_to_tensor(f)))
        assert float(square) == pytest.approx(np_loss("square", "onehot", f, y), rel=1e-12)


@pytest.mark.parametrize(
    "over",
    [
        ["model.normalization=lagrange"],
        ["model.normalization=weightnorm", "loss.finite_step_correction=true"],
        ["loss.kind=cross_entropy"],
        ["model.output=scalar", "loss.kind=exponential"],
    ],
)
def test_every_variant_runs_end_to_end(tmp_path, synthetic_overrides, over):
    from sqloss_nc.experiment import train_and_evaluate

    res = train_and_evaluate(load_config(None, [*synthetic_overrides, *over, "track.nc_epochs=[0,3]"]), tmp_path / "run")
    assert res["state"] == "done"
    import pandas as pd

    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert m["epoch"].tolist() == [0, 1, 2, 3] and m["train_loss"].notna().all()
    if "loss.finite_step_correction=true" in over:
        assert (m["fsc_term"].iloc[1:] > 0).all()
    nc = pd.read_csv(tmp_path / "run" / "nc.csv")
    assert nc["nc1"].notna().all()


@pytest.mark.parametrize("arch", ["resnet18", "vgg11", "convnet"])
def test_with_standard_layers_every_parameter_is_decayed_as_in_pytorch_sgd(arch):
    """model.bias=true: PyTorch's SGD(weight_decay) decays biases and BatchNorm's gamma/beta too."""
    extra = ["model.width=0.125"] if arch != "convnet" else ["model.widths=[4,4]"]
    n = net(f"model.arch={arch}", "model.normalization=batchnorm", "model.bias=true", *extra, shape=(8, 8, 3))
    decayed = {v.path for v in decayed_variables(n, "batchnorm")}
    assert decayed == {v.path for v in n.trainable_variables}
    assert any(p.endswith("gamma") for p in decayed) and any(p.endswith("bias") for p in decayed)
    plain = net(f"model.arch={arch}", "model.normalization=batchnorm", *extra, shape=(8, 8, 3))
    assert {v.path for v in decayed_variables(plain, "batchnorm")} == {layer.kernel.path for layer in weight_layers(plain)}
