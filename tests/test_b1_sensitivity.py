"""B1+ sensitivity of the estimators: first-order theory, simulated errors on a T1 x B1 grid, noise-free readings."""

from __future__ import annotations

import numpy as np
import pytest

from qt1lib.estimate.b1_sensitivity import b1_error_grid, b1_sensitivity, noise_free_reading
from qt1lib.estimate.lut import lut_t1
from qt1lib.estimate.map import ExactMAPModel
from qt1lib.protocols import SEED_7T_MP3RAGE
from qt1lib.sequences import gre_signals, uni


# ------------------------------------------------------------------------------ first order
@pytest.mark.parametrize("pair", [(1, 2), (1, 3)])
def test_b1_sensitivity_predicts_the_nominal_reading_error(pair):
    """A table read at nominal B1 from data at B1 = 1 + d errs by -dT1/dB1 * d to first order."""
    t1 = np.array([0.8, 1.2, 1.8, 2.5])
    d = 0.01
    g = gre_signals(t1, SEED_7T_MP3RAGE, 1 + d)
    read = lut_t1(uni(g[pair[0] - 1], g[pair[1] - 1]), SEED_7T_MP3RAGE, pair=pair)
    predicted = -b1_sensitivity(t1, SEED_7T_MP3RAGE, pair) * d
    np.testing.assert_allclose(read - t1, predicted, rtol=0.05)
    assert np.all(predicted < 0)  # more flip -> a reading that assumes nominal flip sees shorter T1


def test_b1_sensitivity_rejects_bad_input():
    with pytest.raises(ValueError, match="t1"):
        b1_sensitivity(np.array([-1.0]), SEED_7T_MP3RAGE)
    with pytest.raises(ValueError, match="pair"):
        b1_sensitivity(np.array([1.0]), SEED_7T_MP3RAGE, (1, 4))
    with pytest.raises(ValueError, match="b1"):
        b1_sensitivity(np.array([1.0]), SEED_7T_MP3RAGE, b1=0.0)


# ------------------------------------------------------------------------------ error grid
def test_b1_error_grid_noise_free():
    t1, b1 = [0.9, 1.5], [0.8, 1.0, 1.25]
    grid = b1_error_grid(t1, b1, SEED_7T_MP3RAGE, 0.001, ["lut", "lut_b1", "map_exact_mp2rage"], b1_map_errors=[0.0, 0.05])
    assert len(grid) == 3 * 2 * len(t1) * len(b1)
    assert set(grid.label) == {"LUT", "LUT, B1-corrected", "exact MAP MP2RAGE, B1 map"}
    exact_b1 = grid[(grid.estimator == "lut_b1") & (grid.b1_map_error == 0.0)]
    assert np.abs(exact_b1.rel_error).max() < 2e-3  # the B1-corrected table with a perfect map
    nominal = grid[(grid.estimator == "lut") & (grid.b1_map_error == 0.0)]
    for row in nominal.itertuples():  # independent: simulate and read with the nominal table
        g = gre_signals(np.array([row.t1]), SEED_7T_MP3RAGE, row.b1)
        assert row.t1_est == pytest.approx(float(lut_t1(uni(g[0], g[1]), SEED_7T_MP3RAGE)[0]), rel=1e-6)
    # the B1-unaware table does not depend on the map error; the corrected ones do
    lut = grid[grid.estimator == "lut"].pivot_table(index=["t1", "b1"], columns="b1_map_error", values="t1_est")
    np.testing.assert_array_equal(lut[0.0], lut[0.05])
    wrong_map = grid[(grid.estimator == "map_exact_mp2rage") & (grid.b1_map_error == 0.05)]
    assert (wrong_map.rel_error > 0).all()  # a map that overstates B1 -> longer T1
    # the first-order theory predicts the error of the wrong map (dB1 = +5 % of B1)
    for row in wrong_map.itertuples():
        predicted = b1_sensitivity(np.array([row.t1]), SEED_7T_MP3RAGE, (1, 2), row.b1)[0] * 0.05 * row.b1
        assert row.error == pytest.approx(predicted, rel=0.25)
    with pytest.raises(ValueError, match="b1_map_errors"):
        b1_error_grid(t1, b1, SEED_7T_MP3RAGE, 0.001, ["lut"], b1_map_errors=[])


def test_b1_error_grid_noise_spreads_the_estimates():
    grid = b1_error_grid([1.2], [1.0], SEED_7T_MP3RAGE, 0.002, ["map_exact_mp2rage_nob1"], n_noise=300)
    row = grid.iloc[0]
    assert row.t1_sd > 0 and abs(row.rel_error) < 3 * row.t1_sd / np.sqrt(300) / 1.2 + 0.01
    assert 0.9 < row.valid <= 1.0


def test_b1_error_grid_passes_each_estimator_its_options():
    """A shared options mapping: each estimator takes what it accepts; the marginal MAP's b1_sd changes it."""
    args = ([1.0, 2.0], [0.9], SEED_7T_MP3RAGE, 0.003, ["lut", "map_exact_mp3rage"])
    base = b1_error_grid(*args, b1_map_errors=[0.05])
    wide = b1_error_grid(*args, b1_map_errors=[0.05], estimator_options={"b1_sd": 0.2, "scale_prior": "jeffreys"})
    lut = base.estimator == "lut"
    np.testing.assert_array_equal(base[lut].t1_est, wide[lut].t1_est)
    assert not np.allclose(base[~lut].t1_est, wide[~lut].t1_est)
    with pytest.raises(ValueError, match="b1_sdd"):
        b1_error_grid(*args, estimator_options={"b1_sdd": 0.2})
    with pytest.raises(ValueError, match="unknown estimator 'magic'"):
        b1_error_grid([1.0], [1.0], SEED_7T_MP3RAGE, 0.003, ["magic"])
    with pytest.raises(ValueError, match="n_noise"):
        b1_error_grid([1.0], [1.0], SEED_7T_MP3RAGE, 0.003, ["lut"], n_noise=-1)


# ------------------------------------------------------------------------------ noise-free reading
def test_noise_free_reading():
    t1 = np.array([0.7, 1.5, 3.0])
    b1_true = np.array([0.8, 1.0, 1.2])
    g = gre_signals(t1, SEED_7T_MP3RAGE, b1_true)
    # S_12: the lookup table, nominal or B1-corrected (B1 clipped into 0.3..2.0)
    np.testing.assert_array_equal(noise_free_reading(g, SEED_7T_MP3RAGE, (1, 2)), lut_t1(uni(g[0], g[1]), SEED_7T_MP3RAGE))
    b1 = np.array([0.8, 1.0, 2.4])
    np.testing.assert_array_equal(
        noise_free_reading(g, SEED_7T_MP3RAGE, (1, 2), b1),
        lut_t1(uni(g[0], g[1]), SEED_7T_MP3RAGE, np.clip(b1, 0.3, 2.0)),
    )
    # with the true B1 both readings recover T1
    np.testing.assert_allclose(noise_free_reading(g, SEED_7T_MP3RAGE, (1, 2), b1_true), t1, rtol=2e-3)
    mp3 = noise_free_reading(g, SEED_7T_MP3RAGE, (1, 2, 3), b1_true)
    np.testing.assert_allclose(mp3, t1, rtol=1e-3)
    # MP3RAGE: the exact MAP at NOISE_FREE_SIGMA
    direct = ExactMAPModel(SEED_7T_MP3RAGE, 1e-4, scale_prior="flat").fit(g)
    np.testing.assert_array_equal(noise_free_reading(g, SEED_7T_MP3RAGE, (1, 2, 3), scale_prior="flat"), direct.map)
    with pytest.raises(ValueError, match="readouts"):
        noise_free_reading(g, SEED_7T_MP3RAGE, (1, 3))
