"""`sqnc bench` and the PyTorch reference: FLOP count, cross-framework equivalence, the CLI."""

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from cli.bench import register
from sqloss_nc.bench import BenchError, count_flops, parse_variant, spread

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _main() -> None:
        """test app"""

    register(app)
    return app


def test_flop_count_matches_hand_computation():
    # 7x7x3 input, 'same' stride 2: 7 -> 4 -> 2 (ceil), widths 4, 8, C = 3.
    out = count_flops(widths=(4, 8), input_shape=(7, 7, 3), num_classes=3)
    conv1 = 2 * 4 * 4 * 9 * 3 * 4  # 3,456
    conv2 = 2 * 2 * 2 * 9 * 4 * 8  # 2,304
    dense = 2 * (2 * 2 * 8) * 3  # 192
    assert [layer["forward"] for layer in out["layers"]] == [conv1, conv2, dense]
    assert out["forward"] == conv1 + conv2 + dense == 5952
    # The first layer needs no input gradient: backward = 1x its forward, the others 2x.
    assert out["backward"] == conv1 + 2 * conv2 + 2 * dense == 8448
    assert out["train"] == 14400
    assert out["features"] == 32
    # The paper's convnet on 32x32x3 with C = 2.
    assert count_flops()["train"] == 15_065_088


def test_spread_and_variants():
    s = spread([3.0, 1.0, 2.0, 10.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.5, 1.0, 10.0, 4)
    assert parse_variant("xla+spe4") == {"jit_compile": True, "steps_per_execution": 4}
    assert parse_variant("xla+epoch") == {"jit_compile": True, "steps_per_execution": "epoch"}
    assert parse_variant("spe16") == {"jit_compile": False, "steps_per_execution": 16}
    with pytest.raises(BenchError):
        parse_variant("fast")


def test_rounds_rotate_the_arms_and_wall_ratios_are_paired():
    from sqloss_nc.bench import EpochArm, _ratios, run_rounds

    calls = []
    times = {"a": [9, 2, 2, 2], "b": [9, 1, 2, 4], "c": [9, 3.0, 2.2, 4.4]}

    def epoch(key):
        def run(e):
            calls.append((e, key))
            return times[key][e], 2 * times[key][e]

        return run

    arms = [EpochArm(k, epoch(k)) for k in "abc"]
    paired = run_rounds(arms, rounds=4, warmup=1)
    assert [[k for e, k in calls if e == r] for r in range(4)] == [list("abc"), list("bca"), list("cab"), list("abc")]
    assert arms[1].wall == [1, 2, 4] and arms[1].cpu == [2, 4, 8]  # the warm-up round is not kept
    assert paired == [{"a": 2, "b": 1, "c": 3.0}, {"a": 2, "b": 2, "c": 2.2}, {"a": 2, "b": 4, "c": 4.4}]
    result = {"arms": {arm.key: {"epoch_s": spread(arm.wall), "cpu_s": spread(arm.cpu)} for arm in arms}, "rounds": paired}
    # Per-round c/b = 3.0, 1.1, 1.1 -> median 1.1; the ratio of the medians (3.0 / 2) would say 1.5.
    assert _ratios(result)["c_over_b"] == pytest.approx(1.1)
    assert _ratios(result, "cpu_s")["c_over_b"] == pytest.approx(6.0 / 4.0)


def test_torch_reference_matches_project_trainer_two_steps():
    torch = pytest.importorskip("torch")
    import keras
    import tensorflow as tf

    from sqloss_nc import torch_reference as tr
    from sqloss_nc.config import load_config
    from sqloss_nc.models import build_network, weight_layers
    from sqloss_nc.optimizers import TorchSGD
    from sqloss_nc.training import SquareLossTrainer

    torch.set_num_threads(1)
    cfg = load_config(None, ["model.init_scale=1.0"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32, 32, 3)).astype(np.float32)
    x /= np.linalg.norm(x.reshape(64, -1), axis=1).reshape(-1, 1, 1, 1)
    y = rng.integers(0, 2, 64).astype(np.int32)
    keras.utils.set_random_seed(0)
    net = build_network(cfg.model, (32, 32, 3), 2, seed=0)
    trainer = SquareLossTrainer(net, weight_decay=0.01)
    trainer.compile(optimizer=TorchSGD(0.01, momentum=0.9))
    tnet = tr.TorchConvNet((32, 64, 128), 3, 2, (32, 32))
    tr.copy_from_keras(tnet, net)
    keras_init = [layer.kernel.numpy() for layer in weight_layers(net)]
    for a, b in zip(keras_init, tr.torch_to_keras_weights(tnet)):
        np.testing.assert_array_equal(a, b)  # the layout conversion round-trips exactly

    # Two SGD steps on two different minibatches of 32, in training mode (batch statistics).
    history = trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=2, steps_per_epoch=1, verbose=0, shuffle=False)
    opt = tr.make_optimizer(tnet, lr=0.01, momentum=0.9, weight_decay=0.01)
    xt, yt = tr.to_torch_data(x, y)
    tnet.train()
    torch_losses = [float(tr.train_step(tnet, opt, xt[i : i + 32], yt[i : i + 32], 2)) for i in (0, 32)]
    np.testing.assert_allclose(history.history["batch_loss"], torch_losses, rtol=1e-5)
    for layer, w_torch in zip(weight_layers(net), tr.torch_to_keras_weights(tnet)):
        w = layer.kernel.numpy()
        assert np.linalg.norm(w - w_torch) / np.linalg.norm(w) < 1e-5, layer.name
    # The weights really moved (momentum and weight decay both acted), so the match means something.
    assert all(np.linalg.norm(a - layer.kernel.numpy()) > 1e-3 * np.linalg.norm(a) for a, layer in zip(keras_init, weight_layers(net)))
    # BatchNorm running means follow the same rule (momentum 0.1 in PyTorch's convention).
    np.testing.assert_allclose(net.get_layer("norm1").moving_mean.numpy(), tnet.norms[0].running_mean.numpy(), rtol=1e-4, atol=1e-7)


def test_bench_cli_tiny_writes_json_and_ratio_rows(tmp_path):
    try:
        import torch  # noqa: F401

        with_torch = ["--torch"]
    except ImportError:
        with_torch = []
    out = tmp_path / "bench.json"
    args = ["bench", "--n", "256", "--n-test", "64", "--reps", "1", "--epochs-warmup", "1", "--matmul-size", "256", "--json", str(out)]
    result = runner.invoke(_app(), args + with_torch, terminal_width=200)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    for key in ("options", "environment", "flops", "matmul", "arms", "tracking", "ratios", "targets"):
        assert key in data
    arms = {"a", "b", "c"} | ({"torch", "torch_tracked"} if with_torch else set())
    assert arms <= set(data["arms"])
    for arm in arms:
        e = data["arms"][arm]["epoch_s"]
        assert e["n"] == 1 and e["median"] > 0 and data["arms"][arm]["gflops"] > 0
    assert data["matmul"]["median"] > 0 and data["flops"]["train"] == 15_065_088
    assert data["tracking"]["nc_epochs_in_schedule"] == 20 and data["tracking"]["breakdown"]["measure_nc_s"]["median"] > 0
    assert data["ratios"]["c_over_b"] > 0 and data["ratios"]["a_over_b"] > 0
    names = [t["name"] for t in data["targets"]]
    assert names == ["c / b", "a / b", "c / torch", "(b) rate / matmul"]
    assert all(isinstance(t["pass"], bool) for t in data["targets"] if t["value"] is not None)
    for row in ("c / b", "a / b", "(b) rate / matmul", "c / torch"):
        assert row in result.output
    assert ("pass" in result.output) or ("fail" in result.output)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n", "100"], "--batch-size: 128 must be in 1..100"),
        (["--variants", "turbo"], "--variants: unknown variant 'turbo'"),
        # 10,000 / 128 -> 79 steps per epoch: 8 steps per call would run past the epoch's end.
        (["--variants", "xla+spe8"], "do not divide the 79 steps of an epoch"),
        (["--sizes", "1000,x", "--scaling"], "--sizes: expected comma-separated positive integers"),
    ],
)
def test_bench_cli_bad_input_one_line(tmp_path, args, message):
    out = tmp_path / "b.json"
    result = runner.invoke(_app(), ["bench", *args, "--json", str(out)])
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists()
