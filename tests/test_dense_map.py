"""The exact MAP's dense evaluation in torch (qt1lib.estimate.dense_map) against the grid evaluation, and CUDA against the CPU."""

import numpy as np
import pytest
import torch
from test_quadratic_map import SIGMA, _voxels

from qt1lib.estimate import make_estimator
from qt1lib.estimate.dense_map import DenseEvaluator, resolve_device
from qt1lib.estimate.map import ExactMAPModel, exact_log_likelihood
from qt1lib.estimate.quadratic_map import data_products
from qt1lib.protocols import SEED_7T_MP2RAGE, SEED_7T_MP3RAGE

CUDA = torch.cuda.is_available()


def _brute_force(y, protocol, b1, b1_sd, prior):
    """MAP, mean and std of T1 for one voxel: the exact log-likelihood at the exact B1 (the 5-node Gauss-Hermite
    mixture where ``b1_sd > 0``) on 4e5 nodes over the prior's support, the trapezoidal rule."""
    t = np.exp(np.linspace(np.log(0.05), np.log(5.0), 400001))
    x, w = np.polynomial.hermite_e.hermegauss(5) if b1_sd > 0 else (np.zeros(1), np.ones(1))
    w = w / w.sum()
    lls = [exact_log_likelihood(y[:, None], t, protocol, SIGMA, b1 + b1_sd * xx, prior)[:, 0] + np.log(ww)
           for xx, ww in zip(x, w)]
    ll = np.logaddexp.reduce(np.stack(lls), axis=0)
    p = np.exp(ll - ll.max())  # uniform prior in T1
    z = np.trapezoid(p, t)
    mean = np.trapezoid(p * t, t) / z
    return t[np.argmax(ll)], mean, np.sqrt(np.trapezoid(p * (t - mean) ** 2, t) / z)


def _check_against_grid(protocol, y, b1, b1_sd, prior):
    """The bounds of ExactMAPModel's method docstring against the grid evaluation (MAP within 1 ms, std within 1 %,
    mean within 1 % of the std) or, where the grid evaluation's linear interpolation of the signals between B1 nodes
    is the one that is off (up to 4 % of the std at B1 1.5 with B1 marginalised), tighter bounds against brute-force
    integration at the exact B1 (MAP within 0.5 ms: its Newton steps use slopes linear in B1; mean and std within
    1e-4 of the std)."""
    kwargs = {"b1": b1, "b1_sd": b1_sd}
    pg = ExactMAPModel(protocol, SIGMA, scale_prior=prior, method="grid").fit(y, **kwargs)
    dense = ExactMAPModel(protocol, SIGMA, scale_prior=prior, method="dense", device="cpu")
    pd = dense.fit(y, **kwargs)
    info = dense.fit_info
    assert info["dense"] + info["grid"] == info["voxels"] == y.shape[1]
    assert info["dense"] > 0.8 * y.shape[1]  # the grid takes the few posteriors too narrow for the dense nodes
    ok = np.isfinite(pg.map)
    assert np.array_equal(ok, np.isfinite(pd.map))
    off = ok & ((np.abs(pd.map - pg.map) > 1e-3) | (np.abs(pd.std - pg.std) > 0.01 * pg.std)
                | (np.abs(pd.mean - pg.mean) > 0.01 * pg.std))
    assert b1 is not None or not off.any()
    assert off.sum() <= 0.03 * y.shape[1]
    for i in np.nonzero(off)[0]:  # loop over the few voxels where the two differ
        t1_map, mean, std = _brute_force(y[:, i], protocol, b1[i], b1_sd, prior)
        assert abs(pd.map[i] - t1_map) < 5e-4 and abs(pd.std[i] - std) < 1e-4 * std and abs(pd.mean[i] - mean) < 1e-4 * std
    assert np.mean(pd.valid == pg.valid) >= 0.995


@pytest.mark.parametrize("prior", ["jeffreys", "flat"])
@pytest.mark.parametrize("case", ["nob1", "b1", "marginal"])
def test_dense_agrees_with_the_grid_on_random_mp3rage_voxels(prior, case):
    """T1 0.05..5 s, B1 0.5..1.5, SNR 5..1000, both scale priors."""
    y, _, b1 = _voxels(400, SEED_7T_MP3RAGE, seed=21)
    _check_against_grid(SEED_7T_MP3RAGE, y, None if case == "nob1" else b1, 0.02 if case == "marginal" else 0.0, prior)


@pytest.mark.parametrize("case", ["nob1", "b1", "marginal"])
def test_dense_agrees_with_the_grid_on_random_mp2rage_voxels(case):
    y, _, b1 = _voxels(400, SEED_7T_MP2RAGE, seed=22)
    _check_against_grid(SEED_7T_MP2RAGE, y, None if case == "nob1" else b1, 0.02 if case == "marginal" else 0.0,
                        "jeffreys")


def test_dense_matches_brute_force_integration_at_the_exact_b1():
    """Between B1 nodes (the voxels of the MP2RAGE test above where the grid evaluation is farthest from it): the
    exact log-likelihood on 1e5 nodes over +-12 posterior stds, the trapezoidal rule."""
    y, _, b1 = _voxels(400, SEED_7T_MP2RAGE, seed=22)
    pick = np.array([165, 313, 388])
    post = ExactMAPModel(SEED_7T_MP2RAGE, SIGMA, method="dense", device="cpu").fit(y[:, pick], b1=b1[pick])
    for i, vox in enumerate(pick):  # loop over three voxels
        t = np.linspace(post.mean[i] - 12 * post.std[i], post.mean[i] + 12 * post.std[i], 100001)
        ll = exact_log_likelihood(y[:, vox : vox + 1], t, SEED_7T_MP2RAGE, SIGMA, b1[vox])[:, 0]
        p = np.exp(ll - ll.max())  # uniform prior in T1
        z = np.trapezoid(p, t)
        mean = np.trapezoid(p * t, t) / z
        std = np.sqrt(np.trapezoid(p * (t - mean) ** 2, t) / z)
        assert abs(post.map[i] - t[np.argmax(ll)]) < 1e-4  # the MAP's Newton steps use slopes linear in B1
        assert abs(post.mean[i] - mean) < 1e-4 * std and abs(post.std[i] - std) < 1e-4 * std


def test_b1_interpolation_is_close_to_the_exact_log_likelihood_between_nodes():
    """Cubic Hermite in B1 (the dense path) against the exact log-likelihood at B1 between nodes, at high SNR:
    a hundredth of the error of linear interpolation of the quadratic form."""
    y, _, b1 = _voxels(64, SEED_7T_MP3RAGE, seed=23, snr=(300.0, 1000.0))
    model = ExactMAPModel(SEED_7T_MP3RAGE, SIGMA, method="dense", device="cpu")
    evaluator = DenseEvaluator(model, True, "cpu")
    order = np.argsort(b1)
    y, b1 = y[:, order], b1[order]
    j, w = model._b1_position(model.dictionary(True), b1)
    mvec = torch.as_tensor(data_products(y.T, SIGMA))
    hermite = evaluator._loglik(mvec, j, torch.as_tensor(w)).numpy()
    exact = exact_log_likelihood(y, np.exp(evaluator.u), SEED_7T_MP3RAGE, SIGMA, b1).T
    values = evaluator.values[:, : mvec.shape[1]].numpy()
    linear = np.stack([mvec[i].numpy() @ ((1 - w[i]) * values[j[i]] + w[i] * values[j[i] + 1]) for i in range(len(b1))])
    err_h, err_l = np.abs(hermite - exact).max(axis=1), np.abs(linear - exact).max(axis=1)
    assert np.all(err_h <= 0.01 * err_l + 1e-9)


def test_nan_voxels_stay_nan_and_chunks_do_not_change_the_numbers():
    y, _, b1 = _voxels(300, SEED_7T_MP3RAGE, seed=24, snr=(10.0, 60.0))
    y[0, 3] = np.nan
    b1 = b1.copy()
    b1[9] = np.nan
    model = ExactMAPModel(SEED_7T_MP3RAGE, SIGMA, method="dense", device="cpu")
    post = model.fit(y, b1=b1, b1_sd=0.02)
    assert model.fit_info["voxels"] == 298
    for i in (3, 9):
        assert np.isnan(post.map[i]) and np.isnan(post.std[i]) and not post.valid[i]
    assert np.all(np.isfinite(np.delete(post.map, [3, 9])))
    again = ExactMAPModel(SEED_7T_MP3RAGE, SIGMA, method="dense", device="cpu").fit(y[:, 150:], b1=b1[150:], b1_sd=0.02)
    np.testing.assert_allclose(again.map, post.map[150:], rtol=1e-9)
    np.testing.assert_allclose(again.std, post.std[150:], rtol=1e-9)
    small = ExactMAPModel(SEED_7T_MP3RAGE, SIGMA, method="dense", device="cpu", dense_chunk_size=64)
    chunked = small.fit(y, b1=b1, b1_sd=0.02)  # five chunks instead of one
    assert small.dense_chunk_size == 64 and small.fit_info == model.fit_info
    for name in ("map", "mean", "std"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(post, name), rtol=1e-9, equal_nan=True)
    with pytest.raises(ValueError, match="dense_chunk_size"):
        ExactMAPModel(SEED_7T_MP3RAGE, SIGMA, method="dense", device="cpu", dense_chunk_size=0)


def test_device_is_checked_and_resolved():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(None) == ("cuda" if CUDA else "cpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")
    if not CUDA:
        with pytest.raises(ValueError, match="cuda.is_available"):
            ExactMAPModel(SEED_7T_MP3RAGE, SIGMA, method="dense", device="cuda")
        # without CUDA "auto" keeps to the NumPy paths and the derivative's parameters name no device
        model = ExactMAPModel(SEED_7T_MP3RAGE, SIGMA)
        assert model.device == "cpu"
        assert "device" not in make_estimator("map_exact_mp3rage", SEED_7T_MP3RAGE, SIGMA)._parameters()
    estimator = make_estimator("map_exact_mp3rage_nob1", SEED_7T_MP3RAGE, SIGMA, evaluation="dense", device="cpu")
    y, _, _ = _voxels(50, SEED_7T_MP3RAGE, seed=25, snr=(10.0, 60.0))
    grid = ExactMAPModel(SEED_7T_MP3RAGE, SIGMA, method="grid").fit(y)
    np.testing.assert_allclose(estimator.model.fit(y).map, grid.map, atol=1e-3)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("case", ["nob1", "b1", "marginal"])
def test_cuda_gives_the_cpu_numbers(case):
    """The same code in float64 on the GPU: the CPU run's numbers to rounding."""
    y, _, b1 = _voxels(2000, SEED_7T_MP3RAGE, seed=26)
    kwargs = {"b1": None if case == "nob1" else b1, "b1_sd": 0.02 if case == "marginal" else 0.0}
    cpu = ExactMAPModel(SEED_7T_MP3RAGE, SIGMA, method="dense", device="cpu").fit(y, **kwargs)
    gpu = ExactMAPModel(SEED_7T_MP3RAGE, SIGMA, method="dense", device="cuda").fit(y, **kwargs)
    np.testing.assert_allclose(gpu.map, cpu.map, rtol=1e-9)
    np.testing.assert_allclose(gpu.mean, cpu.mean, rtol=1e-9)
    np.testing.assert_allclose(gpu.std, cpu.std, rtol=1e-7)
    assert np.mean(gpu.valid == cpu.valid) >= 0.999
