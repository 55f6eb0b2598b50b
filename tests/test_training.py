import keras
import numpy as np
import pytest

from sqloss_nc.losses import np_loss
from sqloss_nc.config import load_config
from sqloss_nc.models import build_network
from sqloss_nc.optimizers import EpochStepSchedule, TorchSGD, lr_at_epoch, make_optimizer
from sqloss_nc.batches import array_batches, batch_indices, epoch_order, steps_per_epoch
from sqloss_nc.training import SquareLossTrainer


def identity_classifier(c=2):
    x = keras.Input((c,))
    out = keras.layers.Dense(c, use_bias=False, kernel_initializer="identity", name="classifier")(x)
    return keras.Model(x, out)


def test_loss_and_objective_follow_pytorch_mseloss():
    """Hand-made batch: f = [[.2, -.1], [.5, .7]], y = [0, 1]:
    MSELoss(mean) = ((.8)^2 + .1^2 + .5^2 + .3^2) / 4 = 0.99 / 4 = 0.2475."""
    f = np.array([[0.2, -0.1], [0.5, 0.7]], dtype=np.float32)
    y = np.array([0, 1], dtype=np.int32)
    assert np_loss("square", "onehot", f, y) == pytest.approx(0.2475, rel=1e-7)  # f is float32
    trainer = SquareLossTrainer(identity_classifier(), weight_decay=0.1)
    _, loss, objective, grads, grad_sq, _ = trainer.gradients(f, y)
    assert float(loss) == pytest.approx(0.2475, rel=1e-6)
    # ||I||_F^2 = 2, so lambda/2 * 2 = 0.1.
    assert float(objective) == pytest.approx(0.2475 + 0.1, rel=1e-6)
    # dL/dW for f = x W: x^T (2 (f - Y) / (N C)) + lambda W.
    expected = f.T @ (2 * (f - np.eye(2)[y]) / 4) + 0.1 * np.eye(2)
    np.testing.assert_allclose(grads[0], expected, rtol=1e-5, atol=1e-7)
    assert float(grad_sq) == pytest.approx(np.sum(expected**2), rel=1e-5)


def numpy_mlp_grads(x, y, w1, w2, c):
    """Independent backprop of L = mean((relu(x W1) W2 - Y)^2) over N*C elements."""
    z = x @ w1
    h = np.maximum(z, 0)
    f = h @ w2
    df = 2 * (f - np.eye(c)[y]) / f.size
    g2 = h.T @ df
    dz = (df @ w2.T) * (z > 0)
    g1 = x.T @ dz
    return g1, g2


def test_sgd_steps_match_torch_rule_with_momentum_and_coupled_weight_decay():
    """v = mu v + grad L + lambda W;  W <- W - eta v, over three steps on different batches."""
    cfg = load_config(None, ["model.arch=mlp", "model.widths=[6]", "model.normalization=none", "model.init_scale=1.0"])
    network = build_network(cfg.model, (5,), 3, seed=2)
    lr, mu, wd = 0.05, 0.9, 0.1
    trainer = SquareLossTrainer(network, weight_decay=wd)
    trainer.compile(optimizer=TorchSGD(learning_rate=lr, momentum=mu))
    rng = np.random.default_rng(0)
    w1 = np.asarray(network.get_layer("dense1").kernel, dtype=np.float64)
    w2 = np.asarray(network.get_layer("classifier").kernel, dtype=np.float64)
    v1, v2 = np.zeros_like(w1), np.zeros_like(w2)
    for _ in range(3):
        x = rng.normal(size=(8, 5)).astype(np.float32)
        y = rng.integers(0, 3, size=8).astype(np.int32)
        g1, g2 = numpy_mlp_grads(x.astype(np.float64), y, w1, w2, 3)
        v1 = mu * v1 + g1 + wd * w1
        v2 = mu * v2 + g2 + wd * w2
        w1, w2 = w1 - lr * v1, w2 - lr * v2
        trainer.train_on_batch(x, y)
    np.testing.assert_allclose(np.asarray(network.get_layer("dense1").kernel), w1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(network.get_layer("classifier").kernel), w2, rtol=1e-5, atol=1e-6)


def test_torch_sgd_differs_from_keras_sgd_after_a_learning_rate_change():
    """The reason TorchSGD exists: with a step in lr, Keras' buffer keeps the old lr."""

    def run(opt):
        w = keras.Variable(np.array([1.0], dtype=np.float32))
        for step in range(4):
            opt.apply([keras.ops.ones((1,))], [w])
        return float(np.asarray(w)[0])

    sched = EpochStepSchedule(0.1, [2], 0.1, steps_per_epoch=1)
    torch_w = run(TorchSGD(learning_rate=sched, momentum=0.9))
    # PyTorch by hand: v = 1, 1.9, 2.71, 3.439 ; lr = .1, .1, .01, .01
    assert torch_w == pytest.approx(1 - 0.1 * 1 - 0.1 * 1.9 - 0.01 * 2.71 - 0.01 * 3.439, rel=1e-6)
    keras_w = run(keras.optimizers.SGD(learning_rate=EpochStepSchedule(0.1, [2], 0.1, 1), momentum=0.9))
    assert abs(keras_w - torch_w) > 1e-3


def test_step_schedule_matches_multisteplr_per_epoch():
    cfg = load_config(None, ["optim.schedule=step", "optim.milestones=[3, 5]", "optim.gamma=0.5", "optim.lr=0.1"])
    sched = make_optimizer(cfg.optim, steps_per_epoch=4)._learning_rate
    # torch MultiStepLR([3,5], 0.5), stepped per epoch: epochs(0-based) 0,1,2 -> .1; 3,4 -> .05; 5.. -> .025
    expected = [0.1] * 3 + [0.05] * 2 + [0.025] * 3
    for epoch0, lr in enumerate(expected):
        for j in range(4):
            assert float(sched(epoch0 * 4 + j)) == pytest.approx(lr)
        assert lr_at_epoch(cfg.optim, epoch0 + 1) == pytest.approx(lr)


def test_epoch_order_is_a_function_of_seed_and_epoch():
    a = epoch_order(100, 0, 1)
    assert sorted(a.tolist()) == list(range(100))
    assert np.array_equal(a, epoch_order(100, 0, 1))
    assert not np.array_equal(a, epoch_order(100, 0, 2))
    assert not np.array_equal(a, epoch_order(100, 1, 1))
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    batches = list(array_batches(x, np.arange(10), 4, seed=0, first_epoch=1, last_epoch=2))
    assert [len(b[1]) for b in batches] == [4, 4, 2, 4, 4, 2] == [4, 4, 2] * 2 and steps_per_epoch(10, 4) == 3
    resumed = list(array_batches(x, np.arange(10), 4, seed=0, first_epoch=2, last_epoch=2))
    assert all(np.array_equal(p[1], q[1]) for p, q in zip(batches[3:], resumed))
    # Every epoch is a permutation, split into consecutive batches.
    assert np.array_equal(np.concatenate([b[1] for b in batches[:3]]), epoch_order(10, 0, 1))


def test_fit_consumes_exactly_the_batches_of_the_epoch_order():
    """What the backend's dataset feeds `fit` is the numpy order (checked through the values the
    trainer sees: x = index, so the batches' contents are the indices themselves)."""
    from sqloss_nc import backend

    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    fed = [np.asarray(xb)[:, 0].astype(int) for xb, _ in backend.epoch_dataset(x, np.zeros(10), 4, 3, 1, 2)]
    assert [b.tolist() for b in fed] == [b.tolist() for b in batch_indices(10, 4, 3, 1, 2)]


def test_grad_probe_leaves_batchnorm_statistics_untouched():
    cfg = load_config(None, ["model.arch=mlp", "model.widths=[8]", "model.normalization=batchnorm"])
    network = build_network(cfg.model, (5,), 2, seed=0)
    trainer = SquareLossTrainer(network, weight_decay=0.01)
    before = [np.array(v) for v in network.non_trainable_variables]
    x = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    y = (np.arange(20) % 2).astype(np.int32)
    value = trainer.probe_grad_norm_sq(array_batches(x, y, 8, 0, 1, 1))
    assert value > 0 and np.isfinite(value)
    for a, b in zip(before, network.non_trainable_variables):
        np.testing.assert_array_equal(a, np.asarray(b))
