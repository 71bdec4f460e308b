"""Tests of qt1lib.estimate.posterior_table: the sufficient-statistic identity and the table method
of the exact MAP against the grid evaluation (the reference) and brute-force integration."""

from __future__ import annotations

import numpy as np
import pytest

from qt1lib.estimate.map import ExactMAPModel, exact_log_likelihood
from qt1lib.estimate.posterior_table import (
    projection_from_statistics,
    sufficient_statistics,
)
from qt1lib.protocols import SEED_7T_MP2RAGE, SEED_7T_MP3RAGE
from qt1lib.sequences import gre_signals

T1_RANGE = (0.05, 5.0)
SIGMA = 0.005  # the seed's noise (units of M0)


def voxels(n, seed, snr=(5.0, 1000.0), b1_range=None, ends=True):
    """Random voxels: T1 log-uniform on 0.05..5 s (and both ends exactly), SNR log-uniform, where
    SNR = |c| ||g|| / (sigma sqrt(2)) (the RMS of the two readouts over sigma), random phase."""
    rng = np.random.default_rng(seed)
    t1 = np.exp(rng.uniform(np.log(T1_RANGE[0]), np.log(T1_RANGE[1]), n))
    if ends:
        t1[:4] = (T1_RANGE[0], T1_RANGE[0], T1_RANGE[1], T1_RANGE[1])
    snr_v = np.exp(rng.uniform(np.log(snr[0]), np.log(snr[1]), n))
    b1 = np.ones(n) if b1_range is None else rng.uniform(*b1_range, n)
    g = gre_signals(t1, SEED_7T_MP2RAGE, b1)[:2]
    scale = snr_v * SIGMA * np.sqrt(2) / np.linalg.norm(g, axis=0) * np.exp(2j * np.pi * rng.random(n))
    y = scale * g + SIGMA * (rng.normal(size=g.shape) + 1j * rng.normal(size=g.shape))
    return y, (None if b1_range is None else b1)


def brute_force(y, b1, scale_prior, n=200_001):
    """MAP, posterior mean and std of T1 and the log-likelihood's maximum on a dense log grid."""
    t1 = np.exp(np.linspace(np.log(T1_RANGE[0]), np.log(T1_RANGE[1]), n))
    ll = exact_log_likelihood(y, t1, SEED_7T_MP2RAGE, SIGMA, 1.0 if b1 is None else b1, scale_prior)
    p = np.exp(ll - ll.max(axis=0))
    z = np.trapezoid(p, t1, axis=0)
    mean = np.trapezoid(p * t1[:, None], t1, axis=0) / z
    std = np.sqrt(np.trapezoid(p * (t1[:, None] - mean) ** 2, t1, axis=0) / z)
    return t1[np.argmax(ll, axis=0)], mean, std


def assert_table_matches_grid(y, b1, scale_prior, **options):
    """MAP within 1 ms, std within 1 % and mean within 1 % of the std of the grid evaluation,
    ``valid`` identical; where the mean or std miss, the table is within those bounds of a
    brute-force integration and the grid evaluation is farther from it."""
    grid = ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, scale_prior=scale_prior, method="grid", **options).fit(y, b1=b1)
    model = ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, scale_prior=scale_prior, method="table", **options)
    table = model.fit(y, b1=b1)
    assert model.fit_info["table"] > 0.95 * y.shape[1]  # the grid takes at most 5 % of the voxels
    np.testing.assert_array_equal(table.valid, grid.valid)
    assert np.max(np.abs(table.map - grid.map)) < 1e-3
    std_err = np.abs(table.std / grid.std - 1)
    mean_err = np.abs(table.mean - grid.mean) / grid.std
    miss = np.nonzero((std_err > 0.01) | (mean_err > 0.01))[0]
    assert miss.size <= 0.03 * y.shape[1]
    if miss.size:
        _, mean, std = brute_force(y[:, miss], None if b1 is None else b1[miss], scale_prior)
        table_err = np.maximum(np.abs(table.std[miss] / std - 1), np.abs(table.mean[miss] - mean) / std)
        grid_err = np.maximum(np.abs(grid.std[miss] / std - 1), np.abs(grid.mean[miss] - mean) / std)
        assert np.all(table_err < 0.01)
        assert np.all(grid_err > table_err)
    return model


# ---------------------------------------------------------------------------- the identity
def test_projection_equals_its_sufficient_statistic_form():
    """|g^T y|^2 / ||g||^2 computed directly equals (A + B)/2 + R cos(2 theta - phi), for random
    complex data and real signals of any sign, and for the dictionary's signals."""
    rng = np.random.default_rng(0)
    y = rng.normal(size=(2, 500)) + 1j * rng.normal(size=(2, 500))
    g = rng.normal(size=(2, 500))
    t1 = np.exp(rng.uniform(np.log(0.05), np.log(5.0), 500))
    g_dict = gre_signals(t1, SEED_7T_MP2RAGE, rng.uniform(0.5, 1.5, 500))[:2]
    for signals in (g, g_dict):
        direct = np.abs((signals * y).sum(axis=0)) ** 2 / (signals**2).sum(axis=0)
        a, b, c = sufficient_statistics(y)
        via = projection_from_statistics(a, b, c, np.arctan2(signals[1], signals[0]))
        np.testing.assert_allclose(via, direct, rtol=1e-12)


def test_log_likelihood_depends_on_the_data_only_through_phi_and_kappa():
    """Voxels with the same phi and R but other |y1|^2 + |y2|^2 and phases have log-likelihood
    curves that differ by a constant (both scale priors): the posterior is a function of (phi, kappa).

    With y = u + i v (u, v real), ((A - B)/2, C) = (|u|^2 e^{2i alpha_u} + |v|^2 e^{2i alpha_v}) / 2 in
    complex notation, so u along angle phi/2 with |u|^2 = 2 (R + s) and v along (phi + pi)/2 with
    |v|^2 = 2 s keep R e^{i phi} for any s >= 0 while A + B = 2 R + 4 s.
    """
    r, phi = 4e-4, 2.3
    along, across = np.array([np.cos(phi / 2), np.sin(phi / 2)]), np.array([np.cos(phi / 2 + np.pi / 2), np.sin(phi / 2 + np.pi / 2)])
    data = [np.sqrt(2 * (r + s)) * along + 1j * np.sqrt(2 * s) * across for s in (0.0, 1e-4, 5e-4)]
    data.append(data[2] * np.exp(0.7j))  # a global phase
    stats = [sufficient_statistics(y[:, None]) for y in data]
    for a, b, c in stats:
        np.testing.assert_allclose([np.hypot((a - b) / 2, c)[0], np.arctan2(c, (a - b) / 2)[0]], [r, phi], rtol=1e-12)
    assert len({round(float(a[0] + b[0]), 12) for a, b, _ in stats[:3]}) == 3
    t1 = np.exp(np.linspace(np.log(0.05), np.log(5.0), 300))
    for scale_prior in ("jeffreys", "flat"):
        curves = [exact_log_likelihood(y[:, None], t1, SEED_7T_MP2RAGE, SIGMA, 1.0, scale_prior)[:, 0] for y in data]
        for curve in curves[1:]:
            np.testing.assert_allclose(curve - curve[0], curves[0] - curves[0][0], atol=1e-9)


# ---------------------------------------------------------------------------- the table against the grid
@pytest.mark.parametrize("scale_prior", ["jeffreys", "flat"])
def test_table_matches_grid_without_b1(scale_prior):
    """T1 0.05..5 s, SNR 5..1000, random voxels: MAP within 1 ms, std within 1 % (or, where the
    grid evaluation misses, of brute-force integration), ``valid`` identical."""
    y, _ = voxels(2000, seed=11)
    assert_table_matches_grid(y, None, scale_prior)


def test_table_matches_grid_with_b1_map():
    """The same with a B1 map (B1 0.95..1.05 here, a table of two B1 rows: fast; 0.5..1.5 in the slow test)."""
    y, b1 = voxels(1000, seed=12, b1_range=(0.95, 1.05))
    assert_table_matches_grid(y, b1, "jeffreys", table_b1_range=(0.95, 1.05))


@pytest.mark.slow
@pytest.mark.parametrize("scale_prior", ["jeffreys", "flat"])
def test_table_matches_grid_with_b1_map_on_the_full_range(scale_prior):
    """B1 0.5..1.5 (the default table rows), both priors."""
    y, b1 = voxels(4000, seed=13, b1_range=(0.5, 1.5))
    assert_table_matches_grid(y, b1, scale_prior)


@pytest.mark.parametrize("scale_prior", ["jeffreys", "flat"])
def test_very_wide_posteriors_below_snr_5(scale_prior):
    """SNR 0.1..5: std within 1 % and mean within 1 % of the std of the grid evaluation; the MAP
    is within 1 ms of it or (a flat or bimodal posterior, whose MAP is ill-defined) its
    log-likelihood is within 1e-3 of the best of a dense grid (the grid evaluation's too)."""
    y, _ = voxels(2000, seed=14, snr=(0.1, 5.0), ends=False)
    grid = ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, scale_prior=scale_prior, method="grid").fit(y)
    table = ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, scale_prior=scale_prior, method="table").fit(y)
    np.testing.assert_allclose(table.std, grid.std, rtol=0.01)
    assert np.max(np.abs(table.mean - grid.mean) / grid.std) < 0.01
    np.testing.assert_array_equal(table.valid, grid.valid)
    off = np.nonzero(np.abs(table.map - grid.map) > 1e-3)[0]
    assert off.size <= 0.01 * y.shape[1]
    if off.size:
        t1 = np.exp(np.linspace(np.log(T1_RANGE[0]), np.log(T1_RANGE[1]), 400_001))
        ll = exact_log_likelihood(y[:, off], t1, SEED_7T_MP2RAGE, SIGMA, 1.0, scale_prior)
        at = np.array([np.interp(table.map[q], t1, ll[:, k]) for k, q in enumerate(off)])
        assert np.all(at >= ll.max(axis=0) - 1e-3)


def test_one_table_serves_every_noise_level():
    """The posterior depends on sigma only through kappa = R / sigma^2: data and sigma scaled
    together give the same posterior (to rounding, which the flat psi(T1) below 0.15 s amplifies
    to about 1e-8)."""
    y, _ = voxels(500, seed=15)
    base = ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, method="table").fit(y)
    scaled = ExactMAPModel(SEED_7T_MP2RAGE, 37 * SIGMA, method="table").fit(37 * y)
    for name in ("map", "mean", "std"):
        np.testing.assert_allclose(getattr(scaled, name), getattr(base, name), rtol=1e-7)
    np.testing.assert_array_equal(scaled.valid, base.valid)


# ---------------------------------------------------------------------------- edges
def test_nan_zero_and_out_of_table_voxels():
    """NaN data or B1 give NaN and valid False; zero data give the prior (analytic for Jeffreys');
    B1 outside the table's rows (inside the dictionary's grid) and kappa above the table go to
    the grid evaluation, counted, with its exact result; B1 outside the dictionary's grid is an error."""
    y, b1 = voxels(40, seed=16, b1_range=(0.95, 1.05))
    y[0, 3] = np.nan
    b1[5] = np.nan
    y[:, 6] = 0.0
    b1[7], b1[8] = 0.7, 1.6  # outside the table's rows 0.95..1.05
    y[:, 9] *= 1e4  # SNR ~1e6: kappa above the table
    grid = ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, method="grid").fit(y, b1=b1)
    model = ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, method="table", table_b1_range=(0.95, 1.05))
    table = model.fit(y, b1=b1)
    for name in ("map", "mean", "std"):
        value = getattr(table, name)
        assert np.isnan(value[3]) and np.isnan(value[5])
        np.testing.assert_array_equal(value[[7, 8, 9]], getattr(grid, name)[[7, 8, 9]])
    assert not table.valid[3] and not table.valid[5]
    assert model.fit_info["voxels"] == 38 and model.fit_info["b1_outside_table"] == 2
    assert model.fit_info["grid"] >= 3 and model.fit_info["table"] + model.fit_info["grid"] == 38
    lo, hi = T1_RANGE
    np.testing.assert_allclose(table.mean[6], (lo + hi) / 2, rtol=1e-6)
    np.testing.assert_allclose(table.std[6], (hi - lo) / np.sqrt(12), rtol=1e-6)
    np.testing.assert_allclose([table.map[6], grid.map[6]], lo, rtol=1e-12)  # a flat posterior: T1_min, as the grid's search
    with pytest.raises(ValueError, match="b1 spans"):
        model.fit(y, b1=np.full(b1.shape, 2.5))


def test_table_method_bad_input():
    y, _ = voxels(10, seed=17)
    with pytest.raises(ValueError, match="method must be one of"):
        ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, method="lut")
    with pytest.raises(ValueError, match="two used readouts"):
        ExactMAPModel(SEED_7T_MP3RAGE, SIGMA, method="table")
    with pytest.raises(ValueError, match="table_b1_range"):
        ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, method="table", table_b1_range=(0.2, 1.5))
    model = ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, method="table")
    with pytest.raises(ValueError, match="does not marginalise"):
        model.fit(y, b1=1.0, b1_sd=0.05)


def test_auto_takes_the_table_for_mp2rage_and_the_quadratic_form_otherwise():
    """The default method: the table wherever it applies (two readouts, no B1 marginalisation)."""
    y, b1 = voxels(200, seed=23, b1_range=(0.8, 1.2))
    model = ExactMAPModel(SEED_7T_MP2RAGE, SIGMA)
    assert model.method == "auto"
    model.fit(y, b1=b1)
    assert model.fit_info["table"] > 0.95 * y.shape[1]
    model.fit(y, b1=b1, b1_sd=0.02)
    assert model.fit_info["table"] == 0 and model.fit_info["quadratic"] > 0
    assert model.fit_info["quadratic"] + model.fit_info["grid"] == y.shape[1]
    mp3 = ExactMAPModel(SEED_7T_MP3RAGE, SIGMA)
    mp3.fit(np.concatenate([y, y[:1]]), b1=b1)
    assert mp3.fit_info["table"] == 0 and mp3.fit_info["quadratic"] > 0


def test_tables_are_read_back_from_the_store(tmp_path):
    """With a store, a table is built once per store: another process (here: cleared caches) reads
    it back, and the voxels' summaries are the same as without a store."""
    from qt1lib.estimate.posterior_table import POSTERIOR_TABLE_STEP
    from qt1lib.store import Store

    y, _ = voxels(300, seed=29)
    plain = ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, method="table").fit(y)
    store = Store(tmp_path / "store")
    first = ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, method="table", store=store).fit(y)
    ExactMAPModel.clear_dictionaries()
    second = ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, method="table", store=store).fit(y)
    assert [e.outcome for e in store.events if e.step == POSTERIOR_TABLE_STEP] == ["miss", "hit"]
    for name in ("map", "mean", "std", "valid"):
        np.testing.assert_array_equal(getattr(first, name), getattr(plain, name))
        np.testing.assert_array_equal(getattr(second, name), getattr(plain, name))
    with pytest.raises(ValueError, match="store"):
        ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, store="work/store")
