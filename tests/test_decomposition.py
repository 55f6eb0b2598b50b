"""Tests for sqloss_nc.decomposition against brute-force losses and direct ridge solves on raw data."""

import numpy as np
import pytest

from sqloss_nc.decomposition import (
    DECOMPOSITION_KEYS,
    decomposition_accumulator,
    least_squares_classifier,
    mse_decomposition,
    mse_decomposition_arrays,
)
from sqloss_nc.nc import NCAccumulator


# ----------------------------------------------------------------------------- independent references
def brute_objective(h, y, W, lam, b=None, k=1.0, M=1.0, decay_bias=True):
    """J(W) straight from SPEC §9: (1/N) sum_n (1/C)[k (f_y - M)^2 + sum_{c != y} f_c^2] + lam/2 ||.||^2."""
    N, C = len(y), W.shape[0]
    f = h @ W.T + (0.0 if b is None else b)
    total = 0.0
    for n in range(N):
        for c in range(C):
            if c == y[n]:
                total += k * (f[n, c] - M) ** 2
            else:
                total += f[n, c] ** 2
    reg = np.sum(W**2) + (np.sum(b**2) if b is not None and decay_bias else 0.0)
    return total / (N * C) + lam / 2 * reg


def direct_ridge(h, y, C, lam, k=1.0, M=1.0, bias=False, decay_bias=True):
    """Minimize J row by row: grad_w [1/(NC) sum_n omega_n (w.x_n - t_n)^2 + lam/2 w^T D w] = 0,
    i.e. (X^T Omega X / N + lam C/2 D) w = X^T Omega t / N, built from the raw rows x_n."""
    N = len(y)
    X = np.concatenate([h, np.ones((N, 1))], axis=1) if bias else h
    D = np.ones(X.shape[1])
    if bias and not decay_bias:
        D[-1] = 0.0
    rows = []
    for c in range(C):
        omega = np.where(y == c, k, 1.0)
        t = np.where(y == c, M, 0.0)
        if lam > 0:
            A = X.T @ (omega[:, None] * X) / N + lam * C / 2 * np.diag(D)
            rows.append(np.linalg.solve(A, X.T @ (omega * t) / N))
        else:  # minimum-norm weighted least squares, on the design itself
            s = np.sqrt(omega)
            rows.append(np.linalg.lstsq(s[:, None] * X, s * t, rcond=None)[0])
    w = np.stack(rows)
    return (w[:, :-1], w[:, -1]) if bias else (w, None)


def class_means_of(h, y, C):
    return np.stack([h[y == c].mean(axis=0) for c in range(C)])


def make_data(C, p, N, rng):
    probs = rng.uniform(0.3, 2.0, size=C)
    probs /= probs.sum()
    y = rng.choice(C, size=N, p=probs)
    y[: 2 * C] = np.repeat(np.arange(C), 2)
    centers = rng.normal(size=(C, p)) + 1.5
    h = centers[y] + 0.7 * rng.normal(size=(N, p))
    W = 0.3 * rng.normal(size=(C, p))
    return h, y, W


CASES = [  # C, p, bias, decay_bias, k, M, lam
    (2, 5, False, True, 1.0, 1.0, 1e-2),
    (3, 8, False, True, 1.0, 1.0, 5e-4),
    (10, 20, True, True, 1.0, 1.0, 5e-4),
    (4, 6, True, False, 1.0, 1.0, 1e-2),
    (5, 7, False, True, 2.0, 1.0, 1e-2),
    (4, 9, True, True, 3.0, 2.5, 5e-4),
    (3, 4, True, False, 0.5, 3.0, 1e-1),
    (6, 5, False, True, 1.0, 2.0, 0.0),
    (3, 6, True, False, 4.0, 1.0, 0.0),
]


def run_case(case, seed):
    C, p, bias, decay_bias, k, M, lam = case
    rng = np.random.default_rng(seed)
    h, y, W = make_data(C, p, 240, rng)
    b = 0.2 * rng.normal(size=C) if bias else None
    d = mse_decomposition_arrays(h, y, W, lam, bias=b, decay_bias=decay_bias, k=k, M=M, batch_size=37)
    return h, y, W, b, d


# ----------------------------------------------------------------------------- the identity and J
@pytest.mark.parametrize("case", CASES)
def test_identity_and_objective_against_brute_force(case):
    C, p, bias, decay_bias, k, M, lam = case
    h, y, W, b, d = run_case(case, seed=C * 10 + p)
    assert tuple(d) == DECOMPOSITION_KEYS
    want_j = brute_objective(h, y, W, lam, b=b, k=k, M=M, decay_bias=decay_bias)
    assert d["mse_total"] == pytest.approx(want_j, rel=1e-11)
    parts = d["mse_nc1"] + d["mse_nc23"] + d["mse_perp"]
    assert parts == pytest.approx(d["mse_total"], rel=1e-11)
    assert min(d["mse_nc1"], d["mse_nc23"], d["mse_perp"]) > 0


@pytest.mark.parametrize("case", CASES)
def test_least_squares_classifier_and_terms_against_direct_solve(case):
    C, p, bias, decay_bias, k, M, lam = case
    h, y, W, b, d = run_case(case, seed=C * 10 + p)
    acc = decomposition_accumulator(C, k=k)
    acc.update(h, y)
    w_ls, b_ls = least_squares_classifier(acc, lam, k=k, M=M, bias=bias, decay_bias=decay_bias)
    want_w, want_b = direct_ridge(h, y, C, lam, k=k, M=M, bias=bias, decay_bias=decay_bias)
    np.testing.assert_allclose(w_ls, want_w, rtol=1e-8, atol=1e-10)
    if bias:
        np.testing.assert_allclose(b_ls, want_b, rtol=1e-8, atol=1e-10)
    else:
        assert b_ls is None
    kw = dict(k=k, M=M, decay_bias=decay_bias)
    # mse_perp = J(W) - J(W_LS): the quadratic expansion around the minimizer, on raw data.
    j_ls = brute_objective(h, y, want_w, lam, b=want_b, **kw)
    assert d["mse_perp"] == pytest.approx(brute_objective(h, y, W, lam, b=b, **kw) - j_ls, rel=1e-8)
    # mse_nc23 = the loss of W_LS on the class means (each sample replaced by its class mean, no
    # penalty); mse_nc1 = its loss on the centred samples against zero targets plus the penalty.
    mus = class_means_of(h, y, C)
    no_bias = None if b is None else np.zeros(C)
    nc23 = brute_objective(mus[y], y, want_w, 0.0, b=want_b, **kw)
    centred_zero_targets = brute_objective(h - mus[y], y, want_w, 0.0, b=no_bias, k=k, M=0.0)
    reg = lam / 2 * (np.sum(want_w**2) + (np.sum(want_b**2) if bias and decay_bias else 0.0))
    assert d["mse_nc23"] == pytest.approx(nc23, rel=1e-8)
    assert d["mse_nc1"] == pytest.approx(centred_zero_targets + reg, rel=1e-8)
    # ls_distance of the augmented [W b].
    wa = W if b is None else np.concatenate([W, b[:, None]], axis=1)
    la = want_w if want_b is None else np.concatenate([want_w, want_b[:, None]], axis=1)
    assert d["ls_distance"] == pytest.approx(np.linalg.norm(wa - la) / np.linalg.norm(wa), rel=1e-8)


def test_least_squares_is_the_minimum():
    """W_LS zeroes the gradient of the brute-force J (central differences) and mse_perp(W_LS) = 0."""
    rng = np.random.default_rng(3)
    C, p, lam, k, M = 3, 4, 1e-2, 2.0, 1.5
    h, y, _ = make_data(C, p, 90, rng)
    acc = decomposition_accumulator(C, k=k)
    acc.update(h, y)
    w_ls, b_ls = least_squares_classifier(acc, lam, k=k, M=M, bias=True, decay_bias=False)
    def j_of(w, b):
        return brute_objective(h, y, w, lam, b, k, M, decay_bias=False)

    step = 1e-5
    for c, j in [(0, 0), (1, 3), (2, 1), (1, p)]:  # j = p: the bias of row c
        e = np.zeros((C, p + 1))
        e[c, j] = step
        grad = (j_of(w_ls + e[:, :p], b_ls + e[:, p]) - j_of(w_ls - e[:, :p], b_ls - e[:, p])) / (2 * step)
        assert abs(grad) < 1e-8, (c, j)
    d = mse_decomposition(acc, w_ls, lam, bias=b_ls, decay_bias=False, k=k, M=M)
    assert abs(d["mse_perp"]) < 1e-14 and d["ls_distance"] < 1e-12
    assert d["mse_nc1"] + d["mse_nc23"] == pytest.approx(d["mse_total"], rel=1e-12)


def test_plain_formulas_of_spec_and_the_rescaled_limit():
    """k = M = 1: the SPEC §9 formulas computed here from raw data; and the per-row (k != 1)
    path tends to them as k -> 1."""
    rng = np.random.default_rng(4)
    C, p, N, lam = 4, 6, 200, 5e-3
    h, y, W = make_data(C, p, N, rng)
    lam_h = lam * C / 2
    sigma_t = h.T @ h / N
    A = sigma_t + lam_h * np.eye(p)
    E = np.eye(C)[y]
    w_ls = (E.T @ h / N) @ np.linalg.inv(A)
    mus = class_means_of(h, y, C)
    r = h - mus[y]
    sigma_w = r.T @ r / N
    prior = np.bincount(y, minlength=C) / N
    want = {
        "mse_nc1": (2 / C) * (0.5 * np.trace(w_ls @ sigma_w @ w_ls.T) + lam_h / 2 * np.sum(w_ls**2)),
        "mse_nc23": (2 / C) * 0.5 * sum(prior[c] * np.sum((w_ls @ mus[c] - np.eye(C)[c]) ** 2) for c in range(C)),
        "mse_perp": (2 / C) * 0.5 * np.trace((W - w_ls) @ A @ (W - w_ls).T),
    }
    got = mse_decomposition_arrays(h, y, W, lam)
    for key, v in want.items():
        assert got[key] == pytest.approx(v, rel=1e-9), key
    near = mse_decomposition_arrays(h, y, W, lam, k=1.0 + 1e-9)
    for key in DECOMPOSITION_KEYS:
        assert near[key] == pytest.approx(got[key], rel=1e-7), key
    # M scales the targets: W_LS scales with M.
    acc = decomposition_accumulator(C)
    acc.update(h, y)
    np.testing.assert_allclose(least_squares_classifier(acc, lam, M=3.0)[0], 3.0 * w_ls, rtol=1e-9)


# ----------------------------------------------------------------------------- streaming, inputs
@pytest.mark.parametrize("k", [1.0, 2.5])
def test_streaming_equals_one_batch_and_merge(k):
    rng = np.random.default_rng(5)
    C, p, N = 5, 8, 300
    h, y, W = make_data(C, p, N, rng)
    order = np.argsort(y, kind="stable")  # sorted halves hold different classes
    h, y = h[order].astype(np.float32), y[order]
    b = rng.normal(size=C)
    one = mse_decomposition_arrays(h, y, W, 1e-3, bias=b, k=k, M=2.0)
    for bs in (1, 7, 64):
        many = mse_decomposition_arrays(h, y, W, 1e-3, bias=b, k=k, M=2.0, batch_size=bs)
        for key in DECOMPOSITION_KEYS:
            assert many[key] == pytest.approx(one[key], rel=1e-10), (bs, key)
    a, c = decomposition_accumulator(C, k=k), decomposition_accumulator(C, k=k)
    a.update(h[: N // 2], y[: N // 2])
    c.update(h[N // 2 :], y[N // 2 :])
    merged = mse_decomposition(a.merge(c), W, 1e-3, bias=b, k=k, M=2.0)
    for key in DECOMPOSITION_KEYS:
        assert merged[key] == pytest.approx(one[key], rel=1e-10), key


def test_rank_deficient_features_without_weight_decay():
    """lambda = 0 with p > N: W_LS is the minimum-norm interpolating solution, the identity holds."""
    rng = np.random.default_rng(6)
    C, p, N = 3, 40, 12
    h, y, W = make_data(C, p, N, rng)
    d = mse_decomposition_arrays(h, y, W, 0.0)
    assert d["mse_total"] == pytest.approx(brute_objective(h, y, W, 0.0), rel=1e-10)
    assert d["mse_nc1"] + d["mse_nc23"] + d["mse_perp"] == pytest.approx(d["mse_total"], rel=1e-8)
    acc = decomposition_accumulator(C)
    acc.update(h, y)
    w_ls, _ = least_squares_classifier(acc, 0.0)
    np.testing.assert_allclose(w_ls, direct_ridge(h, y, C, 0.0)[0], rtol=1e-6, atol=1e-8)
    assert brute_objective(h, y, w_ls, 0.0) < 1e-12  # interpolates


def test_input_validation():
    rng = np.random.default_rng(7)
    h, y, W = make_data(3, 4, 30, rng)
    light = NCAccumulator(3, full=False)
    light.update(h, y)
    with pytest.raises(ValueError, match="full=True"):
        mse_decomposition(light, W, 1e-3)
    plain = decomposition_accumulator(3)
    assert not plain.keep_class_scatter and decomposition_accumulator(3, k=2.0).keep_class_scatter
    plain.update(h, y)
    with pytest.raises(ValueError, match="class_scatter"):
        mse_decomposition(plain, W, 1e-3, k=2.0)
    with pytest.raises(ValueError, match="kernel.T"):
        mse_decomposition(plain, W.T, 1e-3)
    with pytest.raises(ValueError, match="k must be"):
        mse_decomposition(plain, W, 1e-3, k=0.0)
    with pytest.raises(ValueError, match="bias"):
        mse_decomposition(plain, W, 1e-3, bias=np.zeros(4))
    with pytest.raises(ValueError):
        mse_decomposition(decomposition_accumulator(3), W, 1e-3)  # no samples


def test_near_collapse_float32_features():
    """Features within 1e-5 of their class means at an offset of 3 (float32, as a run gives):
    the within-class term comes from Chan-merged scatter, not from Sigma_T - sum p mu mu^T."""
    rng = np.random.default_rng(8)
    C, p, N, lam = 4, 16, 400, 1e-9
    mus = rng.normal(size=(C, p)) + 3.0
    y = np.arange(N) % C
    h32 = (mus[y] + 1e-5 * rng.normal(size=(N, p))).astype(np.float32)
    h = h32.astype(np.float64)
    d = mse_decomposition_arrays(h32, y, rng.normal(size=(C, p)), lam, batch_size=50)
    w_ls, _ = direct_ridge(h, y, C, lam)
    m = class_means_of(h, y, C)
    within = brute_objective(h - m[y], y, w_ls, 0.0, M=0.0)
    reg = lam / 2 * np.sum(w_ls**2)
    assert d["mse_nc1"] == pytest.approx(within + reg, rel=1e-8)
    # The within-class part alone (~5% of mse_nc1 here, ~1e-12 absolute) to 1e-4.
    assert d["mse_nc1"] - reg == pytest.approx(within, rel=1e-4)


@pytest.mark.parametrize("p, rank, cols", [(60, 12, 1), (60, 12, 3), (33, 33, 2), (40, 0, 2), (50, 1, 1), (1, 1, 1), (2, 1, 2), (300, 250, 2)])
def test_singular_solve_is_lstsq_minimum_norm(p, rank, cols):
    """lambda = 0's solve (a symmetric eigensolver, for speed) against np.linalg.lstsq's
    minimum-norm solution on PSD matrices of every rank (condition <= 1e4 on the range: a worse one
    has no numerically defined solution to compare), b in the range, 1-D and 2-D b, and a
    product formed without symmetrizing (1-ulp asymmetry, as the head's A is)."""
    from sqloss_nc.engine.decomposition import _solve

    rng = np.random.default_rng(p + rank)
    g = rng.normal(size=(rank, p)) * np.logspace(0, -2, rank)[:, None] if rank else np.zeros((1, p))
    a = (g.T * 0.37) @ g
    b = a @ rng.normal(size=(p, cols))
    b = b[:, 0] if cols == 1 else b
    want = np.linalg.lstsq(0.5 * (a + a.T), b, rcond=None)[0]
    got = _solve(a.copy(), b, definite=False)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10 * max(1.0, np.abs(want).max()))
    if rank:
        np.testing.assert_allclose(a @ got, b, atol=1e-9 * np.abs(b).max())
