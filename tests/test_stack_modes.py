"""How a stack maps its step over its runs (`compute.stack_mode`: vmap | map | unroll | auto) and
its convolutions as im2col matmuls (`backend.jax.patches_conv`): every mode trains each run as it
trains alone (within float32 summation order, as tests/test_stacking.py), `auto` picks one mode
per stack by timing and records it, and `sqnc bench` times the modes as arms of their own."""

import json

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from conftest import SIXTEEN_STEP_CONVNET, assert_runs_equal

jax_only = pytest.mark.skipif(keras.backend.backend() != "jax", reason="stacked runs are a JAX-backend feature")

# conftest's 16-step convnet (a partial last batch: a second compiled shape), 2 epochs, BatchNorm,
# two runs (seeds) as one stack; no NC epochs (tests/test_stacking.py covers them, and stacks
# whose runs differ in init scale and weight decay).
BASE = [
    *SIXTEEN_STEP_CONVNET,
    "model.normalization=batchnorm",
    "optim.epochs=2",
    "track.nc_epochs=[]",
    "track.margin_epochs=[0]",
    "sweep={seed: [0, 1]}",
]
ROOT = "quickstart"


# ----------------------------------------------------------------------------- the im2col convolution


@jax_only
@pytest.mark.parametrize("shape, kernel, strides, padding", [
    ((2, 9, 7, 3), (3, 3), (2, 2), "same"),    # odd sizes: SAME pads one more row/column at the end
    ((2, 8, 8, 3), (3, 3), (2, 2), "same"),    # the paper's convnet layer
    ((2, 8, 8, 4), (3, 3), (1, 1), "same"),    # ResNet/VGG's 3x3 stride 1
    ((2, 9, 9, 3), (1, 1), (2, 2), "valid"),   # ResNet's 1x1 stride-2 shortcut
    ((1, 10, 7, 2), (5, 3), (1, 2), "valid"),  # non-square kernel and strides
])  # fmt: skip
def test_patches_conv_equals_the_xla_convolution_and_its_gradients(shape, kernel, strides, padding):
    import jax

    from sqloss_nc.backend.jax import patches_conv

    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    w = rng.normal(size=(*kernel, shape[-1], 5)).astype(np.float32)

    def xla(x, w):
        return jax.lax.conv_general_dilated(x, w, strides, padding.upper(), dimension_numbers=("NHWC", "HWIO", "NHWC"))

    want = np.asarray(xla(x, w), np.float64)
    got = np.asarray(patches_conv(x, w, strides, padding), np.float64)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # The gradients the stacked step differentiates through (pads and matmuls instead of the
    # convolution's transposes), against a random cotangent.
    r = rng.normal(size=want.shape).astype(np.float32)

    def grads(f):
        return jax.grad(lambda x, w: (f(x, w) * r).sum(), argnums=(0, 1))(x, w)

    for got, want in zip(grads(lambda x, w: patches_conv(x, w, strides, padding)), grads(xla)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)


@jax_only
def test_patched_convolutions_only_inside_the_block_and_only_where_they_apply():
    import jax

    from sqloss_nc.backend.jax import PatchedConvolutions

    x = np.ones((2, 8, 8, 3), np.float32)
    plain = keras.layers.Conv2D(4, 3, strides=2, padding="same")
    dilated = keras.layers.Conv2D(4, 3, dilation_rate=2, padding="same")

    def hlo(layer):
        return jax.jit(lambda x: layer(x)).lower(x).as_text()

    assert "convolution" in hlo(plain)
    with PatchedConvolutions():
        assert "convolution" not in hlo(plain)  # slices, a concatenation and a dot
        assert "convolution" in hlo(dilated)  # not covered: Keras' own
    assert "convolution" in hlo(plain)  # restored after the block


# ----------------------------------------------------------------------------- every mode trains as alone


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    from sqloss_nc.sweep import run_config

    out = tmp_path_factory.mktemp("alone")
    res = run_config(None, [*BASE, "compute.stack=1"], out)
    assert all(r["state"] == "done" for r in res)
    return out / ROOT, res


@jax_only
@pytest.mark.parametrize("mode", ["vmap", "map", pytest.param("unroll", marks=pytest.mark.slow), "auto"])  # unroll: slow to compile
def test_every_stack_mode_writes_the_runs_trained_alone(tmp_path, alone, mode, monkeypatch):
    from sqloss_nc.backend import jax as jax_backend
    from sqloss_nc.stackplan import AUTO_MODES
    from sqloss_nc.sweep import run_config

    traced = []
    real = jax_backend.patches_conv
    monkeypatch.setattr(jax_backend, "patches_conv", lambda *a: traced.append(a[2]) or real(*a))
    ref, ref_res = alone
    res = run_config(None, [*BASE, "compute.stack=2", f"compute.stack_mode={mode}"], tmp_path)
    assert [r["run_id"] for r in res] == [r["run_id"] for r in ref_res] and all(r["state"] == "done" for r in res)
    # The stack's step and inference were traced with the im2col convolutions (stride 2 each).
    assert traced and set(traced) == {(2, 2)}
    modes = set()
    for r in res:
        here = tmp_path / ROOT / r["run_id"]
        assert_runs_equal(ref / r["run_id"], here, csvs=("metrics.csv", "margins.csv"))
        modes.add(json.loads((here / "status.json").read_text())["stack_mode"])
    assert len(modes) == 1 and modes <= ({mode} if mode != "auto" else set(AUTO_MODES))  # one mode per stack


# ----------------------------------------------------------------------------- the choice


def test_auto_times_vmap_and_map_for_convolutions_and_keeps_the_faster():
    from sqloss_nc.stackplan import choose_stack_mode

    built, timed = [], []
    seconds = {"vmap": 3.0, "map": 1.0, "unroll": 9.0}

    def build(mode):
        built.append(mode)
        return f"stack-{mode}"

    def time_step(stack):
        timed.append(stack)
        return seconds[stack[6:]]

    stack, mode, note = choose_stack_mode("auto", True, build, time_step)
    # Each built once, called once to compile, then timed twice, alternating.
    assert (stack, mode, built) == ("stack-map", "map", ["vmap", "map"])
    assert timed == ["stack-vmap", "stack-map"] * 3
    assert note.startswith("stack mode map (auto") and "vmap 3 s" in note and "map 1 s" in note
    seconds["vmap"] = 0.5
    assert choose_stack_mode("auto", True, build, time_step)[:2] == ("stack-vmap", "vmap")
    # The best of the timed calls counts (a call slowed by other work on the machine does not).
    calls = iter([0, 0, 9.0, 2.0, 1.0, 2.0])  # compiling calls, then vmap 9 (disturbed), map 2, vmap 1, map 2
    assert choose_stack_mode("auto", True, build, lambda stack: next(calls))[1] == "vmap"
    # Without convolutions: vmap, nothing timed; an explicit mode: as asked, nothing timed.
    built.clear(), timed.clear()
    assert choose_stack_mode("auto", False, build, time_step)[:2] == ("stack-vmap", "vmap")
    assert choose_stack_mode("unroll", True, build, time_step)[1:] == ("unroll", "stack mode unroll (compute.stack_mode)")
    assert built == ["vmap", "unroll"] and timed == []


def test_auto_skips_a_mode_that_fails_and_raises_when_all_do():
    from sqloss_nc.stackplan import choose_stack_mode

    def time_step(stack):
        if stack == "vmap":  # fails at its compiling call
            raise MemoryError("RESOURCE_EXHAUSTED: out of memory")
        return 2.0

    stack, mode, note = choose_stack_mode("auto", True, lambda m: m, time_step)
    assert (stack, mode) == ("map", "map") and "vmap failed" in note

    def fails(stack):
        raise MemoryError(f"{stack}: out of memory")

    with pytest.raises(MemoryError, match="map: out of memory"):
        choose_stack_mode("auto", True, lambda m: m, fails)


def test_the_config_modes_are_the_backend_modes_and_auto():
    from sqloss_nc.bench.options import stack_modes
    from sqloss_nc.config import ConfigError, load_config

    assert load_config(None, []).compute.stack_mode == "auto"
    assert set(stack_modes()) == {"auto", "vmap", "map", "unroll"}
    if keras.backend.backend() == "jax":
        from sqloss_nc.backend.jax import STACK_MODES

        assert set(stack_modes()) == {"auto", *STACK_MODES}
    with pytest.raises(ConfigError, match="stack_mode"):
        load_config(None, ["compute.stack_mode=fast"])


@jax_only
def test_has_convolutions():
    from sqloss_nc.backend.jax import has_convolutions
    from sqloss_nc.config import load_config
    from sqloss_nc.models import build_network

    def net(arch):
        return build_network(load_config(None, [f"model.arch={arch}", "model.widths=[4,8]"]).model, (8, 8, 3), 2)

    assert has_convolutions(net("convnet")) and not has_convolutions(net("mlp"))


# ----------------------------------------------------------------------------- sqnc bench


def test_bench_names_an_arm_per_k_and_mode():
    from sqloss_nc.bench.arms import ArmSpec, arm_specs
    from sqloss_nc.bench.options import BenchError, BenchOptions

    opts = BenchOptions(backends=("jax",), torch=False, stack=(4, 60), stack_modes=("auto", "map"))
    assert [s.key for s in arm_specs(opts) if s.runs > 1] == ["jax/stack4", "jax/stack4+map", "jax/stack60", "jax/stack60+map"]
    spec = ArmSpec("jax", "stack60+map")
    assert (spec.runs, spec.stack_mode, ArmSpec("jax", "stack4").stack_mode, ArmSpec("jax", "b").stack_mode) == (60, "map", "auto", None)
    assert spec.label.endswith("K = 60, map")
    with pytest.raises(BenchError, match="--stack-mode: 'fast'"):
        BenchOptions(stack=(4,), stack_modes=("fast",)).check()


def test_bench_cli_refuses_an_unknown_stack_mode_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--stack", "2", "--stack-mode", "auto,turbo", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 2 and "--stack-mode: 'turbo'" in result.output and not (tmp_path / "b.json").exists()


@jax_only
def test_bench_stacked_arm_trains_in_its_mode_and_says_which():
    from sqloss_nc.bench.arms import ArmSpec, bench_config, bench_dataset, build_arm
    from sqloss_nc.bench.options import BenchOptions
    from sqloss_nc.config import load_config

    ds = bench_dataset(16, 4)
    cfg = load_config(None, ["optim.batch_size=8", "model.widths=[4,8]"])
    assert bench_config().model.arch == cfg.model.arch == "convnet"
    for kind, allowed in (("stack2+map", {"map"}), ("stack2", {"vmap", "map"})):
        arm = build_arm(ArmSpec("jax", kind), ds, cfg, BenchOptions(n=16, n_test=4, batch_size=8))
        wall, _ = arm.epoch(0)
        extra = arm.finish(1)
        assert wall > 0 and extra["stack_mode"] in allowed and extra["stack_mode"] in extra["stack_mode_note"]


def test_bench_result_carries_the_mode_a_stacked_arm_chose():
    """`sqnc bench`'s JSON: a stacked `auto` arm's chosen mode and its note reach the arm's entry."""
    from types import SimpleNamespace

    from sqloss_nc.bench.arms import ArmSpec
    from sqloss_nc.bench.options import BenchOptions
    from sqloss_nc.bench.runner import assemble

    specs = [ArmSpec("jax", "b"), ArmSpec("jax", "stack4")]
    times = {s.key: {"wall": [1.0, 2.0], "cpu": [1.0, 2.0]} for s in specs}
    extras = {"jax/stack4": {"stack_mode": "map", "stack_mode_note": "stack mode map (auto: ...)"}}
    ds = SimpleNamespace(y_train=[0, 1], y_test=[0], class_names=["a", "b"])
    flops = {"train_per_epoch": 1e9, "train": 1.0, "inference": 0.3}
    out = assemble(BenchOptions(backends=("jax",), torch=False, stack=(4,)).resolved(), specs, ds, flops, [], times, {}, extras, {})
    assert out["arms"]["jax/stack4"]["stack_mode"] == "map" and "auto" in out["arms"]["jax/stack4"]["stack_mode_note"]
    assert "stack_mode" not in out["arms"]["jax/b"]
