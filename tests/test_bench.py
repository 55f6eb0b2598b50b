"""`sqnc bench` and the PyTorch reference: FLOP count, rounds and paired ratios, the arm worker
processes and their protocol, cross-framework equivalence, the CLI."""

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
    from sqloss_nc.bench import paired_ratio, run_rounds

    calls = []
    times = {"a": [9, 2, 2, 2], "b": [9, 1, 2, 4], "c": [9, 3.0, 2.2, 4.4]}

    class Fake:
        def __init__(self, key):
            self.key = key

        def __call__(self, e):
            calls.append((e, self.key))
            return times[self.key][e], 2 * times[self.key][e]

    paired, timed = run_rounds([Fake(k) for k in "abc"], rounds=4, warmup=1)
    assert [[k for e, k in calls if e == r] for r in range(4)] == [list("abc"), list("bca"), list("cab"), list("abc")]
    assert timed["b"] == {"wall": [1, 2, 4], "cpu": [2, 4, 8]}  # the warm-up round is not kept
    assert paired == [{"a": 2, "b": 1, "c": 3.0}, {"a": 2, "b": 2, "c": 2.2}, {"a": 2, "b": 4, "c": 4.4}]
    # Per-round c/b = 3.0, 1.1, 1.1 -> median 1.1; the ratio of the medians (3.0 / 2) would say 1.5.
    r = paired_ratio(paired, "c", "b")
    assert (r["median"], r["min"], r["max"], r["n"]) == (pytest.approx(1.1), pytest.approx(1.1), pytest.approx(3.0), 3)


def _fake_arm(framework, kind, runs, wall, cpu):
    from sqloss_nc.bench.timing import spread

    med = float(np.median(wall))
    return {
        "framework": framework,
        "kind": kind,
        "runs": runs,
        "epoch_s": spread(wall),
        "cpu_s": spread(cpu),
        "per_run_epoch_s": med / runs,
        "run_epochs_per_s": runs / med,
    }


def test_ratios_are_per_run_and_paired_and_the_stacked_sweep_table():
    from sqloss_nc.bench.runner import ratio_pairs, ratios, stacking_table, targets

    arms = {
        "jax/b": _fake_arm("jax", "b", 1, [2.0, 4.0, 3.0], [1.0, 1.0, 1.0]),
        "jax/c": _fake_arm("jax", "c", 1, [2.4, 4.0, 3.9], [1.5, 1.5, 1.5]),
        "jax/stack4": _fake_arm("jax", "stack4", 4, [4.0, 8.0, 4.8], [2.0, 2.0, 2.0]),
        "torch/b": _fake_arm("torch", "b", 1, [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]),
    }
    arms["jax/b"]["fraction_of_matmul"] = 0.5
    rounds = [
        {"jax/b": 2.0, "jax/c": 2.4, "jax/stack4": 4.0, "torch/b": 1.0},
        {"jax/b": 4.0, "jax/c": 4.0, "jax/stack4": 8.0, "torch/b": 2.0},
        {"jax/b": 3.0, "jax/c": 3.9, "jax/stack4": 4.8, "torch/b": 3.0},
    ]
    assert ratio_pairs(arms) == [("jax/c", "jax/b"), ("jax/stack4", "jax/b"), ("jax/b", "torch/b"), ("jax/c", "torch/b")]
    r = ratios({"arms": arms, "rounds": rounds})
    # c/b per round: 1.2, 1.0, 1.3 -> median 1.2, min 1.0, max 1.3.
    assert (r["jax/c / jax/b"]["median"], r["jax/c / jax/b"]["min"], r["jax/c / jax/b"]["max"]) == pytest.approx((1.2, 1.0, 1.3))
    # stack4 per run: 1.0, 2.0, 1.2 against b 2.0, 4.0, 3.0 -> 0.5, 0.5, 0.4: median 0.5.
    assert r["jax/stack4 / jax/b"]["median"] == pytest.approx(0.5) and r["jax/stack4 / jax/b"]["min"] == pytest.approx(0.4)
    # CPU: ratio of the medians of per-run CPU seconds, 0.5 / 1.0.
    assert r["jax/stack4 / jax/b"]["cpu"] == pytest.approx(0.5)
    assert r["jax/b / torch/b"]["median"] == pytest.approx(2.0)  # 2.0, 2.0, 1.0
    table = stacking_table(arms)["jax"]
    assert [row["k"] for row in table] == [1, 4]
    # K = 4: median epoch 4.8 s = 1.2 s per run-epoch, 0.833 run-epochs/s, 3.0 / 1.2 = 2.5x per run.
    assert table[1]["per_run_epoch_s"] == pytest.approx(1.2) and table[1]["run_epochs_per_s"] == pytest.approx(4 / 4.8)
    assert table[1]["speedup_per_run"] == pytest.approx(2.5)
    alone = {"torch/b": {"in_bench_over_alone": 1.2}}
    t = {x["name"]: x for x in targets({"arms": arms, "ratios": r, "alone": alone})}
    # c/torch per round: 2.4, 2.0, 1.3 -> 2.0.
    assert t["jax/c / jax/b"]["pass"] is False and t["jax/a / jax/b"]["value"] is None
    assert t["jax/c / torch/b"]["value"] == pytest.approx(2.0) and t["jax/b rate / matmul"]["pass"] is False
    assert t["torch/b bench / alone"]["pass"] is False  # 1.2 > 1.15


def test_arm_specs_and_keys():
    from sqloss_nc.bench import ArmSpec, BenchOptions, arm_specs

    opts = BenchOptions(backends=("tensorflow", "jax"), torch=True, variants=("xla",), stack=(2, 8)).resolved()
    assert [s.key for s in arm_specs(opts)] == [
        "tensorflow/a", "tensorflow/b", "tensorflow/c", "tensorflow/b+xla", "jax/a", "jax/b", "jax/c",
        "torch/b", "torch/c", "jax/stack2", "jax/stack8",
    ]  # fmt: skip
    assert ArmSpec("jax", "stack8").runs == 8 and ArmSpec("jax", "b").runs == 1
    assert ArmSpec("tensorflow", "b+xla+epoch").variant == {"jit_compile": True, "steps_per_execution": "epoch"}
    assert ArmSpec("torch", "c").label == "PyTorch + tracking"


def _run_python(code: str, env_extra: dict | None = None) -> str:
    import os
    import subprocess
    import sys

    env = {**os.environ, **(env_extra or {})}
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_the_bench_parent_imports_no_framework():
    # What `sqnc bench`'s process holds after importing every parent-side module of the bench.
    code = (
        "import sys, json; from cli.bench import _bench_package; b = _bench_package(); "
        "import sqloss_nc.bench.runner, sqloss_nc.bench.report, sqloss_nc.data, sqloss_nc.config; "
        "b.bench_dataset(64, 16); print(json.dumps([m for m in ('tensorflow', 'jax', 'torch', 'keras') if m in sys.modules]))"
    )
    assert json.loads(_run_python(code)) == []


def test_torch_reference_imports_no_keras():
    pytest.importorskip("torch")
    code = (
        "import sys, json; from cli.bench import _bench_package; _bench_package(); "
        "import sqloss_nc.bench.torch_reference, sqloss_nc.bench.arms; "
        "print(json.dumps([m for m in ('tensorflow', 'jax', 'keras') if m in sys.modules]))"
    )
    assert json.loads(_run_python(code)) == []


def _worker_framework() -> str:
    try:
        import torch  # noqa: F401

        return "torch"  # the quickest process to start
    except ImportError:
        import keras

        return keras.backend.backend()


def test_worker_protocol_epochs_errors_finish_and_quit(tmp_path):
    from sqloss_nc.bench import ArmSpec, BenchError, BenchOptions, bench_dataset
    from sqloss_nc.bench.arms import save_dataset
    from sqloss_nc.bench.runner import WorkerProcess

    framework = _worker_framework()
    opts = BenchOptions(n=64, n_test=16, batch_size=32, matmul_size=32, backends=(), torch=False)
    data = save_dataset(bench_dataset(64, 16), tmp_path / "data.npz")
    w = WorkerProcess(ArmSpec(framework, "b"), opts, data, tmp_path)
    try:
        info = w.ready()
        assert info["framework"] == framework and info["pid"] != __import__("os").getpid()
        walls = [w(e) for e in range(2)]
        assert all(wall > 0 and cpu > 0 for wall, cpu in walls)
        with pytest.raises(RuntimeError, match="unknown command 'dance'"):
            w._send({"cmd": "dance"})
        assert w(2)[0] > 0  # an error answered, the worker goes on
        extra = w.finish(1)
        assert extra["frameworks_loaded"] == [framework]  # its own framework, nothing else
        assert extra["matmul"]["median"] > 0 and extra["matmul"]["size"] == 32
    finally:
        w.close()
    assert w.proc.returncode == 0
    # A worker whose arm cannot be built answers with the error, and the parent raises it.
    bad = WorkerProcess(ArmSpec(framework, "nonsense"), opts, data, tmp_path)
    with pytest.raises((BenchError, RuntimeError), match="nonsense"):
        bad.ready()
    bad.close()


def test_torch_reference_matches_project_trainer_two_steps():
    torch = pytest.importorskip("torch")
    from keras import ops

    from sqloss_nc.bench import torch_reference as tr
    from sqloss_nc.config import load_config
    from sqloss_nc.losses import np_accuracy, np_loss
    from sqloss_nc.models import build_network, weight_layers
    from sqloss_nc.optimizers import TorchSGD
    from sqloss_nc.training import SquareLossTrainer

    torch.set_num_threads(1)
    cfg = load_config(None, ["model.init_scale=1.0"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32, 32, 3)).astype(np.float32)
    x /= np.linalg.norm(x.reshape(64, -1), axis=1).reshape(-1, 1, 1, 1)
    y = rng.integers(0, 2, 64).astype(np.int32)
    net = build_network(cfg.model, (32, 32, 3), 2, seed=0)
    trainer = SquareLossTrainer(net, weight_decay=0.01)
    trainer.compile(optimizer=TorchSGD(0.01, momentum=0.9))
    tnet = tr.TorchConvNet((32, 64, 128), 3, 2, (32, 32))
    tr.copy_from_keras(tnet, net)

    def kernels():
        return [ops.convert_to_numpy(layer.kernel) for layer in weight_layers(net)]

    keras_init = kernels()
    for a, b in zip(keras_init, tr.torch_to_keras_weights(tnet)):
        np.testing.assert_array_equal(a, b)  # the layout conversion round-trips exactly

    # Two SGD steps on two different minibatches of 32, in training mode (batch statistics); one
    # generator over both epochs, so epoch 2 gets the second batch on either Keras backend.
    batches = ((x[i : i + 32], y[i : i + 32]) for i in (0, 32))
    history = trainer.fit(batches, epochs=2, steps_per_epoch=1, verbose=0, shuffle=False)
    opt = tr.make_optimizer(tnet, lr=0.01, momentum=0.9, weight_decay=0.01)
    xt, yt = tr.to_torch_data(x, y)
    tnet.train()
    torch_losses = [float(tr.train_step(tnet, opt, xt[i : i + 32], yt[i : i + 32], 2)) for i in (0, 32)]
    np.testing.assert_allclose(history.history["batch_loss"], torch_losses, rtol=1e-5)
    for w, w_torch, name in zip(kernels(), tr.torch_to_keras_weights(tnet), [layer.name for layer in weight_layers(net)]):
        assert np.linalg.norm(w - w_torch) / np.linalg.norm(w) < 1e-5, name
    # The weights really moved (momentum and weight decay both acted), so the match means something.
    assert all(np.linalg.norm(a - b) > 1e-3 * np.linalg.norm(a) for a, b in zip(keras_init, kernels()))
    # BatchNorm running means follow the same rule (momentum 0.1 in PyTorch's convention).
    moving = ops.convert_to_numpy(net.get_layer("norm1").moving_mean)
    np.testing.assert_allclose(moving, tnet.norms[0].running_mean.numpy(), rtol=1e-4, atol=1e-7)
    # The reference's Keras-free loss and accuracy are the project's float64 ones.
    f = tr.predict(tnet, xt)
    assert tr._square_loss(f, y) == pytest.approx(np_loss("square", "onehot", f, y), rel=1e-12)
    assert tr._accuracy(f, y) == np_accuracy(f, y)


@pytest.mark.slow  # ~30 s: three fresh Keras processes build and compile on this 2-core machine
def test_bench_cli_tiny_writes_json_and_ratio_rows(tmp_path):
    import keras

    backend = keras.backend.backend()
    out = tmp_path / "bench.json"
    args = ["bench", "--n", "256", "--n-test", "64", "--reps", "1", "--epochs-warmup", "1", "--matmul-size", "64"]
    args += ["--backends", backend, "--no-torch", "--json", str(out)]
    result = runner.invoke(_app(), args, terminal_width=200)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    for key in ("options", "environment", "flops", "arms", "tracking", "ratios", "targets", "rounds"):
        assert key in data
    arms = {f"{backend}/{k}" for k in "abc"}
    assert set(data["arms"]) == arms
    for arm in arms:
        a = data["arms"][arm]
        assert a["epoch_s"]["n"] == 1 and a["epoch_s"]["median"] > 0 and a["gflops"] > 0 and a["matmul"]["median"] > 0
        assert a["environment"]["frameworks_loaded"] == [backend]
    assert data["flops"]["train"] == 15_065_088
    tk = data["tracking"][f"{backend}/c"]
    assert tk["nc_epochs_in_schedule"] == 20 and tk["breakdown"]["measure_nc_s"]["median"] > 0
    assert data["ratios"][f"{backend}/c / {backend}/b"]["median"] > 0
    names = [t["name"] for t in data["targets"]]
    assert names == [f"{backend}/c / {backend}/b", f"{backend}/a / {backend}/b", f"{backend}/c / torch/b", f"{backend}/b rate / matmul"]
    assert all(isinstance(t["pass"], bool) for t in data["targets"] if t["value"] is not None)
    assert f"{backend}/c / {backend}/b" in result.output and ("pass" in result.output or "fail" in result.output)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n", "100"], "--batch-size: 128 must be in 1..100"),
        (["--variants", "turbo"], "--variants: unknown variant 'turbo'"),
        # 10,000 / 128 -> 79 steps per epoch: 8 steps per call would run past the epoch's end.
        (["--variants", "xla+spe8"], "do not divide the 79 steps of an epoch"),
        (["--sizes", "1000,x", "--scaling"], "--sizes: expected comma-separated positive integers"),
        (["--backends", "torch"], "--backends: 'torch' is not a Keras backend"),
        (["--stack", "0"], "--stack: expected comma-separated positive integers"),
        (["--alone", "tensorflow/z"], "--alone: 'tensorflow/z' is not an arm of this bench"),
    ],
)
def test_bench_cli_bad_input_one_line(tmp_path, args, message):
    out = tmp_path / "b.json"
    result = runner.invoke(_app(), ["bench", *args, "--json", str(out)])
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists()


def test_bench_tables_keep_every_number_whole_at_80_columns():
    """Issue 27: at 80 columns (or in a file) every numeric column was cut to "1.5…"."""
    import io

    from rich.console import Console

    from sqloss_nc.bench.report import results_tables

    arms = {}
    for key, label in (("tensorflow/b+xla+epoch", "custom step, XLA, one call per epoch"), ("torch/b", "PyTorch, plain loop")):
        a = _fake_arm(key.split("/")[0], "b", 1, [1.234, 1.456, 11.5], [2.345, 2.5, 2.6])
        a.update(label=label, gflops=123.4, fraction_of_matmul=0.4567, environment={"threads": 2}, page_faults_per_epoch=77000)
        arms[key] = a
    result = {
        "data": {"n_train": 10000, "source": "synthetic"},
        "options": {"batch_size": 128, "reps": 5, "epochs_warmup": 1},
        "arms": arms,
        "ratios": {"tensorflow/b+xla+epoch / torch/b": {"median": 1.3912, "min": 1.2345, "max": 1.5678, "cpu": 1.0123}},
        "targets": [{"name": "tensorflow/b+xla+epoch / torch/b", "what": "the project's step against PyTorch", "value": 1.3912, "op": "<=", "threshold": 1.0, "pass": False}],
        "alone": {"torch/b": {"epoch_s": {"median": 1.2345, "min": 1.1111, "max": 1.3333}, "in_bench_epoch_s": 1.2468, "in_bench_over_alone": 1.0099, "page_faults_per_epoch": 1100000}},
        "plain_torch": {"epoch_s": 1.2401, "rows": [{"arm": "tensorflow/b+xla+epoch", "epoch_s": 1.7234, "over_plain": 1.3897}]},
    }
    text = io.StringIO()
    console = Console(file=text, width=80, color_system=None)
    for table in results_tables(result):
        console.print(table)
    out = text.getvalue()
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    # No "0.687" (run-epochs/s = 1 / 1.456): the arms table shows it no more, only the stacked sweep.
    for number in ("1.456", "1.234–11.5", "2.500", "123.4", "46%", "77k", "1.391", "1.23–1.57", "1.012", "1.111–1.333", "1.010", "1100k", "1.390"):
        assert number in out, number


def _full_result() -> dict:
    """A result with every section (variant, stacked arms, torch, alone, plain PyTorch, floors,
    tracking, profile, scaling), through `runner.assemble` as `run_bench` builds it: medians are
    the given times, min–max 0.98x–1.05x, CPU twice the wall time."""
    from types import SimpleNamespace

    from sqloss_nc.bench import BenchOptions, arm_specs
    from sqloss_nc.bench.runner import assemble

    opts = BenchOptions(
        backends=("tensorflow", "jax"),
        torch=True,
        variants=("xla+epoch",),
        stack=(4, 16),
        stack_modes=("auto", "vmap"),
        alone=("torch/b", "torch/plain"),
        scaling=True,
        profile=True,
    )
    specs = arm_specs(opts)
    median = {
        "tensorflow/a": 1.501, "tensorflow/b": 1.724, "tensorflow/c": 2.1, "tensorflow/b+xla+epoch": 1.612,
        "jax/a": 2.002, "jax/b": 2.215, "jax/c": 2.655, "torch/b": 1.866, "torch/c": 2.311,
        "jax/stack4": 5.432, "jax/stack4+vmap": 6.001, "jax/stack16": 18.04, "jax/stack16+vmap": 19.87,
    }  # fmt: skip
    assert set(median) == {s.key for s in specs}
    ds = SimpleNamespace(y_train=np.zeros(10_000), y_test=np.zeros(2_000), class_names=["automobile", "bird"])
    flops = {"train": 15_065_088, "train_per_epoch": 15_065_088 * 10_000, "inference": 5_021_696, "features": 256}
    times, extras, paired = {}, {}, [{}, {}, {}]
    for key, m in median.items():
        wall = [m, 0.98 * m, 1.05 * m]
        times[key] = {"wall": wall, "cpu": [2 * w for w in wall]}
        for row, w in zip(paired, wall):
            row[key] = w
        extras[key] = {"matmul": {"median": 312.5}, "page_faults": [77_000] * 3, "frameworks_loaded": [key.split("/")[0]]}
        if key.endswith("/c"):
            costs = {"predict_train_s": 0.2345, "predict_test_s": 0.0512, "measure_s": 0.3012, "record_s": 0.3333}
            costs |= {"measure_nc_s": 1.2345, "record_nc_s": 1.3456}
            bd = {k: spread([v] * 3) for k, v in costs.items()}
            extras[key]["tracking"] = {
                "breakdown": bd, "breakdown_cpu": bd, "nc_epochs_in_schedule": 20, "special_epochs_in_schedule": 24,
                "nc_horizon": 1000, "nc_extra_per_measurement_s": 1.0123, "nc_amortized_per_epoch_s": 0.0243,
                "nc_amortized_per_epoch_cpu_s": 0.04, "stats_s": 0.0, "files_s": 0.03,
            }  # fmt: skip
    stages = {"data": 0.0123, "forward": 0.4567, "forward_backward": 1.2345, "train_step": 1.5012}
    extras["tensorflow/b"]["profile"] = {k: spread([v] * 3) for k, v in stages.items()} | {
        "kernels": [
            {"layer": "conv1", "kernel": "forward (Conv2D)", "ms": 0.5123, "gflops": 45.2},
            {"layer": "conv1", "kernel": "weight gradient (Conv2DBackpropFilter)", "ms": 0.9876, "gflops": 23.4},
            {"layer": "norm1+relu1", "kernel": "BatchNorm + ReLU, forward and backward", "ms": 1.2345, "gflops": None},
            {"layer": "conv2", "kernel": "input gradient (Conv2DBackpropInput)", "ms": 12.3456, "gflops": 187.6},
        ]
    }
    extras["tensorflow/b"]["scaling"] = {
        "train": [{"n": n, "epoch_s": spread([1.724e-4 * n] * 3), "us_per_sample": 172.4} for n in (1_000, 10_000, 50_000)],
        "nc": {
            "vs_n": [{"n": n, "p": 2048, "seconds": 1.23e-5 * n, "peak_mb": 0.1234 * n} for n in (1_000, 50_000)],
            "vs_p": [{"n": 10_000, "p": p, "seconds": 0.5, "peak_mb": 1234.5} for p in (256, 4096)],
        },
    }
    infos = {key: {"threads": 2} for key in median}
    alone = {
        "torch/b": {"epoch_s": spread([1.2345, 1.1111, 1.3333]), "cpu_s": spread([2.0] * 3), "page_faults_per_epoch": 1_100_000},
        "torch/plain": {"epoch_s": spread([1.2401, 1.2, 1.3]), "cpu_s": spread([2.0] * 3), "page_faults_per_epoch": 254_000},
    }
    return assemble(opts, specs, ds, flops, paired, times, infos, extras, alone)


def test_every_bench_table_of_a_full_result_is_whole_at_80_columns_in_a_file():
    """Issue 27, every section: printed into a file (80 columns, no terminal) no line is longer
    than 80, nothing ends in "…", and every number, arm key and header is whole on one line."""
    import io

    from rich.console import Console

    from sqloss_nc.bench.report import results_tables

    result = _full_result()
    text = io.StringIO()
    console = Console(width=80, file=text, force_terminal=False)
    for table in results_tables(result):
        console.print(table)
    out = text.getvalue()
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in out
    numbers = [
        "1.724", "1.690–1.810", "3.448",  # tensorflow/b: epoch s, min–max, CPU s
        "18.0", "17.7–18.9", "1.127",  # jax/stack16: epoch, min–max, per-run epoch s
        "0.887", "1.96x",  # jax/stack16: run-epochs/s and per-run speed-up over jax/b
        "87.4", "28%", "77k",  # tensorflow/b: GFLOP/s, % of matmul, page faults
        "1.232", "1.400",  # tensorflow/c / tensorflow/b (2.124 / 1.724), c/b floor by FLOPs
        "1.234", "1.111–1.333", "1.512", "1100k",  # torch/b alone, bench / alone (1.866 / 1.234)
        "1.240", "1.390",  # plain PyTorch alone, tensorflow/b over it
        "0.0243", "1.346",  # tracking: NC amortized, record on an NC epoch
        "1.501", "12.35", "188", "60%", "1.191",  # profile: train_step; kernel ms, GFLOP/s, % of matmul; sum
        "8.620", "6170.0",  # scaling: epoch at N = 50,000, peak MiB
    ]  # fmt: skip
    for number in numbers:
        assert any(number in line for line in lines), number
    for header in ("min–max", "% of matmul", "run-epochs/s", "speed-up", "bench/alone", "faults", "peak MiB"):
        assert any(header in line for line in lines), header
    # Arm keys whole: a key folded over two lines ("torch/plai" + "n") is as hard to read as a cut number.
    keys = set(result["arms"]) | {"torch/plain"}
    for first in (line.split()[0] for line in lines if line.strip()):
        assert first in keys or not any(k.startswith(first) for k in keys), first
