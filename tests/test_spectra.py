"""Tests for sqloss_nc.spectra against numpy's SVD built independently, closed forms and scipy."""

import math

import numpy as np
import pytest

from sqloss_nc.spectra import (
    SPECTRA_COLUMNS,
    alignment,
    principal_cosines,
    spectra_rows,
    spectrum,
    update_norm,
    update_norms,
    weight_matrix,
)


def random_orthogonal(n, rng):
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


def conv_matrix_by_loops(kernel):
    """W[o, (i*kw + j)*cin + c] = kernel[i, j, c, o], written out element by element."""
    kh, kw, cin, cout = kernel.shape
    w = np.zeros((cout, kh * kw * cin))
    for o in range(cout):
        for i in range(kh):
            for j in range(kw):
                for c in range(cin):
                    w[o, (i * kw + j) * cin + c] = kernel[i, j, c, o]
    return w


# ----------------------------------------------------------------------------- which matrix
def test_weight_matrix_is_the_map_on_a_flattened_patch():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 2, 4, 5)).astype(np.float32)
    w = weight_matrix(kernel)
    assert w.dtype == np.float64 and w.shape == (5, 24)
    np.testing.assert_array_equal(w, conv_matrix_by_loops(kernel.astype(np.float64)))
    # One output pixel of a convolution: sum over the patch of kernel[i, j, c, o] * x[i, j, c].
    patch = rng.normal(size=(3, 2, 4))
    direct = np.array([np.sum(kernel[..., o] * patch) for o in range(5)])
    np.testing.assert_allclose(w @ patch.reshape(-1), direct, rtol=1e-6)
    dense = rng.normal(size=(7, 3))  # (in, out)
    np.testing.assert_array_equal(weight_matrix(dense), dense.T)
    with pytest.raises(ValueError):
        weight_matrix(np.ones(4))


@pytest.mark.parametrize("shape", [(3, 3, 8, 16), (3, 3, 16, 4), (20, 6), (6, 20)])
def test_singular_values_ranks_against_numpy(shape):
    rng = np.random.default_rng(len(shape) + shape[-1])
    kernel = rng.normal(size=shape).astype(np.float32)
    k64 = kernel.astype(np.float64)
    w = conv_matrix_by_loops(k64) if len(shape) == 4 else k64.T
    s = np.linalg.svd(w, compute_uv=False)
    sp = spectrum(kernel)
    assert sp.singular_values.dtype == np.float64
    np.testing.assert_allclose(sp.singular_values, s, rtol=1e-12)
    assert sp.rank == int(np.sum(s / np.linalg.norm(w) > 1e-3))  # Frobenius norm from the matrix
    assert sp.stable_rank == pytest.approx(np.linalg.norm(w) ** 2 / np.linalg.norm(w, 2) ** 2, rel=1e-12)


# ----------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("scale", [1.0, 1e-8, 1e6])
def test_rank_and_stable_rank_of_a_known_spectrum(scale):
    rng = np.random.default_rng(3)
    out, fan_in = 9, 12
    # ||s|| = 10.05: s/||s|| = 0.80, 0.60, 0.099, 0.030, 0.005, 0.002 (counted at 1e-3), 5e-4, 1e-6, 0.
    s = np.array([8.0, 6.0, 1.0, 0.3, 0.05, 0.02, 0.005, 1e-5, 0.0])
    ratio = s / np.sqrt(np.sum(s**2))
    assert ratio[5] > 1e-3 > ratio[6] and ratio[2] > 0.05 > ratio[3]
    u, v = random_orthogonal(out, rng), random_orthogonal(fan_in, rng)[:, :out]
    w = scale * (u @ np.diag(s) @ v.T)
    sp = spectrum(w.T)  # as a Dense kernel (in, out)
    np.testing.assert_allclose(sp.singular_values[:7], scale * s[:7], rtol=1e-10)
    assert sp.rank == 6
    assert sp.stable_rank == pytest.approx(np.sum(s**2) / s[0] ** 2, rel=1e-12)
    assert spectrum(w.T, tol=0.05).rank == 3
    assert spectrum(w.T, tol=1e-8).rank == 8  # 1e-6 counts; the exact 0 is at rounding level (~1e-16)


def test_low_rank_product_has_its_rank():
    rng = np.random.default_rng(4)
    r = 3
    s = np.array([4.0, 2.0, 1.0])
    u, v = random_orthogonal(10, rng)[:, :r], random_orthogonal(15, rng)[:, :r]
    w = u @ np.diag(s) @ v.T  # 10 x 15 of rank 3 (float64 rounding leaves ~1e-16 singular values)
    sp = spectrum(w.T)
    assert sp.rank == r
    assert sp.stable_rank == pytest.approx(21.0 / 16.0, rel=1e-12)
    assert len(sp.singular_values) == 10 and np.all(sp.singular_values[r:] < 1e-14)


def test_zero_matrix():
    sp = spectrum(np.zeros((4, 3)))
    assert sp.rank == 0 and math.isnan(sp.stable_rank)
    with pytest.raises(ValueError):
        spectrum(np.eye(3), tol=-1.0)


def test_spectra_rows_form_one_long_pivotable_table():
    rng = np.random.default_rng(5)
    kernels = {"conv1": rng.normal(size=(3, 3, 2, 4)), "dense": rng.normal(size=(6, 3)), "classifier": np.diag([2.0, 1.0])}
    rows = spectra_rows(7, kernels)
    assert all(tuple(r) == SPECTRA_COLUMNS for r in rows)
    assert [r["layer"] for r in rows] == ["conv1"] * 4 + ["dense"] * 3 + ["classifier"] * 2
    for name, k in kernels.items():
        mine = [r for r in rows if r["layer"] == name]
        assert [r["index"] for r in mine] == list(range(len(mine)))
        sv = [r["singular_value"] for r in mine]
        assert sv == sorted(sv, reverse=True)
        assert len({(r["rank"], r["stable_rank"]) for r in mine}) == 1  # repeated per layer
        assert all(r["epoch"] == 7 for r in mine)
    assert [r["stable_rank"] for r in rows if r["layer"] == "classifier"][0] == pytest.approx(5.0 / 4.0)
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(rows + spectra_rows(8, kernels), columns=list(SPECTRA_COLUMNS))
    ranks = df.pivot_table(index="epoch", columns="layer", values="rank")
    assert ranks.loc[7, "dense"] == 3 and ranks.loc[8, "classifier"] == 2
    wide = df.pivot(index=["epoch", "layer"], columns="index", values="singular_value")
    assert wide.loc[(7, "classifier"), 0] == 2.0 and math.isnan(wide.loc[(7, "classifier"), 3])


# ----------------------------------------------------------------------------- update norms
def test_update_norm_against_explicit_sums():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    b = a + 0.01 * rng.normal(size=a.shape).astype(np.float32)
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    want = math.sqrt(sum((y - x) ** 2 for x, y in zip(a64, b64))) / math.sqrt(sum(x * x for x in a64))
    assert update_norm(a, b) == pytest.approx(want, rel=1e-12)
    assert update_norm(a, a) == 0.0
    assert math.isnan(update_norm(np.zeros(3), np.ones(3)))
    with pytest.raises(ValueError):
        update_norm(np.zeros(3), np.zeros(4))
    got = update_norms({"c": a, "d": np.ones(2)}, {"c": b, "d": 3 * np.ones(2), "new": np.ones(2)})
    assert list(got) == ["update_norm_c", "update_norm_d", "update_norm_new"]
    assert got["update_norm_c"] == pytest.approx(want, rel=1e-12) and got["update_norm_d"] == 2.0
    assert math.isnan(got["update_norm_new"])


# ----------------------------------------------------------------------------- principal angles
def test_principal_cosines_of_known_rotations():
    a_ang, b_ang = 0.3, 1.1
    e = np.eye(5)
    x = e[:, [0, 1]]
    y = np.stack([math.cos(a_ang) * e[0] + math.sin(a_ang) * e[2], math.cos(b_ang) * e[1] + math.sin(b_ang) * e[3]], axis=1)
    np.testing.assert_allclose(principal_cosines(x, y), [math.cos(a_ang), math.cos(b_ang)], rtol=1e-12)
    # Non-orthonormal spanning sets of the same spaces give the same angles.
    np.testing.assert_allclose(principal_cosines(x @ [[2.0, 1.0], [0.0, 3.0]], 7 * y), [math.cos(a_ang), math.cos(b_ang)], rtol=1e-12)
    # A rank-deficient spanning set counts once: span(x) has dimension 2.
    assert len(principal_cosines(np.concatenate([x, x.sum(1, keepdims=True)], axis=1), e[:, :3])) == 2


def test_principal_cosines_against_scipy():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(7)
    for k1, k2 in ((2, 3), (4, 4), (5, 1)):
        a, b = rng.normal(size=(9, k1)), rng.normal(size=(9, k2))
        want = np.sort(np.cos(linalg.subspace_angles(a, b)))[::-1]
        np.testing.assert_allclose(principal_cosines(a, b), want, rtol=1e-10)


# ----------------------------------------------------------------------------- alignment
def etf_means_in(basis, rng, offset):
    """C class means whose centred versions form a simplex in span(basis) (p x (C-1))."""
    C = basis.shape[1] + 1
    simplex = np.eye(C) - 1.0 / C  # C points in R^C, centred, spanning a (C-1)-dim space
    q = np.linalg.svd(simplex)[0][:, : C - 1]  # orthonormal basis of that space
    return (simplex @ q) @ basis.T + offset


def test_alignment_closed_form():
    """C = 3: span(M) = span(e0, e1); W's top 3 right singular vectors are
    cos(a) e0 + sin(a) e4, e1, e2: the cosines are 1 (e1) and cos(a)."""
    rng = np.random.default_rng(8)
    C, p, a = 3, 7, 0.7
    e = np.eye(p)
    means = etf_means_in(e[:, :2], rng, offset=5.0 * e[6])
    v_top = np.stack([math.cos(a) * e[0] + math.sin(a) * e[4], e[1], e[2]], axis=1)
    v_rest = np.stack([-math.sin(a) * e[0] + math.cos(a) * e[4], e[3]], axis=1)  # orthogonal complement, smaller
    v = np.concatenate([v_top, v_rest], axis=1)  # (p, 5)
    w = random_orthogonal(5, rng) @ np.diag([5.0, 4.0, 3.0, 0.5, 0.1]) @ v.T  # (out = 5) x p
    kernel = w.T  # Dense kernel (p, out)
    assert alignment(means, kernel) == pytest.approx((1 + math.cos(a)) / 2, rel=1e-12)
    # The small singular directions do not count: swap them into the top and the alignment drops.
    w_swapped = random_orthogonal(5, rng) @ np.diag([0.1, 0.5, 3.0, 4.0, 5.0]) @ v.T
    assert alignment(means, w_swapped.T) == pytest.approx(abs(math.sin(a)) / 2, abs=1e-12)
    # float32 means (as a run gives) change nothing beyond rounding.
    assert alignment(means.astype(np.float32), kernel) == pytest.approx((1 + math.cos(a)) / 2, rel=1e-6)


def test_alignment_against_scipy_on_random_data():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(9)
    C, p, out = 4, 10, 6
    means = rng.normal(size=(C, p)) + 2.0
    kernel = rng.normal(size=(p, out))
    m = (means - means.mean(axis=0)).T
    vt = np.linalg.svd(kernel.T)[2]  # right singular vectors of W = kernel^T, independently
    want = np.mean(np.cos(linalg.subspace_angles(m, vt[:C].T)))
    assert alignment(means, kernel) == pytest.approx(want, rel=1e-10)


def test_alignment_uses_the_numerical_rank_of_the_means():
    """Collinear means span one direction (not the C-1 = 2 a rounding-level SVD would give)."""
    rng = np.random.default_rng(10)
    p = 5
    d = np.eye(p)[0]
    means = np.outer([1.0, 2.5, -1.3], d) + 3.0  # centred: multiples of e0 only
    kernel = np.eye(p)[:, [0, 3, 4]] @ np.diag([3.0, 2.0, 1.0])  # W rows e0, e3, e4
    assert alignment(means, kernel) == pytest.approx(1.0, rel=1e-12)


def test_alignment_undefined_cases_are_nan():
    rng = np.random.default_rng(11)
    means = rng.normal(size=(3, 8))
    assert math.isnan(alignment(means, rng.normal(size=(3, 3, 8, 4))))  # conv next layer
    assert math.isnan(alignment(means, rng.normal(size=(9, 4))))  # in != p_l
    assert math.isnan(alignment(np.ones((3, 8)), rng.normal(size=(8, 4))))  # coinciding means
    assert math.isnan(alignment(means, np.zeros((8, 4))))  # zero weights
    # A conv feature map flattened per class, followed by Flatten + Dense, is defined.
    maps = rng.normal(size=(3, 2, 2, 2))
    assert 0.0 <= alignment(maps, rng.normal(size=(8, 4))) <= 1.0
