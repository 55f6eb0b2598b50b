"""The bench's PyTorch reference: TensorFlow's 'same' padding without a padding op (issue 19).

The expected outputs come from Keras' own `Conv2D(padding="same")` layers, so the mirrored
construction in `torch_reference` is checked against TensorFlow's padding rule itself, for even,
odd and mixed input sizes and for a kernel/stride that needs the explicit-pad fallback.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sqloss_nc.bench import torch_reference as tr  # noqa: E402


def _keras_convnet(input_shape, widths, kernel, stride, num_classes):
    """Conv2D('same', no bias) -> BN without affine -> ReLU, flatten, Dense(no bias): the
    project's convnet layer for layer, built from plain Keras layers for any kernel and stride."""
    import keras

    layers = [keras.Input(input_shape)]
    for w in widths:
        layers += [
            keras.layers.Conv2D(w, kernel, strides=stride, padding="same", use_bias=False),
            keras.layers.BatchNormalization(center=False, scale=False, momentum=0.9, epsilon=1e-5),
            keras.layers.ReLU(),
        ]
    layers += [keras.layers.Flatten(), keras.layers.Dense(num_classes, use_bias=False)]
    return keras.Sequential(layers)


@pytest.mark.parametrize(
    "hw, kernel, stride, mirrored",
    [
        ((32, 32), 3, 2, True),  # the paper's: TensorFlow pads (0, 1), the net runs mirrored
        ((9, 9), 3, 2, False),  # 9, 5, 3: odd at every layer, symmetric padding, nothing to mirror
        ((14, 9), 3, 2, True),  # even height, odd width
        ((10, 12), 4, 2, True),  # kernel 4 at stride 2: pads (1, 1) here, (1, 2) after a 5-wide layer
        ((8, 8), 4, 1, False),  # stride 1, pads (1, 2): no Conv2d padding gives it, F.pad fallback
    ],
)
def test_same_padding_net_computes_keras_function(hw, kernel, stride, mirrored):
    from keras import ops

    widths, c_in, classes = (4, 6, 5), 3, 3
    model = _keras_convnet((*hw, c_in), widths, kernel, stride, classes)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if getattr(layer, "kernel", None) is not None:
            layer.kernel.assign(rng.standard_normal(tuple(layer.kernel.shape)).astype(np.float32))
    net = tr.TorchConvNet(widths, c_in, classes, hw, kernel=kernel, stride=stride)
    assert net.mirrored is mirrored
    if stride > 1:
        assert all(pad is None for pad in net.pads)  # no explicit padding op in the step
    kernels = [ops.convert_to_numpy(layer.kernel) for layer in model.layers if getattr(layer, "kernel", None) is not None]
    with torch.no_grad():
        for w, value in zip(net.kernels(), tr.keras_to_torch_weights(kernels, net.feature_shape, net.mirrored)):
            w.copy_(torch.from_numpy(value))
    for a, b in zip(kernels, tr.torch_to_keras_weights(net)):
        np.testing.assert_array_equal(a, b)  # the layout conversion round-trips exactly

    x = rng.standard_normal((8, *hw, c_in)).astype(np.float32)
    expected = ops.convert_to_numpy(model(x, training=True))  # batch statistics, both sides
    net.train()
    got = net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).detach().numpy()
    assert np.abs(expected).max() > 1e-2  # not a vanishing function
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_mirroring_matters():
    """The check above can fail: the unmirrored symmetric net (the authors' `Conv2d(padding=1)`)
    given the same Keras weights computes a different function on 32x32 images."""
    from keras import ops

    model = _keras_convnet((32, 32, 3), (4, 6), 3, 2, 2)
    kernels = [ops.convert_to_numpy(layer.kernel) for layer in model.layers if getattr(layer, "kernel", None) is not None]
    net = tr.TorchConvNet((4, 6), 3, 2, (32, 32), padding="symmetric")
    assert not net.mirrored
    with torch.no_grad():
        for w, value in zip(net.kernels(), tr.keras_to_torch_weights(kernels, net.feature_shape)):
            w.copy_(torch.from_numpy(value))
    x = np.random.default_rng(1).standard_normal((8, 32, 32, 3)).astype(np.float32)
    expected = ops.convert_to_numpy(model(x, training=True))
    net.train()
    got = net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).detach().numpy()
    assert np.abs(got - expected).max() > 1e-2 * np.abs(expected).max()


def _plain_script():
    """tools/plain_torch_epoch.py as a module (it is a script, not part of the package)."""
    import importlib.util

    from sqloss_nc.bench.runner import PLAIN_SCRIPT

    spec = importlib.util.spec_from_file_location("plain_torch_epoch", PLAIN_SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_plain_script_trains_the_reference_experiment():
    """The yardstick is the same experiment: the plain script's `nn.Sequential` with
    `Conv2d(padding=1)`, `MSELoss` and `SGD`, and the reference net with symmetric padding, from
    the same weights, take the same two SGD steps (losses and weights), and its initial weights
    have the config's Frobenius norm."""
    from sqloss_nc.bench.arms import bench_config

    torch.set_num_threads(1)
    cfg = bench_config()
    plain = _plain_script()
    net = plain.make_net(2, seed=3)
    weights = [m.weight for m in net if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert [float(w.detach().norm()) for w in weights] == pytest.approx([cfg.model.init_scale] * 4, rel=1e-5)
    ref = tr.TorchConvNet(tuple(cfg.model.widths), 3, 2, (32, 32), padding="symmetric")
    with torch.no_grad():
        for a, b in zip(ref.kernels(), weights):
            a.copy_(b)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((64, 3, 32, 32)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 2, 64))
    opt = torch.optim.SGD(net.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
    ref_opt = tr.make_optimizer(ref, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay)
    net.train()
    ref.train()
    for i in (0, 32):
        opt.zero_grad()
        loss = torch.nn.MSELoss()(net(x[i : i + 32]), torch.nn.functional.one_hot(y[i : i + 32]).float())
        loss.backward()
        opt.step()
        assert float(tr.train_step(ref, ref_opt, x[i : i + 32], y[i : i + 32], 2)) == pytest.approx(loss.item(), rel=1e-6)
    for a, b in zip(ref.kernels(), weights):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


def test_plain_torch_alone_reports_beside_the_arms(tmp_path):
    """`--alone torch/plain` runs the script on the bench's dataset file in a fresh process; the
    result puts the (b) arms beside it, and the target reads torch/b / plain."""
    from sqloss_nc.bench import ArmSpec, BenchOptions
    from sqloss_nc.bench.arms import bench_dataset, save_dataset
    from sqloss_nc.bench.runner import plain_torch_table, run_alone, run_plain_torch, targets

    data = save_dataset(bench_dataset(256, 16), tmp_path / "data.npz")
    opts = BenchOptions(n=256, reps=2, epochs_warmup=0, threads=1)
    out = run_plain_torch(opts, data)
    assert out["epoch_s"]["n"] == 2 and out["epoch_s"]["median"] > 0 and out["environment"]["threads"] == 1
    assert out["page_faults_per_epoch"] >= 0
    arm_alone = run_alone(ArmSpec("torch", "b"), opts, data)
    assert arm_alone["epoch_s"]["n"] == 2 and arm_alone["page_faults_per_epoch"] >= 0

    def arm(kind, framework, median):
        return {"kind": kind, "framework": framework, "epoch_s": {"median": median}}

    arms = {"jax/b": arm("b", "jax", 3.0), "jax/c": arm("c", "jax", 3.3), "torch/b": arm("b", "torch", 2.1)}
    alone = {"torch/plain": {"epoch_s": {"median": 2.0}}, "torch/b": {"epoch_s": {"median": 2.4}, "in_bench_over_alone": 0.875}}
    table = plain_torch_table(arms, alone)
    assert {r["arm"]: r["over_plain"] for r in table["rows"]} == pytest.approx({"jax/b": 1.5, "torch/b": 1.05, "torch/b alone": 1.2})
    t = {x["name"]: x for x in targets({"arms": {}, "ratios": {}, "alone": alone, "plain_torch": table})}
    assert t["torch/b / plain PyTorch"]["value"] == pytest.approx(1.05) and t["torch/b / plain PyTorch"]["pass"] is True
    arms["torch/b"]["epoch_s"]["median"] = 2.3  # 15% slower than plain: fails
    t = {x["name"]: x for x in targets({"arms": {}, "ratios": {}, "alone": alone, "plain_torch": plain_torch_table(arms, alone)})}
    assert t["torch/b / plain PyTorch"]["pass"] is False
    assert plain_torch_table(arms, {"torch/b": alone["torch/b"]}) == {}


def test_alone_plain_without_its_script_is_a_one_line_error(monkeypatch, tmp_path):
    from sqloss_nc.bench import BenchError, BenchOptions, arm_specs
    from sqloss_nc.bench import runner

    monkeypatch.setattr(runner, "PLAIN_SCRIPT", tmp_path / "missing.py")
    opts = BenchOptions(backends=("jax",), torch=True, alone=("torch/plain",)).resolved()
    with pytest.raises(BenchError, match="torch/plain: the plain PyTorch script .* is not here"):
        runner._check_request(opts, arm_specs(opts))
    monkeypatch.setattr(runner, "PLAIN_SCRIPT", runner.Path(runner.__file__).resolve().parents[2] / "tools" / "plain_torch_epoch.py")
    runner._check_request(opts, arm_specs(opts))  # the checkout's script: accepted


def test_page_faults_count_memory_touched_afresh():
    """What the bench reports per epoch: 16 MiB of fresh anonymous memory written page by page
    is 4,096 minor faults of 4 KiB pages (transparent huge pages, where the system gives them
    unasked, would make it fewer: the bound is an eighth of that)."""
    import mmap

    from sqloss_nc.bench.worker import page_faults

    size = 16 << 20
    before = page_faults()
    m = mmap.mmap(-1, size)
    for i in range(0, size, mmap.PAGESIZE):
        m[i] = 1
    touched = page_faults() - before
    m.close()
    assert touched >= size // mmap.PAGESIZE // 8
