"""Tests for sqloss_nc.nc: closed-form cases, an independent brute force, precision, memory."""

import math
import time
import tracemalloc
import warnings

import numpy as np
import pytest

from sqloss_nc.nc import (
    FEATURE_COLLAPSE_KEYS,
    NC_KEYS,
    NCAccumulator,
    NCCAccuracy,
    compute_nc_metrics,
    feature_collapse,
    nearest_class_mean,
    nc_metrics,
)

WEIGHT_KEYS = (
    "nc2_equinorm_weights",
    "nc2_equiangular_weights",
    "nc2_maxangle_weights",
    "nc3",
    "nc3_centered",
    "cos_w_mu",
    "w_dot_muG",
    "w_norm_sq_mean",
)


# ----------------------------------------------------------------------------- helpers
def random_orthogonal(p, rng):
    q, r = np.linalg.qr(rng.normal(size=(p, p)))
    return q * np.sign(np.diag(r))


def simplex_etf(C, p, rng, offset=0.0):
    """Rows = C unit-norm ETF vertices in R^p (rotated), plus a common offset orthogonal to them.

    Returns (means, etf_rows, offset_direction).
    """
    assert p >= C + 1
    m = math.sqrt(C / (C - 1)) * (np.eye(C) - np.ones((C, C)) / C)  # columns = vertices
    emb = np.zeros((p, C))
    emb[:C] = m
    e_off = np.zeros(p)
    e_off[C] = 1.0  # orthogonal to the span of the vertices (which lies in the first C coords)
    q = random_orthogonal(p, rng)
    rows = (q @ emb).T
    e_off = q @ e_off
    return rows + offset * e_off, rows, e_off


def brute_force(h, y, C, W=None, logits=None):
    """Independent float64 reference: full arrays, np.cov, p x p eigh, explicit pair loops."""
    h = np.asarray(h, dtype=np.float64)
    N, p = h.shape
    mus = np.stack([h[y == c].mean(axis=0) for c in range(C)])
    mu_g = mus.mean(axis=0)
    sigma_w = sum(np.count_nonzero(y == c) / N * np.cov(h[y == c], rowvar=False, bias=True) for c in range(C))
    M = (mus - mu_g).T  # p x C
    sigma_b = sum(np.outer(M[:, c], M[:, c]) for c in range(C)) / C
    sigma_b = 0.5 * (sigma_b + sigma_b.T)
    lam, U = np.linalg.eigh(sigma_b)
    lam, U = lam[::-1][: C - 1], U[:, ::-1][:, : C - 1]
    sigma_b_pinv = U @ np.diag(1.0 / lam) @ U.T
    out = {"nc1": np.trace(sigma_w @ sigma_b_pinv) / C}

    def nc2(vecs):  # vecs: list of C vectors
        norms = np.array([np.linalg.norm(v) for v in vecs])
        cos = []
        for a in range(C):
            for b in range(C):
                if a != b:  # SPEC §5: pairs c != c' (both orders)
                    cos.append(vecs[a] @ vecs[b] / (norms[a] * norms[b]))
        cos = np.array(cos)
        equi = np.std(cos, ddof=1) if C > 2 else np.nan
        return (np.std(norms, ddof=1) / np.mean(norms), equi, np.mean(np.abs(cos + 1.0 / (C - 1))))

    out["nc2_equinorm_means"], out["nc2_equiangular_means"], out["nc2_maxangle_means"] = nc2([M[:, c] for c in range(C)])
    out["trace_ratio"] = np.trace(sigma_w) / np.trace(sigma_b)
    var = [np.mean(np.sum((h[y == c] - mus[c]) ** 2, axis=1)) for c in range(C)]
    cd = []
    for a in range(C):
        for b in range(a + 1, C):
            cd.append((var[a] + var[b]) / (2 * np.sum((mus[a] - mus[b]) ** 2)))
    out["cdnv"] = np.mean(cd)
    if W is not None:
        W = np.asarray(W, dtype=np.float64)
        out["nc2_equinorm_weights"], out["nc2_equiangular_weights"], out["nc2_maxangle_weights"] = nc2(list(W))
        WT = W.T
        out["nc3"] = np.linalg.norm(WT / np.linalg.norm(WT) - M / np.linalg.norm(M)) ** 2
        WTc = WT - WT.mean(axis=1, keepdims=True)
        out["nc3_centered"] = np.linalg.norm(WTc / np.linalg.norm(WTc) - M / np.linalg.norm(M)) ** 2
        out["cos_w_mu"] = np.mean([W[c] @ M[:, c] / (np.linalg.norm(W[c]) * np.linalg.norm(M[:, c])) for c in range(C)])
        out["w_dot_muG"] = np.mean([W[c] @ mu_g for c in range(C)])
        out["w_norm_sq_mean"] = np.mean([W[c] @ W[c] for c in range(C)])
    if logits is not None:
        logits = np.asarray(logits, dtype=np.float64)
        dist = np.array([[np.sum((h[n] - mus[c]) ** 2) for c in range(C)] for n in range(N)])
        out["nc4"] = np.mean(np.argmin(dist, axis=1) != np.argmax(logits, axis=1))
        out["eps_gap"] = 1.0 - np.mean(logits[np.arange(N), y])
    return out


def assert_metrics_close(got, want, rtol=1e-8, atol=1e-12):
    for k, v in want.items():
        if np.isnan(v):
            assert np.isnan(got[k]), k
        else:
            assert got[k] == pytest.approx(v, rel=rtol, abs=atol), k


def make_random(C, p, N, rng, sort=False):
    probs = rng.uniform(0.5, 2.0, size=C)  # unbalanced: mu_G != sample mean
    probs /= probs.sum()
    y = rng.choice(C, size=N, p=probs)
    y[: 2 * C] = np.repeat(np.arange(C), 2)  # every class has >= 2 samples
    centers = 2.0 * rng.normal(size=(C, p)) + 3.0  # common offset, as with ReLU features
    h = centers[y] + rng.normal(size=(N, p)) * rng.uniform(0.5, 1.5, size=p)
    W = centers - centers.mean(axis=0) + 0.3 * rng.normal(size=(C, p))
    clean = h @ W.T / p
    logits = clean + 0.7 * clean.std() * rng.normal(size=(N, C))  # so argmax often disagrees
    if sort:
        order = np.argsort(y, kind="stable")
        h, y, logits = h[order], y[order], logits[order]
    return h, y, W, logits


# ----------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("C,p", [(3, 5), (4, 9), (10, 16)])
def test_exact_simplex_etf_is_fully_collapsed(C, p):
    rng = np.random.default_rng(C)
    means, rows, _ = simplex_etf(C, p, rng, offset=2.5)
    y = np.repeat(np.arange(C), 5)
    h = means[y]
    W = 3.0 * rows  # aligned, scaled classifier
    m = nc_metrics(h, y, classifier_weights=W, logits=h @ W.T, batch_size=3)
    assert set(m) == set(NC_KEYS)
    for k in (
        "nc1",
        "nc2_equinorm_means",
        "nc2_equinorm_weights",
        "nc2_equiangular_means",
        "nc2_equiangular_weights",
        "nc2_maxangle_means",
        "nc2_maxangle_weights",
        "nc3",
        "nc3_centered",
        "trace_ratio",
        "cdnv",
        "w_dot_muG",
    ):
        assert abs(m[k]) < 1e-10, (k, m[k])
    assert m["nc4"] == 0.0
    assert m["cos_w_mu"] == pytest.approx(1.0, abs=1e-12)
    assert m["w_norm_sq_mean"] == pytest.approx(9.0, rel=1e-12)
    # f_{y}(x) = <3 v_y, v_y> = 3 for unit vertices.
    assert m["eps_gap"] == pytest.approx(1.0 - 3.0, abs=1e-12)


@pytest.mark.parametrize("C", [3, 5])
def test_etf_with_known_within_class_spread(C):
    """h = mu_c +/- s e: Sigma_W = s^2 e e^T, and Sigma_B = I_span / (C-1) on the ETF span."""
    rng = np.random.default_rng(10 + C)
    p, s = C + 3, 0.3
    means, rows, e_off = simplex_etf(C, p, rng, offset=1.0)
    y = np.repeat(np.arange(C), 4)
    sign = np.tile([1.0, -1.0, 1.0, -1.0], C)

    e_in = rows[0] / np.linalg.norm(rows[0])  # unit direction inside the span
    m = nc_metrics(means[y] + s * sign[:, None] * e_in, y, batch_size=5)
    assert m["nc1"] == pytest.approx(s**2 * (C - 1) / C, rel=1e-10)
    assert m["trace_ratio"] == pytest.approx(s**2, rel=1e-10)  # Tr(Sigma_B) = 1
    # sigma_c^2 = s^2, ||mu_c - mu_c'||^2 = 2 + 2/(C-1) = 2C/(C-1)
    assert m["cdnv"] == pytest.approx(s**2 * (C - 1) / (2 * C), rel=1e-10)

    # Spread orthogonal to the means' span lies in Sigma_B's null space: the top-(C-1)
    # pseudo-inverse ignores it, although the trace ratio sees it.
    m = nc_metrics(means[y] + s * sign[:, None] * e_off, y, batch_size=5)
    assert abs(m["nc1"]) < 1e-12
    assert m["trace_ratio"] == pytest.approx(s**2, rel=1e-10)


def test_known_weight_perturbations():
    C, p, t, g = 4, 8, 0.7, 1.9
    rng = np.random.default_rng(3)
    means, rows, e_off = simplex_etf(C, p, rng, offset=g)
    y = np.repeat(np.arange(C), 3)
    h = means[y]

    # One row doubled: norms (2,1,1,1) -> mean 1.25, std(ddof=1) 0.5; angles unchanged.
    W = rows.copy()
    W[0] *= 2.0
    m = nc_metrics(h, y, classifier_weights=W)
    assert m["nc2_equinorm_weights"] == pytest.approx(0.4, rel=1e-12)
    assert abs(m["nc2_equiangular_weights"]) < 1e-12
    assert abs(m["nc2_maxangle_weights"]) < 1e-12
    assert m["w_norm_sq_mean"] == pytest.approx((4 + 1 + 1 + 1) / 4, rel=1e-12)

    # A common component t e_off on every row (the bias-free classifier's shape).
    W = rows + t * e_off
    m = nc_metrics(h, y, classifier_weights=W)
    assert m["nc3"] == pytest.approx(2 - 2 / math.sqrt(1 + t**2), rel=1e-12)
    assert abs(m["nc3_centered"]) < 1e-12
    assert m["cos_w_mu"] == pytest.approx(1 / math.sqrt(1 + t**2), rel=1e-12)
    assert m["w_dot_muG"] == pytest.approx(t * g, rel=1e-12)
    assert m["w_norm_sq_mean"] == pytest.approx(1 + t**2, rel=1e-12)
    cos_ww = (-1 / (C - 1) + t**2) / (1 + t**2)
    assert m["nc2_maxangle_weights"] == pytest.approx(abs(cos_ww + 1 / (C - 1)), rel=1e-12)
    assert abs(m["nc2_equiangular_weights"]) < 1e-12


def test_known_mean_norms():
    # Centered means (2,0), (-1,1), (-1,-1) (sum 0), shifted by a common offset.
    centered = np.array([[2.0, 0.0], [-1.0, 1.0], [-1.0, -1.0]])
    y = np.array([0, 1, 2, 2, 1, 0])
    h = centered[y] + np.array([5.0, -7.0])
    m = nc_metrics(h, y)
    norms = np.array([2.0, math.sqrt(2), math.sqrt(2)])
    mean = (2 + 2 * math.sqrt(2)) / 3
    std = math.sqrt(sum((norms - mean) ** 2) / 2)
    assert m["nc2_equinorm_means"] == pytest.approx(std / mean, rel=1e-12)
    cos = np.array([-2 / (2 * math.sqrt(2)), -2 / (2 * math.sqrt(2)), 0.0] * 2)  # pairs 01, 02, 12 and 10, 20, 21
    assert m["nc2_maxangle_means"] == pytest.approx(np.mean(np.abs(cos + 0.5)), rel=1e-12)
    assert m["nc2_equiangular_means"] == pytest.approx(np.std(cos, ddof=1), rel=1e-12)
    # The ordered-pair std (SPEC) is not the unordered-pair one.
    assert m["nc2_equiangular_means"] != pytest.approx(np.std(cos[:3], ddof=1), rel=1e-6)


def test_two_classes_closed_form():
    """Sigma_B = d d^T / 4 so Sigma_B^+ = 4 d d^T / |d|^4 and nc1 = 2 d^T Sigma_W d / |d|^4."""
    rng = np.random.default_rng(7)
    p, N = 6, 300
    y = (rng.uniform(size=N) < 0.3).astype(np.int64)
    A = rng.normal(size=(p, p))
    h = rng.normal(size=(N, p)) @ A + np.where(y[:, None] == 1, 1.5, -0.5) * rng.normal(size=p)
    mu0, mu1 = h[y == 0].mean(0), h[y == 1].mean(0)
    d = mu1 - mu0
    resid = h - np.where(y[:, None] == 1, mu1, mu0)
    sigma_w = resid.T @ resid / N
    m = nc_metrics(h, y, classifier_weights=rng.normal(size=(2, p)), batch_size=17)
    assert m["nc1"] == pytest.approx(2 * d @ sigma_w @ d / (d @ d) ** 2, rel=1e-10)
    assert abs(m["nc2_equinorm_means"]) < 1e-12  # +/- d/2
    assert math.isnan(m["nc2_equiangular_means"]) and math.isnan(m["nc2_equiangular_weights"])
    assert abs(m["nc2_maxangle_means"]) < 1e-12  # cos = -1 = -1/(C-1)


# ----------------------------------------------------------------------------- brute force
@pytest.mark.parametrize("sort", [False, True])
@pytest.mark.parametrize("batch_size", [1, 7, 64, None])
@pytest.mark.parametrize("C,p", [(2, 12), (3, 12), (10, 12), (10, 150)])
def test_streaming_matches_brute_force(C, p, batch_size, sort):
    rng = np.random.default_rng(100 * C + p)
    N = 257
    h, y, W, logits = make_random(C, p, N, rng, sort=sort)
    want = brute_force(h, y, C, W=W, logits=logits)
    assert 0.05 < want["nc4"] < 0.95  # the nc4 comparison is not vacuous

    def factory():
        bs = batch_size or N
        for i in range(0, N, bs):
            yield h[i : i + bs].astype(np.float64), y[i : i + bs], logits[i : i + bs]

    got = compute_nc_metrics(factory, W, C)
    assert set(got) == set(NC_KEYS)
    assert_metrics_close(got, want)
    if batch_size == 1:
        assert got["nc4"] == want["nc4"]


def test_missing_weights_and_logits_give_nan():
    rng = np.random.default_rng(1)
    h, y, W, logits = make_random(3, 5, 50, rng)
    m = nc_metrics(h, y)
    for k in WEIGHT_KEYS + ("nc4", "eps_gap"):
        assert math.isnan(m[k]), k
    assert np.isfinite(m["nc1"])
    # eps_gap from pass 1 alone, nc4 only after the second pass.
    acc = NCAccumulator(3)
    acc.update(h, y, logits)
    assert math.isnan(acc.finalize()["nc4"])
    assert acc.finalize()["eps_gap"] == pytest.approx(1 - np.mean(logits[np.arange(50), y]))
    acc.nc4_pass([(h, y, logits)])
    assert acc.finalize()["nc4"] == pytest.approx(brute_force(h, y, 3, logits=logits)["nc4"])
    acc.update(h[:1], y[:1])  # the means moved: the nc4 pass is stale
    assert math.isnan(acc.finalize()["nc4"])


def test_input_validation():
    acc = NCAccumulator(3)
    with pytest.raises(ValueError):
        acc.update(np.zeros((2, 4)), np.array([0, 3]))
    acc.update(np.eye(4)[:3], np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="kernel.T"):
        acc.finalize(classifier_weights=np.zeros((4, 3)))
    with pytest.raises(ValueError):
        acc.nc4_pass([(np.eye(4)[:2], None, np.zeros((2, 3)))])  # saw 2 of 3 samples
    with pytest.raises(TypeError):
        compute_nc_metrics(iter([(np.eye(4)[:3], np.arange(3), np.eye(3))]), None, 3)


# ----------------------------------------------------------------------------- precision
@pytest.mark.parametrize("noise", [1e-4, 1e-6, 1e-8])
def test_near_collapse_float32_batches(noise):
    rng = np.random.default_rng(5)
    C, p, N = 10, 64, 5000
    mus = rng.normal(size=(C, p))
    mus /= np.linalg.norm(mus, axis=1, keepdims=True)
    y = rng.integers(0, C, size=N)
    h32 = (mus[y] + noise * rng.normal(size=(N, p))).astype(np.float32)
    truth = brute_force(h32.astype(np.float64), y, C)["nc1"]
    got = nc_metrics(h32, y, batch_size=256)["nc1"]
    assert truth > 0
    # abs=0: pytest.approx's default abs=1e-12 would accept anything at these tiny values.
    # At noise 1e-8 even a float64 "sum h h^T - n mu mu^T" per batch is far off.
    assert got == pytest.approx(truth, rel=1e-3, abs=0)


@pytest.mark.parametrize("noise", [1.0, 1e-6])
def test_nc1_from_the_second_pass_equals_the_scatter_matrix_and_brute_force(noise):
    # The run's path (no p x p matrix: projections on Sigma_B's directions in the second pass)
    # against the one-pass scatter matrix and float64 brute force, spread out and near collapse.
    rng = np.random.default_rng(11)
    C, p, N = 4, 48, 3000
    mus = rng.normal(size=(C, p))
    y = rng.integers(0, C, size=N)
    h = (mus[y] + noise * rng.normal(size=(N, p))).astype(np.float32)
    logits = rng.normal(size=(N, C))
    batches = [(h[i : i + 512], y[i : i + 512], logits[i : i + 512]) for i in range(0, N, 512)]
    truth = brute_force(h.astype(np.float64), y, C, logits=logits)
    light, full = NCAccumulator(C, full=False), NCAccumulator(C, full=True)
    for acc in (light, full):
        for hb, yb, fb in batches:
            acc.update(hb, yb, fb)
    assert light.scatter is None and full.scatter.shape == (p, p)
    assert math.isnan(light.finalize()["nc1"])  # pass 1 alone cannot give it without the matrix
    one_pass = full.finalize()
    light.nc4_pass(batches)
    two_pass = light.finalize()
    assert two_pass["nc1"] == pytest.approx(truth["nc1"], rel=1e-9, abs=0)
    assert one_pass["nc1"] == pytest.approx(truth["nc1"], rel=1e-9, abs=0)
    assert two_pass["nc4"] == truth["nc4"]
    # A second pass without labels gives nc4 only; nc1 then needs the matrix.
    unlabelled = NCAccumulator(C, full=False)
    for hb, yb, fb in batches:
        unlabelled.update(hb, yb, fb)
    unlabelled.nc4_pass([(hb, fb) for hb, _, fb in batches])
    assert math.isnan(unlabelled.finalize()["nc1"]) and unlabelled.finalize()["nc4"] == truth["nc4"]


def test_nc1_uses_exactly_top_c_minus_1_eigenpairs():
    """Sigma_B = diag(2/3, 2 eps^2): a default-tolerance pinv drops the second eigenpair."""
    eps, s = 1e-9, 0.2
    means = np.array([[-1.0, -eps], [1.0, -eps], [0.0, 2 * eps]])  # mu_G = 0
    y = np.repeat(np.arange(3), 4)
    spread = np.tile([[s, 0.0], [-s, 0.0], [0.0, eps], [0.0, -eps]], (3, 1))
    # Sigma_W = diag(s^2 / 2, eps^2 / 2); nc1 = (s^2/2 / (2/3) + eps^2/2 / (2 eps^2)) / 3
    m = nc_metrics(means[y] + spread, y, batch_size=5)
    assert m["nc1"] == pytest.approx((0.75 * s**2 + 0.25) / 3, rel=1e-6)


@pytest.mark.parametrize("k", [1.0, 1e-4])
def test_nc1_invariant_under_invertible_linear_map(k):
    """With p = C - 1, Tr(A S_W A^T (A S_B A^T)^-1) = Tr(S_W S_B^-1) for any invertible A."""
    rng = np.random.default_rng(9)
    C, N = 4, 400
    y = rng.integers(0, C, size=N)
    g = 2 * rng.normal(size=(C, C - 1))[y] + rng.normal(size=(N, C - 1))
    A = random_orthogonal(C - 1, rng) @ np.diag([1.0, 0.5, k]) @ random_orthogonal(C - 1, rng)
    assert nc_metrics(g @ A.T, y)["nc1"] == pytest.approx(brute_force(g, y, C)["nc1"], rel=1e-6)


# ----------------------------------------------------------------------------- invariances
def test_permutation_and_scale_invariance():
    rng = np.random.default_rng(11)
    C, p, N = 5, 9, 400
    h, y, W, logits = make_random(C, p, N, rng)
    base = nc_metrics(h, y, W, logits=logits, batch_size=33)
    perm = rng.permutation(N)
    permuted = nc_metrics(h[perm], y[perm], W, logits=logits[perm], batch_size=33)
    assert_metrics_close(permuted, base, rtol=1e-10, atol=1e-13)

    a = 37.5
    scaled = nc_metrics(a * h, y, W, logits=a * logits, batch_size=33)
    for k in (
        "nc1",
        "nc2_equinorm_means",
        "nc2_equiangular_means",
        "nc2_maxangle_means",
        "nc2_equinorm_weights",
        "nc2_equiangular_weights",
        "nc2_maxangle_weights",
        "nc3",
        "nc3_centered",
        "cos_w_mu",
        "nc4",
        "trace_ratio",
        "cdnv",
    ):
        assert scaled[k] == pytest.approx(base[k], rel=1e-10), k


# ----------------------------------------------------------------------------- light / merge
@pytest.mark.parametrize("C", [2, 7])
def test_light_accumulator_and_feature_collapse(C):
    rng = np.random.default_rng(20 + C)
    h, y, _, _ = make_random(C, 11, 300, rng)
    want = brute_force(h, y, C)
    fc = feature_collapse(h, y, batch_size=13)
    assert set(fc) == set(FEATURE_COLLAPSE_KEYS)
    for k in FEATURE_COLLAPSE_KEYS:
        assert fc[k] == pytest.approx(want[k], rel=1e-10)

    light, full = NCAccumulator(C, full=False), NCAccumulator(C)
    for i in range(0, 300, 29):
        light.update(h[i : i + 29], y[i : i + 29])
        full.update(h[i : i + 29], y[i : i + 29])
    assert light.scatter is None
    ml, mf = light.finalize(), full.finalize()
    assert math.isnan(ml["nc1"])
    for k in FEATURE_COLLAPSE_KEYS + ("nc2_equinorm_means", "nc2_maxangle_means"):
        assert ml[k] == pytest.approx(mf[k], rel=1e-12)

    # Conv-shaped intermediate activations are flattened per sample.
    fc4 = feature_collapse(h[:, :10].reshape(300, 2, 5), y)
    assert fc4["trace_ratio"] == pytest.approx(brute_force(h[:, :10], y, C)["trace_ratio"], rel=1e-10)


@pytest.mark.parametrize("full", [True, False])
def test_merge_equals_single_pass(full):
    rng = np.random.default_rng(30)
    C, p, N = 6, 10, 500
    h, y, W, logits = make_random(C, p, N, rng, sort=True)  # halves hold different classes
    whole = NCAccumulator(C, full=full)
    a, b = NCAccumulator(C, full=full), NCAccumulator(C, full=full)
    for i in range(0, N, 50):
        whole.update(h[i : i + 50], y[i : i + 50], logits[i : i + 50])
        (a if i < N // 2 else b).update(h[i : i + 50], y[i : i + 50], logits[i : i + 50])
    a.merge(b)
    np.testing.assert_array_equal(a.counts, whole.counts)
    np.testing.assert_allclose(a.means, whole.means, rtol=1e-12, atol=1e-13)
    if full:
        np.testing.assert_allclose(a.scatter, whole.scatter, rtol=1e-11, atol=1e-10)
    assert_metrics_close(a.finalize(W), whole.finalize(W), rtol=1e-10)
    # Merging into an empty accumulator is the identity.
    e = NCAccumulator(C, full=full).merge(whole)
    assert_metrics_close(e.finalize(W), whole.finalize(W), rtol=1e-12)


# ----------------------------------------------------------------------------- memory
def test_memory_does_not_grow_with_n():
    C, p, N, bs = 10, 512, 200_000, 4096
    rng = np.random.default_rng(0)
    centers = (3.0 * rng.normal(size=(C, p))).astype(np.float32)

    def factory():
        g = np.random.default_rng(1)  # same data in both passes
        for i in range(0, N, bs):
            b = min(bs, N - i)
            y = g.integers(0, C, size=b)
            h = centers[y] + g.standard_normal((b, p), dtype=np.float32)
            yield h, y, h[:, :C]  # any logits will do for exercising the second pass

    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        m = compute_nc_metrics(factory, None, C)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - t0
    assert peak < 100e6, f"peak {peak / 1e6:.1f} MB (data would be {N * p * 8 / 1e6:.0f} MB)"
    # Unit within-class variance in every coordinate: Tr(Sigma_W) ~ p.
    tr_b = np.sum((centers - centers.mean(0)) ** 2) / C
    assert m["trace_ratio"] == pytest.approx(p / tr_b, rel=0.01)
    assert 0.0 <= m["nc4"] <= 1.0 and np.isfinite(m["nc1"])
    assert elapsed < 60


# ----------------------------------------------------------------------------- rank guard (issue 14)
def class_centred_noise(y, C, p, scale, rng):
    """Noise whose per-class mean is exactly 0 (up to float64 rounding): the class means of
    means[y] + noise are the given means, so coinciding means coincide to rounding."""
    e = scale * rng.normal(size=(len(y), p))
    for c in range(C):
        e[y == c] -= e[y == c].mean(axis=0)
    return e


def rank_deficient_features(case, rng, offset=3.0):
    """(h, y, C) whose class means span fewer than C-1 directions (issue 14's three cases)."""
    if case == "coinciding":  # C = 4, classes 1 and 2 share a mean: rank 2 of 3
        C, p = 4, 9
        means = rng.normal(size=(C, p)) + offset
        means[2] = means[1]
    elif case == "collinear":  # C = 3, means on one line: rank 1 of 2
        C, p = 3, 7
        means = np.outer([1.0, 2.5, -1.3], rng.normal(size=p)) + offset
    else:  # "dead": C = 3, two classes with all-zero (dead ReLU) features: rank 1 of 2
        C, p = 3, 6
        means = np.zeros((C, p))
        means[2] = np.abs(rng.normal(size=p)) + offset
    y = np.arange(600) % C
    h = means[y] + class_centred_noise(y, C, p, 0.2, rng)
    if case == "dead":
        h[y < 2] = 0.0
    return h, y, C


def top_eig_nc1(h, y, C):
    """The unguarded top-(C-1) nc1 of the brute force, to show what the guard prevents."""
    with np.errstate(invalid="ignore", divide="ignore"):  # coinciding means: its CDNV divides by 0
        return brute_force(h, y, C)["nc1"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ["coinciding", "collinear", "dead"])
def test_nc1_is_nan_with_one_warning_when_sigma_b_is_rank_deficient(case, dtype):
    rng = np.random.default_rng(["coinciding", "collinear", "dead"].index(case))
    h, y, C = rank_deficient_features(case, rng)
    h = h.astype(dtype)
    # Without the guard the rounding-level eigenvalue is inverted: nc1 of order 1e20 or more.
    assert abs(top_eig_nc1(h.astype(np.float64), y, C)) > 1e10
    W = rng.normal(size=(C, h.shape[1]))
    logits = h.astype(np.float64) @ W.T
    for full, bs in ((False, 64), (True, 7), (False, None)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            acc = NCAccumulator(C, full=full)
            for i in range(0, len(y), bs or len(y)):
                acc.update(h[i : i + (bs or len(y))], y[i : i + (bs or len(y))], logits[i : i + (bs or len(y))])
            # full: nc1 from the scatter matrix (unlabelled pass 2); else from the projections.
            acc.nc4_pass([(h, logits)] if full else [(h, y, logits)])
            m = acc.finalize(W)
        assert math.isnan(m["nc1"]), (full, bs)
        rank_warnings = [w for w in caught if "rank-deficient" in str(w.message)]
        assert len(rank_warnings) == 1 and len(caught) == 1, [str(w.message) for w in caught]
        # Only nc1 is affected: the other measures are still computed.
        assert np.isfinite(m["trace_ratio"]) and np.isfinite(m["nc3"]) and 0 <= m["nc4"] <= 1


def test_rank_guard_sees_rounding_of_a_large_common_offset():
    """Coinciding means at a common offset 1e4 times their spread: the rounding noise in M is
    ~eps * 1e4 relative to s_max, above an s_max-relative floor max(C, p) eps s_max, so the
    floor must be relative to the samples' size (rounding_floor)."""
    rng = np.random.default_rng(4)
    C, p = 3, 5
    means = rng.normal(size=(C, p)) + 1e4
    means[1] = means[0]
    y = np.arange(300) % C
    h = means[y] + class_centred_noise(y, C, p, 0.1, rng)
    acc = NCAccumulator(C)
    for i in range(0, 300, 16):
        acc.update(h[i : i + 16], y[i : i + 16])
    s = np.linalg.svd(acc.means - acc.means.mean(axis=0), compute_uv=False)
    assert s[1] > max(C, p) * np.finfo(float).eps * s[0]  # an s_max-relative floor would pass it
    with pytest.warns(RuntimeWarning, match="rank-deficient"):
        assert math.isnan(acc.finalize()["nc1"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [1.0, 1e-6])
def test_small_but_well_conditioned_sigma_b_is_not_flagged(scale, dtype):
    """All features times 1e-6: Sigma_B is ~1e-12 in absolute terms but well conditioned; the
    guard is relative, so nc1 is finite and scale-invariant."""
    rng = np.random.default_rng(8)
    C, p = 5, 12
    h, y, _, _ = make_random(C, p, 400, rng)
    h = (scale * h).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        got = nc_metrics(h, y, batch_size=50)["nc1"]
    want = brute_force(h.astype(np.float64), y, C)["nc1"]
    assert np.isfinite(got) and got > 0
    assert got == pytest.approx(want, rel=1e-9, abs=0)
    lam = np.linalg.eigvalsh(np.cov(np.stack([h[y == c].mean(0) for c in range(C)]).T.astype(np.float64), bias=True))
    assert lam[-1] < 1e-9 if scale < 1 else lam[-1] > 1e-3  # the scaled case really is small


# ----------------------------------------------------------------------------- NCC accuracy (SPEC §10)
def brute_ncc(h_train, y_train, h_eval, y_eval, C):
    """Class means from the raw train rows, then an explicit loop over samples and classes."""
    mus = [h_train[y_train == c].mean(axis=0) for c in range(C)]
    hits = 0
    for n in range(len(y_eval)):
        dist = [float(np.sum((h_eval[n] - mus[c]) ** 2)) for c in range(C)]
        hits += int(np.argmin(dist) == y_eval[n])
    return hits / len(y_eval)


@pytest.mark.parametrize("bs", [1, 37, None])
@pytest.mark.parametrize("C,p", [(2, 3), (6, 20)])
def test_ncc_accuracy_train_and_test_match_brute_force(C, p, bs):
    rng = np.random.default_rng(40 + C)
    h, y, _, _ = make_random(C, p, 300, rng)
    h = h + 1.5 * rng.normal(size=h.shape)  # overlapping classes: some train samples are missed too
    h_tr, y_tr, h_te, y_te = h[:200], y[:200], h[200:], y[200:]
    h_te = h_te + 1.5 * rng.normal(size=h_te.shape)  # a shifted test set: accuracies differ
    want_tr, want_te = brute_ncc(h_tr, y_tr, h_tr, y_tr, C), brute_ncc(h_tr, y_tr, h_te, y_te, C)
    assert 0.3 < want_te < want_tr < 1.0  # not vacuous

    acc = NCAccumulator(C, full=False)
    step = bs or 200
    for i in range(0, 200, step):
        acc.update(h_tr[i : i + step].astype(np.float32), y_tr[i : i + step])
    train, test = acc.ncc(), acc.ncc()
    for i in range(0, 200, step):
        train.update(h_tr[i : i + step], y_tr[i : i + step])
    for i in range(0, 100, step):
        test.update(h_te[i : i + step], y_te[i : i + step])
    assert train.seen == 200 and test.seen == 100
    # float32 features can move a sample only if it is within rounding of a tie.
    assert train.accuracy == pytest.approx(want_tr, abs=1 / 200 + 1e-12)
    assert test.accuracy == pytest.approx(want_te, abs=1 / 100 + 1e-12)

    acc64 = NCAccumulator(C, full=False)
    acc64.update(h_tr, y_tr)
    exact = acc64.ncc()
    exact.update(h_te, y_te)
    assert exact.accuracy == want_te
    # The counter holds a copy of the means: more pass-1 data does not change it.
    acc64.update(h_te, y_te)
    np.testing.assert_array_equal(exact.class_means, np.stack([h_tr[y_tr == c].mean(0) for c in range(C)]))


def test_nearest_class_mean_masks_absent_classes_and_breaks_ties_low():
    means = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    h = np.array([[1.0, 0.0], [1.9, 0.0], [0.5, 0.0]])
    # Distances to (0, 2, 1): sample 0 is at 1, 1, 0; sample 2 ties classes 0 and 2 (0.5 each).
    assert nearest_class_mean(h, means).tolist() == [2, 1, 0]
    assert nearest_class_mean(h, means, present=np.array([True, True, False])).tolist() == [0, 1, 0]
    ncc = NCCAccuracy(means, present=[True, True, False])
    assert math.isnan(ncc.accuracy)
    ncc.update(h.reshape(3, 1, 2), np.array([0, 1, 2]))  # per-sample flattening
    assert ncc.accuracy == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        ncc.update(h, np.array([0, 1, 3]))


# ----------------------------------------------------------------------------- per-class scatter
def test_class_scatter_matches_per_class_brute_force_and_merges():
    rng = np.random.default_rng(50)
    C, p, N = 4, 6, 240
    h, y, _, _ = make_random(C, p, N, rng, sort=True)
    a, b, whole = (NCAccumulator(C, class_scatter=True) for _ in range(3))
    for i in range(0, N, 23):
        (a if i < N // 2 else b).update(h[i : i + 23], y[i : i + 23])
        whole.update(h[i : i + 23], y[i : i + 23])
    a.merge(b)
    for acc in (a, whole):
        assert acc.full and acc.class_scatter.shape == (C, p, p)
        for c in range(C):
            r = h[y == c] - h[y == c].mean(axis=0)
            np.testing.assert_allclose(acc.class_scatter[c], r.T @ r, rtol=1e-11, atol=1e-10)
        np.testing.assert_allclose(acc.scatter, acc.class_scatter.sum(axis=0), rtol=1e-12, atol=1e-10)
    with pytest.raises(ValueError):
        a.merge(NCAccumulator(C))
