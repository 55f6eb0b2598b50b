"""A stack's NC epochs measured from device statistics (`backend.jax.StackedCollapse`, issue 19):
no run is written back into its Keras network on an NC epoch, and every collapse column (nc.csv,
nc_layers.csv, class_gram.csv; spectra.csv's kernels) of every stacked run is the one the run
gets measured alone at the same weights by its own Tracker (the float64 engine on its own
network): within 1e-9 relative on the same representations, nc1 within 1e-6 and every column
within float32 rounding of the representations on the lone network's own forward pass, on
epochs whose features are fairly collapsed too. Over the memory budget
(`STACK_COLLAPSE_BYTES`) the stack falls back to writing its runs back. JAX backend."""

import keras
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax", reason="stacked runs are a JAX-backend feature")

NC_FILES = ("nc.csv", "nc_layers.csv", "class_gram.csv", "spectra.csv")
# Three classes (two Σ_B directions), weight decay and seed differing per run, the test split's own
# NC (a second test pass), every epoch an NC epoch; by epoch 2 nc1 is ~1e-3 of its epoch-0 value.
MLP = [
    "data.source=synthetic",
    "data.synthetic.shape=[8,8,3]",
    "data.classes=[0,1,2]",
    "data.train_per_class=40",
    "data.test_per_class=12",
    "model.arch=mlp",
    "model.widths=[16,16]",
    "optim.batch_size=32",
    "optim.epochs=2",
    "optim.lr=0.1",
    "track.nc_epochs=all",
    "track.nc_test=true",
    "track.margin_epochs=[0]",
    "sweep={seed: [0, 1, 2], optim.weight_decay: [0.01]}",
]
# A BatchNorm convnet (conv maps as hidden representations), the rescaled loss with k != 1 (the
# decomposition's per-class scatters), label noise (each run's own labels), a partial last batch.
CONVNET = [
    "data.source=synthetic",
    "data.synthetic.shape=[8,8,3]",
    "data.train_per_class=30",
    "data.test_per_class=10",
    "data.label_noise=0.1",
    "model.arch=convnet",
    "model.widths=[4,8]",
    "model.normalization=batchnorm",
    "loss.kind=square_rescaled",
    "loss.k=2.0",
    "loss.M=3.0",
    "optim.batch_size=16",
    "optim.epochs=1",
    "optim.lr=0.05",
    "track.nc_epochs=all",
    "sweep={seed: [0, 1], optim.weight_decay: [0.01, 0]}",
]


def _rows(path, csv):
    """A run file's numeric values by (row key, column): nc_layers/class_gram/spectra rows keyed
    by their non-value columns, so that row order does not matter."""
    d = pd.read_csv(path / csv)
    if csv == "nc.csv":
        return {(int(e), c): float(v) for e, row in zip(d["epoch"], d.to_dict("records")) for c, v in row.items() if c != "epoch"}
    keys = [c for c in d.columns if c not in ("value", "singular_value", "rank", "stable_rank")]
    values = [c for c in d.columns if c not in keys]
    return {(tuple(r[k] for k in keys), c): float(r[c]) for r in d.to_dict("records") for c in values}


def _worst(a, b, epochs=None) -> dict:
    """Per file: the largest relative difference of its values (`_relative`), over `epochs` (None:
    all). Fails on a different set of rows."""
    worst = {}
    for csv in NC_FILES:
        x, y = _rows(a, csv), _rows(b, csv)
        assert x.keys() == y.keys(), csv
        rel = 0.0
        for key, u in x.items():
            epoch = key[0] if csv == "nc.csv" else key[0][0]
            if epochs is not None and int(epoch) not in epochs:
                continue
            v = y[key]
            rel = max(rel, _relative(u, v))
        worst[csv] = rel
    return worst


def _relative(u: float, v: float) -> float:
    """|u − v| / |u|; 0 for two NaNs or a difference at float64 rounding of O(1) values (1e-15:
    C = 2's angle spread |cos + 1| is ~1e-16), inf for one NaN."""
    if np.isnan(u) or np.isnan(v):
        return 0.0 if np.isnan(u) and np.isnan(v) else np.inf
    return 0.0 if abs(u - v) <= 1e-15 else abs(u - v) / abs(u)


def _train(monkeypatch, over, out, budget=None, compare=None):
    """Train the sweep as stacks; returns the results and how often the stack wrote a run back.

    With `compare` (a dict), every NC epoch's device measurement of every run is compared with
    the same run at the same weights measured by its own Tracker (the float64 engine's streaming
    passes): compare["own"][(file, column)] is the largest relative difference when the Tracker
    computes the representations on its own network, compare["same"][...] when it is given the
    stack's representations of that run (the statistics alone: the vmapped forward pass may round
    differently from the lone network's, e.g. convolutions as im2col matmuls).
    """
    import jax

    import sqloss_nc.backend.jax as jax_backend
    from sqloss_nc import stacking
    from sqloss_nc.sweep import run_config

    calls, checking = [], []
    real_scatter, real_measure = stacking._Stack.scatter, stacking._StackCollapse.measure

    def scatter(self, k):
        if not checking:
            calls.append(k)
        return real_scatter(self, k)

    def differences(into, own, mine):
        for key, u in own.nc.items():
            into[("nc.csv", key)] = max(into.get(("nc.csv", key), 0.0), _relative(u, mine.nc[key]))
        for name, a, b in (("nc_layers.csv", own.layers, mine.layers), ("class_gram.csv", own.gram, mine.gram)):
            assert [{c: v for c, v in r.items() if c != "value"} for r in a] == [{c: v for c, v in r.items() if c != "value"} for r in b]
            for ra, rb in zip(a, b):
                col = (name, ra.get("measure", "gram"))
                into[col] = max(into.get(col, 0.0), _relative(ra["value"], rb["value"]))

    def measure(self, on):
        real_measure(self, on)
        checking.append(True)
        tv, ntv = self.stack.state[:2]
        for k, (m, flag) in enumerate(zip(self.members, on)):
            if not flag:
                continue
            self.stack.scatter(k)
            t, d = m.logger.tracker.tracker, m.ds
            differences(compare.setdefault("own", {}), t.collapse(d.x_train, d.y_train, test=(d.x_test, d.y_test)), self.results[k])
            for i, layer in enumerate(self.stack.layers):
                np.testing.assert_array_equal(self.kernels[i][k], t.kernels()[layer.name])  # spectra.csv's input
            # The stack's forward pass on each whole split, as the device pass calls it here
            # (each split is one chunk: the float32 rounding depends on the batch's shape).
            assert self.stack.chunk >= len(d.x_train)
            own_probe, own_batch = t._probe, t.batch_size
            t._probe, t.batch_size = (lambda xb, k=k: [np.asarray(r[k]) for r in jax.device_get(self.device._forward(tv, ntv, xb))]), len(d.x_train)
            differences(compare.setdefault("same", {}), t.collapse(d.x_train, d.y_train, test=(d.x_test, d.y_test)), self.results[k])
            t._probe, t.batch_size = own_probe, own_batch
        checking.pop()

    monkeypatch.setattr(stacking._Stack, "scatter", scatter)
    if compare is not None:
        monkeypatch.setattr(stacking._StackCollapse, "measure", measure)
    if budget is not None:
        monkeypatch.setattr(jax_backend, "STACK_COLLAPSE_BYTES", budget)
    res = run_config(None, over, out)
    monkeypatch.undo()
    assert all(r["state"] == "done" for r in res), [r.get("reason") for r in res]
    return res, len(calls)


def _top(d: dict) -> list:
    return sorted(d.items(), key=lambda kv: -kv[1])[:4]


@pytest.mark.parametrize("over, k", [(MLP, 3), pytest.param(CONVNET, 4, marks=pytest.mark.slow)], ids=["mlp", "convnet-bn-rescaled"])
def test_stacked_nc_epochs_equal_each_run_measured_alone_without_write_back(tmp_path, monkeypatch, over, k):
    compare: dict = {}
    res, written = _train(monkeypatch, [*over, f"compute.stack={k}"], tmp_path, compare=compare)
    # Written back once, for model.keras at the end (not on NC epochs).
    assert written == k
    same, own = compare["same"], compare["own"]
    assert {f for f, _ in same} == {"nc.csv", "nc_layers.csv", "class_gram.csv"}
    # On the same representations the device's float64 statistics give the float64 engine's
    # results up to summation order (measured: ≤ 1e-15; asked: 1e-6).
    assert max(same.values()) < 1e-9, _top(same)
    # Against the lone network's own forward pass: train nc1 within 1e-6, and every column within
    # the float32 rounding of the representations (the vmapped forward pass rounds differently;
    # measured up to 2e-6 for the MLP's test_nc1, 3e-6 for the convnet's ls_distance with λ = 0,
    # while changing the lone run's own inference batch moves its columns by up to 3e-7).
    assert own[("nc.csv", "nc1")] < 1e-6, _top(own)
    assert max(own.values()) < 2e-5, _top(own)
    for r in res:
        nc = pd.read_csv(tmp_path / "quickstart" / r["run_id"] / "nc.csv")
        assert nc["nc1"].notna().all() and nc["nc4"].notna().all() and nc["mse_total"].notna().all()
        if over is MLP:
            # The last epoch's features are fairly collapsed (within-class spread ≪ between).
            assert nc["nc1"].iloc[-1] < 0.01 * nc["nc1"].iloc[0] and nc["trace_ratio"].iloc[-1] < 0.01


@pytest.mark.slow
def test_over_budget_a_stack_writes_its_runs_back_and_measures_them_one_by_one(tmp_path, monkeypatch):
    """`STACK_COLLAPSE_BYTES` too small for the K runs' statistics: the runs are written
    back every NC epoch and their own Trackers measure them (the files are the same either way)."""
    from conftest import assert_runs_equal

    res, written = _train(monkeypatch, [*MLP, "compute.stack=3"], tmp_path / "device")
    _, written_back = _train(monkeypatch, [*MLP, "compute.stack=3"], tmp_path / "own", budget=0)
    assert written == 3 and written_back == 3 * (2 + 1) + 3  # 3 NC epochs (0, 1, 2), then model.keras
    for r in res:
        here, there = (tmp_path / d / "quickstart" / r["run_id"] for d in ("device", "own"))
        assert_runs_equal(there, here, csvs=("metrics.csv", *NC_FILES))


def test_epoch_0_of_a_stacked_run_equals_the_run_trained_alone(tmp_path, monkeypatch):
    """Before any step the stacked and the lone run have the same weights: their collapse
    columns agree within 1e-6 (later epochs differ by the float32 rounding of mapped training)."""
    from conftest import assert_runs_equal

    short = [o for o in MLP if not o.startswith(("optim.epochs=", "sweep="))] + ["optim.epochs=1", "sweep={seed: [0, 1]}"]
    res, _ = _train(monkeypatch, [*short, "compute.stack=2"], tmp_path / "stack")
    _train(monkeypatch, [*short, "compute.stack=1"], tmp_path / "alone")
    for r in res:
        here, there = (tmp_path / d / "quickstart" / r["run_id"] for d in ("stack", "alone"))
        worst = _worst(there, here, epochs={0})
        assert max(worst.values()) < 1e-6, worst
        assert_runs_equal(there, here, csvs=("metrics.csv", *NC_FILES))


def test_device_statistics_over_many_padded_chunks_equal_the_engine_on_the_same_representations():
    """`StackedCollapse.run` over 50 samples in chunks of 7 (the last one padded): every pass's
    per-run statistics equal the float64 engine's accumulators fed the same representations in
    numpy batches (the stacked runs above fit one chunk per split, so this is where the Chan
    merges across chunks and the padding's mask are checked)."""
    import copy

    import jax
    import jax.numpy as jnp

    from sqloss_nc.backend.jax import StackedCollapse
    from sqloss_nc.engine.nc import NCAccumulator, NCCAccuracy, WithinClassCovariance

    rng = np.random.default_rng(0)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(5, activation="relu", name="relu1")(inputs)
    f = keras.layers.Dense(4, name="features")(h)
    net = keras.Model(inputs, keras.layers.Dense(3, name="classifier")(f))
    probe = keras.Model(inputs, [net.get_layer("relu1").output, net.get_layer("features").output, net.output])
    K, C, n, chunk = 2, 3, 50, 7
    tv = [jnp.asarray(rng.normal(size=(K, *v.shape)).astype(np.float32)) for v in net.trainable_variables]
    x = rng.normal(size=(n, 6)).astype(np.float32) + 3.0  # an offset: centring matters
    labels = rng.integers(0, C, size=(K, n))
    sc = StackedCollapse(probe, net, net.get_layer("classifier"), C, features=1)
    first = sc.run(tv, [], x, labels, sc.carry(K, first=True, logits=True, scatter="class"), chunk=chunk)

    # The same representations on the host: the device's forward pass on the same padded chunks.
    def reps(k):
        parts = []
        for i in range(0, n, chunk):
            xb = x[i : i + chunk]
            xb = np.concatenate([xb, np.repeat(xb[-1:], chunk - len(xb), axis=0)])
            parts.append([np.asarray(r[k])[: min(chunk, n - i)] for r in jax.device_get(sc._forward(tv, [], xb))])
        return [np.concatenate([p[j] for p in parts]) for j in range(3)]

    def close(a, b):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-12, atol=1e-12)

    for k in range(K):
        r, y = reps(k), labels[k]
        accs = [NCAccumulator(C, full=j == 1, class_scatter=j == 1) for j in range(3)]
        for i in range(0, n, 9):  # other batch boundaries than the device's chunks
            for j, acc in enumerate(accs):
                acc.update(r[j][i : i + 9], y[i : i + 9], r[2][i : i + 9] if j == 1 else None)
        for j, acc in enumerate(accs):
            close(first["count"][j][k], acc.counts)
            close(first["mean"][j][k], acc.means)
            close(first["ss"][j][k], acc.ss)
        close(first["scatter"][k], accs[1].scatter)
        close(first["class_scatter"][k], accs[1].class_scatter)
        close(first["logit"][k], accs[1].logit_true_sum)
        assert bool(first["finite"][k])

    # Pass 2 against every run's final means (the host's float64 ones) and Σ_B directions.
    def host_accs(k):
        r, y = reps(k), labels[k]
        accs = [NCAccumulator(C, full=False) for _ in range(3)]
        for j, acc in enumerate(accs):
            acc.update(r[j], y, r[2] if j == 1 else None)
        return r, y, accs

    host = [host_accs(k) for k in range(K)]
    refs = {
        "means": {j: np.stack([a[2][j].means for a in host]) for j in range(3)},
        "present": {j: np.stack([a[2][j].counts > 0 for a in host]) for j in range(3)},
        "directions": np.stack([a[2][1].sigma_b_directions()[1] for a in host]),
    }
    second = sc.run(tv, [], x, labels, sc.carry(K, ncc=range(3), nc4=True, directions=C - 1, cov=True), refs, chunk=chunk)
    for k, (r, y, accs) in enumerate(host):
        for j in range(3):
            ncc = NCCAccuracy(accs[j].means, accs[j].counts > 0)
            ncc.update(r[j], y)
            assert second["ncc"][j][k] == ncc.correct
        cov = WithinClassCovariance(accs[1].means)
        cov.update(r[1], y)
        close(second["cov"][k], cov.scatter)
        fed = copy.deepcopy(accs[1])  # pass 1 only; its second pass from the device's counts
        fed.add_second_pass(n, nc4_mismatch=second["nc4"][k], proj_sq=second["proj"][k])
        accs[1].nc4_pass([(r[1], y, r[2])])
        mine, theirs = fed.finalize(), accs[1].finalize()
        assert mine["nc4"] == theirs["nc4"] and abs(mine["nc1"] - theirs["nc1"]) <= 1e-12 * theirs["nc1"]
    head = sc.head(tv, [])
    close(head[0], tv[4])  # every run's classifier kernel
    close(head[1], tv[5])  # and bias
