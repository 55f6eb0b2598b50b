"""The measurement engine (issue 18): Keras-free import, the layer-wise driver against a float64
brute force, ||Σ_W||_F, both alignment definitions, and the two rank-floor defects of the audit."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import linalg

from sqloss_nc.engine import (
    WithinClassCovariance,
    alignment,
    alignment_uncentred,
    measure_collapse,
    nc_metrics,
    pool_representation,
)


def test_engine_and_readers_import_without_any_framework():
    """`import sqloss_nc.engine` (and the old paths, analysis, figures, tensorboard) loads
    neither Keras, TensorFlow nor JAX, in a fresh process."""
    code = (
        "import sys\n"
        "import sqloss_nc.engine, sqloss_nc.nc, sqloss_nc.decomposition, sqloss_nc.spectra, sqloss_nc.measures\n"
        "import sqloss_nc.analysis, sqloss_nc.figures, sqloss_nc.tensorboard\n"
        "from sqloss_nc.nc import nc_metrics\n"
        "assert sqloss_nc.nc is sqloss_nc.engine.nc\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_keras_imported_after_the_package_gets_the_custom_objects():
    """The promise of `import sqloss_nc`: saved models load, whichever order Keras comes in."""
    code = (
        "import sqloss_nc, sys\n"
        "assert 'keras' not in sys.modules\n"
        "import keras\n"
        "print(keras.saving.get_registered_object('sqloss_nc>TorchSGD') is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True"


# --------------------------------------------------------------------------- brute force
def brute(h, y, C, w=None):
    """float64 direct definitions (SPEC §5, §12), N x p in memory."""
    h = np.asarray(h, dtype=np.float64).reshape(len(h), -1)
    mu = np.stack([h[y == c].mean(axis=0) for c in range(C)])
    mg = mu.mean(axis=0)
    d = h - mu[y]
    sw = d.T @ d / len(h)
    m = mu - mg
    sb = m.T @ m / C
    lam, v = np.linalg.eigh(0.5 * (sb + sb.T))
    lam, v = lam[::-1][: C - 1], v[:, ::-1][:, : C - 1]
    nc1 = float(np.trace(sw @ (v / lam) @ v.T) / C)
    dist = ((h[:, None, :] - mu[None]) ** 2).sum(-1)
    return {"nc1": nc1, "sigma_w": sw, "means": mu, "ncc": float(np.mean(dist.argmin(1) == y)), "trace_ratio": np.trace(sw) / np.trace(sb)}


class Tensorish:
    """Stands for a framework tensor: exposes only `__array__` (as CPU torch tensors do)."""

    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


def make_layers(rng, C=4, n=60):
    y = np.repeat(np.arange(C), n)
    rng.shuffle(y)
    conv = rng.normal(size=(C, 3, 3, 2))[y] * 2 + rng.normal(size=(len(y), 3, 3, 2))  # a conv map
    feat = rng.normal(size=(C, 6))[y] * 3 + rng.normal(size=(len(y), 6))
    w = rng.normal(size=(C, 6))
    return y, conv, feat, w


@pytest.mark.parametrize("nc_test", [False, True])
def test_layerwise_driver_against_brute_force(nc_test):
    rng = np.random.default_rng(0)
    C = 4
    y, conv, feat, w = make_layers(rng, C)
    yt, conv_t, feat_t, _ = make_layers(np.random.default_rng(1), C, n=20)
    logits, logits_t = feat @ w.T, feat_t @ w.T

    def source(y, conv, feat, logits, bs=37):
        return lambda: (
            ([Tensorish(conv[i : i + bs]), Tensorish(feat[i : i + bs])], y[i : i + bs], logits[i : i + bs]) for i in range(0, len(y), bs)
        )

    r = measure_collapse(
        source(y, conv, feat, logits),
        C,
        ["conv", "features"],
        test=source(yt, conv_t, feat_t, logits_t, bs=11),
        features="features",
        classifier_weights=w,
        decomposition=False,
        nc_test=nc_test,
    )
    b = brute(feat, y, C)
    bc = brute(conv, y, C)
    assert r.nc["nc1"] == pytest.approx(b["nc1"], rel=1e-10)
    assert r.nc["sigma_w_fro"] == pytest.approx(np.linalg.norm(b["sigma_w"]), rel=1e-12)
    d_t = feat_t - b["means"][yt]  # test samples about the TRAIN means
    assert r.nc["sigma_w_fro_test"] == pytest.approx(np.linalg.norm(d_t.T @ d_t / len(yt)), rel=1e-12)
    rows = {(x["split"], x["layer"], x["measure"]): x["value"] for x in r.layers}
    assert rows[("train", "conv", "ncc_accuracy")] == pytest.approx(bc["ncc"])
    assert rows[("train", "conv", "trace_ratio")] == pytest.approx(bc["trace_ratio"], rel=1e-10)
    test_ncc = np.mean(((conv_t.reshape(len(yt), -1)[:, None] - bc["means"][None]) ** 2).sum(-1).argmin(1) == yt)
    assert rows[("test", "conv", "ncc_accuracy")] == pytest.approx(test_ncc)
    assert (("test", "conv", "trace_ratio") in rows) == nc_test
    if nc_test:
        assert r.nc["test_nc1"] == pytest.approx(brute(feat_t, yt, C)["nc1"], rel=1e-10)
    np.testing.assert_array_equal(r.scores["train"], logits)
    assert len(r.gram) == C * C * (2 if nc_test else 1)


def test_sigma_w_fro_is_the_same_from_the_decomposition_scatter():
    """With the decomposition on, ||Σ_W||_F comes from pass 1's Chan-merged scatter; without it,
    from pass 2 about the final means: the same number."""
    rng = np.random.default_rng(2)
    y, _, feat, w = make_layers(rng)
    src = lambda: (([feat[i : i + 50]], y[i : i + 50], feat[i : i + 50] @ w.T) for i in range(0, len(y), 50))  # noqa: E731
    a = measure_collapse(src, 4, ["f"], features="f", classifier_weights=w, decomposition=True)
    b = measure_collapse(src, 4, ["f"], features="f", classifier_weights=w, decomposition=False)
    assert a.nc["sigma_w_fro"] == pytest.approx(b.nc["sigma_w_fro"], rel=1e-12)
    assert math.isfinite(a.nc["mse_total"]) and math.isnan(b.nc["mse_total"])


def test_within_class_covariance_streams_like_the_direct_sum():
    rng = np.random.default_rng(3)
    means, h, y = rng.normal(size=(3, 5)), rng.normal(size=(40, 5)), np.arange(40) % 3
    cov = WithinClassCovariance(means)
    for i in range(0, 40, 7):
        cov.update(h[i : i + 7], y[i : i + 7])
    d = h - means[y]
    assert cov.frobenius == pytest.approx(np.linalg.norm(d.T @ d / 40), rel=1e-13)


def test_diverged_split_gives_nan_not_an_error():
    y = np.arange(12) % 3
    h = np.ones((12, 4))
    h[3, 1] = np.nan
    r = measure_collapse(lambda: iter([([h], y, None)]), 3, ["f"], features="f")
    assert math.isnan(r.nc["nc1"]) and math.isnan(r.nc["sigma_w_fro"])


def test_pooling():
    x = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4)
    np.testing.assert_allclose(pool_representation(x, "avg"), x.reshape(2, 6, 4).mean(axis=1))
    assert pool_representation(x, "flatten").shape == (2, 24)
    with pytest.raises(ValueError, match="pool"):
        pool_representation(x, "max")


# --------------------------------------------------------------------------- rank floor (audit)
def unit(z):
    return z / np.linalg.norm(z, axis=-1, keepdims=True)


def offset_case(rng, spread, C=3, p=64, n=100, noise=0.5):
    """Class means at distance `spread` from a common offset of norm 10, within-class noise of
    norm ~`noise` x the spread (issue 18's minimal case; the previous floor gave NaN here)."""
    offset = 10.0 * unit(rng.normal(size=p))
    means = offset + spread * unit(rng.normal(size=(C, p)))
    y = np.repeat(np.arange(C), n)
    h = means[y] + noise * spread * rng.normal(size=(len(y), p)) / np.sqrt(p)
    return h, y


def test_nc1_finite_for_well_resolved_means_on_a_large_offset():
    """Audit defect 1: nc1 was NaN ("Σ_B numerically rank-deficient") where float64 gives a
    finite value and float32 features resolve it; now float32 matches the float64 reference."""
    rng = np.random.default_rng(18)
    h, y = offset_case(rng, 1e-4)
    reference = brute(h, y, 3)["nc1"]
    h32 = h.astype(np.float32)
    with np.errstate(all="ignore"):
        got = nc_metrics(h32, y, num_classes=3, batch_size=64)["nc1"]
    assert math.isfinite(got)
    assert got == pytest.approx(brute(h32, y, 3)["nc1"], rel=1e-9)  # the same float32 data
    assert got == pytest.approx(reference, rel=1e-3)  # and float32 resolves the float64 value


@pytest.mark.parametrize("spread", [1e-4, 2e-4, 1e-3])
def test_alignment_keeps_real_directions_on_a_large_offset(spread):
    """Audit defect 2: alignment dropped real class-mean directions (1.0 where the SPEC value of
    the same float32 means is 0.5; NaN at 1e-4). SPEC value: mean cosine of the principal angles
    between the C-1 centred means and the top-C right singular vectors of W (scipy)."""
    rng = np.random.default_rng(19)
    C, p = 3, 16
    offset = 10.0 * unit(rng.normal(size=p))
    means = (offset + spread * unit(rng.normal(size=(C, p)))).astype(np.float32)  # the previous floor: NaN
    kernel = rng.normal(size=(p, 5))
    m = means.astype(np.float64)
    m = (m - m.mean(axis=0)).T
    _, _, vt = np.linalg.svd(kernel.T, full_matrices=False)
    span = np.linalg.svd(m, full_matrices=False)[0][:, : C - 1]  # the C-1 centred directions
    want = np.mean(np.cos(linalg.subspace_angles(span, vt[:C].T)))
    assert alignment(means, kernel) == pytest.approx(want, rel=1e-6)


def test_coinciding_means_stay_nan_after_float32_rounding():
    """The floor still rejects means that coincide up to float32 rounding of the samples."""
    rng = np.random.default_rng(20)
    C, p = 3, 8
    means = rng.normal(size=(C, p)) + 3.0
    means[1] = means[0]
    y = np.arange(600) % C
    e = 0.2 * rng.normal(size=(600, p))
    for c in range(C):
        e[y == c] -= e[y == c].mean(axis=0)
    h = (means[y] + e).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="rank-deficient"):
        assert math.isnan(nc_metrics(h, y, num_classes=C)["nc1"])
    assert alignment(means.astype(np.float32), rng.normal(size=(p, 4))) <= 1.0


def test_alignment_uncentred_as_published():
    """Intermediate_Neural_Collapse's definition: uncentred means (C directions), top-C right
    singular vectors of W, sum of the C principal cosines / C (scipy, independently)."""
    rng = np.random.default_rng(21)
    C, p = 4, 12
    means, kernel = rng.normal(size=(C, p)) + 1.0, rng.normal(size=(p, 7))
    _, _, vt = np.linalg.svd(kernel.T, full_matrices=False)
    want = np.sum(np.cos(linalg.subspace_angles(means.T, vt[:C].T))) / C
    assert alignment_uncentred(means, kernel) == pytest.approx(want, rel=1e-10)
    # The two definitions differ (the global-mean direction is in one span, not the other).
    assert abs(alignment_uncentred(means, kernel) - alignment(means, kernel)) > 1e-3
    assert math.isnan(alignment_uncentred(means, rng.normal(size=(3, 3, p, 4))))


def test_the_library_import_and_load_model_are_quiet(tmp_path):
    """`import sqloss_nc` prints nothing, and loading a model through it hides the backend's
    C++ import lines (issue 20: they were printed twice), as the CLI does."""
    code = (
        "import keras, sqloss_nc\n"
        "net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name='classifier')])\n"
        f"net.save({str(tmp_path / 'm.keras')!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    load = f"import sqloss_nc\nprint(sqloss_nc.load_model({str(tmp_path / 'm.keras')!r}).name)\n"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell: the package decides
    out = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr[-2000:]


@pytest.mark.parametrize("budget", [0, 10**9, 5_000])
def test_the_second_pass_replays_the_first_when_it_fits(monkeypatch, budget):
    """`Replay`: within its budget the source (a network's inference pass) is called once for
    both train passes and once for the test split; past it (5,000 bytes: a few batches), or with
    none, every pass calls it again. The measures are the same either way, bit for bit."""
    from sqloss_nc.engine import collapse

    rng = np.random.default_rng(0)
    C = 4
    y, conv, feat, w = make_layers(rng, C)
    calls = {"train": 0, "test": 0}

    def source(split, bs=37):
        def batches():
            calls[split] += 1
            # Fresh arrays per call, as a network's outputs are.
            for i in range(0, len(y), bs):
                yield [conv[i : i + bs].copy(), feat[i : i + bs].copy()], y[i : i + bs], (feat[i : i + bs] @ w.T)

        return batches

    def measure():
        return measure_collapse(source("train"), C, ["conv", "features"], test=source("test"), features="features", classifier_weights=w, nc_test=True)

    monkeypatch.setattr(collapse, "REPLAY_BUDGET_BYTES", 0)
    streamed = measure()
    assert calls == {"train": 2, "test": 2}
    calls.update(train=0, test=0)
    monkeypatch.setattr(collapse, "REPLAY_BUDGET_BYTES", budget)
    r = measure()
    assert calls == ({"train": 1, "test": 1} if budget == 10**9 else {"train": 2, "test": 2})
    assert r.nc == streamed.nc and r.layers == streamed.layers and r.gram == streamed.gram
    np.testing.assert_array_equal(r.scores["train"], streamed.scores["train"])


def test_a_replay_left_half_way_streams_again():
    """A first pass that was not read to its end is not kept (its batches would be missing)."""
    from sqloss_nc.engine.collapse import Replay

    calls = []

    def source():
        calls.append(1)
        for i in range(3):
            yield [np.full((2, 2), float(i))], np.array([0, 1]), None

    r = Replay(source)
    next(r())  # abandoned after one batch
    assert [float(b[0][0][0, 0]) for b in r()] == [0.0, 1.0, 2.0] and len(calls) == 2
    assert [float(b[0][0][0, 0]) for b in r()] == [0.0, 1.0, 2.0] and len(calls) == 2  # kept now


def test_a_measurement_runs_on_one_blas_thread_and_wide_algebra_on_all():
    """`threads.measuring` sets numpy's BLAS to one thread and gives the process's count back
    after; `threads.large` lifts it for a p x p problem from LARGE_P on, not below."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from sqloss_nc.engine import threads

    ctl = threadpoolctl.ThreadpoolController()
    if not ctl.select(user_api="blas").lib_controllers:
        pytest.skip("no BLAS library that threadpoolctl controls")

    def blas():
        return max(lib["num_threads"] for lib in ctl.select(user_api="blas").info())

    with ctl.limit(limits=2, user_api="blas"):
        if blas() != 2:
            pytest.skip("this BLAS cannot run two threads here")
        with threads.measuring():
            assert blas() == 1
            with threads.large(threads.LARGE_P):
                assert blas() == 2
            with threads.large(threads.LARGE_P - 1):
                assert blas() == 1
            with threads.measuring():  # nested: joins the outer block
                assert blas() == 1
            assert blas() == 1
        assert blas() == 2
        with threads.large(10 * threads.LARGE_P):  # outside a measurement: unchanged
            assert blas() == 2
