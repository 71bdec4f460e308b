"""Tests of qt1lib.estimate.map: the seed's histogram MAP and the exact-likelihood MAP."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from qt1lib.estimate.crlb import crlb_t1
from qt1lib.estimate.map import (
    SEED_T1_GRID,
    ExactMAPModel,
    SeedMAPModel,
    exact_log_likelihood,
    map_t1_exact,
    map_t1_seed,
)
from qt1lib.protocols import SEED_7T_MP2RAGE, SEED_7T_MP3RAGE
from qt1lib.sequences import combinations, gre_signals, uni

PROTOCOLS = [SEED_7T_MP2RAGE, SEED_7T_MP3RAGE]
T1_RANGE = (0.05, 5.0)


def noisy(t1, sigma, rng, b1=1.0, scale=0.8):
    """Complex data of every readout: random phase, noise of std sigma per real / imaginary part."""
    t1 = np.asarray(t1, dtype=float)
    g = gre_signals(t1, SEED_7T_MP3RAGE, b1)
    phase = np.exp(2j * np.pi * rng.random(t1.shape))
    return scale * phase * g + rng.normal(0, sigma, g.shape) + 1j * rng.normal(0, sigma, g.shape)


def brute_force(y, protocol, sigma, b1=1.0, scale_prior="jeffreys", n=200_001):
    """MAP, posterior mean and std of T1 by direct integration on a dense log-spaced grid."""
    t1 = np.exp(np.linspace(np.log(T1_RANGE[0]), np.log(T1_RANGE[1]), n))
    ll = exact_log_likelihood(y, t1, protocol, sigma, b1, scale_prior)
    p = np.exp(ll - ll.max(axis=0))
    z = np.trapezoid(p, t1, axis=0)
    mean = np.trapezoid(p * t1[:, None], t1, axis=0) / z
    std = np.sqrt(np.trapezoid(p * (t1[:, None] - mean) ** 2, t1, axis=0) / z)
    return t1[np.argmax(ll, axis=0)], mean, std


# ---------------------------------------------------------------------------- exact: likelihood
def test_marginal_likelihood_equals_numerical_integral_over_the_complex_scale():
    """log L(T1) differences equal those of a direct 2-D integral of the Gaussian over c."""
    rng = np.random.default_rng(3)
    sigma = 0.004
    y = noisy(np.array([1.1]), sigma, rng)[:, 0]
    t1 = np.array([0.7, 1.1, 2.5])
    g = gre_signals(t1, SEED_7T_MP3RAGE)[:2]  # MP2RAGE: readouts 1, 2
    log_integral = []
    for k in range(len(t1)):
        c_hat = g[:, k] @ y[:2] / (g[:, k] @ g[:, k])
        half_width = 12 * sigma / np.linalg.norm(g[:, k])
        x = np.linspace(-half_width, half_width, 801)
        cr, ci = np.meshgrid(c_hat.real + x, c_hat.imag + x, indexing="ij")
        c = cr + 1j * ci
        resid = np.abs(y[0] - c * g[0, k]) ** 2 + np.abs(y[1] - c * g[1, k]) ** 2
        integrand = np.exp(-(resid - resid.min()) / (2 * sigma**2))
        log_integral.append(np.log(np.trapezoid(np.trapezoid(integrand, x, axis=1), x)) - resid.min() / (2 * sigma**2))
    ll = exact_log_likelihood(y[:, None], t1, SEED_7T_MP2RAGE, sigma, scale_prior="flat")[:, 0]
    np.testing.assert_allclose(np.diff(ll), np.diff(log_integral), rtol=0, atol=1e-8)


def test_log_likelihood_accepts_all_or_used_readouts():
    rng = np.random.default_rng(0)
    y = noisy(np.array([0.9, 1.4]), 0.003, rng)
    t1 = np.array([0.5, 1.0, 2.0])
    full = exact_log_likelihood(y, t1, SEED_7T_MP2RAGE, 0.003)
    used = exact_log_likelihood(y[:2], t1, SEED_7T_MP2RAGE, 0.003)
    np.testing.assert_array_equal(full, used)
    assert full.shape == (3, 2)


# ---------------------------------------------------------------------------- exact: estimates
@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name)
@pytest.mark.parametrize("b1", [1.0, 0.8])
def test_exact_noise_free_round_trip(protocol, b1):
    """Noise-free data give T1 within 1 ms over 0.5..4 s, at the seed's noise level (default prior)."""
    t1 = np.linspace(0.5, 4.0, 15)
    y = 0.7 * np.exp(1.3j) * gre_signals(t1, SEED_7T_MP3RAGE, b1)
    post = map_t1_exact(y, protocol, sigma=0.005, b1=None if b1 == 1.0 else np.full(t1.shape, b1))
    np.testing.assert_allclose(post.map, t1, rtol=0, atol=1e-3)
    assert post.valid.all()


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name)
def test_exact_jeffreys_noise_free_map_is_exact_at_the_seed_noise(protocol):
    """Without the Occam factor the MAP of noise-free data is the true T1 at any noise level."""
    t1 = np.linspace(0.5, 4.0, 8)
    y = 1.3 * np.exp(-0.4j) * gre_signals(t1, SEED_7T_MP3RAGE)
    post = map_t1_exact(y, protocol, sigma=0.005, scale_prior="jeffreys")
    np.testing.assert_allclose(post.map, t1, rtol=0, atol=1e-3)


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name)
@pytest.mark.parametrize("sigma", [3e-4, 1.5e-3, 6e-3])
@pytest.mark.parametrize("scale_prior", ["jeffreys", "flat"])
def test_exact_posterior_matches_brute_force_integration(protocol, sigma, scale_prior):
    """Interior and prior-cut posteriors, narrow and wide, against direct integration."""
    rng = np.random.default_rng(int(sigma * 1e6))
    t1 = np.array([0.07, 0.4, 1.0, 2.2, 3.8, 4.6, 4.95])
    y = noisy(t1, sigma, rng)
    post = ExactMAPModel(protocol, sigma, scale_prior=scale_prior, method="grid").fit(y)
    t1_map, mean, std = brute_force(y, protocol, sigma, scale_prior=scale_prior)
    np.testing.assert_allclose(post.map, t1_map, rtol=3e-5, atol=0)
    np.testing.assert_allclose(post.mean, mean, rtol=2e-5)
    np.testing.assert_allclose(post.std, std, rtol=1e-4)


def test_exact_posterior_with_b1_map_matches_brute_force():
    rng = np.random.default_rng(11)
    sigma = 1e-3
    t1 = np.array([0.6, 1.2, 2.5, 4.0])
    b1 = np.array([0.634, 0.9, 1.0, 1.377])  # off and on the dictionary's B1 nodes
    y = noisy(t1, sigma, rng, b1=b1)
    post = ExactMAPModel(SEED_7T_MP3RAGE, sigma).fit(y, b1=b1)
    t1_map, mean, std = brute_force(y, SEED_7T_MP3RAGE, sigma, b1=b1, n=100_001)
    # linear interpolation between B1 nodes 0.01 apart: relative signal error ~1e-5
    np.testing.assert_allclose(post.map, t1_map, rtol=2e-4)
    np.testing.assert_allclose(post.mean, mean, rtol=2e-4)
    np.testing.assert_allclose(post.std, std, rtol=2e-3)


def test_known_analytic_posteriors_of_zero_data():
    """y = 0: the posterior is the prior times 1/||g||^2 (flat scale prior) or the uniform prior (Jeffreys)."""
    y = np.zeros((3, 2), dtype=complex)
    jeff = map_t1_exact(y, SEED_7T_MP2RAGE, sigma=0.005, scale_prior="jeffreys", method="grid")
    lo, hi = T1_RANGE
    np.testing.assert_allclose(jeff.mean, (lo + hi) / 2, rtol=1e-10)
    np.testing.assert_allclose(jeff.std, (hi - lo) / np.sqrt(12), rtol=1e-10)

    def density(t):
        g = gre_signals(t, SEED_7T_MP2RAGE)[:2]
        return 1.0 / (g**2).sum()

    z = quad(density, lo, hi, limit=200)[0]
    mean = quad(lambda t: t * density(t), lo, hi, limit=200)[0] / z
    var = quad(lambda t: (t - mean) ** 2 * density(t), lo, hi, limit=200)[0] / z
    flat = map_t1_exact(y, SEED_7T_MP2RAGE, sigma=0.005, scale_prior="flat", method="grid")
    np.testing.assert_allclose(flat.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(flat.std, np.sqrt(var), rtol=1e-6)


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name)
def test_exact_map_is_unbiased_and_efficient_at_high_snr(protocol):
    """2000 trials per T1, sigma set for a CRLB of 1.5 % of T1: |bias| < 0.5 %, std within 10 % of the
    CRLB, mean posterior std within 10 % of the empirical std."""
    rng = np.random.default_rng(2024)
    n = 2000
    for t1 in (0.8, 1.3, 2.0):
        sigma = 0.015 * t1 / crlb_t1(t1, protocol, 1.0)  # the bound scales with sigma
        y = noisy(np.full(n, t1), sigma, rng, scale=1.0)
        post = ExactMAPModel(protocol, sigma).fit(y)
        bound = crlb_t1(t1, protocol, sigma)
        assert abs(post.map.mean() - t1) < 0.005 * t1
        assert abs(post.map.std(ddof=1) / bound - 1) < 0.10
        assert abs(post.std.mean() / post.map.std(ddof=1) - 1) < 0.10
        assert post.valid.mean() > 0.99  # the goodness-of-fit test at level 1e-3


def test_goodness_of_fit_rejects_mixed_tissue():
    """Two tissues with different T1 and phase in one voxel do not fit one T1 at high SNR."""
    g = gre_signals(np.array([0.8, 4.0]), SEED_7T_MP3RAGE)
    mixed = (g[:, 0] + 1j * g[:, 1])[:, None]
    pure = g[:, :1].astype(complex)
    sigma = 2e-4
    assert not map_t1_exact(mixed, SEED_7T_MP3RAGE, sigma).valid[0]
    assert map_t1_exact(pure, SEED_7T_MP3RAGE, sigma).valid[0]
    assert map_t1_exact(mixed, SEED_7T_MP3RAGE, sigma, gof_alpha=None).valid[0]


def test_b1_quadrature_converges_at_low_snr():
    rng = np.random.default_rng(5)
    t1 = np.array([0.9, 1.6])
    b1 = np.array([0.85, 1.1])
    y = noisy(t1, 0.005, rng, b1=b1)
    model = ExactMAPModel(SEED_7T_MP3RAGE, 0.005)
    few = model.fit(y, b1=b1, b1_sd=0.05, n_b1_quadrature=5)
    many = model.fit(y, b1=b1, b1_sd=0.05, n_b1_quadrature=25)
    np.testing.assert_allclose(few.mean, many.mean, rtol=1e-3)
    np.testing.assert_allclose(few.std, many.std, rtol=1e-2)
    none = model.fit(y, b1=b1)
    tiny = model.fit(y, b1=b1, b1_sd=1e-9)
    np.testing.assert_allclose(tiny.mean, none.mean, rtol=1e-9)


def test_exact_voxel_shape_nan_and_chunking():
    rng = np.random.default_rng(8)
    t1 = rng.uniform(0.5, 3.0, (4, 5, 3))
    b1 = rng.uniform(0.7, 1.3, t1.shape)
    y = noisy(t1, 0.002, rng, b1=b1)
    y[1, 0, 0, 0] = np.nan
    b1[2, 1, 1] = np.nan
    small = ExactMAPModel(SEED_7T_MP2RAGE, 0.002, chunk_size=7, method="grid").fit(y, b1=b1)
    large = ExactMAPModel(SEED_7T_MP2RAGE, 0.002, method="grid").fit(y, b1=b1)
    assert small.map.shape == t1.shape
    for name in ("map", "mean", "std"):
        np.testing.assert_allclose(getattr(small, name), getattr(large, name), rtol=1e-12)
        assert np.isnan(getattr(small, name)[0, 0, 0]) and np.isnan(getattr(small, name)[2, 1, 1])
    assert not small.valid[0, 0, 0] and not small.valid[2, 1, 1]
    assert np.isfinite(small.map).sum() == t1.size - 2


def test_exact_bad_input():
    y = np.ones((3, 4), dtype=complex)
    with pytest.raises(ValueError, match="sigma"):
        ExactMAPModel(SEED_7T_MP2RAGE, 0.0)
    with pytest.raises(ValueError, match="t1_range"):
        ExactMAPModel(SEED_7T_MP2RAGE, 0.005, t1_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="scale_prior"):
        ExactMAPModel(SEED_7T_MP2RAGE, 0.005, scale_prior="uniform")
    with pytest.raises(ValueError, match="n_coarse"):
        ExactMAPModel(SEED_7T_MP2RAGE, 0.005, n_coarse=2)
    model = ExactMAPModel(SEED_7T_MP2RAGE, 0.005)
    with pytest.raises(ValueError, match="data must have shape"):
        model.fit(np.ones((4, 2), dtype=complex))
    with pytest.raises(ValueError, match="b1 spans"):
        model.fit(y, b1=2.5)
    with pytest.raises(ValueError, match="does not broadcast"):
        model.fit(y, b1=np.ones(3))
    with pytest.raises(ValueError, match="b1_sd"):
        model.fit(y, b1_sd=0.05)
    with pytest.raises(ValueError, match="b1_sd"):
        model.fit(y, b1=1.0, b1_sd=-1.0)


# ---------------------------------------------------------------------------- seed method
@pytest.fixture(scope="module")
def seed_mp2rage() -> SeedMAPModel:
    return SeedMAPModel(SEED_7T_MP2RAGE, sigma=1e-3, n_trials=20_000, seed=1)


def test_seed_histogram_counts_every_trial(seed_mp2rage):
    assert seed_mp2rage.counts.shape == (100, len(SEED_T1_GRID))
    np.testing.assert_array_equal(seed_mp2rage.counts.sum(axis=0), 20_000)


def test_seed_noise_free_within_grid_resolution(seed_mp2rage):
    """Noise-free S maps back to T1 within one T1 step (50 ms) plus the T1 span of one S bin
    (1/99) at that T1, the resolution of the seed's tables."""
    t1 = np.linspace(0.5, 3.0, 11)
    s = uni(*gre_signals(t1, SEED_7T_MP3RAGE)[:2])
    post = seed_mp2rage.fit(s[None])
    fine = np.linspace(0.3, 3.5, 3201)
    slope = np.abs(np.gradient(fine, uni(*gre_signals(fine, SEED_7T_MP3RAGE)[:2])))  # |dT1/dS|
    tolerance = 0.05 + np.interp(t1, fine, slope) / 99
    assert np.all(np.abs(post.map - t1) <= tolerance)
    assert post.valid.all()


def test_seed_tables_follow_the_posterior_and_the_threshold_rule(seed_mp2rage):
    m = seed_mp2rage
    counts = m.counts.astype(float)
    reached = counts.sum(axis=1) > 0
    post = counts[reached] / counts[reached].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(m.mean_table[reached], post @ SEED_T1_GRID)
    np.testing.assert_array_equal(m.map_table[reached], SEED_T1_GRID[np.argmax(counts[reached], axis=1)])
    # alpha >= 0.5  <=>  some T1 puts at least its uniform share n_trials / n_bins into the bin
    np.testing.assert_array_equal(m.alpha_table >= 0.5, counts.max(axis=1) >= 20_000 / 100)


def test_seed_rejects_s_that_no_t1_produces(seed_mp2rage):
    s_curve = uni(*gre_signals(SEED_T1_GRID, SEED_7T_MP3RAGE)[:2])
    assert s_curve.min() > -0.45  # S = -0.5 is several noise stds below the curve (T1 = 5 s)
    post = seed_mp2rage.fit(np.array([[-0.5, s_curve[20]]]))
    assert not post.valid[0] and post.valid[1]


def test_seed_mp3rage_uses_a_2d_histogram_and_posterior_sums_to_one():
    model = SeedMAPModel(SEED_7T_MP3RAGE, sigma=0.005, n_trials=2_000, seed=0)
    assert model.counts.shape == (100, 100, len(SEED_T1_GRID))
    s = combinations(gre_signals(np.array([0.8, 1.5]), SEED_7T_MP3RAGE), SEED_7T_MP3RAGE)
    post = model.posterior(s)
    np.testing.assert_allclose(post.sum(axis=-1), 1.0)
    fit = model.fit(s)
    np.testing.assert_allclose(fit.mean, post @ SEED_T1_GRID)


def test_seed_is_reproducible_and_nan_passes_through():
    a = map_t1_seed(np.array([[0.1, np.nan]]), SEED_7T_MP2RAGE, n_trials=1000, seed=7)
    b = map_t1_seed(np.array([[0.1, np.nan]]), SEED_7T_MP2RAGE, n_trials=1000, seed=7)
    np.testing.assert_array_equal(a.map, b.map)
    assert np.isnan(a.map[1]) and not a.valid[1]


def test_seed_bad_input(seed_mp2rage):
    with pytest.raises(ValueError, match="s must have shape"):
        seed_mp2rage.fit(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\[-0.5, 0.5\]"):
        seed_mp2rage.fit(np.array([[0.7]]))
    with pytest.raises(ValueError, match="n_trials"):
        SeedMAPModel(SEED_7T_MP2RAGE, n_trials=0)
    with pytest.raises(ValueError, match="likelihood_threshold"):
        SeedMAPModel(SEED_7T_MP2RAGE, n_trials=10, likelihood_threshold=1.5)
    with pytest.raises(ValueError, match="t1_grid"):
        SeedMAPModel(SEED_7T_MP2RAGE, n_trials=10, t1_grid=np.array([1.0, 0.5]))


# ---------------------------------------------------------------------------- Monte-Carlo performance
def test_simulate_estimator_performance_table():
    from qt1lib.estimate.performance import simulate_estimator_performance

    kwargs = dict(t1_values=[0.8, 1.6], sigmas=[1e-3], n_trials=400, seed=4, seed_n_trials=2000)
    df = simulate_estimator_performance([SEED_7T_MP2RAGE], **kwargs)
    again = simulate_estimator_performance([SEED_7T_MP2RAGE], **kwargs)
    assert df.equals(again)
    assert set(df["estimator"]) == {"LUT", "seed MAP", "seed mean", "exact MAP", "exact mean"}
    assert len(df) == 2 * 5
    np.testing.assert_allclose(df["crlb"].to_numpy()[:2], crlb_t1(np.array([0.8, 1.6]), SEED_7T_MP2RAGE, 1e-3))
    exact = df[df["estimator"] == "exact MAP"]
    # at CRLB ~ 4 % of T1 the exact MAP is efficient: std within sampling error (~3.5 %) of the bound
    np.testing.assert_allclose(exact["std"] / exact["crlb"], 1.0, atol=0.15)
    np.testing.assert_allclose(df["rmse"] ** 2, df["bias"] ** 2 + df["std"] ** 2 * 399 / 400, rtol=1e-9)
    with pytest.raises(ValueError, match="unknown estimators"):
        simulate_estimator_performance([SEED_7T_MP2RAGE], estimators=("ML",), **kwargs)
