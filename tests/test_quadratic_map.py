"""The exact MAP's quadratic-form evaluation (qt1lib.estimate.quadratic_map) against the grid evaluation."""

import numpy as np
import pytest

from qt1lib.estimate.map import ExactMAPModel, exact_log_likelihood
from qt1lib.estimate.quadratic_map import data_products, quadratic_dictionary
from qt1lib.protocols import SEED_7T_MP2RAGE, SEED_7T_MP3RAGE
from qt1lib.sequences import gre_signals

SIGMA = 0.005


def _voxels(n, protocol, seed, snr=(5.0, 1000.0)):
    """Random T1 (0.05..5 s, log-uniform), B1 (0.5..1.5), SNR (log-uniform) and phase."""
    rng = np.random.default_rng(seed)
    t1 = np.exp(rng.uniform(np.log(0.05), np.log(5.0), n))
    b1 = rng.uniform(0.5, 1.5, n)
    g = gre_signals(t1, protocol, b1)
    level = np.exp(rng.uniform(np.log(snr[0]), np.log(snr[1]), n))
    scale = level * SIGMA / np.sqrt((g**2).mean(axis=0)) * np.exp(2j * np.pi * rng.random(n))
    y = scale * g + rng.normal(0, SIGMA, g.shape) + 1j * rng.normal(0, SIGMA, g.shape)
    return y, t1, b1


@pytest.mark.parametrize("n_used", [2, 3])
def test_quadratic_form_equals_the_projection(n_used):
    """sum_p m_p q_p = |g.y|^2 / (2 sigma^2 ||g||^2) for real g and complex y (the module's identity)."""
    rng = np.random.default_rng(3)
    g = rng.normal(size=(50, n_used))
    y = rng.normal(size=(50, n_used)) + 1j * rng.normal(size=(50, n_used))
    m = data_products(y, 0.3)
    pairs = [(r, s) for r in range(n_used) for s in range(r, n_used)]
    n2 = (g**2).sum(axis=1)
    q = np.stack([(1.0 if r == s else 2.0) * g[:, r] * g[:, s] / n2 for r, s in pairs], axis=1)
    direct = np.abs((g * y).sum(axis=1)) ** 2 / (2 * 0.3**2 * n2)
    assert m.shape == (50, len(pairs) + 1) and np.all(m[:, -1] == 1.0)
    np.testing.assert_allclose((m[:, :-1] * q).sum(axis=1), direct, rtol=1e-12)


@pytest.mark.parametrize("prior", ["jeffreys", "flat"])
def test_tabulated_derivatives_match_finite_differences(prior):
    d = quadratic_dictionary(SEED_7T_MP3RAGE, (0.05, 5.0), 65, 32, (1.0,), prior)
    h = d.u[1] - d.u[0]
    inner = slice(2, -2)
    slope_fd = (d.values[0, 2:] - d.values[0, :-2]) / (2 * h)
    curv_fd = (d.values[0, 2:] - 2 * d.values[0, 1:-1] + d.values[0, :-2]) / h**2
    scale = np.abs(d.slopes[0]).max(axis=0) + 1e-12
    assert np.max(np.abs(slope_fd[1:-1] - d.slopes[0, inner]) / scale) < 1e-4
    scale2 = np.abs(d.curvatures[0]).max(axis=0) + 1e-12
    assert np.max(np.abs(curv_fd[1:-1] - d.curvatures[0, inner]) / scale2) < 1e-3
    # the squares' columns of a unit vector sum to one at every node
    n_used = len(SEED_7T_MP3RAGE.readouts)
    squares = [i for i, (r, s) in enumerate(d.pairs) if r == s]
    assert len(squares) == n_used
    np.testing.assert_allclose(d.values[0][:, squares].sum(axis=1), 1.0, rtol=1e-12)


def _check_against_grid(protocol, y, b1, b1_sd, prior):
    kwargs = {"b1": b1, "b1_sd": b1_sd}
    grid = ExactMAPModel(protocol, SIGMA, scale_prior=prior, method="grid")
    quad = ExactMAPModel(protocol, SIGMA, scale_prior=prior, method="quadratic")
    pg, pq = grid.fit(y, **kwargs), quad.fit(y, **kwargs)
    info = quad.fit_info
    assert info["quadratic"] + info["grid"] == info["voxels"] == y.shape[1]
    assert info["quadratic"] > 0.5 * y.shape[1]  # the grid takes the minority
    ok = np.isfinite(pg.map)
    assert np.array_equal(ok, np.isfinite(pq.map))
    # MAP within 1 ms, or both on a plateau of the posterior (log density within 1e-3)
    far = np.nonzero(ok & (np.abs(pq.map - pg.map) > 1e-3))[0]
    for i in far:  # loop over the few plateau voxels
        b = 1.0 if b1 is None else b1[i]
        ll = exact_log_likelihood(y[:, i : i + 1], np.array([pg.map[i], pq.map[i]]), protocol, SIGMA, b, prior)
        assert b1_sd == 0 and abs(ll[0, 0] - ll[1, 0]) < 1e-3, (i, pg.map[i], pq.map[i])
    assert np.all(np.abs(pq.std - pg.std)[ok] <= 0.01 * pg.std[ok])
    assert np.all(np.abs(pq.mean - pg.mean)[ok] <= 0.0101 * pg.std[ok])
    assert np.mean(pq.valid == pg.valid) >= 0.995


@pytest.mark.parametrize("prior", ["jeffreys", "flat"])
@pytest.mark.parametrize("case", ["nob1", "b1", "marginal"])
def test_quadratic_agrees_with_the_grid_on_random_mp3rage_voxels(prior, case):
    """T1 0.05..5 s, B1 0.5..1.5, SNR 5..1000: the bounds of ExactMAPModel's method docstring."""
    y, _, b1 = _voxels(600, SEED_7T_MP3RAGE, seed=11)
    _check_against_grid(SEED_7T_MP3RAGE, y, None if case == "nob1" else b1, 0.02 if case == "marginal" else 0.0, prior)


def test_quadratic_agrees_with_the_grid_for_mp2rage_with_b1_marginalised():
    y, _, b1 = _voxels(400, SEED_7T_MP2RAGE, seed=12)
    _check_against_grid(SEED_7T_MP2RAGE, y, b1, 0.02, "jeffreys")


def test_auto_uses_the_quadratic_form_for_mp3rage_and_keeps_nan_voxels_nan():
    y, _, b1 = _voxels(200, SEED_7T_MP3RAGE, seed=13, snr=(10.0, 60.0))
    y[1, 5] = np.nan
    b1 = b1.copy()
    b1[7] = np.nan
    model = ExactMAPModel(SEED_7T_MP3RAGE, SIGMA)
    post = model.fit(y, b1=b1, b1_sd=0.02)
    assert model.fit_info["voxels"] == 198 and model.fit_info["quadratic"] > 99  # narrow posteriors with B1 marginalised go to the grid
    for i in (5, 7):
        assert np.isnan(post.map[i]) and np.isnan(post.std[i]) and not post.valid[i]
    assert np.all(np.isfinite(np.delete(post.map, [5, 7])))
    # the same numbers whichever voxels share a chunk (up to the summation order of the matrix products)
    again = ExactMAPModel(SEED_7T_MP3RAGE, SIGMA).fit(y[:, 100:], b1=b1[100:], b1_sd=0.02)
    np.testing.assert_allclose(again.map, post.map[100:], rtol=1e-6)


def test_gaussian_b1_marginalisation_matches_a_fine_quadrature_at_the_seed_noise():
    """Chapter 08's volume (sigma 0.005): the Gaussian B1 integral against 41 Gauss-Hermite nodes."""
    from qt1lib.estimate.timing import simulate_volume

    volume = simulate_volume(400, seed=5)
    kwargs = {"b1": volume["b1"], "b1_sd": 0.02}
    model = ExactMAPModel(SEED_7T_MP3RAGE, SIGMA, method="quadratic")
    fast = model.fit(volume["gre"], **kwargs)
    assert model.fit_info["quadratic"] == 400
    fine = ExactMAPModel(SEED_7T_MP3RAGE, SIGMA, method="grid").fit(volume["gre"], n_b1_quadrature=41, **kwargs)
    assert np.max(np.abs(fast.map - fine.map)) < 1e-3
    assert np.max(np.abs(fast.std - fine.std) / fine.std) < 0.01
    assert np.max(np.abs(fast.mean - fine.mean) / fine.std) < 0.01


def test_b1_tables_give_the_derivatives_of_a_smooth_function():
    """The B1 marginalisation's tables (spline in B1, step 0.01) hold sin(3 B1) and its first three derivatives."""
    from qt1lib.estimate.quadratic_map import QuadraticEvaluator, _b1_tables

    evaluator = QuadraticEvaluator(ExactMAPModel(SEED_7T_MP3RAGE, SIGMA), True)
    b1 = evaluator.dictionary.b1
    nodal, third = _b1_tables(np.sin(3 * b1)[:, None, None], b1)
    inner = slice(3, -3)  # the not-a-knot ends are less accurate
    np.testing.assert_allclose(nodal[inner, 0, 0], np.sin(3 * b1[inner]), atol=1e-12)
    np.testing.assert_allclose(nodal[inner, 0, 1], 3 * np.cos(3 * b1[inner]), atol=1e-6)
    np.testing.assert_allclose(nodal[inner, 0, 2], -9 * np.sin(3 * b1[inner]), atol=1e-3)
    mid = 0.5 * (b1[1:] + b1[:-1])
    np.testing.assert_allclose(third[inner, 0, 0], -27 * np.cos(3 * mid[inner]), atol=0.05)
    j, x, inside = evaluator._b1_interval(np.array([0.733, 1.0, 1.2345, 5.0]))
    assert inside.tolist() == [True, True, True, False]
    np.testing.assert_allclose(b1[j[:3]] + x[:3] * (b1[1] - b1[0]), [0.733, 1.0, 1.2345])


@pytest.mark.parametrize("protocol", [SEED_7T_MP2RAGE, SEED_7T_MP3RAGE], ids=["table", "quadratic"])
def test_the_thread_count_does_not_change_a_number(protocol):
    """Chunks run on a thread pool, each with one BLAS thread: 1 and 3 threads give the same bytes."""
    y, _, b1 = _voxels(900, protocol, seed=21, snr=(5.0, 200.0))
    fits = [ExactMAPModel(protocol, SIGMA, chunk_size=128, n_threads=n).fit(y, b1=b1) for n in (1, 3)]
    for name in ("map", "mean", "std", "valid"):
        np.testing.assert_array_equal(getattr(fits[0], name), getattr(fits[1], name))


def test_default_threads_follows_omp_num_threads(monkeypatch):
    from qt1lib.cpus import default_threads, usable_cpus

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads() == 1 and ExactMAPModel(SEED_7T_MP2RAGE, SIGMA).n_threads == 1
    for unusable in ("", "0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert default_threads() == usable_cpus() >= 1
    with pytest.raises(ValueError, match="n_threads"):
        ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, n_threads=0)
