"""`model.init` (SPEC §12): PyTorch's Conv2d/Linear default and torchvision's ResNet/VGG
initialization, checked against the closed-form statistics of their definitions (torch is not
needed): kaiming-uniform with a = √5 is U(−b, b), b = √(6/((1 + a²)·fan_in)) = 1/√fan_in, with
variance b²/3; kaiming-normal fan-out for ReLU is N(0, 2/fan_out); PyTorch's fans of a conv weight
(out, in, kh, kw) are in·kh·kw and out·kh·kw."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from sqloss_nc.config import ConfigError, expand_sweep, load_config
from sqloss_nc.initializers import KaimingNormalFanOut, TorchDefaultUniform, fans


def torch_uniform_bound(fan_in: int, a: float = math.sqrt(5)) -> float:
    # torch.nn.init.kaiming_uniform_: gain = sqrt(2 / (1 + a^2)), std = gain / sqrt(fan_in), bound = sqrt(3) * std
    return math.sqrt(3.0) * math.sqrt(2.0 / (1 + a * a)) / math.sqrt(fan_in)


def test_fans_follow_pytorch():
    assert fans((3, 3, 16, 32)) == (16 * 9, 32 * 9)  # Conv2d(16, 32, 3): weight (32, 16, 3, 3)
    assert fans((1, 1, 64, 128)) == (64, 128)
    assert fans((512, 10)) == (512, 10)  # Linear(512, 10): weight (10, 512)


@pytest.mark.parametrize("shape", [(3, 3, 16, 32), (512, 10), (1, 1, 64, 128)])
def test_torch_default_uniform_bound_and_variance(shape):
    w = TorchDefaultUniform(seed=3).numpy(shape)
    b = torch_uniform_bound(fans(shape)[0])
    assert b == pytest.approx(1 / math.sqrt(fans(shape)[0]))
    assert np.abs(w).max() <= b and np.abs(w).max() > 0.97 * b  # fills its interval
    n = w.size
    # sample variance of U(-b, b): mean b^2/3, std of the estimate b^2 * sqrt(4/45/n)
    assert w.var() == pytest.approx(b * b / 3, abs=5 * b * b * math.sqrt(4 / 45 / n))
    assert abs(w.mean()) < 5 * b / math.sqrt(3 * n)


def test_torch_default_bias_uses_the_given_fan_in():
    bias = TorchDefaultUniform(seed=1, fan_in=144).numpy((4000,))
    assert np.abs(bias).max() <= 1 / 12 and np.abs(bias).max() > 0.99 / 12


@pytest.mark.parametrize("shape", [(3, 3, 64, 64), (1, 1, 64, 128), (3, 3, 3, 16)])
def test_kaiming_normal_fan_out_variance(shape):
    w = KaimingNormalFanOut(seed=0).numpy(shape)
    var = 2.0 / fans(shape)[1]
    n = w.size
    assert w.var() == pytest.approx(var, abs=5 * var * math.sqrt(2 / n))  # var of a sample variance of N(0, s^2): 2 s^4 / n


def test_seeds_repeat_and_differ():
    a, b, c = (TorchDefaultUniform(seed=s).numpy((8, 8)) for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def _kernels(init: str, **extra):
    from sqloss_nc.models import build_network, weight_layers

    sets = [f"model.init={init}", "model.arch=resnet18", "model.width=0.125", "model.bias=true"] + [f"{k}={v}" for k, v in extra.items()]
    net = build_network(load_config(None, sets).model, (16, 16, 3), 10, seed=0)
    return net, weight_layers(net)


def test_resnet_with_torch_init():
    net, layers = _kernels("torch")
    for layer in layers:
        w = np.asarray(layer.kernel)
        assert np.abs(w).max() <= 1 / math.sqrt(fans(w.shape)[0]) * (1 + 1e-6), layer.name
    cls = net.get_layer("classifier")
    b = np.asarray(cls.bias)
    assert np.abs(b).max() <= 1 / math.sqrt(64) and np.abs(b).max() > 0  # U(±1/√fan_in), fan_in = 64 features
    import keras

    for bn in [l for l in net.layers if isinstance(l, keras.layers.BatchNormalization)]:
        assert np.all(np.asarray(bn.gamma) == 1) and np.all(np.asarray(bn.beta) == 0)


def test_resnet_with_torchvision_init():
    net, layers = _kernels("torchvision")
    convs = [l for l in layers if len(l.kernel.shape) == 4]
    # pooled over every conv: w^2 / (2 / fan_out) has mean 1
    z = np.concatenate([(np.asarray(l.kernel) ** 2 / (2.0 / fans(l.kernel.shape)[1])).ravel() for l in convs])
    assert z.mean() == pytest.approx(1.0, abs=5 * math.sqrt(2 / z.size))
    cls = np.asarray(net.get_layer("classifier").kernel)
    assert np.abs(cls).max() <= 1 / math.sqrt(64)  # the classifier stays a default nn.Linear


def test_frobenius_stays_the_default():
    cfg = load_config(None)
    assert cfg.model.init == "frobenius" and cfg.model.init_scale == 0.01
    assert load_config(None, ["model.init=torch"]).model.init_scale is None
    # a resolved config of a torch-init run validates again (sweep expansion re-reads it)
    runs = expand_sweep(load_config(None, ["model.init=torch", "sweep={seed: [0, 1]}"]))
    assert [r.config.model.init for r in runs] == ["torch", "torch"]


@pytest.mark.parametrize(
    "sets, message",
    [
        (["model.init=torch", "model.init_scale=1"], "model.init_scale: unused with model.init 'torch'"),
        (["model.init=torchvision", "sweep={model.init_scale: [1, 2]}"], "model.init_scale: unused with model.init 'torchvision'"),
        (["model.init=torch", "model.normalization=lagrange"], "model.init: 'torch' is for normalization 'none' or 'batchnorm'"),
    ],
)
def test_init_scale_refused_with_another_init(sets, message):
    with pytest.raises(ConfigError, match=message):
        expand_sweep(load_config(None, sets))
    res = CliRunner().invoke(app, ["run", "--dry-run"] + [x for s in sets for x in ("--set", s)])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
